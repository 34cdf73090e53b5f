"""django-anymail's signals, connected when this module is imported (``campaigns.tasks`` and
``campaigns.feedback.urls`` import it, so in the web server and in every worker):

* ``tracking`` (the ESP's webhook, already authenticated by anymail): the event becomes a
  :class:`~campaigns.feedback.models.DeliveryEvent` (:func:`tracking_received`);
* ``pre_send`` (sending through an anymail backend): the ``X-ACE-Message-UUID`` header of the
  message, when it has one, is copied into the ESP metadata (``ace_message_uuid``), which most
  ESPs echo in their webhooks;
* ``post_send``: the ESP's message id of each recipient is recorded with that uuid
  (:class:`~campaigns.feedback.models.EspMessageId`), for ESPs that echo only their own id.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from anymail.signals import AnymailTrackingEvent, post_send, pre_send, tracking
from django.db import IntegrityError, transaction
from django.dispatch import receiver

from campaigns.feedback.matching import METADATA_KEY, UUID_HEADER, Clues, find_in_raw, parse_uuid
from campaigns.feedback.models import DeliveryEvent, EspMessageId
from campaigns.feedback.services import Feedback, event_record

log = logging.getLogger(__name__)

Kind = DeliveryEvent.Kind

#: anymail event types recorded, and as what (others -- queued, sent, autoresponded,
#: subscribed, unknown -- say nothing about the outcome and are ignored).
KINDS = {
    "delivered": Kind.DELIVERED,
    "bounced": Kind.BOUNCED,
    "deferred": Kind.DEFERRED,
    "rejected": Kind.REJECTED,
    "failed": Kind.FAILED,
    "complained": Kind.COMPLAINED,
    "unsubscribed": Kind.UNSUBSCRIBED,
    "opened": Kind.OPENED,
    "clicked": Kind.CLICKED,
}

_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_BASIC = re.compile(r"^\s*([245]\d\d)\b")
#: Raw fields that some ESPs use to say a bounce was temporary.
_SOFT_FIELDS = ("type", "bouncetype", "bounce_type", "bounce_class", "severity", "event")
_SOFT_WORDS = ("soft", "transient", "temporary")
_ID_FIELDS = ("message-id", "message_id", "messageid", "smtp-id", UUID_HEADER.lower())


def _status_code(*texts: Any) -> str:
    for text in texts:
        if not text:
            continue
        found = _ENHANCED.search(str(text))
        if found:
            return ".".join(found.groups())
    for text in texts:
        found = _BASIC.match(str(text or ""))
        if found:
            return found.group(1)
    return ""


def bounce_type(event: AnymailTrackingEvent, status: str) -> str:
    """``soft`` when the ESP's raw event or the server's code says the bounce was
    temporary, else ``hard`` (anymail reports most temporary failures as ``deferred``)."""
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    for key, value in raw.items():
        if (
            str(key).lower() in _SOFT_FIELDS
            and isinstance(value, str)
            and any(word in value.lower() for word in _SOFT_WORDS)
        ):
            return "soft"
    if status.startswith("5"):
        return "hard"
    if status.startswith("4"):
        return "soft"
    return "hard"


def feedback_from_anymail(event: AnymailTrackingEvent, esp_name: str) -> Feedback | None:
    """The :class:`Feedback` of an anymail tracking event, or ``None`` for a type not kept."""
    kind = KINDS.get(str(event.event_type or ""))
    if kind is None:
        return None
    raw = event.esp_event
    found = find_in_raw(raw, _ID_FIELDS) if isinstance(raw, dict | list) else {}
    metadata = event.metadata if isinstance(event.metadata, dict) else {}
    message_ids = [event.message_id] if event.message_id else []
    message_ids += found.get("message-id", []) + found.get("smtp-id", [])
    status = _status_code(event.mta_response, event.description)
    return Feedback(
        source=esp_name,
        kind=kind,
        recipient=event.recipient or "",
        bounce_type=bounce_type(event, status) if kind == Kind.BOUNCED else "",
        clues=Clues(
            header_uuids=found.get(UUID_HEADER.lower(), []),
            metadata_uuids=[str(metadata[METADATA_KEY])] if metadata.get(METADATA_KEY) else [],
            message_ids=message_ids,
            esp_message_ids=[str(event.message_id)] if event.message_id else [],
            recipient=event.recipient or "",
            when=event.timestamp,
        ),
        message_id=str(event.message_id or ""),
        esp_event_id=str(event.event_id or ""),
        status_code=status,
        description=" ".join(str(part) for part in (event.description, event.mta_response) if part),
        reject_reason=str(event.reject_reason or ""),
        click_url=str(event.click_url or ""),
        user_agent=str(event.user_agent or ""),
        occurred_at=event.timestamp,
        raw=raw,
    )


@receiver(tracking, dispatch_uid="campaigns.feedback.tracking")
def tracking_received(sender: Any, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """Record one ESP event. A database error propagates: anymail answers 500 and the ESP
    sends the event again later (recording it twice changes nothing)."""
    feedback = feedback_from_anymail(event, esp_name)
    if feedback is None:
        log.debug("ignoring %s event from %s", event.event_type, esp_name)
        return
    recorded, created = event_record(feedback)
    if not recorded.delivery_id and created:
        log.info("unmatched %s event from %s for %s", feedback.kind, esp_name, recorded.recipient)


def _message_uuid(message: Any) -> str:
    headers = getattr(message, "extra_headers", None) or {}
    for name, value in headers.items():
        if str(name).lower() == UUID_HEADER.lower() and parse_uuid(value) is not None:
            return str(parse_uuid(value))
    return ""


@receiver(pre_send, dispatch_uid="campaigns.feedback.pre_send")
def stamp_metadata(sender: Any, message: Any, esp_name: str, **kwargs) -> None:
    message_uuid = _message_uuid(message)
    if not message_uuid:
        return
    metadata = getattr(message, "metadata", None)
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    metadata.setdefault(METADATA_KEY, message_uuid)
    message.metadata = metadata


@receiver(post_send, dispatch_uid="campaigns.feedback.post_send")
def record_esp_message_ids(sender: Any, message: Any, status: Any, esp_name: str, **kwargs):
    message_uuid = _message_uuid(message)
    if not message_uuid or status is None:
        return
    rows = [
        EspMessageId(
            esp_name=esp_name[:40],
            message_id=str(recipient_status.message_id)[:255],
            message_uuid=message_uuid,
            recipient=str(address)[:254],
        )
        for address, recipient_status in (getattr(status, "recipients", None) or {}).items()
        if getattr(recipient_status, "message_id", None) not in (None, "")
    ]
    if not rows:
        return
    try:
        with transaction.atomic():
            EspMessageId.objects.bulk_create(rows, ignore_conflicts=True)
    except IntegrityError:  # pragma: no cover - ignore_conflicts covers it
        log.warning("could not record %s message ids for %s", esp_name, message_uuid)
