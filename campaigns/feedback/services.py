"""Every write of delivery feedback: recording events (idempotently), what they do to the
suppression list, lifting suppressions, and reading one bounce message from the mailbox.

* :func:`event_record` turns a :class:`Feedback` (from a webhook or a bounce) into one
  :class:`~campaigns.feedback.models.DeliveryEvent`; the same event twice is recorded once
  (``dedup_key``: the ESP's event id, else a hash of the event) and acts once.
* Hard bounces, complaints, unsubscribes at the ESP and rejections for those reasons suppress
  the address; soft bounces suppress it once ``CAMPAIGNS_SOFT_BOUNCE_THRESHOLD`` of them
  arrived since its last delivery (or since a suppression of it was lifted).
* :func:`bounce_record`: one message from the bounce mailbox becomes events, or, when it
  cannot be read as a bounce, an :class:`~campaigns.feedback.models.UnparsedBounce`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections.abc import Iterable
from typing import Any

import attrs
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models import Max, QuerySet
from django.utils import timezone

from campaigns import conf
from campaigns.feedback import dsn
from campaigns.feedback.matching import Clues, match_delivery
from campaigns.feedback.models import DeliveryEvent, Suppression, UnparsedBounce

log = logging.getLogger(__name__)

Kind = DeliveryEvent.Kind
BounceType = DeliveryEvent.BounceType
Reason = Suppression.Reason

LIFT_PERMISSION = "campaigns.lift_suppression"
NOT_ALLOWED_TO_LIFT = "Lifting a suppression needs the permission “Can lift a suppression”."
BAD_ADDRESS = "{address!r} is not an email address."
#: Raw events and messages kept at most this big (the rest is cut).
RAW_EVENT_MAX_CHARS = 64 * 1024
RAW_MESSAGE_MAX_CHARS = 1024 * 1024
#: The source of events read from the bounce mailbox.
MAILBOX_SOURCE = "mailbox"

#: ESP reject reasons (anymail's ``RejectReason``) that suppress, and as what.
REJECT_REASONS = {
    "bounced": Reason.HARD_BOUNCE,
    "invalid": Reason.HARD_BOUNCE,
    "spam": Reason.COMPLAINT,
    "unsubscribed": Reason.UNSUBSCRIBE,
}


def normalize_address(address: Any) -> str:
    return str(address or "").strip().strip("<>").strip().lower()


@attrs.define
class Feedback:
    """An event about a sent message, before it is recorded."""

    source: str
    kind: str
    recipient: str = ""
    bounce_type: str = ""
    clues: Clues = attrs.field(factory=Clues)
    message_id: str = ""
    esp_event_id: str = ""
    status_code: str = ""
    description: str = ""
    reject_reason: str = ""
    click_url: str = ""
    user_agent: str = ""
    occurred_at: dt.datetime | None = None
    raw: Any = attrs.field(factory=dict)
    #: What makes the event unique when the ESP gives it no id (else a hash of the fields).
    dedup_basis: str = ""

    def dedup_key(self) -> str:
        if self.esp_event_id:
            basis = ["id", self.esp_event_id, self.kind, normalize_address(self.recipient)]
        elif self.dedup_basis:
            basis = ["basis", self.dedup_basis]
        else:
            basis = [
                "hash",
                self.kind,
                self.bounce_type,
                normalize_address(self.recipient),
                self.message_id,
                self.occurred_at.isoformat() if self.occurred_at else "",
                self.click_url,
                json.dumps(self.raw, sort_keys=True, default=str),
            ]
        text = json.dumps([self.source, *basis], default=str)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _text(value: Any, limit: int | None = None) -> str:
    """A string fit for any database (PostgreSQL refuses NUL characters), cut at ``limit``."""
    text = str(value or "").replace("\x00", "\ufffd")
    return text[:limit] if limit is not None else text


def jsonable(raw: Any) -> Any:
    """An ESP's raw event as JSON (a QueryDict becomes a dict of lists), cut when too big."""
    if hasattr(raw, "lists"):  # QueryDict (form-encoded webhooks)
        raw = dict(raw.lists())
    try:
        text = json.dumps(raw, default=str)
    except (TypeError, ValueError):
        text = json.dumps(str(raw))
    text = text.replace("\\u0000", "\\ufffd")
    if len(text) > RAW_EVENT_MAX_CHARS:
        return {"truncated": True, "text": text[:RAW_EVENT_MAX_CHARS]}
    return json.loads(text)


# Events ---------------------------------------------------------------------------------------


