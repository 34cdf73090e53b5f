"""
:mod:`ace.channel.django_email` delivers email through Django's email backends
(``EMAIL_BACKEND``: SMTP, locmem, file...), as multipart text + HTML.

Beyond the reference (which turned every SMTP error into a fatal one):

* transient failures -- 4xx replies, dropped connections, timeouts, refused connections --
  raise :class:`~ace.errors.RecoverableChannelDeliveryError` with a retry time
  (``ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY`` seconds from now, 60 by default);
  permanent ones -- 5xx replies, a refused recipient -- raise
  :class:`~ace.errors.FatalChannelDeliveryError` carrying the server's reply;
* a connection dropped or timed out after the message's content (the final ``.`` line) was
  sent but before the server's reply raises :class:`~ace.errors.DeliveryOutcomeUnknownError`:
  the server may have accepted the message, and retrying could deliver it twice. (With
  Django's SMTP backend the channel watches its ``smtplib`` connection to tell that moment
  apart; other backends report what they raise.)
* :meth:`DjangoEmailChannel.open_session` keeps backend connections open for a whole batch,
  reconnecting after a drop: with Django's SMTP backend, :class:`PipelinedEmailSession` sends
  over a few pipelined connections (the stdlib-only transport of
  :mod:`ace.channel.smtp_pipelining`, serialized by :mod:`ace.channel.mime`); with any other
  backend, :class:`DjangoEmailSession` keeps one backend connection;
* the rendered ``from_name`` becomes the sender's display name, ``options['reply_to']`` and
  ``options['headers']`` are honoured, and a header containing a newline is refused; the
  subject and display name are plain text (Django's autoescape undone), and
  ``options['subject_prefix']`` (an extension, e.g. ``"[TEST] "``) is put before the subject.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import ssl
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from email.headerregistry import Address
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend
from django.utils.module_loading import import_string

from ace.channel import Channel, ChannelSession, mime
from ace.channel.mixins import EmailChannelMixin
from ace.channel.smtp_pipelining import (
    Envelope,
    PipelinedSMTPTransport,
    SMTPOutOfSequence,
    SMTPReplyLost,
)
from ace.errors import (
    ChannelError,
    DeliveryOutcomeUnknownError,
    FatalChannelDeliveryError,
    RecoverableChannelDeliveryError,
)
from ace.utils.date import get_current_time

if TYPE_CHECKING:
    from ace.message import Message
    from ace.renderers import RenderedEmail

LOG = logging.getLogger(__name__)

#: Default for the ``ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY`` setting (seconds).
DEFAULT_RETRY_DELAY = 60
NOT_SENT = "The email backend reported that the message was not sent"
#: Setting: use the pipelined transport for the batch path when ``EMAIL_BACKEND`` is Django's
#: SMTP backend (default True; False keeps one plain ``smtplib`` connection per session).
FAST_SMTP_SETTING = "ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP"
#: Setting: SMTP connections per session (per worker process), default 4.
CONNECTIONS_SETTING = "ACE_CHANNEL_DJANGO_EMAIL_SMTP_CONNECTIONS"
DEFAULT_CONNECTIONS = 4
_DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


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


@functools.lru_cache(maxsize=256)
def _with_display_name(from_name: str, from_address: str) -> str:
    """``from_address`` with ``from_name`` as its display name. Cached: a batch formats the
    same sender for every message, and the email package's parser costs ~50 us a call."""
    _name, addr_spec = parseaddr(from_address)
    try:
        return str(Address(display_name=from_name, addr_spec=addr_spec))
    except (ValueError, IndexError) as error:
        raise FatalChannelDeliveryError(f"Invalid from address {addr_spec!r}") from error


