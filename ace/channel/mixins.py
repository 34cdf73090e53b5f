"""
:mod:`ace.channel.mixins` holds helpers shared by email channels: the from-address, the
subject, the recipient address, reply-to and extra headers, each validated the same way.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.conf import settings

from ace.channel import ChannelType
from ace.errors import FatalChannelDeliveryError, RecipientAddressMissingError

if TYPE_CHECKING:
    from ace.message import Message

#: Error messages, importable by tests.
NO_FROM_ADDRESS = (
    "from_address must be included in message delivery options or as the DEFAULT_FROM_EMAIL setting"
)
NO_RECIPIENT_ADDRESS = "The message's recipient has no email address"
HEADER_NEWLINE = "Newlines are not allowed in email header {name!r}"
BAD_HEADERS_OPTION = "options['headers'] must be a mapping of header name to value"
BAD_SUBJECT_PREFIX = "options['subject_prefix'] must be a string"
BAD_HEADER_NAME = (
    "Invalid email header name {name!r}: a header name is one or more printable ASCII "
    "characters (33-126) other than ':', with no space, CR or LF (RFC 5322)"
)

_WHITESPACE = re.compile(r"\s+")
# What Django's autoescape (django.utils.html.escape, i.e. html.escape) writes, and '&#39;'
# (older Django): undone in one pass, so '&amp;lt;' becomes '&lt;', never '<'.
_DJANGO_ESCAPES = re.compile(r"&(amp|lt|gt|quot|#x27|#39);")
_UNESCAPED = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "#x27": "'", "#39": "'"}
_NEWLINE = re.compile(r"[\r\n]")
# RFC 5322 section 3.6.8: field-name = 1*ftext; ftext = %d33-57 / %d59-126 (no colon).
_FIELD_NAME = re.compile(r"[!-9;-~]+")


class EmailChannelMixin:
    """Common helpers for email channels (sets :attr:`channel_type` to EMAIL)."""

    channel_type = ChannelType.EMAIL

    @staticmethod
    def get_from_address(message: Message) -> str:
        """
        The sender: ``message.options['from_address']``, else ``settings.DEFAULT_FROM_EMAIL``.

        Raises:
            FatalChannelDeliveryError: If neither is set, or the address contains a newline.
        """
        from_address = message.options.get("from_address") or getattr(
            settings, "DEFAULT_FROM_EMAIL", None
        )
        if not from_address:
            raise FatalChannelDeliveryError(NO_FROM_ADDRESS)
        EmailChannelMixin.check_header_value("From", from_address)
        return str(from_address)

    @staticmethod
    def get_subject(rendered_message: Any) -> str:
        """The rendered subject as plain text (:meth:`header_text`): Django's HTML escaping
        undone, every run of whitespace (newlines too) made one space."""
        return EmailChannelMixin.header_text(rendered_message.subject)

    @staticmethod
    def get_message_subject(message: Message, rendered_message: Any) -> str:
        """The subject to send: ``options['subject_prefix']`` + :meth:`get_subject`.

        ``subject_prefix`` is an extension of this library (not in edx-ace): a plain-text
        prefix such as ``"[TEST] "`` that the sender adds without touching the templates.

        Raises:
            FatalChannelDeliveryError: If the prefix is not a string or has a newline.
        """
        prefix = message.options.get("subject_prefix") or ""
        if not isinstance(prefix, str):
            raise FatalChannelDeliveryError(BAD_SUBJECT_PREFIX)
        EmailChannelMixin.check_header_value("Subject", prefix)
        subject = EmailChannelMixin.get_subject(rendered_message)
        return _WHITESPACE.sub(" ", prefix + subject).strip() if prefix else subject

    @staticmethod
    def get_from_name(rendered_message: Any) -> str:
        """The rendered display name of the sender as plain text (:meth:`header_text`),
        '' if none."""
        return EmailChannelMixin.header_text(getattr(rendered_message, "from_name", ""))

    @staticmethod
    def header_text(rendered: str | None) -> str:
        """A rendered ``.txt`` template part made fit for a header (subject, display name).

        Django autoescapes every template, ``.txt`` ones included, so ``{{ name }}`` renders
        ``O'Brien`` as ``O&#x27;Brien``. A header is plain text, never HTML, so exactly the
        escapes Django writes (``&amp; &lt; &gt; &quot; &#x27;``) are turned back into their
        characters here; HTML bodies are left escaped. Every run of whitespace (newlines too)
        then becomes one space, so the value cannot break the header into two.
        """
        text = _DJANGO_ESCAPES.sub(lambda m: _UNESCAPED[m.group(1)], rendered or "")
        return _WHITESPACE.sub(" ", text).strip()

    @staticmethod
    def get_recipient_address(message: Message) -> str:
        """
        The recipient's email address.

        Raises:
            RecipientAddressMissingError: If the message has no recipient email address.
            FatalChannelDeliveryError: If the address contains a newline.
        """
        address = getattr(message.recipient, "email_address", None)
        if not address:
            raise RecipientAddressMissingError(NO_RECIPIENT_ADDRESS)
        EmailChannelMixin.check_header_value("To", address)
        return address

    @staticmethod
    def get_reply_to(message: Message) -> list[str]:
        """``options['reply_to']`` as a list (a single address or a list are accepted)."""
        reply_to = message.options.get("reply_to")
        if not reply_to:
            return []
        addresses = [reply_to] if isinstance(reply_to, str) else list(reply_to)
        for address in addresses:
            EmailChannelMixin.check_header_value("Reply-To", address)
        return addresses

    @staticmethod
    def get_headers(message: Message) -> dict[str, str]:
        """
        Extra headers from ``options['headers']``.

        Raises:
            FatalChannelDeliveryError: If it is not a mapping, a name is not an RFC 5322 field
                name (:meth:`check_header_name`), or a value has a newline.
        """
        headers = message.options.get("headers") or {}
        if not isinstance(headers, Mapping):
            raise FatalChannelDeliveryError(BAD_HEADERS_OPTION)
        checked = {}
        for name, value in headers.items():
            name = str(name)
            EmailChannelMixin.check_header_name(name)
            EmailChannelMixin.check_header_value(name, str(value))
            checked[name] = str(value)
        return checked

    @staticmethod
    def check_header_name(name: str) -> None:
        """Refuse a header name that is not RFC 5322 ``1*ftext``: printable ASCII 33-126
        except ``:`` (so no space, CR, LF, colon, control or non-ASCII character)."""
        if not _FIELD_NAME.fullmatch(name):
            raise FatalChannelDeliveryError(BAD_HEADER_NAME.format(name=name))

    @staticmethod
    def check_header_value(name: str, value: str) -> None:
        """Refuse a header value containing CR or LF (header injection)."""
        if _NEWLINE.search(str(value)):
            raise FatalChannelDeliveryError(HEADER_NEWLINE.format(name=name))

    @staticmethod
    def make_simple_html_template(head_html: str, body_html: str) -> str:
        """Wrap the rendered head and body into one HTML document."""
        return (
            "<!DOCTYPE html>\n<html>\n  <head>\n    "
            f"{head_html}\n  </head>\n  <body>\n    {body_html}\n  </body>\n</html>"
        )

    def get_action_links(self, omit_unsubscribe_link: bool = False, **kwargs: Any) -> list:
        """Links a template may show (e.g. view online, unsubscribe); none by default."""
        return []