def event_record(feedback: Feedback) -> tuple[DeliveryEvent, bool]:
    """Record ``feedback`` once: ``(event, True)`` the first time (and apply it to the
    suppression list), ``(the existing event, False)`` for a replay."""
    key = feedback.dedup_key()
    existing = DeliveryEvent.objects.filter(dedup_key=key).first()
    if existing is not None:
        return existing, False
    clues = feedback.clues
    clues.recipient = clues.recipient or feedback.recipient
    clues.when = clues.when or feedback.occurred_at
    delivery, matched_by = match_delivery(clues)
    recipient = normalize_address(feedback.recipient) or (
        normalize_address(delivery.email) if delivery is not None else ""
    )
    try:
        with transaction.atomic():
            event = DeliveryEvent.objects.create(
                source=_text(feedback.source, 40),
                kind=feedback.kind,
                bounce_type=feedback.bounce_type if feedback.kind == Kind.BOUNCED else "",
                recipient=_text(recipient, 254),
                delivery=delivery,
                matched_by=matched_by,
                message_id=_text(feedback.message_id, 255),
                esp_event_id=_text(feedback.esp_event_id, 255),
                dedup_key=key,
                status_code=_text(feedback.status_code, 16),
                description=_text(feedback.description, 10_000),
                reject_reason=_text(feedback.reject_reason, 32),
                click_url=_text(feedback.click_url, 4000),
                user_agent=_text(feedback.user_agent, 300),
                occurred_at=feedback.occurred_at,
                raw=jsonable(feedback.raw),
            )
            _apply(event)
    except IntegrityError:
        existing = DeliveryEvent.objects.filter(dedup_key=key).first()
        if existing is None:
            raise
        return existing, False
    return event, True


def _detail(event: DeliveryEvent) -> str:
    words = " ".join(part for part in (event.status_code, event.description) if part)
    origin = f"{event.get_kind_display()} reported by {event.source}"
    return f"{origin}: {words}"[:2000] if words else origin


def _apply(event: DeliveryEvent) -> None:
    """What an event does to the suppression list."""
    address = event.recipient
    if not address:
        return
    reason = None
    if event.kind == Kind.BOUNCED and event.bounce_type == BounceType.SOFT:
        count = soft_bounce_count(address)
        if count >= conf.soft_bounce_threshold():
            detail = f"{count} soft bounces since the last delivery; last: {_detail(event)}"
            suppression_add(
                address=address, reason=Reason.SOFT_BOUNCE, detail=detail, source_event=event
            )
        return
    if event.kind == Kind.BOUNCED:
        reason = Reason.HARD_BOUNCE
    elif event.kind == Kind.COMPLAINED:
        reason = Reason.COMPLAINT
    elif event.kind == Kind.UNSUBSCRIBED:
        reason = Reason.UNSUBSCRIBE
    elif event.kind == Kind.REJECTED:
        reason = REJECT_REASONS.get(event.reject_reason)
    if reason is not None:
        suppression_add(address=address, reason=reason, detail=_detail(event), source_event=event)


def soft_bounce_count(address: str) -> int:
    """Soft bounces of ``address`` since its last delivered event and since a suppression of
    it was last lifted."""
    address = normalize_address(address)
    delivered = DeliveryEvent.objects.filter(recipient=address, kind=Kind.DELIVERED).aggregate(
        last=Max("received_at")
    )["last"]
    lifted = Suppression.objects.filter(address=address, lifted_at__isnull=False).aggregate(
        last=Max("lifted_at")
    )["last"]
    since = max((when for when in (delivered, lifted) if when is not None), default=None)
    bounces = DeliveryEvent.objects.filter(
        recipient=address, kind=Kind.BOUNCED, bounce_type=BounceType.SOFT
    )
    if since is not None:
        bounces = bounces.filter(received_at__gt=since)
    return bounces.count()


# Suppressions ---------------------------------------------------------------------------------


def suppression_add(
    *,
    address: str,
    reason: str,
    detail: str = "",
    source_event: DeliveryEvent | None = None,
    by: Any = None,
) -> tuple[Suppression, bool]:
    """Suppress ``address`` (``(suppression, True)``), or return its active suppression
    (``(suppression, False)``): an address is suppressed once at a time.

    Raises:
        ValidationError: ``address`` is not an email address.
    """
    address = normalize_address(address)
    try:
        validate_email(address)
    except ValidationError:
        raise ValidationError(BAD_ADDRESS.format(address=address), code="invalid") from None
    if reason not in Reason.values:
        raise ValidationError(f"Unknown suppression reason {reason!r}.", code="invalid")
    existing = Suppression.objects.filter(address=address, lifted_at__isnull=True).first()
    if existing is not None:
        return existing, False
    user = by if getattr(by, "pk", None) is not None else None
    try:
        with transaction.atomic():
            created = Suppression.objects.create(
                address=address,
                reason=reason,
                detail=detail,
                source_event=source_event,
                created_by=user,
            )
    except IntegrityError:  # suppressed by someone else meanwhile
        return Suppression.objects.get(address=address, lifted_at__isnull=True), False
    log.info("suppressed %s: %s", address, reason)
    return created, True


