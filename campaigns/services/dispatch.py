"""Campaign runs: start a run for a due time, deliver its batches exactly once, pause/resume/cancel.

The pipeline (README "How a campaign is sent"):

* :func:`run_start` (task ``start_run``) creates the run for ``(campaign, due_at)`` under a lock
  on the campaign row and the unique ``(campaign, due_at)`` constraint, then streams recipient
  ids from the resolver in keyset-paginated chunks. Each chunk becomes a :class:`RunBatch` and a
  ``deliver_batch`` task (ids only, enqueued after commit); ``resolve_cursor`` is saved with it,
  so a restarted ``start_run`` continues where it stopped.
* :func:`batch_deliver` (task ``deliver_batch``) claims its batch once, inserts the
  ``(run, recipient_key, channel)`` rows (``ON CONFLICT DO NOTHING``), reads back those still
  QUEUED, personalizes and renders them (``ace.batch.BatchSender``, policies prefetched once),
  then per sub-chunk marks them SENDING in one ``UPDATE ... RETURNING`` (which also checks that
  the run is still active: pause and cancel take effect between sub-chunks), delivers over one
  open connection per channel and records the outcomes and the run's counters in one
  transaction. Nothing is ever sent for a row this attempt did not move to SENDING itself.
* A row found in SENDING by a later attempt belongs to an attempt that died (worker killed):
  once its lease (``CAMPAIGNS_SENDING_LEASE_SECONDS``) is over it becomes UNKNOWN — never resent
  silently; :func:`run_resend_unknown` resends those on an operator's request.
* Recoverable errors put the row back to QUEUED with ``next_attempt_at`` (exponential backoff
  with jitter, bounded by the run's expiry) and re-enqueue just those recipients with an
  ``eta``; rate limits do the same. No worker sleeps.
* A policy that postpones a message (quiet hours: ACE's RETRY outcome with ``deferred``) puts
  the row back to QUEUED at exactly the policy's time, with the policy's reason, without
  counting an attempt. A task never waits on the broker longer than
  ``CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS`` (Redis redelivers eta tasks held past its visibility
  timeout): a later time is reached by hops, each finding the row not yet due.
* A delivery whose result cannot be known (the connection dropped after the message went
  out: ACE's UNKNOWN outcome) becomes UNKNOWN with the reason, like a crash mid-send: it is
  never retried automatically, only resent on an operator's request.
* A run is COMPLETED when its resolution is done, every batch is claimed and every delivery is
  terminal (checked with one conditional UPDATE after each batch).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from ace.batch import BatchSender, PreparedDelivery
from ace.channel import ChannelType
from ace.outcome import DeliveryOutcome, OutcomeStatus
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.resolvers import ResolvedRecipient, resolver_class, resolver_for_source
from campaigns.services.campaigns import campaign_transition, campaign_transition_allowed
from campaigns.services.message_types import message_type_instance
from campaigns.services.policies import policies_prefetched
from campaigns.services.ratelimit import rate_limit_take
from campaigns.services.schedules import (
    RECURRING,
    campaign_schedule_delete,
    campaign_schedules_set_enabled,
    schedule_due_at,
)
from campaigns.signing import unsubscribe_headers, unsubscribe_url_factory

log = logging.getLogger(__name__)

RunStatus = CampaignRun.Status
DeliveryStatus = Delivery.Status

RUN_REFUSED = "Campaign {name!r} is {status}; runs start only for scheduled or running campaigns."
RUN_NOT_PAUSABLE = "Run {run} is {status}; only resolving or running runs can be paused."
RUN_NOT_RESUMABLE = "Run {run} is {status}; only paused runs can be resumed."
RUN_NOT_CANCELLABLE = "Run {run} is already {status}."
RESEND_FORBIDDEN = "You don't have permission to resend unknown deliveries."
RESEND_RUN_ACTIVE = "Run {run} is {status}; resend unknown deliveries once it is finished."
CAMPAIGN_NOT_PAUSABLE = "Campaign {name!r} is {status}; only scheduled or running ones can pause."
CAMPAIGN_NOT_RESUMABLE = "Campaign {name!r} is {status}; only paused campaigns can be resumed."
CAMPAIGN_NOT_CANCELLABLE = "Campaign {name!r} is already {status}."
RESOLVER_FAILED = "The audience cannot be resolved: {error}"

REASON_PREVIOUS_RUN = "Received an earlier run of this campaign."
REASON_CANCELLED = "The run was cancelled before this delivery was sent."
REASON_NO_CHANNEL = "No enabled channel can deliver this channel type."
REASON_INTERRUPTED = (
    "The worker was lost while sending; the message may or may not have been delivered."
)
REASON_EXPIRED_BEFORE_RETRY = "Would expire before the next attempt: {reason}"
REASON_RESENT = "Resent by {user} after an unknown outcome."

ACTIVE = (RunStatus.RESOLVING, RunStatus.RUNNING)
UNFINISHED = (*ACTIVE, RunStatus.PENDING, RunStatus.PAUSED)
COUNTED = {  # Delivery status -> CampaignRun counter
    DeliveryStatus.SENT: "sent",
    DeliveryStatus.DENIED: "denied",
    DeliveryStatus.FAILED: "failed",
    DeliveryStatus.EXPIRED: "expired",
    DeliveryStatus.SKIPPED: "skipped",
    DeliveryStatus.UNKNOWN: "unknown",
}
OUTCOME_STATUS = {
    OutcomeStatus.SENT: DeliveryStatus.SENT,
    OutcomeStatus.DENIED: DeliveryStatus.DENIED,
    OutcomeStatus.FAILED: DeliveryStatus.FAILED,
    OutcomeStatus.EXPIRED: DeliveryStatus.EXPIRED,
    OutcomeStatus.NO_ADDRESS: DeliveryStatus.SKIPPED,
    OutcomeStatus.UNKNOWN: DeliveryStatus.UNKNOWN,
}
#: A QUEUED row whose next attempt is at most this far away is sent now.
DUE_SLACK = dt.timedelta(seconds=1)
REASON_MAX = 2000


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def batch_size() -> int:
    """Recipients per ``deliver_batch`` task (``CAMPAIGNS_BATCH_SIZE``)."""
    return max(1, int(_setting("CAMPAIGNS_BATCH_SIZE", 500)))


def send_chunk_size() -> int:
    """Messages marked SENDING at once (``CAMPAIGNS_SEND_CHUNK_SIZE``): the most a crash can
    leave UNKNOWN per worker, and how often a batch checks for pause/cancel."""
    return max(1, int(_setting("CAMPAIGNS_SEND_CHUNK_SIZE", 250)))


def sending_lease() -> dt.timedelta:
    """How long a SENDING row belongs to the attempt that marked it (then: UNKNOWN)."""
    return dt.timedelta(seconds=float(_setting("CAMPAIGNS_SENDING_LEASE_SECONDS", 300)))


# Value objects -------------------------------------------------------------------------------


@attrs.define
class BatchOutcome:
    """What one ``deliver_batch`` call did (returned by the task for logs and tests)."""

    counts: Counter = attrs.field(factory=Counter)  # terminal statuses recorded by this call
    retried: int = 0  # put back to QUEUED for a later attempt
    deferred: int = 0  # left for later without an attempt: a rate limit, or a policy (quiet hours)
    followups: int = 0  # deliver_batch tasks enqueued for later
    stopped: str = ""  # run status that stopped the batch early ("paused", "cancelled", ...)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {
            "counts": dict(self.counts),
            "retried": self.retried,
            "deferred": self.deferred,
            "followups": self.followups,
            "stopped": self.stopped,
        }


@attrs.define
class _Row:
    """The columns of a claimed delivery row the batch needs."""

    pk: int
    key: str
    channel: str
    status: str
    attempts: int
    message_uuid: uuid.UUID | None
    next_attempt_at: dt.datetime | None
    updated_at: dt.datetime


@attrs.define
class _Pending:
    """A row's new state, recorded in bulk: status, reason, exception type, next attempt."""

    status: str
    reason: str = ""
    exception_type: str = ""
    next_attempt_at: dt.datetime | None = None