class DjangoEmailChannel(EmailChannelMixin, Channel):
    """
    An email channel using Django's ``EMAIL_BACKEND``; with the locmem backend, what would
    be sent can be inspected in ``django.core.mail.outbox``.

    Example settings::

        EMAIL_BACKEND = 'django.core.mail.backends.smtp.EmailBackend'
        EMAIL_HOST = 'localhost'
        DEFAULT_FROM_EMAIL = 'hello@example.org'

        ACE_CHANNEL_DEFAULT_EMAIL = 'sailthru_email'
        ACE_CHANNEL_TRANSACTIONAL_EMAIL = 'django_email'

        ACE_ENABLED_CHANNELS = [
            'sailthru_email',
            'django_email',
        ]
    """

    @classmethod
    def enabled(cls) -> bool:
        """Always true: Django's email settings always select some backend."""
        return True

    def build_email(
        self, message: Message, rendered_message: RenderedEmail
    ) -> EmailMultiAlternatives:
        """
        Build the multipart email for one message (no network).

        Raises:
            RecipientAddressMissingError: If the recipient has no email address.
            FatalChannelDeliveryError: If there is no from-address or a header has a newline.
        """
        to_address = self.get_recipient_address(message)
        from_address = self.get_from_address(message)
        from_name = self.get_from_name(rendered_message)
        if from_name:
            from_address = _with_display_name(from_name, from_address)
        headers = self.get_headers(message)
        if message.language and not any(k.lower() == "content-language" for k in headers):
            headers["Content-Language"] = str(message.language)
        email = EmailMultiAlternatives(
            subject=self.get_message_subject(message, rendered_message),
            body=rendered_message.body,
            from_email=from_address,
            to=[to_address],
            reply_to=self.get_reply_to(message),
            headers=headers,
        )
        email.attach_alternative(
            self.make_simple_html_template(rendered_message.head_html, rendered_message.body_html),
            "text/html",
        )
        return email

    def deliver(self, message: Message, rendered_message: RenderedEmail) -> None:
        """Send one message over a connection of its own (as the reference does), with the
        same error mapping as a session."""
        email = self.build_email(message, rendered_message)
        session = DjangoEmailSession(self)
        try:
            error = session.send_email(email)
        finally:
            session.close()
        if error is not None:
            LOG.warning("Email delivery of %s failed: %s", message.log_id, error)
            raise error

    def open_session(self) -> ChannelSession:
        """A session keeping backend connections open for many messages: with Django's SMTP
        backend, a :class:`PipelinedEmailSession` (several connections, ESMTP PIPELINING; off
        with ``ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = False``), else a
        :class:`DjangoEmailSession` (one backend connection)."""
        return pipelined_session_for(self) or DjangoEmailSession(self)


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


class DjangoEmailSession(ChannelSession):
    """
    Sends many emails over one open backend connection; the only place where the batch path
    hits the network for this channel.

    A failure affects only its email: after one, the connection is reset (``RSET``; smtplib
    does so after most failures, not after a refused ``DATA`` command) or, if it cannot be,
    closed and reopened for the next email. A ``500``/``503`` out of sequence is the
    connection's fault: the email is sent again once on a fresh connection, and is
    recoverable (never fatal) if that happens again.
    """

    channel: DjangoEmailChannel

    def __init__(self, channel: DjangoEmailChannel) -> None:
        super().__init__(channel)
        self._connection: Any = None
        self._data_writes: list[int] | None = None  # (see _watch_data)

    def deliver_many(self, items: Sequence[tuple[Message, Any]]) -> list[Exception | None]:
        results: list[Exception | None] = []
        for message, rendered in items:
            try:
                email = self.channel.build_email(message, rendered)
            except ChannelError as error:
                results.append(error)
                continue
            results.append(self.send_email(email))
        return results

    def send_email(self, email: EmailMultiAlternatives) -> ChannelError | None:
        """Send one built email on the open connection (opening it if needed)."""
        fresh = False
        while True:
            try:
                connection = self._open()
                sent = connection.send_messages([email])
            except Exception as exc:
                cause: BaseException = exc
                writes = self._data_writes
                confused = _out_of_sequence(exc, content_sent=writes is None or writes[0] >= 2)
                if confused is not None:
                    LOG.warning("SMTP: %s %r out of sequence; reconnecting", *confused)
                    self._discard()
                    if not fresh:
                        fresh = True
                        continue  # once more, on a fresh connection
                    cause = SMTPOutOfSequence(*confused)
                error = smtp_error_to_channel_error(cause)
                if error is None:
                    raise
                if breaks_connection(cause):
                    self._discard()
                else:
                    self._reset()
                if error is not cause:
                    error.__cause__ = cause
                return error
            return None if sent else FatalChannelDeliveryError(NOT_SENT)

    def _reset(self) -> None:
        """After a failed transaction: RSET, or close a connection that cannot reset (or that
        smtplib closed, as it does on a 421)."""
        smtp = getattr(self._connection, "connection", None)
        if not isinstance(smtp, smtplib.SMTP):
            return
        try:
            code = smtp.rset()[0] if smtp.sock is not None else -1
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._discard()

    def _open(self) -> Any:
        if self._connection is None:
            connection = get_connection(fail_silently=False)
            connection.open()
            smtp = getattr(connection, "connection", None)
            self._data_writes = _watch_data(smtp) if isinstance(smtp, smtplib.SMTP) else None
            self._connection = connection
        return self._connection

    def _discard(self) -> None:
        connection, self._connection, self._data_writes = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except (smtplib.SMTPException, OSError) as exc:
                LOG.debug("Ignoring error while closing a broken connection: %r", exc)

    def close(self) -> None:
        """Close the connection (QUIT)."""
        self._discard()


