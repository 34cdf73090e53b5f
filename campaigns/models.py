"""Database models: message type definitions, audiences, policy toggles, campaigns and the log."""

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from campaigns.querysets import CampaignRunQuerySet, DeliveryQuerySet


class ChannelChoice(models.TextChoices):
    """ACE channel types a campaign can target (values of ``ace.ChannelType``)."""

    EMAIL = "email", "Email"
    PUSH = "push", "Push notification"


class MessageTypeDefinition(models.Model):
    """An ACE message type (``app_label`` + ``name``) with templates in the database or in code.

    Operators edit ``source=DATABASE`` definitions and their template parts in the admin;
    ``source=CODE`` rows mirror ``ace.MessageType`` subclasses with file templates (read-only).
    """

    class Source(models.TextChoices):
        DATABASE = "database", "Edited in the admin"
        CODE = "code", "Defined in code"

    app_label = models.SlugField(
        max_length=100,
        default="campaigns",
        help_text="Django app label of the template path: <app_label>/edx_ace/<name>/...",
    )
    name = models.SlugField(max_length=100, help_text="Message name, used in the template path.")
    description = models.TextField(blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.DATABASE)
    code_path = models.CharField(
        max_length=255, blank=True, help_text="Dotted path of the MessageType class (code only)."
    )
    default_language = models.CharField(max_length=15, default="en")
    sample_context = models.JSONField(
        default=dict, blank=True, help_text="Context used for previews and test sends."
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who last changed it or its templates (they can't approve campaigns using it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["app_label", "name"]
        constraints = [
            models.UniqueConstraint(fields=["app_label", "name"], name="unique_message_type"),
        ]
        permissions = [
            ("test_send_messagetypedefinition", "Can send a test of a message type"),
            ("preview_messagetypedefinition", "Can preview a message type"),
        ]

    def __str__(self) -> str:
        return f"{self.app_label}/{self.name}"


class TemplatePart(models.Model):
    """One template file of a message type, for one channel and one language.

    ``filename`` is the file name ACE looks up (``subject.txt``, ``body.html``, ``title.txt`` ...),
    so the database loader serves it at ``<app_label>/edx_ace/<name>/<channel>/<filename>``.
    An empty ``language`` is the fallback for every language.
    """

    class Filename(models.TextChoices):
        FROM_NAME = "from_name.txt", "From name"
        SUBJECT = "subject.txt", "Subject"
        BODY_TEXT = "body.txt", "Body (text)"
        BODY_HTML = "body.html", "Body (HTML)"
        HEAD_HTML = "head.html", "Head (HTML)"
        TITLE = "title.txt", "Title (push)"

    message_type = models.ForeignKey(
        MessageTypeDefinition, on_delete=models.CASCADE, related_name="template_parts"
    )
    channel = models.CharField(max_length=16, choices=ChannelChoice.choices)
    filename = models.CharField(max_length=32, choices=Filename.choices)
    language = models.CharField(max_length=15, blank=True, default="")
    content = models.TextField(blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["message_type", "channel", "language", "filename"]
        constraints = [
            models.UniqueConstraint(
                fields=["message_type", "channel", "filename", "language"],
                name="unique_template_part",
            ),
        ]

    def __str__(self) -> str:
        lang = self.language or "any language"
        return f"{self.message_type} {self.channel}/{self.filename} ({lang})"


class RecipientList(models.Model):
    """A list of recipients imported from CSV/XLSX (django-import-export)."""

    name = models.CharField(max_length=200, unique=True)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class RecipientListEntry(models.Model):
    """One address of an imported list; linked to a user when one has that email."""

    recipient_list = models.ForeignKey(
        RecipientList, on_delete=models.CASCADE, related_name="entries"
    )
    email = models.EmailField(max_length=254)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    first_name = models.CharField(max_length=150, blank=True)
    last_name = models.CharField(max_length=150, blank=True)
    language = models.CharField(max_length=15, blank=True)
    time_zone = models.CharField(max_length=64, blank=True)
    extra = models.JSONField(default=dict, blank=True, help_text="Per-recipient template context.")

    class Meta:
        ordering = ["recipient_list", "id"]
        verbose_name_plural = "recipient list entries"
        constraints = [
            models.UniqueConstraint(
                fields=["recipient_list", "email"], name="unique_recipient_list_email"
            ),
        ]

    def __str__(self) -> str:
        return self.email


class RecipientSource(models.Model):
    """An audience: a recipient resolver plugin plus its validated parameters."""

    name = models.CharField(max_length=200, unique=True)
    resolver = models.CharField(
        max_length=100, help_text="Name of a plugin in the campaigns.recipient_resolver namespace."
    )
    parameters = models.JSONField(default=dict, blank=True)
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Who last changed it (they can't approve campaigns sent to it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class PolicyToggle(models.Model):
    """Switches an ACE policy on or off, globally (no message type) or for one message type."""

    policy = models.CharField(max_length=100, help_text="Name of a policy plugin.")
    message_type = models.ForeignKey(
        MessageTypeDefinition,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="policy_toggles",
        help_text="Leave empty to apply to every message type.",
    )
    enabled = models.BooleanField(default=True)
    parameters = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["policy", "message_type"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "message_type"], name="unique_policy_toggle_per_type"
            ),
            models.UniqueConstraint(
                fields=["policy"],
                condition=Q(message_type__isnull=True),
                name="unique_global_policy_toggle",
            ),
        ]

    def __str__(self) -> str:
        scope = self.message_type or "all message types"
        return f"{self.policy} ({scope}): {'on' if self.enabled else 'off'}"


class OptOut(models.Model):
    """A recipient's unsubscribe, from one message type or (no message type) from all."""

    email = models.EmailField(max_length=254, db_index=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    message_type = models.ForeignKey(
        MessageTypeDefinition, null=True, blank=True, on_delete=models.CASCADE
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["email", "message_type"], name="unique_optout"),
            models.UniqueConstraint(
                fields=["email"],
                condition=Q(message_type__isnull=True),
                name="unique_global_optout",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.email} from {self.message_type or 'everything'}"


class Campaign(models.Model):
    """What to send (a message type and shared context), to whom (a source), when and how."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        APPROVED = "approved", "Approved"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    class ScheduleKind(models.TextChoices):
        NOW = "now", "Send now"
        ONCE = "once", "At a date and time"
        CRONTAB = "crontab", "Recurring (crontab)"
        INTERVAL = "interval", "Recurring (interval)"

    name = models.CharField(max_length=200)
    message_type = models.ForeignKey(
        MessageTypeDefinition, on_delete=models.PROTECT, related_name="campaigns"
    )
    recipient_source = models.ForeignKey(
        RecipientSource, on_delete=models.PROTECT, related_name="campaigns"
    )
    context = models.JSONField(
        default=dict, blank=True, help_text="Context shared by every message."
    )
    channels = models.JSONField(default=list, help_text='Channel types, e.g. ["email", "push"].')
    language = models.CharField(
        max_length=15, blank=True, help_text="Default language when a recipient has none."
    )
    expiration_hours = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Undelivered messages expire this long after the run starts.",
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)

    # Schedule (django-celery-beat keeps the due times; see services).
    schedule_kind = models.CharField(
        max_length=16, choices=ScheduleKind.choices, default=ScheduleKind.NOW
    )
    scheduled_at = models.DateTimeField(null=True, blank=True)
    crontab = models.CharField(
        max_length=100,
        blank=True,
        help_text='Five fields, e.g. "0 9 * * 1" (https://crontab.guru).',
    )
    interval_seconds = models.PositiveIntegerField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    exclude_previous_recipients = models.BooleanField(
        default=False, help_text="Recurring: skip recipients who received an earlier run."
    )
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaign",
    )

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        on_delete=models.SET_NULL,
        related_name="campaigns_created",
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaigns_approved",
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    approved_digest = models.CharField(
        max_length=64,
        blank=True,
        help_text="sha256 of the approved content: campaign fields, every template part of the"
        " message type, the recipient source and its parameters.",
    )
    last_edited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="campaigns_last_edited",
        help_text="Who last changed what it sends (they can't approve it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [
            ("approve_campaign", "Can approve a campaign"),
            ("preview_campaign", "Can preview and dry-run a campaign"),
            ("schedule_campaign", "Can schedule, pause, resume and cancel a campaign"),
            ("test_send_campaign", "Can send a test of a campaign to oneself"),
            ("resend_unknown_campaign", "Can resend deliveries left unknown after a crash"),
        ]

    def __str__(self) -> str:
        return self.name


class CampaignRun(models.Model):
    """One execution of a campaign for one due time, with its own ACE ``send_uuid``."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RESOLVING = "resolving", "Resolving recipients"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"
        FAILED = "failed", "Failed"

    #: Statuses in which batches send (pause and cancel take effect between sub-chunks).
    ACTIVE = (Status.RESOLVING, Status.RUNNING)
    #: Statuses of a run that has not reached its end yet.
    UNFINISHED = (Status.PENDING, Status.RESOLVING, Status.RUNNING, Status.PAUSED)

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="runs")
    send_uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    due_at = models.DateTimeField(help_text="The schedule's due time this run serves.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    resolve_cursor = models.JSONField(
        null=True, blank=True, help_text="Keyset position of the last enqueued recipient."
    )
    total = models.PositiveIntegerField(
        default=0, help_text="Deliveries expected (recipients x channels)."
    )
    sent = models.PositiveIntegerField(default=0)
    denied = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    expired = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    unknown = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = CampaignRunQuerySet.as_manager()

    class Meta:
        ordering = ["-due_at"]
        constraints = [
            models.UniqueConstraint(fields=["campaign", "due_at"], name="one_run_per_due_time"),
        ]

    def __str__(self) -> str:
        return f"{self.campaign} @ {self.due_at:%Y-%m-%d %H:%M}"


class Delivery(models.Model):
    """The delivery log: one row per (run, recipient, channel), claimed before the send."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"
        DENIED = "denied", "Denied by policy"
        FAILED = "failed", "Failed"
        EXPIRED = "expired", "Expired"
        SKIPPED = "skipped", "Skipped (no address or device)"
        UNKNOWN = "unknown", "Unknown (interrupted)"
        CANCELLED = "cancelled", "Cancelled"

    #: Where a delivery ends; each value is also the name of the run's counter of it.
    TERMINAL = (
        Status.SENT,
        Status.DENIED,
        Status.FAILED,
        Status.EXPIRED,
        Status.SKIPPED,
        Status.UNKNOWN,
        Status.CANCELLED,
    )

    run = models.ForeignKey(CampaignRun, on_delete=models.CASCADE, related_name="deliveries")
    recipient_key = models.CharField(
        max_length=300, help_text='Stable identity in the run, e.g. "user:42" or "email:a@b.org".'
    )
    user_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    email = models.CharField(max_length=254, blank=True, db_index=True)
    channel = models.CharField(max_length=16, choices=ChannelChoice.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    reason = models.TextField(blank=True, help_text="Policy denial reason or delivery error.")
    exception_type = models.CharField(max_length=100, blank=True)
    message_uuid = models.UUIDField(null=True, blank=True)
    send_uuid = models.UUIDField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(
                fields=["run", "recipient_key", "channel"],
                name="one_delivery_per_recipient_channel",
            ),
        ]
        indexes = [models.Index(fields=["run", "status"], name="delivery_run_status")]

    def __str__(self) -> str:
        return f"{self.email or self.recipient_key} {self.channel}: {self.status}"


class RunBatch(models.Model):
    """One chunk of a run's recipient ids as enqueued by ``start_run``.

    Its first ``deliver_batch`` claims it (``claimed_at``) exactly once, so a redelivered or
    duplicated batch never counts its deliveries twice; a run is complete when every batch is
    claimed and every delivery is terminal. Paused batches are re-enqueued from here on resume.
    """

    run = models.ForeignKey(CampaignRun, on_delete=models.CASCADE, related_name="batches")
    recipient_ids = models.JSONField(default=list)
    claimed_at = models.DateTimeField(null=True, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run", "id"]
        indexes = [models.Index(fields=["run", "claimed_at"], name="runbatch_run_claimed")]

    def __str__(self) -> str:
        return f"batch {self.pk} of {self.run_id} ({len(self.recipient_ids)} recipients)"


class ChannelRateBucket(models.Model):
    """A per-channel token bucket kept in the database when no Redis is configured."""

    channel = models.CharField(max_length=16, unique=True)
    tokens = models.FloatField(default=0)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.channel}: {self.tokens:.1f} tokens"


from campaigns.feedback.models import DeliveryEvent, EspMessageId, Suppression, UnparsedBounce  # noqa: E402, F401