# Enqueueing ----------------------------------------------------------------------------------


def _enqueue_batch(
    *, run_id: int, recipient_ids: list[int], batch_id: int | None, eta: dt.datetime | None = None
) -> None:
    """Enqueue ``deliver_batch`` after the current transaction commits."""
    from celery import current_app

    from campaigns.tasks import deliver_batch as deliver_batch_task

    if eta is not None and current_app.conf.task_always_eager and eta > timezone.now():
        # Eager mode (tests, shell) runs a task at once and cannot wait for an eta; the rows
        # stay QUEUED with their next_attempt_at for a real worker to pick up.
        log.warning("Eager Celery: not re-running run %s batch %s before %s", run_id, batch_id, eta)
        return
    kwargs = {"run_id": run_id, "recipient_ids": list(recipient_ids), "batch_id": batch_id}
    transaction.on_commit(lambda: deliver_batch_task.apply_async(kwargs=kwargs, eta=eta))


def _enqueue_start(*, campaign_id: int, due_at: dt.datetime) -> None:
    from campaigns.tasks import start_run as start_run_task

    due = due_at.isoformat()
    transaction.on_commit(lambda: start_run_task.delay(campaign_id=campaign_id, due_at=due))


# Starting a run ------------------------------------------------------------------------------


def _expires_at(campaign: Campaign, started: dt.datetime) -> dt.datetime:
    hours = campaign.expiration_hours or _setting("CAMPAIGNS_DEFAULT_EXPIRATION_HOURS", 24)
    return started + dt.timedelta(hours=hours)


def run_start(*, campaign_id: int, due_at: dt.datetime | None = None) -> CampaignRun | None:
    """Create (or continue) the run of ``campaign_id`` for ``due_at`` and enqueue its batches.

    ``due_at`` defaults to the schedule's current tick (:func:`schedule_due_at`), so a double
    fire of beat lands on the same run. Returns None when the campaign is gone or not
    scheduled/running (the refusal is logged). A run already past resolution is returned as
    is; one still resolving (a restarted or duplicated ``start_run``) continues from its cursor.
    """
    with transaction.atomic():
        campaign = (
            (Campaign.objects.select_for_update().select_related("recipient_source"))
            .filter(pk=campaign_id)
            .first()
        )
        if campaign is None:
            log.warning("start_run: campaign %s no longer exists", campaign_id)
            return None
        if due_at is None:
            due_at = schedule_due_at(campaign=campaign)
        run = CampaignRun.objects.filter(campaign=campaign, due_at=due_at).first()
        if run is None:
            if campaign.status not in (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING):
                log.info(RUN_REFUSED.format(name=campaign.name, status=campaign.status))
                return None
            now = timezone.now()
            run = CampaignRun.objects.create(
                campaign=campaign,
                due_at=due_at,
                status=RunStatus.RESOLVING,
                started_at=now,
                expires_at=_expires_at(campaign, now),
                resolve_cursor={"after": None, "done": False},
            )
            if campaign.status != Campaign.Status.RUNNING:
                campaign_transition(campaign=campaign, to=Campaign.Status.RUNNING)
        elif run.status != RunStatus.RESOLVING:
            return run
        else:
            # A restarted start_run: the batches it enqueued may have been lost with it.
            for batch_pk, ids in RunBatch.objects.filter(
                run=run, claimed_at__isnull=True, paused_at__isnull=True
            ).values_list("pk", "recipient_ids"):
                _enqueue_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch_pk)
    _resolve(run=run, campaign=campaign)
    run.refresh_from_db()
    return run


def _resolve(*, run: CampaignRun, campaign: Campaign) -> None:
    """Stream the audience into batches, one chunk per transaction (the cursor moves with it)."""
    try:
        resolver = resolver_for_source(campaign.recipient_source)
    except ValidationError as exc:
        run_fail(run=run, error=RESOLVER_FAILED.format(error="; ".join(exc.messages)))
        return
    channels = len(campaign.channels)
    size = batch_size()
    while True:
        with transaction.atomic():
            locked = CampaignRun.objects.select_for_update().get(pk=run.pk)
            if locked.status != RunStatus.RESOLVING:
                return
            cursor = dict(locked.resolve_cursor or {})
            ids = next(
                iter(resolver.iter_id_chunks(after=cursor.get("after"), chunk_size=size)), []
            )
            if not ids:
                cursor["done"] = True
                CampaignRun.objects.filter(pk=run.pk).update(
                    status=RunStatus.RUNNING, resolve_cursor=cursor
                )
                break
            batch = RunBatch.objects.create(run=locked, recipient_ids=ids)
            cursor["after"] = ids[-1]
            CampaignRun.objects.filter(pk=run.pk).update(
                total=F("total") + len(ids) * channels, resolve_cursor=cursor
            )
            _enqueue_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch.pk)
    run_complete_if_done(run_id=run.pk)


def run_fail(*, run: CampaignRun, error: str) -> None:
    """Mark a run FAILED (e.g. its audience can no longer be resolved)."""
    log.error("Run %s failed: %s", run.pk, error)
    CampaignRun.objects.filter(pk=run.pk, status__in=UNFINISHED).update(
        status=RunStatus.FAILED, error=error, finished_at=timezone.now()
    )
    _campaign_after_run(campaign_id=run.campaign_id)