def _watch_data(smtp: smtplib.SMTP) -> list[int]:
    """Make ``smtp`` raise :class:`~ace.channel.smtp_pipelining.SMTPReplyLost` instead of
    ``SMTPServerDisconnected`` when the connection is lost after the message content was
    written in ``DATA`` (``smtplib`` raises the same error before and after that point).
    Returns the count of writes in the current ``data()`` call (``[2]``: the content went
    out, so an ``SMTPDataError`` is the reply to it, not to the ``DATA`` command).

    ``SMTP.data()`` writes twice -- the ``DATA`` command, then (after the 354 reply) the
    content ending with the ``.`` line -- and reads a reply after each. Both methods are
    wrapped on this instance only; a failed write of the content (``send`` raised) means its
    last bytes, the ``.`` line, never left, so that stays a plain, retryable disconnection.
    """
    send, data = smtp.send, smtp.data
    writes = [0]  # completed writes in the current data() call

    def counting_send(payload: Any) -> None:
        send(payload)
        writes[0] += 1

    def watched_data(msg: Any) -> Any:
        writes[0] = 0
        try:
            return data(msg)
        except smtplib.SMTPServerDisconnected as exc:
            if writes[0] >= 2:
                raise SMTPReplyLost(exc) from exc
            raise

    smtp.send = counting_send  # type: ignore[method-assign]
    smtp.data = watched_data  # type: ignore[method-assign]
    return writes


# The pipelined session -----------------------------------------------------------------------


def django_smtp_connector(**backend_kwargs: Any) -> Callable[[], EmailBackend]:
    """A connector for :class:`~ace.channel.smtp_pipelining.PipelinedSMTPTransport` opening
    Django's SMTP ``EmailBackend`` (settings or ``backend_kwargs``); the transport uses the
    backend's ``smtplib.SMTP`` connection and closes it with the backend."""

    def connect() -> EmailBackend:
        backend = EmailBackend(fail_silently=False, **backend_kwargs)
        backend.open()
        return backend

    return connect


def pipelined_session_for(channel: DjangoEmailChannel) -> PipelinedEmailSession | None:
    """The pipelined session for ``channel`` if the settings allow it: ``EMAIL_BACKEND`` is
    exactly Django's SMTP backend (a subclass may change how mail is sent, so it keeps the
    plain session) and ``ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP`` is not false."""
    if not getattr(settings, FAST_SMTP_SETTING, True):
        return None
    backend = settings.EMAIL_BACKEND
    if backend != _DJANGO_SMTP_BACKEND and import_string(backend) is not EmailBackend:
        return None
    connections = int(getattr(settings, CONNECTIONS_SETTING, DEFAULT_CONNECTIONS))
    return PipelinedEmailSession(channel, connections=connections)


class PipelinedEmailSession(ChannelSession):
    """
    The django_email channel's batch session over
    :class:`~ace.channel.smtp_pipelining.PipelinedSMTPTransport`.

    Each message is built exactly as the channel builds it (:meth:`DjangoEmailChannel.build_email`),
    serialized by :func:`ace.channel.mime.message_bytes`, and its SMTP result is mapped by
    :func:`smtp_error_to_channel_error`, as for :class:`DjangoEmailSession`: 4xx,
    disconnections and timeouts are recoverable (with ``next_attempt_time``), 5xx and refused
    recipients are fatal with the server's reply, and a connection lost after a message's
    content was written (:class:`~ace.channel.smtp_pipelining.SMTPReplyLost`) is unknown,
    never retried.
    """

    channel: DjangoEmailChannel

    def __init__(self, channel: DjangoEmailChannel, *, connections: int = DEFAULT_CONNECTIONS):
        super().__init__(channel)
        self.transport = PipelinedSMTPTransport(django_smtp_connector(), connections=connections)

    def deliver_many(self, items: Sequence[tuple[Message, Any]]) -> list[Exception | None]:
        """Send every item; one result per item (None or a ChannelError), in order."""
        results = self.transport.send_many(self._envelopes(items))
        return [self._channel_error(result) for result in results]

    def close(self) -> None:
        """QUIT every connection."""
        self.transport.close()

    def _envelopes(self, items: Sequence[tuple[Message, Any]]) -> Iterator[Envelope | Exception]:
        for message, rendered in items:
            try:
                email = self.channel.build_email(message, rendered)
                sender, recipients = mime.envelope(email)
                if not recipients:
                    yield FatalChannelDeliveryError(NOT_SENT)
                    continue
                # Both message_bytes paths (direct, and Django's as_bytes) write CRLF. Looked up
                # on the module at each call, so the benchmark's profile can time it.
                yield Envelope(sender, recipients, mime.message_bytes(email), crlf=True)
            except (ChannelError, ValueError) as error:  # ValueError: bad header or address
                yield error

    @staticmethod
    def _channel_error(result: BaseException | None) -> Exception | None:
        if result is None or isinstance(result, ChannelError):
            return result
        error = smtp_error_to_channel_error(result)
        if error is None:  # not an email error: a bug, raised as the plain session would
            raise result
        if error is not result:
            error.__cause__ = result
        return error
