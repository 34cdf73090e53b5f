"""The tables of delivery feedback: events reported back about sent messages, the suppression
list they feed, the ESP message ids recorded at send time, and bounces that could not be read.

``campaigns/models.py`` imports this module so that Django finds the models in the
``campaigns`` app. It imports nothing from ``campaigns`` itself (foreign keys are by name), so
there is no import cycle.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

__all__ = ["DeliveryEvent", "EspMessageId", "Suppression", "UnparsedBounce"]


class DeliveryEvent(models.Model):
    """One thing an ESP or a bounce message told us about a message we sent.

    ``delivery`` is the delivery-log row it is about when it could be matched (``matched_by``
    says how), else empty: unmatched events are kept and listed too. ``dedup_key`` makes a
    replayed webhook or a bounce read twice a no-op.
    """

    class Kind(models.TextChoices):
        DELIVERED = "delivered", "Delivered"
        BOUNCED = "bounced", "Bounced"
        DEFERRED = "deferred", "Deferred (delayed)"
        REJECTED = "rejected", "Rejected by the ESP"
        FAILED = "failed", "Failed at the ESP"
        COMPLAINED = "complained", "Complained (spam report)"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed (at the ESP)"
        OPENED = "opened", "Opened"
        CLICKED = "clicked", "Clicked"

    class BounceType(models.TextChoices):
        NONE = "", "—"
        HARD = "hard", "Hard (permanent)"
        SOFT = "soft", "Soft (temporary)"

    class MatchedBy(models.TextChoices):
        NONE = "", "Unmatched"
        HEADER = "header", "X-ACE-Message-UUID header"
        METADATA = "metadata", "ESP metadata"
        MESSAGE_ID = "message_id", "Message-ID"
        ESP_MESSAGE_ID = "esp_message_id", "ESP message id recorded at send time"
        VERP = "verp", "VERP return address"
        RECIPIENT = "recipient", "Only recent delivery to the address"

    #: Where it came from: the ESP's name as anymail spells it ("Postmark"), or "mailbox".
    source = models.CharField(max_length=40)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    bounce_type = models.CharField(
        max_length=8, choices=BounceType.choices, blank=True, default=BounceType.NONE
    )
    recipient = models.CharField(max_length=254, blank=True, db_index=True)
    delivery = models.ForeignKey(
        "campaigns.Delivery",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="feedback_events",
    )
    matched_by = models.CharField(
        max_length=16, choices=MatchedBy.choices, blank=True, default=MatchedBy.NONE
    )
    message_id = models.CharField(
        max_length=255, blank=True, help_text="The ESP's message id, or the original Message-ID."
    )
    esp_event_id = models.CharField(max_length=255, blank=True)
    dedup_key = models.CharField(max_length=64, unique=True, editable=False)
    status_code = models.CharField(max_length=16, blank=True, help_text="e.g. 5.1.1 or 550")
    description = models.TextField(blank=True, help_text="The ESP's or the remote server's words.")
    reject_reason = models.CharField(max_length=32, blank=True)
    click_url = models.TextField(blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    occurred_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    raw = models.JSONField(default=dict, blank=True, help_text="The ESP's event as received.")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["delivery", "kind"], name="deliveryevent_delivery_kind"),
            models.Index(
                fields=["recipient", "kind", "received_at"], name="deliveryevent_recipient"
            ),
        ]

    def __str__(self) -> str:
        kind = self.get_kind_display()
        if self.bounce_type:
            kind = f"{kind} ({self.bounce_type})"
        return f"{kind}: {self.recipient or '?'} via {self.source}"


class Suppression(models.Model):
    """An address nothing is emailed to (the ``campaigns_suppression`` policy), with why.

    Lifting keeps the row (``lifted_at``, ``lifted_by``) for the record; at most one
    suppression per address is active at a time.
    """

    class Reason(models.TextChoices):
        HARD_BOUNCE = "hard_bounce", "Hard bounce"
        SOFT_BOUNCE = "soft_bounce", "Repeated soft bounces"
        COMPLAINT = "complaint", "Spam complaint"
        UNSUBSCRIBE = "unsubscribe", "Unsubscribed"
        MANUAL = "manual", "Added by hand"

    address = models.CharField(max_length=254, db_index=True, help_text="Lower case.")
    reason = models.CharField(max_length=16, choices=Reason.choices)
    detail = models.TextField(blank=True)
    source_event = models.ForeignKey(
        DeliveryEvent, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    lift_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["address"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_suppression_per_address",
            ),
        ]
        permissions = [("lift_suppression", "Can lift a suppression")]

    def __str__(self) -> str:
        state = "lifted" if self.lifted_at else "active"
        return f"{self.address}: {self.get_reason_display()} ({state})"

    @property
    def active(self) -> bool:
        return self.lifted_at is None


class EspMessageId(models.Model):
    """The ESP's id of a message sent through an anymail backend, recorded at send time
    (anymail's ``post_send``), so an event naming only that id finds its delivery."""

    esp_name = models.CharField(max_length=40)
    message_id = models.CharField(max_length=255, unique=True)
    message_uuid = models.UUIDField()
    recipient = models.CharField(max_length=254, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = "ESP message id"

    def __str__(self) -> str:
        return f"{self.esp_name} {self.message_id} -> {self.message_uuid}"


class UnparsedBounce(models.Model):
    """A message from the bounce mailbox that could not be read as a bounce (kept for a
    person to look at: the raw message, and why it was not understood)."""

    mailbox = models.CharField(max_length=300, blank=True, help_text="Without the password.")
    message_id = models.CharField(max_length=255, blank=True)
    sender = models.CharField(max_length=300, blank=True)
    subject = models.CharField(max_length=300, blank=True)
    error = models.TextField()
    raw = models.TextField(help_text="The message as received (cut at 1 MB).")
    dedup_key = models.CharField(max_length=64, unique=True, editable=False)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    reviewed_at = models.DateTimeField(null=True, blank=True)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} from {self.sender or '?'}"