# Recovery ------------------------------------------------------------------------------------


def stalled_after() -> dt.timedelta:
    """How long an active run may show no progress before its work is enqueued again."""
    return dt.timedelta(seconds=float(_setting("CAMPAIGNS_STALLED_RUN_SECONDS", 900)))


def run_recover(*, run: CampaignRun, quiet_since: dt.datetime | None = None) -> int:
    """Enqueue an active run's work again: its unpaused batches, and ``start_run`` if it is
    still resolving. Returns the number of tasks enqueued.

    For work a broker lost (a task that failed on a bug or ran out of retries, a broker
    without acknowledgements such as the filesystem one, a flushed Redis). Safe at any time:
    claims, terminal rows and SENDING leases make the duplicates harmless. With
    ``quiet_since``, does nothing if the run changed any row since then or has a retry
    scheduled for later (it is making progress, or waiting on purpose).
    """
    if run.status not in ACTIVE:
        return 0
    if quiet_since is not None:
        deliveries = Delivery.objects.filter(run=run)
        if (
            deliveries.filter(updated_at__gte=quiet_since).exists()
            or deliveries.filter(
                status=DeliveryStatus.QUEUED, next_attempt_at__gt=timezone.now()
            ).exists()
            or RunBatch.objects.filter(run=run, claimed_at__gte=quiet_since).exists()
        ):
            return 0
    enqueued = 0
    with transaction.atomic():
        if run.status == RunStatus.RESOLVING:
            _enqueue_start(campaign_id=run.campaign_id, due_at=run.due_at)
            enqueued += 1
        for batch_pk, ids in RunBatch.objects.filter(run=run, paused_at__isnull=True).values_list(
            "pk", "recipient_ids"
        ):
            _enqueue_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch_pk)
            enqueued += 1
    if enqueued:
        log.warning("Run %s made no progress; enqueued %s task(s) again", run.pk, enqueued)
    return enqueued


def runs_recover_stalled(*, now: dt.datetime | None = None) -> dict[int, int]:
    """:func:`run_recover` every active run started over ``stalled_after()`` ago that changed
    nothing since then. Returns ``{run id: tasks enqueued}`` for the runs recovered."""
    quiet_since = (now or timezone.now()) - stalled_after()
    recovered = {}
    for run in CampaignRun.objects.filter(status__in=ACTIVE, started_at__lt=quiet_since):
        count = run_recover(run=run, quiet_since=quiet_since)
        if count:
            recovered[run.pk] = count
    return recovered


# Completion ----------------------------------------------------------------------------------


def run_complete_if_done(*, run_id: int, campaign_id: int | None = None) -> bool:
    """COMPLETED if resolution is done, every batch claimed and every delivery terminal.

    One conditional UPDATE, safe to call from every batch at once.
    """
    terminal = F("sent") + F("denied") + F("failed") + F("expired") + F("skipped") + F("unknown")
    unclaimed = RunBatch.objects.filter(run_id=OuterRef("pk"), claimed_at__isnull=True)
    open_rows = Delivery.objects.filter(
        run_id=OuterRef("pk"), status__in=(DeliveryStatus.QUEUED, DeliveryStatus.SENDING)
    )
    done = (
        CampaignRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, total__lte=terminal)
        .filter(~Exists(unclaimed), ~Exists(open_rows))
        .update(status=RunStatus.COMPLETED, finished_at=timezone.now())
    )
    if done:
        if campaign_id is None:
            campaign_id = CampaignRun.objects.values_list("campaign_id", flat=True).get(pk=run_id)
        _campaign_after_run(campaign_id=campaign_id)
    return bool(done)


def _campaign_after_run(*, campaign_id: int) -> None:
    """A running campaign with no unfinished run left: back to SCHEDULED if it recurs, else
    COMPLETED."""
    if CampaignRun.objects.filter(campaign_id=campaign_id, status__in=UNFINISHED).exists():
        return
    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is None or campaign.status != Campaign.Status.RUNNING:
        return
    target = (
        Campaign.Status.SCHEDULED
        if campaign.schedule_kind in RECURRING
        else Campaign.Status.COMPLETED
    )
    Campaign.objects.filter(pk=campaign_id, status=Campaign.Status.RUNNING).update(
        status=target, updated_at=timezone.now()
    )


# Delivering a batch --------------------------------------------------------------------------


def _increment(run_id: int, counts: Counter) -> None:
    fields = {COUNTED[s]: F(COUNTED[s]) + n for s, n in counts.items() if n and s in COUNTED}
    if fields:
        CampaignRun.objects.filter(pk=run_id).update(**fields)


def _read_back(run: CampaignRun, keys: Iterable[str]) -> list[_Row]:
    return [
        _Row(*values)
        for values in Delivery.objects.filter(run=run, recipient_key__in=list(keys)).values_list(
            "pk",
            "recipient_key",
            "channel",
            "status",
            "attempts",
            "message_uuid",
            "next_attempt_at",
            "updated_at",
        )
    ]


#: Per-row columns of a claim's INSERT (the rest are the same for the whole batch).
_INSERTED_COLUMNS = (
    "recipient_key",
    "user_id",
    "email",
    "channel",
    "status",
    "reason",
    "message_uuid",
)


def _insert_returning(run: CampaignRun, specs: list[tuple], now: dt.datetime) -> list[_Row]:
    """PostgreSQL: insert a batch's rows in one ``INSERT ... SELECT FROM unnest(...) ON CONFLICT
    DO NOTHING RETURNING`` and return those inserted (the benchmark measured ~12 us of worker
    CPU a row, against ~54 us for ``bulk_create`` and its read-back query). Columns not given
    per row take the batch's values or the model field's default, as ``bulk_create`` would."""
    qn = connection.ops.quote_name
    fields = {f.attname: f for f in Delivery._meta.concrete_fields if not f.primary_key}
    batch_values = {
        "run_id": run.pk,
        "send_uuid": run.send_uuid,
        "created_at": now,
        "updated_at": now,
    }
    columns, selects, params = [], [], []
    for name, field in fields.items():
        if name in _INSERTED_COLUMNS:
            continue
        value = batch_values[name] if name in batch_values else field.get_default()
        columns.append(qn(field.column))
        selects.append("%s")
        params.append(field.get_db_prep_save(value, connection))
    arrays = [[spec[i] for spec in specs] for i in range(len(_INSERTED_COLUMNS))]
    for name, values in zip(_INSERTED_COLUMNS, arrays, strict=True):
        field = fields[name]
        columns.append(qn(field.column))
        selects.append(f"t.{qn(name)}")
        params.append(values)
    aliases = ", ".join(qn(name) for name in _INSERTED_COLUMNS)
    casts = ", ".join(f"%s::{fields[name].db_type(connection)}[]" for name in _INSERTED_COLUMNS)
    # Placeholders: the SELECT list's batch values first, then unnest()'s arrays, as appended.
    sql = (
        f"INSERT INTO {qn(Delivery._meta.db_table)} ({', '.join(columns)}) "
        f"SELECT {', '.join(selects)} FROM unnest({casts}) AS t({aliases}) "
        "ON CONFLICT DO NOTHING RETURNING "
        + ", ".join(
            qn(c)
            for c in (
                "id",
                "recipient_key",
                "channel",
                "status",
                "attempts",
                "message_uuid",
                "next_attempt_at",
                "updated_at",
            )
        )
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_Row(*values) for values in cursor.fetchall()]


