"""
:mod:`ace.channel.django_email_sessions`: the connections the ``django_email`` channel keeps open.

* :class:`DjangoEmailSession`: one backend connection (any ``EMAIL_BACKEND``) for many
  emails, reset or reopened after a failure so a fault stays with its email;
* :class:`PipelinedEmailSession`: with Django's SMTP backend, several pipelined connections
  (:mod:`ace.channel.smtp_pipelining`, serialized by :mod:`ace.channel.mime`) for a batch;
* :func:`kept_session`: the connection ``ace.send`` reuses from one message to the next in a
  process (the reference opens one per message), closed when idle or old, or at exit.
"""

from __future__ import annotations

import atexit
import logging
import os
import smtplib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.smtp import EmailBackend
from django.utils.module_loading import import_string

from ace.channel import ChannelSession, mime
from ace.channel.smtp_errors import (
    NOT_SENT,
    _out_of_sequence,
    breaks_connection,
    smtp_error_to_channel_error,
)
from ace.channel.smtp_pipelining import (
    Envelope,
    PipelinedSMTPTransport,
    SMTPOutOfSequence,
    SMTPReplyLost,
)
from ace.errors import ChannelError, FatalChannelDeliveryError

if TYPE_CHECKING:
    from ace.channel.django_email import DjangoEmailChannel
    from ace.message import Message

LOG = logging.getLogger(__name__)

#: Setting: use the pipelined transport for the batch path when ``EMAIL_BACKEND`` is Django's
#: SMTP backend (default True; False keeps one plain ``smtplib`` connection per session).
FAST_SMTP_SETTING = "ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP"
#: Setting: SMTP connections per session (per worker process), default 4.
CONNECTIONS_SETTING = "ACE_CHANNEL_DJANGO_EMAIL_SMTP_CONNECTIONS"
DEFAULT_CONNECTIONS = 4
_DJANGO_SMTP_BACKEND = "django.core.mail.backends.smtp.EmailBackend"


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
                # EmailMessage.send() on the open connection: what the reference's channel
                # calls, so code (and tests) that patch it see every email.
                email.connection = self._sender()
                sent = email.send()
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

    def _sender(self) -> Any:
        """What ``email.send()`` sends through: the open backend connection; for Django's own
        SMTP backend, :class:`_SMTPSender` on it (the same bytes, built ~15x cheaper)."""
        connection = self._open()
        if type(connection) is EmailBackend and connection.connection is not None:
            return _SMTPSender(connection.connection)
        return connection

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

    def check(self) -> None:
        """Drop the connection if the server no longer answers ``NOOP`` (an SMTP connection
        left idle may have been closed by the server); other backends have nothing to check."""
        smtp = getattr(self._connection, "connection", None)
        if not isinstance(smtp, smtplib.SMTP):
            return
        try:
            alive = smtp.sock is not None and smtp.noop()[0] == 250
        except (smtplib.SMTPException, OSError):
            alive = False
        if not alive:
            self._discard()

    def close(self) -> None:
        """Close the connection (QUIT)."""
        self._discard()


class _SMTPSender:
    """``send_messages`` of Django's SMTP backend for one open ``smtplib`` connection, with the
    envelope and bytes from :mod:`ace.channel.mime` (what Django would send, without its
    ``email`` package round trip); errors are raised as the backend raises them."""

    def __init__(self, smtp: smtplib.SMTP) -> None:
        self.smtp = smtp

    def send_messages(self, emails: Sequence[EmailMultiAlternatives]) -> int:
        sent = 0
        for email in emails:
            sender, recipients = mime.envelope(email)
            if recipients:
                self.smtp.sendmail(sender, recipients, mime.message_bytes(email))
                sent += 1
        return sent


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


# The connection ace.send reuses ----------------------------------------------------------------

#: Setting: seconds the connection ``ace.send`` reuses may stay idle before it is closed;
#: 0 opens a new connection for every message, as the reference does.
KEEPALIVE_SETTING = "ACE_CHANNEL_DJANGO_EMAIL_KEEPALIVE_SECONDS"
DEFAULT_KEEPALIVE = 30.0
#: Seconds a kept connection is used at most, however busy (servers limit sessions too).
KEPT_MAX_AGE = 300.0
#: A kept connection idle this long is checked with ``NOOP`` before it is used again.
KEPT_CHECK_AFTER = 1.0


class _Kept(threading.local):
    """This thread's kept session, the process and settings it was opened for, and when."""

    session: DjangoEmailSession | None = None
    pid = 0
    backend: tuple[Any, ...] = ()
    opened = 0.0
    used = 0.0


_kept = _Kept()


def _backend_settings() -> tuple[Any, ...]:
    names = ("EMAIL_BACKEND", "EMAIL_HOST", "EMAIL_PORT", "EMAIL_HOST_USER", "EMAIL_USE_TLS")
    return tuple(getattr(settings, name, None) for name in (*names, "EMAIL_USE_SSL"))


def kept_session(channel: DjangoEmailChannel) -> DjangoEmailSession | None:
    """This thread's session for ``ace.send`` (None when ``KEEPALIVE_SETTING`` is 0): reopened
    after ``KEEPALIVE_SETTING`` seconds idle, ``KEPT_MAX_AGE`` seconds in all, a fork (a child
    never writes on its parent's socket) or a change of the email settings."""
    keepalive = float(getattr(settings, KEEPALIVE_SETTING, DEFAULT_KEEPALIVE))
    if keepalive <= 0:
        return None
    now = time.monotonic()
    if _kept.session is not None and _kept.pid != os.getpid():
        _kept.session = None  # inherited through fork: the socket is the parent's
    if _kept.session is not None and (
        now - _kept.used > keepalive
        or now - _kept.opened > KEPT_MAX_AGE
        or _kept.backend != _backend_settings()
    ):
        close_kept_session()
    elif _kept.session is not None and now - _kept.used >= KEPT_CHECK_AFTER:
        _kept.session.check()
    if _kept.session is None:
        _kept.session = DjangoEmailSession(channel)
        _kept.pid, _kept.backend, _kept.opened = os.getpid(), _backend_settings(), now
    _kept.used = now
    return _kept.session


def close_kept_session() -> None:
    """Close this thread's kept connection (QUIT), if any; also run at exit."""
    session, _kept.session = _kept.session, None
    if session is not None and _kept.pid == os.getpid():
        session.close()


atexit.register(close_kept_session)