def suppressions_lift(
    suppressions: QuerySet | Iterable[Suppression], *, by: Any, note: str = ""
) -> int:
    """Lift the active ones among ``suppressions``; returns how many were lifted.

    Raises:
        PermissionDenied: ``by`` lacks ``campaigns.lift_suppression``.
    """
    if by is None or not by.has_perm(LIFT_PERMISSION):
        raise PermissionDenied(NOT_ALLOWED_TO_LIFT)
    ids = [s.pk for s in suppressions]
    return Suppression.objects.filter(pk__in=ids, lifted_at__isnull=True).update(
        lifted_at=timezone.now(), lifted_by=by, lift_note=note
    )


def active_suppressions(addresses: Iterable[str]) -> dict[str, tuple[str, str]]:
    """``address -> (reason, detail)`` for the suppressed ones among ``addresses``."""
    wanted = {normalize_address(a) for a in addresses if a}
    if not wanted:
        return {}
    rows = Suppression.objects.filter(address__in=wanted, lifted_at__isnull=True)
    return {
        address: (reason, detail)
        for address, reason, detail in rows.values_list("address", "reason", "detail")
    }


def unparsed_bounce_review(bounces: QuerySet, *, by: Any) -> int:
    """Mark bounces kept for review as looked at."""
    return bounces.filter(reviewed_at__isnull=True).update(
        reviewed_at=timezone.now(), reviewed_by=by
    )


# Bounce messages ------------------------------------------------------------------------------


@attrs.define
class BounceOutcome:
    """What one message from the bounce mailbox became."""

    events: list[DeliveryEvent] = attrs.field(factory=list)
    new_events: int = 0
    unparsed: UnparsedBounce | None = None


def bounce_record(raw: bytes, *, mailbox: str = "") -> BounceOutcome:
    """Read one message of the bounce mailbox: events for its recipients, or, if it is not a
    bounce this can read, an :class:`UnparsedBounce` kept for review. Reading the same
    message again changes nothing. Only database errors raise (the poll leaves the message
    for the next time)."""
    outcome = BounceOutcome()
    try:
        parsed = dsn.parse_bounce(raw)
    except dsn.UnreadableBounce as exc:
        outcome.unparsed = _keep_unparsed(raw, mailbox=mailbox, error=str(exc))
        return outcome
    except Exception as exc:  # a parser bug must not lose the message either
        log.exception("bounce parser failed")
        outcome.unparsed = _keep_unparsed(raw, mailbox=mailbox, error=f"parser error: {exc!r}")
        return outcome
    digest = hashlib.sha256(raw).hexdigest()
    for index, recipient in enumerate(parsed.recipients):
        feedback = Feedback(
            source=MAILBOX_SOURCE,
            kind=recipient.kind,
            bounce_type=recipient.bounce_type,
            recipient=recipient.address,
            clues=Clues(
                header_uuids=list(parsed.uuid_headers),
                message_ids=[parsed.original_message_id] if parsed.original_message_id else [],
                verp_addresses=list(parsed.verp_addresses),
            ),
            message_id=parsed.original_message_id,
            status_code=recipient.status,
            description=recipient.diagnostic,
            occurred_at=parsed.date,
            raw={
                "format": parsed.format,
                "mailbox": mailbox,
                "bounce_message_id": parsed.report_message_id,
                "subject": parsed.subject,
                "from": parsed.sender,
                "action": recipient.action,
                "remote_mta": recipient.remote_mta,
            },
            dedup_basis=f"{digest}:{index}:{recipient.address.lower()}:{recipient.kind}",
        )
        event, created = event_record(feedback)
        outcome.events.append(event)
        outcome.new_events += int(created)
    return outcome


def _keep_unparsed(raw: bytes, *, mailbox: str, error: str) -> UnparsedBounce:
    head = dsn.summary(raw)
    text = _text(raw.decode("utf-8", errors="replace"))
    if len(text) > RAW_MESSAGE_MAX_CHARS:
        text = text[:RAW_MESSAGE_MAX_CHARS] + "\n[… cut]"
    bounce, created = UnparsedBounce.objects.get_or_create(
        dedup_key=hashlib.sha256(raw).hexdigest(),
        defaults={
            "mailbox": _text(mailbox, 300),
            "message_id": _text(head["message_id"], 255),
            "sender": _text(head["from"], 300),
            "subject": _text(head["subject"], 300),
            "error": _text(error),
            "raw": text,
        },
    )
    if created:
        log.warning("bounce mailbox: kept a message for review: %s", error)
    return bounce