def _previously_sent(
    run: CampaignRun, keys: Sequence[str], channels: Sequence[str]
) -> set[tuple[str, str]]:
    """(key, channel) pairs already sent by an earlier run of the campaign (one query)."""
    return set(
        Delivery.objects.filter(
            run__campaign_id=run.campaign_id,
            run__due_at__lt=run.due_at,
            status=DeliveryStatus.SENT,
            recipient_key__in=list(keys),
            channel__in=list(channels),
        )
        .values_list("recipient_key", "channel")
        .distinct()
    )


def _claim(
    *,
    run: CampaignRun,
    batch_id: int,
    expected: int,
    recipients: dict[str, ResolvedRecipient],
    channels: Sequence[str],
    exclude_previous: bool,
) -> list[_Row] | None:
    """Claim the batch (once) and insert its delivery rows; None if it was claimed before.

    In the same transaction the run's total is corrected for ids that no longer resolve or
    share a key with another id (``expected`` was counted by ``start_run``), and rows skipped
    because an earlier run already reached the recipient are counted.
    """
    now = timezone.now()
    with transaction.atomic():
        # No lock on the run: if it is cancelled meanwhile, these QUEUED rows are never marked
        # SENDING (that UPDATE checks the run) and the batch stopping sweeps them to SKIPPED.
        if not RunBatch.objects.filter(pk=batch_id, run=run, claimed_at__isnull=True).update(
            claimed_at=now
        ):
            return None
        previous = _previously_sent(run, list(recipients), channels) if exclude_previous else set()
        specs: list[tuple] = []  # one per row, in the order of _INSERTED_COLUMNS
        for key, recipient in recipients.items():
            message_uuid = uuid.uuid4()
            for channel in channels:
                skip = (key, channel) in previous
                specs.append(
                    (
                        key,
                        recipient.user_id,
                        (recipient.email or "")[:254],
                        channel,
                        DeliveryStatus.SKIPPED.value if skip else DeliveryStatus.QUEUED.value,
                        REASON_PREVIOUS_RUN if skip else "",
                        message_uuid,
                    )
                )
        if connection.vendor == "postgresql":
            inserted = _insert_returning(run, specs, now)
            rows = inserted if len(inserted) == len(specs) else _read_back(run, recipients)
        else:
            Delivery.objects.bulk_create(
                [
                    Delivery(
                        run=run,
                        send_uuid=run.send_uuid,
                        **dict(zip(_INSERTED_COLUMNS, spec, strict=True)),
                    )
                    for spec in specs
                ],
                ignore_conflicts=True,
            )
            rows = _read_back(run, recipients)
            mine = {spec[-1] for spec in specs}
            inserted = [row for row in rows if row.message_uuid in mine]
        skipped = sum(1 for row in inserted if row.status == DeliveryStatus.SKIPPED)
        deficit = expected * len(channels) - len(inserted)
        if deficit or skipped:
            CampaignRun.objects.filter(pk=run.pk).update(
                total=F("total") - deficit, skipped=F("skipped") + skipped
            )
    return rows


def _transition(
    *, run_id: int, changes: dict[int, _Pending], expected: str, sent_at: dt.datetime | None = None
) -> Counter:
    """Apply new states to rows still in ``expected`` status and count them on the run, in one
    transaction. SENT rows (no per-row data) take one UPDATE; others are locked, then
    ``bulk_update``-d. Returns the terminal statuses actually recorded."""
    counts: Counter = Counter()
    now = timezone.now()
    sent = [pk for pk, change in changes.items() if change.status == DeliveryStatus.SENT]
    others = {pk: change for pk, change in changes.items() if change.status != DeliveryStatus.SENT}
    with transaction.atomic():
        if sent and connection.vendor == "postgresql":
            # The common case in one statement: rows SENT and the run's counter together.
            counts[DeliveryStatus.SENT] += _sent_and_counted(run_id, sent, expected, sent_at or now)
        elif sent:
            counts[DeliveryStatus.SENT] += Delivery.objects.filter(
                pk__in=sent, status=expected
            ).update(
                status=DeliveryStatus.SENT,
                sent_at=sent_at or now,
                updated_at=now,
                reason="",
                exception_type="",
                next_attempt_at=None,
            )
            _increment(run_id, counts)
        if others:
            still = (
                Delivery.objects.select_for_update()
                .filter(pk__in=list(others), status=expected)
                .values_list("pk", flat=True)
            )
            objs = []
            for pk in still:
                change = others[pk]
                objs.append(
                    Delivery(
                        pk=pk,
                        status=change.status,
                        reason=change.reason[:REASON_MAX],
                        exception_type=change.exception_type[:100],
                        next_attempt_at=change.next_attempt_at,
                        updated_at=now,
                    )
                )
                if change.status in COUNTED:
                    counts[change.status] += 1
            if objs:
                Delivery.objects.bulk_update(
                    objs, ["status", "reason", "exception_type", "next_attempt_at", "updated_at"]
                )
        _increment(run_id, counts - Counter({DeliveryStatus.SENT: counts[DeliveryStatus.SENT]}))
    return counts


def _sent_and_counted(run_id: int, pks: Sequence[int], expected: str, now: dt.datetime) -> int:
    """PostgreSQL: rows in ``expected`` -> SENT and ``run.sent += n`` in one statement."""
    qn = connection.ops.quote_name
    delivery, run = qn(Delivery._meta.db_table), qn(CampaignRun._meta.db_table)
    when = connection.ops.adapt_datetimefield_value(now)
    sql = (
        f"WITH moved AS (UPDATE {delivery} SET {qn('status')} = %s, {qn('sent_at')} = %s, "
        f"{qn('updated_at')} = %s, {qn('reason')} = '', {qn('exception_type')} = '', "
        f"{qn('next_attempt_at')} = NULL "
        f"WHERE {qn('id')} IN ({', '.join(['%s'] * len(pks))}) AND {qn('status')} = %s "
        f"RETURNING 1), n AS (SELECT count(*) AS moved FROM moved) "
        f"UPDATE {run} SET {qn('sent')} = {run}.{qn('sent')} + n.moved FROM n "
        f"WHERE {run}.{qn('id')} = %s RETURNING n.moved"
    )
    params = [DeliveryStatus.SENT.value, when, when, *pks, expected, run_id]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    return int(row[0]) if row else 0


