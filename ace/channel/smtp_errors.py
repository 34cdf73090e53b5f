"""
:mod:`ace.channel.smtp_errors` maps what sending email raised to ACE's channel errors.

4xx replies, dropped connections, timeouts and refused connections are recoverable (retry at
``ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY`` seconds from now, 60 by default); 5xx replies and
refused recipients are fatal, with the server's reply; a connection lost after the message's
content went out is an unknown outcome, never retried. Shared by every ``django_email``
session and by the single-message path.
"""

from __future__ import annotations

import smtplib
import ssl
from datetime import timedelta
from typing import Any

from django.conf import settings

from ace.channel.smtp_pipelining import SMTPReplyLost
from ace.errors import (
    ChannelError,
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecoverableChannelDeliveryError,
)
from ace.utils.date import get_current_time

#: Default for the ``ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY`` setting (seconds).
DEFAULT_RETRY_DELAY = 60
NOT_SENT = "The email backend reported that the message was not sent"


def _reply_text(reply: Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", errors="replace")
    return str(reply)


def _retry_at() -> Any:
    delay = getattr(settings, "ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY", DEFAULT_RETRY_DELAY)
    return get_current_time() + timedelta(seconds=delay)


def _by_code(code: int, text: str) -> ChannelError:
    if 400 <= code < 500 or code < 0:  # smtplib uses -1 when there was no reply at all
        return RecoverableChannelDeliveryError(text, _retry_at())
    return FatalChannelDeliveryError(text)


def smtp_error_to_channel_error(exc: BaseException) -> ChannelError | None:
    """
    Translate an error raised while sending email into an ACE channel error.

    Returns:
        An "unknown outcome" error when the connection was lost after the message was sent
        (:class:`~ace.channel.smtp_pipelining.SMTPReplyLost`); a recoverable error for 4xx replies,
        other disconnections, timeouts and network errors; a fatal one for 5xx replies,
        refused recipients, invalid messages and other SMTP errors; ``None`` for anything
        else (a bug, to be raised as it is).
    """
    if isinstance(exc, ChannelError):
        return exc
    if isinstance(exc, SMTPReplyLost):  # a subclass of SMTPServerDisconnected: test it first
        return DeliveryOutcomeUnknownError(
            f"{exc}; the message may have been delivered, so it is not retried automatically"
        )
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refusals = list(exc.recipients.items())
        if refusals:
            recipient, (code, reply) = refusals[0]
            text = f"Recipient {recipient} refused: {code} {_reply_text(reply)}"
            return _by_code(code, text)
        return FatalChannelDeliveryError("All recipients were refused")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = f"SMTP server replied {exc.smtp_code} {_reply_text(exc.smtp_error)}"
        return _by_code(exc.smtp_code, text)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return RecoverableChannelDeliveryError(f"SMTP server disconnected: {exc}", _retry_at())
    if isinstance(exc, smtplib.SMTPException):  # (a subclass of OSError: test it first)
        return FatalChannelDeliveryError(f"SMTP error: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):
        return FatalChannelDeliveryError(f"SMTP server certificate refused: {exc}")
    if isinstance(exc, TimeoutError):
        return RecoverableChannelDeliveryError(f"SMTP timeout: {exc or 'timed out'}", _retry_at())
    if isinstance(exc, OSError):
        return RecoverableChannelDeliveryError(f"SMTP connection error: {exc!r}", _retry_at())
    if isinstance(exc, ValueError):  # BadHeaderError, encoding errors: the message is invalid
        return FatalChannelDeliveryError(f"Invalid email: {exc}")
    return None


def breaks_connection(exc: BaseException) -> bool:
    """True if, after ``exc``, the SMTP connection cannot be used for the next message."""
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPHeloError):
        return True
    if isinstance(exc, smtplib.SMTPResponseException) and exc.smtp_code in (421, -1):
        return True
    if isinstance(exc, smtplib.SMTPRecipientsRefused) and any(
        code in (421, -1) for code, _ in exc.recipients.values()
    ):
        return True  # (smtplib closed the connection on a 421 to RCPT)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    # Other SMTP errors leave the session usable (smtplib sends RSET); SMTPException is an
    # OSError, so it is excluded before treating OSError as a network failure.
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


def _out_of_sequence(exc: BaseException, content_sent: bool) -> tuple[int, Any] | None:
    """The reply, if ``exc`` is a ``500``/``503`` (bad syntax, bad sequence of commands) or a
    reply that is no answer (1xx-3xx where smtplib wanted 250) to MAIL, RCPT or the DATA
    command: the server's idea of the session is not the client's, a connection problem."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        replies = list(exc.recipients.values())
    elif isinstance(exc, smtplib.SMTPSenderRefused) or (
        isinstance(exc, smtplib.SMTPDataError) and not content_sent
    ):
        replies = [(exc.smtp_code, exc.smtp_error)]
    else:  # (an SMTPDataError after the content is the message's own result)
        return None
    return next(((c, r) for c, r in replies if c in (500, 503) or 100 <= c < 400), None)
