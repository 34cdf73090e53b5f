"""
:mod:`ace.utils.signals` builds the JSON-serializable payloads of ACE's signals and sends them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.utils import translation

from ace.signals import ACE_MESSAGE_FAILED, ACE_MESSAGE_SENT

if TYPE_CHECKING:
    from ace.channel import Channel
    from ace.message import Message
    from ace.outcome import DeliveryOutcome


#: Types kept as they are, at any depth (JSON's scalars).
_PRIMITIVES = (str, bool, int, float)


def make_serializable_object(obj: Any) -> Any:
    """
    ``obj`` made JSON-serializable, as the reference does for its signal payloads.

    Dicts, lists and tuples are walked (a tuple stays a tuple); strings, numbers, booleans and
    ``None`` are kept; anything else becomes ``str(obj)`` -- a datetime ``str(dt)``
    (``2030-01-01 00:00:00+00:00``), a set its ``str()``, a UUID its text. Beyond the reference,
    a dict key that JSON cannot take (a tuple, a date...) becomes its ``str()``, and an object
    whose ``str()`` raises becomes ``<unprintable TypeName>``: a payload must never break the
    send that emits it.
    """
    if obj is None or isinstance(obj, _PRIMITIVES):
        return obj
    if isinstance(obj, dict):
        return {_key(key): make_serializable_object(value) for key, value in obj.items()}
    if isinstance(obj, list):
        return [make_serializable_object(element) for element in obj]
    if isinstance(obj, tuple):
        return tuple(make_serializable_object(element) for element in obj)
    return _text(obj)


def _key(key: Any) -> Any:
    return key if key is None or isinstance(key, _PRIMITIVES) else _text(key)


def _text(obj: Any) -> str:
    try:
        return str(obj)
    except Exception:
        return f"<unprintable {type(obj).__name__}>"


def message_payload(channel: Channel | None, message: Message) -> dict[str, Any]:
    """The signal payload describing one message on one channel."""
    channel_name = type(channel).__name__ if channel is not None else "Other"
    data = {
        "name": message.name,
        "app_label": message.app_label,
        "recipient": {
            "email": getattr(message.recipient, "email_address", ""),
            "user_id": getattr(message.recipient, "lms_user_id", ""),
        },
        "channel": channel_name,
        "context": message.context,
        "options": message.options,
        "uuid": str(message.uuid),
        "send_uuid": str(message.send_uuid),
        "message_language": message.language,
        "translation_language": translation.get_language(),
    }
    return make_serializable_object(data)


def send_ace_message_sent_signal(channel: Channel | None, message: Message) -> None:
    """Send ``ACE_MESSAGE_SENT`` for a message delivered on ``channel``."""
    if not ACE_MESSAGE_SENT.has_listeners(channel):
        return  # nobody listens: skip building the payload (once per message in a batch)
    ACE_MESSAGE_SENT.send(sender=channel, message=message_payload(channel, message))


def send_ace_message_failed_signal(
    channel: Channel | None, message: Message, outcome: DeliveryOutcome
) -> None:
    """Send ``ACE_MESSAGE_FAILED`` for a delivery that ended without sending."""
    if not ACE_MESSAGE_FAILED.has_listeners(channel):
        return
    payload = message_payload(channel, message)
    payload.update(
        make_serializable_object(
            {
                "channel_type": outcome.channel_type.value,
                "channel_name": outcome.channel_name,
                "status": outcome.status.value,
                "reason": outcome.reason,
                "exception_type": outcome.exception_type,
                "next_attempt_time": (
                    outcome.next_attempt_time.isoformat() if outcome.next_attempt_time else None
                ),
            }
        )
    )
    ACE_MESSAGE_FAILED.send(sender=channel, message=payload)