def _mark_sending(run_id: int, pks: Sequence[int]) -> dict[int, int]:
    """QUEUED -> SENDING for these rows if the run is still active; returns {pk: attempts} of
    the rows this call moved (only those may be sent). One ``UPDATE ... RETURNING``."""
    if not pks:
        return {}
    qn = connection.ops.quote_name
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    placeholders = ", ".join(["%s"] * len(pks))
    sql = (
        f"UPDATE {qn(Delivery._meta.db_table)} SET {qn('status')} = %s, "
        f"{qn('attempts')} = {qn('attempts')} + 1, {qn('updated_at')} = %s "
        f"WHERE {qn('id')} IN ({placeholders}) AND {qn('status')} = %s AND {qn('run_id')} = %s "
        f"AND EXISTS (SELECT 1 FROM {qn(CampaignRun._meta.db_table)} r "
        f"WHERE r.{qn('id')} = %s AND r.{qn('status')} IN (%s, %s)) "
        f"RETURNING {qn('id')}, {qn('attempts')}"
    )
    params = [
        DeliveryStatus.SENDING.value,
        now,
        *pks,
        DeliveryStatus.QUEUED.value,
        run_id,
        run_id,
        RunStatus.RESOLVING.value,
        RunStatus.RUNNING.value,
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return dict(cursor.fetchall())


def retry_delay(*, attempts: int, hint: dt.timedelta | None = None) -> dt.timedelta:
    """Exponential backoff with jitter: the channel's suggested delay (or
    ``CAMPAIGNS_RETRY_BACKOFF_SECONDS``) doubled per earlier attempt, plus up to 25 % jitter,
    capped at ``CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS`` (keep it under the broker's visibility
    timeout: a Redis broker redelivers unacknowledged eta tasks after it)."""
    base = hint.total_seconds() if hint else float(_setting("CAMPAIGNS_RETRY_BACKOFF_SECONDS", 30))
    cap = float(_setting("CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS", 1800))
    delay = min(cap, max(base, 0.0) * 2 ** max(attempts - 1, 0))
    return dt.timedelta(seconds=delay * (1 + random.uniform(0, 0.25)))


def max_task_delay() -> dt.timedelta:
    """The longest a re-enqueued ``deliver_batch`` waits on the broker
    (``CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS``, kept under the visibility timeout)."""
    return dt.timedelta(seconds=float(_setting("CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS", 1800)))


def _change_for(
    outcome: DeliveryOutcome, *, attempts: int, expires_at: dt.datetime | None
) -> _Pending:
    """The new state of a row from an ACE outcome (RETRY -> QUEUED later, or EXPIRED).

    A policy's deferral keeps the policy's time (no backoff, no jitter; it was no attempt);
    a recoverable error backs off from the channel's hint by the row's attempts.
    """
    if outcome.status is OutcomeStatus.RETRY:
        now = timezone.now()
        if outcome.deferred and outcome.next_attempt_time is not None:
            next_at = max(outcome.next_attempt_time, now + DUE_SLACK)
        else:
            hint = outcome.next_attempt_time - now if outcome.next_attempt_time else None
            next_at = now + retry_delay(attempts=attempts, hint=hint)
        if expires_at is not None and next_at >= expires_at:
            return _Pending(
                DeliveryStatus.EXPIRED,
                REASON_EXPIRED_BEFORE_RETRY.format(reason=outcome.reason),
                outcome.exception_type,
            )
        return _Pending(DeliveryStatus.QUEUED, outcome.reason, outcome.exception_type, next_at)
    return _Pending(OUTCOME_STATUS[outcome.status], outcome.reason, outcome.exception_type)


class _Batch:
    """The state of one ``batch_deliver`` call (kept small: one batch in memory)."""

    def __init__(self, run: CampaignRun, recipient_ids: Sequence[int], batch_id: int | None):
        self.run = run
        self.campaign = run.campaign
        self.recipient_ids = list(recipient_ids)
        self.batch_id = batch_id
        self.channels = list(self.campaign.channels)
        self.outcome = BatchOutcome()
        self.recipients: dict[str, ResolvedRecipient] = {}
        self.id_of: dict[str, int] | None = None

    def ids_for(self, keys: Iterable[str]) -> list[int]:
        """Recipient ids of these keys (all the batch's ids if ids and keys don't pair up)."""
        if self.id_of is None:
            return self.recipient_ids
        return sorted({self.id_of[k] for k in keys if k in self.id_of})

    def followup(self, keys: Iterable[str], eta: dt.datetime | None) -> None:
        """Enqueue ``deliver_batch`` for these recipients at ``eta``, or sooner: never further
        away than :func:`max_task_delay` (the rows' ``next_attempt_at`` keeps the real time;
        an early task finds them not due and hops again)."""
        ids = self.ids_for(keys)
        if ids:
            if eta is not None:
                eta = min(eta, timezone.now() + max_task_delay())
            _enqueue_batch(run_id=self.run.pk, recipient_ids=ids, batch_id=self.batch_id, eta=eta)
            self.outcome.followups += 1


def batch_deliver(
    *, run: CampaignRun, recipient_ids: Sequence[int], batch_id: int | None = None
) -> BatchOutcome:
    """Deliver one batch of a run: each (recipient, channel) at most once, whatever repeats.

    Safe to call again with the same arguments (redelivery, duplicates, resume): claimed rows
    are never re-inserted, terminal rows are skipped, rows left in SENDING by a dead attempt
    become UNKNOWN after their lease, and only rows this call moved to SENDING are sent.
    """
    batch = _Batch(run, recipient_ids, batch_id)
    if run.status not in ACTIVE:
        return _stopped(batch, run.status, batch.recipient_ids)
    source = batch.campaign.recipient_source
    try:
        # The parameters were validated when the run started; not again for every batch.
        resolver = resolver_class(source.resolver)(source.parameters)
    except ValidationError as exc:
        run_fail(run=run, error=RESOLVER_FAILED.format(error="; ".join(exc.messages)))
        batch.outcome.stopped = RunStatus.FAILED
        return batch.outcome
    resolved = resolver.recipients_for_ids(batch.recipient_ids)
    for recipient in resolved:
        batch.recipients.setdefault(recipient.key, recipient)
    if len(resolved) == len(batch.recipient_ids):  # the resolver keeps the order of ids
        batch.id_of = {}
        for recipient, pk in zip(resolved, batch.recipient_ids, strict=True):
            batch.id_of.setdefault(recipient.key, pk)

    rows = None
    if batch_id is not None:
        rows = _claim(
            run=run,
            batch_id=batch_id,
            expected=len(batch.recipient_ids),
            recipients=batch.recipients,
            channels=batch.channels,
            exclude_previous=batch.campaign.exclude_previous_recipients,
        )
    if rows is None:
        rows = _read_back(run, batch.recipients)
    candidates = _sort_rows(batch, rows)
    if candidates:
        try:
            _send(batch, candidates)
        except CampaignError as exc:  # the message type cannot be built (bad code path)
            run_fail(run=run, error=exc.message)
            batch.outcome.stopped = RunStatus.FAILED
            return batch.outcome
    run_complete_if_done(run_id=run.pk, campaign_id=run.campaign_id)
    return batch.outcome


def _sort_rows(batch: _Batch, rows: list[_Row]) -> dict[tuple[str, str], _Row]:
    """Due QUEUED rows to send now; stale SENDING rows -> UNKNOWN; the rest checked later."""
    now = timezone.now()
    lease = sending_lease()
    candidates: dict[tuple[str, str], _Row] = {}
    stale: dict[int, _Pending] = {}
    later: set[str] = set()
    later_at: dt.datetime | None = None
    for row in rows:
        if row.channel not in batch.channels:
            continue
        if row.status == DeliveryStatus.QUEUED:
            if row.next_attempt_at is None or row.next_attempt_at <= now + DUE_SLACK:
                candidates[(row.key, row.channel)] = row
                continue
            check_at = row.next_attempt_at
        elif row.status == DeliveryStatus.SENDING:
            if row.updated_at + lease <= now:
                stale[row.pk] = _Pending(DeliveryStatus.UNKNOWN, REASON_INTERRUPTED)
                continue
            check_at = row.updated_at + lease + DUE_SLACK  # another attempt may still be alive
        else:
            continue
        later.add(row.key)
        later_at = check_at if later_at is None else max(later_at, check_at)
    if stale:
        batch.outcome.counts += _transition(
            run_id=batch.run.pk, changes=stale, expected=DeliveryStatus.SENDING
        )
    if later:
        # Normally a task is already scheduled for these; enqueueing again keeps the run
        # live if that one was lost (a crash between commit and enqueue). Duplicates are
        # harmless: only the attempt that moves a row to SENDING sends it.
        batch.followup(later, later_at)
    return candidates


def _message_options(batch: _Batch) -> dict[str, Any]:
    campaign = batch.campaign
    return {
        "campaign_id": campaign.pk,
        "campaign_run_id": batch.run.pk,
        "campaign_time_zone": campaign.time_zone,
    }


def _personalize(batch: _Batch, keys: Iterable[str], uuids: dict[str, uuid.UUID | None]) -> list:
    """One ACE message per recipient: a fresh context with the signed unsubscribe link, the
    RFC 8058 headers, and the options the campaign policies read."""
    campaign = batch.campaign
    definition = campaign.message_type
    msg_type = message_type_instance(
        definition=definition,
        context=campaign.context if isinstance(campaign.context, dict) else {},
        options=_message_options(batch),
        expiration_time=batch.run.expires_at,
    )
    msg_type.uuid = batch.run.send_uuid
    default_language = campaign.language or definition.default_language or None
    make_unsubscribe_url = unsubscribe_url_factory(definition.pk)  # the route, reversed once
    messages = []
    for key in keys:
        recipient = batch.recipients[key]
        context = {**recipient.context}
        headers: dict[str, str] = {}
        if recipient.email and "@" in recipient.email:
            url = make_unsubscribe_url(recipient.email)
            context["unsubscribe_url"] = url
            headers = unsubscribe_headers(url)
        message = msg_type.personalize(
            recipient.ace_recipient(), recipient.language or default_language, context
        )
        if uuids.get(key) is not None:
            message.uuid = uuids[key]
        message.options = {
            **message.options,
            "recipient_key": key,
            "recipient_time_zone": recipient.time_zone,
            "headers": {**(message.options.get("headers") or {}), **headers},
        }
        messages.append(message)
    return messages


def _send(batch: _Batch, candidates: dict[tuple[str, str], _Row]) -> None:
    """Policies and rendering for the whole batch, then delivery sub-chunk by sub-chunk."""
    run = batch.run
    keys = list(dict.fromkeys(key for key, _channel in candidates))
    uuids = {key: candidates[(key, ch)].message_uuid for key, ch in candidates}
    messages = _personalize(batch, keys, uuids)
    limit = [ChannelType(c) for c in batch.channels]
    with BatchSender(limit_to_channels=limit) as sender:
        with policies_prefetched(messages):
            prepared, decided = sender.prepare(messages)
        decided_changes: dict[int, _Pending] = {}
        deferred_pks: set[int] = set()
        seen: set[tuple[str, str]] = set()
        for outcome in decided:
            slot = (outcome.message.options["recipient_key"], outcome.channel_type.value)
            row = candidates.get(slot)
            if row is None or slot in seen:
                continue
            seen.add(slot)
            decided_changes[row.pk] = _change_for(
                outcome, attempts=row.attempts + 1, expires_at=run.expires_at
            )
            if outcome.deferred:
                deferred_pks.add(row.pk)
        ready: list[tuple[_Row, PreparedDelivery]] = []
        for item in prepared:
            slot = (item.message.options["recipient_key"], item.channel_type.value)
            row = candidates.get(slot)
            if row is None or slot in seen:
                continue
            seen.add(slot)
            ready.append((row, item))
        for slot, row in candidates.items():
            if slot not in seen:  # no channel of that type is enabled
                decided_changes[row.pk] = _Pending(DeliveryStatus.SKIPPED, REASON_NO_CHANNEL)
        if decided_changes:
            retry = {pk for pk, c in decided_changes.items() if c.status == DeliveryStatus.QUEUED}
            # Outcomes decided before sending (denied, expired, ...) are final; a RETRY here
            # (a policy's deferral, or a recoverable rendering error) keeps the row QUEUED
            # with its next attempt time.
            batch.outcome.counts += _transition(
                run_id=run.pk, changes=decided_changes, expected=DeliveryStatus.QUEUED
            )
            if retry:
                retry_rows = [r for r in candidates.values() if r.pk in retry]
                postponed = sum(1 for r in retry_rows if r.pk in deferred_pks)
                batch.outcome.deferred += postponed
                batch.outcome.retried += len(retry_rows) - postponed
                batch.followup(
                    [r.key for r in retry_rows],
                    max(decided_changes[r.pk].next_attempt_at for r in retry_rows),
                )
        _deliver_chunks(batch, sender, ready)


def _deliver_chunks(
    batch: _Batch, sender: BatchSender, ready: list[tuple[_Row, PreparedDelivery]]
) -> None:
    run = batch.run
    size = send_chunk_size()
    position = 0
    while position < len(ready):
        chunk = ready[position : position + size]
        position += len(chunk)
        chunk, held, wait = _rate_limited(chunk)
        if held:
            rest = held + ready[position:]
            batch.outcome.deferred += len(rest)
            batch.followup([row.key for row, _item in rest], timezone.now() + wait)
            position = len(ready)
        marked = _mark_sending(run.pk, [row.pk for row, _item in chunk])
        if len(marked) < len(chunk):
            status = CampaignRun.objects.values_list("status", flat=True).get(pk=run.pk)
            if status not in ACTIVE:
                unsent = [row for row, _item in chunk if row.pk not in marked]
                unsent += [row for row, _item in ready[position:]]
                _stopped(batch, status, batch.ids_for(row.key for row in unsent))
                position = len(ready)
        to_send = [(row, item) for row, item in chunk if row.pk in marked]
        if not to_send:
            continue
        results = sender.deliver([item for _row, item in to_send])
        changes: dict[int, _Pending] = {}
        retry_rows: list[_Row] = []
        for (row, _item), outcome in zip(to_send, results, strict=True):
            change = _change_for(outcome, attempts=marked[row.pk], expires_at=run.expires_at)
            changes[row.pk] = change
            if change.status == DeliveryStatus.QUEUED:
                retry_rows.append(row)
        batch.outcome.counts += _transition(
            run_id=run.pk, changes=changes, expected=DeliveryStatus.SENDING
        )
        if retry_rows:
            batch.outcome.retried += len(retry_rows)
            batch.followup(
                [row.key for row in retry_rows],
                max(changes[row.pk].next_attempt_at for row in retry_rows),
            )


def _rate_limited(
    chunk: list[tuple[_Row, PreparedDelivery]],
) -> tuple[list[tuple[_Row, PreparedDelivery]], list[tuple[_Row, PreparedDelivery]], dt.timedelta]:
    """Split a sub-chunk into what each channel's rate limit lets go now and what must wait."""
    per_channel = Counter(row.channel for row, _item in chunk)
    allowance: dict[str, int] = {}
    wait = 0.0
    for channel, count in per_channel.items():
        grant = rate_limit_take(channel=channel, count=count)
        allowance[channel] = grant.granted
        wait = max(wait, grant.retry_after)
    go, held = [], []
    for row, item in chunk:
        if allowance[row.channel] > 0:
            allowance[row.channel] -= 1
            go.append((row, item))
        else:
            held.append((row, item))
    return go, held, dt.timedelta(seconds=max(wait, 0.05))


def _stopped(batch: _Batch, status: str, ids: list[int]) -> BatchOutcome:
    """The run stopped being active. Paused: remember the batch so resume re-enqueues it
    (under the run lock, so a concurrent resume cannot miss it); resumed meanwhile: go on
    later with the same ids; cancelled or finished: nothing to do."""
    batch.outcome.stopped = str(status)
    if status == RunStatus.CANCELLED:
        # A retry recorded while the run was being cancelled may have put rows back to QUEUED.
        batch.outcome.counts += _skip_queued(batch.run.pk)
    if status != RunStatus.PAUSED or batch.batch_id is None:
        return batch.outcome
    with transaction.atomic():
        current = (
            CampaignRun.objects.select_for_update()
            .values_list("status", flat=True)
            .get(pk=batch.run.pk)
        )
        if current == RunStatus.PAUSED:
            RunBatch.objects.filter(pk=batch.batch_id).update(paused_at=timezone.now())
        elif current in ACTIVE and ids:
            _enqueue_batch(run_id=batch.run.pk, recipient_ids=ids, batch_id=batch.batch_id)
            batch.outcome.followups += 1
    return batch.outcome


# Pause, resume, cancel, resend ---------------------------------------------------------------


def _run_lock(*, run: CampaignRun, allowed: Iterable[str], error: str) -> CampaignRun:
    """Lock the run's row (inside the caller's transaction) and refuse it with ``error``
    unless its status is one of ``allowed``."""
    locked = CampaignRun.objects.select_for_update().select_related("campaign").get(pk=run.pk)
    if locked.status not in allowed:
        raise CampaignError(
            error.format(run=locked, status=locked.get_status_display()),
            {"run_id": locked.pk, "status": locked.status},
        )
    return locked


def run_pause(*, run: CampaignRun) -> CampaignRun:
    """Pause a resolving or running run: batches stop before their next sub-chunk."""
    with transaction.atomic():
        locked = _run_lock(run=run, allowed=ACTIVE, error=RUN_NOT_PAUSABLE)
        locked.status = RunStatus.PAUSED
        locked.save(update_fields=["status"])
    run.status = locked.status
    return run


def run_resume(*, run: CampaignRun) -> CampaignRun:
    """Resume a paused run: re-enqueue the batches that stopped (their QUEUED rows go out;
    nothing already sent is sent again) and continue resolving if it was not finished."""
    with transaction.atomic():
        locked = _run_lock(run=run, allowed=(RunStatus.PAUSED,), error=RUN_NOT_RESUMABLE)
        resolved = bool((locked.resolve_cursor or {}).get("done"))
        locked.status = RunStatus.RUNNING if resolved else RunStatus.RESOLVING
        locked.save(update_fields=["status"])
        paused = list(
            RunBatch.objects.filter(run=locked, paused_at__isnull=False).values_list(
                "pk", "recipient_ids"
            )
        )
        RunBatch.objects.filter(pk__in=[pk for pk, _ids in paused]).update(paused_at=None)
        for batch_pk, ids in paused:
            _enqueue_batch(run_id=locked.pk, recipient_ids=ids, batch_id=batch_pk)
        if not resolved:
            _enqueue_start(campaign_id=locked.campaign_id, due_at=locked.due_at)
    run.status = locked.status
    if resolved:
        run_complete_if_done(run_id=run.pk)
    return run


def run_cancel(*, run: CampaignRun) -> int:
    """Cancel a run: nothing more is sent (rows being sent right now finish); its QUEUED rows
    become SKIPPED with the reason. Returns how many rows were skipped."""
    with transaction.atomic():
        locked = _run_lock(run=run, allowed=UNFINISHED, error=RUN_NOT_CANCELLABLE)
        locked.status = RunStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
    run.status = locked.status
    # A second transaction, not holding the run row: a batch recording outcomes locks rows
    # first and the run row last, so holding both here could deadlock with it.
    return _skip_queued(run.pk)[DeliveryStatus.SKIPPED]


def _skip_queued(run_id: int) -> Counter:
    """QUEUED rows of a cancelled run -> SKIPPED (one UPDATE), counted on the run."""
    with transaction.atomic():
        skipped = Delivery.objects.filter(run_id=run_id, status=DeliveryStatus.QUEUED).update(
            status=DeliveryStatus.SKIPPED,
            reason=REASON_CANCELLED,
            next_attempt_at=None,
            updated_at=timezone.now(),
        )
        counts = Counter({DeliveryStatus.SKIPPED: skipped}) if skipped else Counter()
        _increment(run_id, counts)
    return counts


def run_resend_unknown(*, run: CampaignRun, user: Any) -> int:
    """Deliberately resend the deliveries left UNKNOWN by a crash (they may arrive twice).

    Needs ``campaigns.resend_unknown_campaign``. The rows go back to QUEUED and the run's
    batches are enqueued again; returns how many rows will be resent.
    """
    if not user.has_perm("campaigns.resend_unknown_campaign"):
        raise CampaignError(RESEND_FORBIDDEN, {"run_id": run.pk})
    with transaction.atomic():
        finished = set(RunStatus) - set(UNFINISHED)
        locked = _run_lock(run=run, allowed=finished, error=RESEND_RUN_ACTIVE)
        count = Delivery.objects.filter(run=locked, status=DeliveryStatus.UNKNOWN).update(
            status=DeliveryStatus.QUEUED,
            reason=REASON_RESENT.format(user=user),
            next_attempt_at=None,
            updated_at=timezone.now(),
        )
        if not count:
            return 0
        CampaignRun.objects.filter(pk=locked.pk).update(
            unknown=F("unknown") - count, status=RunStatus.RUNNING, finished_at=None
        )
        Campaign.objects.filter(
            pk=locked.campaign_id, status__in=(Campaign.Status.COMPLETED, Campaign.Status.SCHEDULED)
        ).update(status=Campaign.Status.RUNNING, updated_at=timezone.now())
        for batch_pk, ids in RunBatch.objects.filter(run=locked).values_list("pk", "recipient_ids"):
            _enqueue_batch(run_id=locked.pk, recipient_ids=ids, batch_id=batch_pk)
    log.info("%s resent %s unknown deliveries of run %s", user, count, run.pk)
    return count


def campaign_pause(*, campaign: Campaign) -> int:
    """Pause a campaign: its schedule stops firing and its active runs pause. Returns the
    number of runs paused."""
    if not campaign_transition_allowed(current=campaign.status, target=Campaign.Status.PAUSED):
        raise CampaignError(
            CAMPAIGN_NOT_PAUSABLE.format(name=campaign.name, status=campaign.get_status_display()),
            {"campaign_id": campaign.pk, "status": campaign.status},
        )
    with transaction.atomic():
        campaign_transition(campaign=campaign, to=Campaign.Status.PAUSED)
        campaign_schedules_set_enabled(campaigns=[campaign], enabled=False)
        runs = list(CampaignRun.objects.filter(campaign=campaign, status__in=ACTIVE))
        for run in runs:
            run_pause(run=run)
    return len(runs)


def campaign_resume(*, campaign: Campaign) -> int:
    """Resume a paused campaign: its paused runs go on, its schedule fires again. Returns the
    number of runs resumed."""
    if campaign.status != Campaign.Status.PAUSED:
        raise CampaignError(
            CAMPAIGN_NOT_RESUMABLE.format(name=campaign.name, status=campaign.get_status_display()),
            {"campaign_id": campaign.pk, "status": campaign.status},
        )
    with transaction.atomic():
        runs = list(CampaignRun.objects.filter(campaign=campaign, status=RunStatus.PAUSED))
        target = Campaign.Status.RUNNING if runs else Campaign.Status.SCHEDULED
        campaign_transition(campaign=campaign, to=target)
        campaign_schedules_set_enabled(campaigns=[campaign], enabled=True)
        for run in runs:
            run_resume(run=run)
    if not runs:
        _campaign_after_run(campaign_id=campaign.pk)
    return len(runs)


def campaign_cancel(*, campaign: Campaign) -> int:
    """Cancel a campaign: delete its schedule and cancel its unfinished runs. Returns the
    number of runs cancelled."""
    if not campaign_transition_allowed(current=campaign.status, target=Campaign.Status.CANCELLED):
        raise CampaignError(
            CAMPAIGN_NOT_CANCELLABLE.format(
                name=campaign.name, status=campaign.get_status_display()
            ),
            {"campaign_id": campaign.pk, "status": campaign.status},
        )
    with transaction.atomic():
        campaign_transition(campaign=campaign, to=Campaign.Status.CANCELLED)
        campaign_schedule_delete(campaign=campaign)
        runs = list(CampaignRun.objects.filter(campaign=campaign, status__in=UNFINISHED))
        CampaignRun.objects.filter(pk__in=[run.pk for run in runs]).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now()
        )
    for run in runs:  # after the commit: see run_cancel
        _skip_queued(run.pk)
    return len(runs)


def run_progress(*, run: CampaignRun, now: dt.datetime | None = None) -> dict[str, Any]:
    """A run's counters with derived progress: done, percent, sent per minute and an ETA."""
    now = now or timezone.now()
    counts = {field: getattr(run, field) for field in COUNTED.values()}
    done = sum(counts.values())
    end = run.finished_at or now
    elapsed = (end - run.started_at).total_seconds() if run.started_at else 0.0
    rate = done / elapsed * 60 if elapsed > 0 else 0.0
    remaining = max(run.total - done, 0)
    finished = run.status not in UNFINISHED
    return {
        "id": run.pk,
        "due_at": run.due_at.isoformat(),
        "status": run.status,
        "status_label": str(run.get_status_display()),
        "total": run.total,
        **counts,
        "done": done,
        "percent": round(100.0 * done / run.total, 1)
        if run.total
        else (100.0 if finished else 0.0),
        "per_minute": round(rate, 1),
        "sent_per_minute": round(counts["sent"] / elapsed * 60, 1) if elapsed > 0 else 0.0,
        "eta_seconds": None if finished or rate <= 0 else round(remaining / (rate / 60)),
        "finished": finished,
    }
