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
from email.headerregistry import Address
from email.utils import parseaddr
from typing import TYPE_CHECKING

from django.core.mail import EmailMultiAlternatives

from ace.channel import Channel, ChannelSession
from ace.channel.django_email_sessions import (
    CONNECTIONS_SETTING,
    DEFAULT_CONNECTIONS,
    FAST_SMTP_SETTING,
    DjangoEmailSession,
    PipelinedEmailSession,
    django_smtp_connector,
    kept_session,
    pipelined_session_for,
)
from ace.channel.mixins import EmailChannelMixin
from ace.channel.smtp_errors import (
    DEFAULT_RETRY_DELAY,
    NOT_SENT,
    breaks_connection,
    smtp_error_to_channel_error,
)
from ace.errors import FatalChannelDeliveryError

if TYPE_CHECKING:
    from ace.message import Message
    from ace.renderers import RenderedEmail

LOG = logging.getLogger(__name__)

#: Importable from here as before the sessions and the error mapping got modules of their own.
__all__ = [
    "CONNECTIONS_SETTING",
    "DEFAULT_CONNECTIONS",
    "DEFAULT_RETRY_DELAY",
    "FAST_SMTP_SETTING",
    "NOT_SENT",
    "DjangoEmailChannel",
    "DjangoEmailSession",
    "PipelinedEmailSession",
    "breaks_connection",
    "django_smtp_connector",
    "pipelined_session_for",
    "smtp_error_to_channel_error",
]


def _part(rendered_message: object, name: str) -> str:
    """A rendered part, or '' when the rendered message has none (or not a string): callers
    may pass any object with ``subject``, ``body`` and ``body_html``, as with the reference."""
    value = getattr(rendered_message, name, "")
    return value if isinstance(value, str) else ""


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
            body=_part(rendered_message, "body"),
            from_email=from_address,
            to=[to_address],
            reply_to=self.get_reply_to(message),
            headers=headers,
        )
        email.attach_alternative(
            self.make_simple_html_template(
                _part(rendered_message, "head_html"), _part(rendered_message, "body_html")
            ),
            "text/html",
        )
        return email

    def deliver(self, message: Message, rendered_message: RenderedEmail) -> None:
        """Send one message, with the same error mapping as a session.

        Beyond the reference (a new connection per message): the connection stays open for
        the next ``ace.send`` in this thread (:func:`kept_session`; off with
        ``ACE_CHANNEL_DJANGO_EMAIL_KEEPALIVE_SECONDS = 0``); one idle for a second or more is
        checked (``NOOP``) before it is used again.
        """
        email = self.build_email(message, rendered_message)
        session = kept_session(self)
        if session is None:
            session = DjangoEmailSession(self)
            try:
                error = session.send_email(email)
            finally:
                session.close()
        else:
            error = session.send_email(email)
        if error is not None:
            LOG.warning("Email delivery of %s failed: %s", message.log_id, error)
            raise error

    def open_session(self) -> ChannelSession:
        """A session keeping backend connections open for many messages: with Django's SMTP
        backend, a :class:`PipelinedEmailSession` (several connections, ESMTP PIPELINING; off
        with ``ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = False``), else a
        :class:`DjangoEmailSession` (one backend connection)."""
        return pipelined_session_for(self) or DjangoEmailSession(self)
