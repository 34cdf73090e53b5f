"""
:mod:`ace.message` contains :class:`Message` and :class:`MessageType`, which describe the
content ACE delivers.

A :class:`MessageType` describes one batch send (shared context, expiry, template name);
:meth:`MessageType.personalize` turns it into one :class:`Message` per recipient.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID, uuid4

import attrs
from django.apps import apps

from ace.monitoring import report as monitoring_report
from ace.recipient import Recipient
from ace.serialization import (
    DATETIME_FIELD,
    DECODER,
    ENCODER,
    UUID_FIELD,
    WIRE_TYPES,
    MessageAttributeSerializationMixin,
    check_wire_type,
)

# The JSON types each field may have in a string given to from_string (see ace.serialization);
# the constructors stay as permissive as the reference's.
_RECIPIENT_WIRE_TYPES = {"lms_user_id": (int, str, None), "email_address": (str, None)}


def _decode_recipient(value: Any) -> Recipient:
    if isinstance(value, Recipient):
        return value
    if isinstance(value, dict):
        for name, types in _RECIPIENT_WIRE_TYPES.items():
            check_wire_type(f"Recipient.{name}", value.get(name), types)
    return Recipient.from_wire(value)


_RECIPIENT_FIELD = {
    ENCODER: lambda r: r.to_wire(),
    DECODER: _decode_recipient,
    WIRE_TYPES: (dict, None),
}
_UUID = {**UUID_FIELD, WIRE_TYPES: (str,)}
_OPTIONAL_UUID = {**UUID_FIELD, WIRE_TYPES: (str, None)}
_OPTIONAL_DATETIME = {**DATETIME_FIELD, WIRE_TYPES: (str, None)}
_STRING = {WIRE_TYPES: (str,)}
_OPTIONAL_STRING = {WIRE_TYPES: (str, None)}
_OBJECT = {WIRE_TYPES: (dict,)}
_OPTIONAL_INT = {WIRE_TYPES: (int, None)}

_optional = attrs.validators.optional
_instance_of = attrs.validators.instance_of


@attrs.define
class Message(MessageAttributeSerializationMixin):
    """
    The core piece of data passed into ACE: what to send, to whom, with which context.

    Args:
        app_label (str): The Django app sending this message; selects the templates. Required.
        name (str): The name of this type of message; selects the templates. Required.
        recipient (Recipient): The intended recipient. Required, may be ``None``.
        expiration_time (datetime): After this time the message must not be delivered.
        context (dict): Supplied to the templates at render time.
        send_uuid (uuid.UUID): The UUID of the bulk send this message belongs to.
        options (dict): Delivery options (``from_address``, ``reply_to``, ``headers``,
            ``transactional``, ``override_default_channel``...).
        language (str): The language to render the message in.
        log_level (int): Log this message's debug lines at INFO when ``<= logging.DEBUG``.
    """

    app_label: str = attrs.field(metadata=_STRING)
    name: str = attrs.field(metadata=_STRING)
    recipient: Recipient | None = attrs.field(
        validator=_optional(_instance_of(Recipient)), metadata=_RECIPIENT_FIELD
    )
    expiration_time: datetime | None = attrs.field(
        default=None, validator=_optional(_instance_of(datetime)), metadata=_OPTIONAL_DATETIME
    )
    context: dict[str, Any] = attrs.field(metadata=_OBJECT)
    uuid: UUID = attrs.field(init=False, validator=_instance_of(UUID), metadata=_UUID)
    send_uuid: UUID | None = attrs.field(
        default=None, validator=_optional(_instance_of(UUID)), metadata=_OPTIONAL_UUID
    )
    options: dict[str, Any] = attrs.field(metadata=_OBJECT)
    language: str | None = attrs.field(default=None, metadata=_OPTIONAL_STRING)
    log_level: int | None = attrs.field(default=None, metadata=_OPTIONAL_INT)

    @context.default
    def default_context_value(self) -> dict[str, Any]:
        return {}

    @options.default
    def default_options_value(self) -> dict[str, Any]:
        return {}

    @uuid.default
    def generate_uuid(self) -> UUID:
        return uuid4()

    @property
    def unique_name(self) -> str:
        """A unique name for this message, used for logging and reporting."""
        return f"{self.app_label}.{self.name}"

    @property
    def log_id(self) -> str:
        """The identity of this message for logging: name, send UUID and message UUID."""
        send = str(self.send_uuid) if self.send_uuid else "no_send_uuid"
        return f"{self.unique_name}.{send}.{self.uuid}"

    def get_message_specific_logger(self, logger: logging.Logger) -> MessageLoggingAdapter:
        """
        Args:
            logger: The logger to adapt.

        Returns: A :class:`MessageLoggingAdapter` that prefixes lines with :attr:`log_id`.
        """
        return MessageLoggingAdapter(logger, {"message": self})

    def report(self, key: str, value: Any) -> None:
        """Report a fact about this message to monitoring."""
        monitoring_report(key, value)

    def report_basics(self) -> None:
        """Report the message name and language to monitoring."""
        self.report("message_name", self.unique_name)
        self.report("language", self.language)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        """As :meth:`MessageAttributeSerializationMixin.from_wire`; also reads the
        ``headers`` field that edx-ace 1.15 writes (email headers, a ``Message`` attribute
        there): they become ``options['headers']``, which the email channels here read
        (the message's own ``options['headers']`` win on a clash)."""
        if isinstance(data, dict) and "headers" in data:
            data = dict(data)
            headers = data.pop("headers")
            check_wire_type("Message.headers", headers, (dict, None))
            if headers:
                options = data.get("options", {})
                check_wire_type("Message.options", options, (dict,))
                own = options.get("headers") or {}
                check_wire_type("Message.options['headers']", own, (dict,))
                data["options"] = {**options, "headers": {**headers, **own}}
        return super().from_wire(data)


class MessageLoggingAdapter(logging.LoggerAdapter):
    """
    A :class:`logging.LoggerAdapter` that prefixes each line with the message's ``log_id``.

    Expects a ``message`` key in ``extra`` holding the :class:`Message` being logged for.
    A message whose ``log_level`` is ``logging.DEBUG`` (or lower) has its debug lines
    promoted to INFO, so one message can be traced without turning on debug logging.
    """

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        return f"[{self.extra['message'].log_id}] {msg}", kwargs

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        log_level = self.extra["message"].log_level
        if log_level and log_level <= logging.DEBUG:
            self.info(msg, *args, **kwargs)
        else:
            super().debug(msg, *args, **kwargs)


@attrs.define(eq=False)
class MessageType(MessageAttributeSerializationMixin):
    """
    A type of :class:`Message`; one instance is used per batch send.

    Args:
        context (dict): Context shared by every message of this batch.
        expiration_time (datetime): The time at which these messages expire.
        app_label (str): The Django app whose templates are used. Defaults to
            :attr:`APP_LABEL`, else the app that defines the class.
        name (str): The message name used to find templates. Defaults to :attr:`NAME`,
            else the lower-cased class name.
        options (dict): Delivery options copied into every message.
        log_level (int): Copied into every message.
    """

    NAME: ClassVar[str | None] = None
    APP_LABEL: ClassVar[str | None] = None

    context: dict[str, Any] = attrs.field(metadata=_OBJECT)
    uuid: UUID = attrs.field(init=False, validator=_instance_of(UUID), metadata=_UUID)
    expiration_time: datetime | None = attrs.field(
        default=None, validator=_optional(_instance_of(datetime)), metadata=_OPTIONAL_DATETIME
    )
    app_label: str = attrs.field(metadata=_STRING)
    name: str = attrs.field(metadata=_STRING)
    options: dict[str, Any] = attrs.field(metadata=_OBJECT)
    log_level: int | None = attrs.field(default=None, metadata=_OPTIONAL_INT)

    @context.default
    def default_context_value(self) -> dict[str, Any]:
        return {}

    @options.default
    def default_options_value(self) -> dict[str, Any]:
        return {}

    @uuid.default
    def generate_uuid(self) -> UUID:
        return uuid4()

    @name.default
    def default_name(self) -> str:
        """Return :attr:`NAME`, or the lower-cased class name."""
        if self.NAME is None:
            return self.__class__.__name__.lower()
        return self.NAME

    @app_label.default
    def default_app_label(self) -> str:
        """Return :attr:`APP_LABEL`, or the label of the Django app defining the class."""
        if self.APP_LABEL is not None:
            return self.APP_LABEL
        app_config = apps.get_containing_app_config(self.__class__.__module__)
        if app_config is None:
            raise ValueError(
                f"{self.__class__.__qualname__} is not defined inside an installed Django app; "
                "set APP_LABEL on the class or pass app_label="
            )
        return app_config.label

    def personalize(
        self, recipient: Recipient | None, language: str | None, user_context: dict[str, Any]
    ) -> Message:
        """
        Personalize this message type for one recipient.

        The new message gets a fresh context (shared context updated with ``user_context``)
        and its own copy of the options, so changing one message never leaks into another.

        Args:
            recipient: The intended recipient.
            language: The language to render the message in.
            user_context: Recipient-specific context, overriding the shared context.

        Returns: A new :class:`Message` for that recipient.
        """
        context = dict(self.context)
        context.update(user_context)
        return Message(
            app_label=self.app_label,
            name=self.name,
            expiration_time=self.expiration_time,
            context=context,
            send_uuid=self.uuid,
            recipient=recipient,
            language=language,
            log_level=self.log_level,
            options=copy.deepcopy(self.options),
        )

    # A subclass instance compares equal to the plain MessageType decoded from its string.
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MessageType):
            return NotImplemented
        return attrs.astuple(self, recurse=False) == attrs.astuple(other, recurse=False)

    def __ne__(self, other: object) -> bool:
        result = self.__eq__(other)
        return result if result is NotImplemented else not result

    def __hash__(self) -> int:
        return hash(self.uuid)
