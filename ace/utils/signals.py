"""
:mod:`ace.utils.signals` builds the JSON-serializable payloads of ACE's signals and sends them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from django.utils import translation

from ace.signals import ACE_MESSAGE_FAILED, ACE_MESSAGE_SENT

if TYPE_CHECKING:
    from ace.channel import Channel
    from ace.message import Message
    from ace.outcome import DeliveryOutcome


def make_serializable_object(obj: Any) -> Any:
    """Return ``obj`` with dicts and lists walked and anything not JSON-native made a string."""
    if obj is None or isinstance(obj, str | bool | int | float):
        return obj
    if isinstance(obj, dict):
        return {str(key): make_serializable_object(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [make_serializable_object(element) for element in obj]
    if isinstance(obj, datetime | date):
        return obj.isoformat()
    try:
        return str(obj)
    except Exception:  # a payload must never break the send that emits it
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
                "next_attempt_time": outcome.next_attempt_time,
            }
        )
    )
    ACE_MESSAGE_FAILED.send(sender=channel, message=payload)
