"""Batches: deliver one batch of a run, each (recipient, channel) at most once.

:func:`batch_deliver` (task ``deliver_batch``) reads top to bottom:

1. **claim**: the first attempt claims the batch and inserts its ``(run, recipient_key,
   channel)`` rows (``ON CONFLICT DO NOTHING``); any attempt reads back those due now;
2. **build**: one message per recipient (``campaigns.messages``), policies prefetched once
   and templates rendered once per language (``ace.batch.BatchSender.prepare``); outcomes
   decided before sending (denied, expired, postponed) are recorded;
3. **send**: per sub-chunk, rows move QUEUED -> SENDING in one ``UPDATE ... RETURNING`` that
   also checks that the run is still active (pause and cancel take effect here), then go out
   over one open connection per channel;
4. **record**: outcomes and the run's counters in one transaction; retries re-enqueued with
   an ``eta`` (``campaigns.services.retries``).

Nothing is ever sent for a row this attempt did not move to SENDING itself. A row found in
SENDING past its lease belongs to an attempt that died: it becomes UNKNOWN, never resent
silently (``campaigns.services.controls.run_resend_unknown`` resends on request). Every
message carries its rows as its ``BatchSender`` tag, so results need no matching by key.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from ace.batch import BatchSender, PreparedDelivery
from ace.channel import ChannelType
from ace.message import Message
from ace.outcome import DeliveryOutcome
from campaigns import conf
from campaigns.exceptions import CampaignError
from campaigns.messages import campaign_message_builder
from campaigns.models import CampaignRun, Delivery, RunBatch
from campaigns.querysets import DeliveryChange, DeliveryRow, NewDelivery
from campaigns.resolvers import ResolvedRecipient, resolver_class
from campaigns.services import enqueue
from campaigns.services.controls import run_cancel_queued
from campaigns.services.outcomes import outcomes_record
from campaigns.services.policies import policies_prefetched
from campaigns.services.ratelimit import rate_limit_take
from campaigns.services.retries import DUE_SLACK, delivery_change
from campaigns.services.runs import RESOLVER_FAILED, run_complete_if_done, run_fail

RunStatus = CampaignRun.Status
DeliveryStatus = Delivery.Status

REASON_PREVIOUS_RUN = "Received an earlier run of this campaign."
REASON_NO_CHANNEL = "No enabled channel can deliver this channel type."
REASON_INTERRUPTED = (
    "The worker was lost while sending; the message may or may not have been delivered."
)

#: A recipient's due rows by channel value: the tag its message carries through BatchSender.
RowsByChannel = dict[str, DeliveryRow]


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
        away than ``conf.max_task_delay()`` (the rows' ``next_attempt_at`` keeps the real
        time; an early task finds them not due and hops again)."""
        ids = self.ids_for(keys)
        if ids:
            if eta is not None:
                eta = min(eta, timezone.now() + conf.max_task_delay())
            enqueue.deliver_batch(
                run_id=self.run.pk, recipient_ids=ids, batch_id=self.batch_id, eta=eta
            )
            self.outcome.followups += 1

    def record(
        self,
        changes: dict[int, DeliveryChange],
        rows: dict[int, DeliveryRow],
        *,
        expected: str,
        deferred: set[int] | frozenset[int] = frozenset(),
        attempts: dict[int, int] | None = None,
    ) -> None:
        """Record new row states (those still ``expected``) and follow up on the retries."""
        self.outcome.counts += outcomes_record(
            run_id=self.run.pk, changes=changes, expected=expected, attempts=attempts
        )
        retry = [
            rows[pk] for pk, change in changes.items() if change.status == DeliveryStatus.QUEUED
        ]
        if retry:
            postponed = sum(1 for row in retry if row.pk in deferred)
            self.outcome.deferred += postponed
            self.outcome.retried += len(retry) - postponed
            self.followup(
                [row.key for row in retry], max(changes[row.pk].next_attempt_at for row in retry)
            )


def batch_deliver(
    *, run: CampaignRun, recipient_ids: Sequence[int], batch_id: int | None = None
) -> BatchOutcome:
    """Deliver one batch of a run: each (recipient, channel) at most once, whatever repeats.

    Safe to call again with the same arguments (redelivery, duplicates, resume): claimed rows
    are never re-inserted, terminal rows are skipped, rows left in SENDING by a dead attempt
    become UNKNOWN after their lease, and only rows this call moved to SENDING are sent.
    """
    batch = _Batch(run, recipient_ids, batch_id)
    if run.status not in CampaignRun.ACTIVE:
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

    rows = _claim(batch) if batch_id is not None else None
    if rows is None:
        rows = Delivery.objects.filter(run=run, recipient_key__in=list(batch.recipients)).rows()
    due = _due_rows(batch, rows)
    if due:
        try:
            _send(batch, due)
        except CampaignError as exc:  # the message type cannot be built (bad code path)
            run_fail(run=run, error=exc.message)
            batch.outcome.stopped = RunStatus.FAILED
            return batch.outcome
    run_complete_if_done(run_id=run.pk, campaign_id=run.campaign_id)
    return batch.outcome


# 1. Claim -------------------------------------------------------------------------------


def _claim(batch: _Batch) -> list[DeliveryRow] | None:
    """Claim the batch (once) and insert its delivery rows; None if it was claimed before.

    In the same transaction the run's total is corrected for ids that no longer resolve or
    share a key with another id (``start_run`` counted every id), and rows skipped because an
    earlier run already reached the recipient are counted.
    """
    run, channels, recipients = batch.run, batch.channels, batch.recipients
    now = timezone.now()
    with transaction.atomic():
        # No lock on the run: if it is cancelled meanwhile, these QUEUED rows are never marked
        # SENDING (that UPDATE checks the run) and the batch stopping sweeps them to CANCELLED.
        if not RunBatch.objects.filter(pk=batch.batch_id, run=run, claimed_at__isnull=True).update(
            claimed_at=now
        ):
            return None
        previous: set[tuple[str, str]] = set()
        if batch.campaign.exclude_previous_recipients:
            previous = Delivery.objects.sent_before(
                run=run, keys=list(recipients), channels=channels
            )
        new = []
        for key, recipient in recipients.items():
            message_uuid = uuid.uuid4()
            for channel in channels:
                skip = (key, channel) in previous
                new.append(
                    NewDelivery(
                        recipient_key=key,
                        user_id=recipient.user_id,
                        email=(recipient.email or "")[:254],
                        channel=channel,
                        status=(DeliveryStatus.SKIPPED if skip else DeliveryStatus.QUEUED).value,
                        reason=REASON_PREVIOUS_RUN if skip else "",
                        message_uuid=message_uuid,
                    )
                )
        inserted = Delivery.objects.insert_new(run=run, new=new, now=now)
        rows = inserted
        if len(inserted) != len(new):  # some existed already: read them all back
            rows = Delivery.objects.filter(run=run, recipient_key__in=list(recipients)).rows()
        skipped = sum(1 for row in inserted if row.status == DeliveryStatus.SKIPPED)
        deficit = len(batch.recipient_ids) * len(channels) - len(inserted)
        if deficit or skipped:
            CampaignRun.objects.filter(pk=run.pk).update(
                total=F("total") - deficit, skipped=F("skipped") + skipped
            )
    return rows


def _due_rows(batch: _Batch, rows: list[DeliveryRow]) -> dict[str, RowsByChannel]:
    """Due QUEUED rows by recipient key; stale SENDING rows -> UNKNOWN; the rest checked later."""
    now = timezone.now()
    lease = conf.sending_lease()
    due: dict[str, RowsByChannel] = {}
    stale: dict[int, DeliveryChange] = {}
    later: set[str] = set()
    later_at: dt.datetime | None = None
    for row in rows:
        if row.channel not in batch.channels:
            continue
        if row.status == DeliveryStatus.QUEUED:
            if row.next_attempt_at is None or row.next_attempt_at <= now + DUE_SLACK:
                due.setdefault(row.key, {})[row.channel] = row
                continue
            check_at = row.next_attempt_at
        elif row.status == DeliveryStatus.SENDING:
            if row.updated_at + lease <= now:
                stale[row.pk] = DeliveryChange(DeliveryStatus.UNKNOWN, REASON_INTERRUPTED)
                continue
            check_at = row.updated_at + lease + DUE_SLACK  # another attempt may still be alive
        else:
            continue
        later.add(row.key)
        later_at = check_at if later_at is None else max(later_at, check_at)
    if stale:
        batch.record(stale, {}, expected=DeliveryStatus.SENDING)
    if later:
        # Normally a task is already scheduled for these; enqueueing again keeps the run
        # live if that one was lost (a crash between commit and enqueue). Duplicates are
        # harmless: only the attempt that moves a row to SENDING sends it.
        batch.followup(later, later_at)
    return due


# 2. Build -------------------------------------------------------------------------------


def _messages(batch: _Batch, due: dict[str, RowsByChannel]) -> list[Message]:
    """One message per recipient with due rows (its rows' message uuid)."""
    builder = campaign_message_builder(campaign=batch.campaign, run=batch.run)
    return [
        builder.build(batch.recipients[key], message_uuid=next(iter(rows.values())).message_uuid)
        for key, rows in due.items()
    ]


def _row_of(result: PreparedDelivery | DeliveryOutcome) -> DeliveryRow | None:
    """The delivery row an item or outcome stands for (its message's tag, by channel)."""
    return result.tag.get(result.channel_type.value)


def _send(batch: _Batch, due: dict[str, RowsByChannel]) -> None:
    """Build and prepare the whole batch, record what was decided, then send and record."""
    messages = _messages(batch, due)
    with BatchSender(limit_to_channels=[ChannelType(c) for c in batch.channels]) as sender:
        with policies_prefetched(messages):
            prepared, decided = sender.prepare(messages, tags=list(due.values()))
        rows = {row.pk: row for rows in due.values() for row in rows.values()}
        answered: set[int] = set()
        changes: dict[int, DeliveryChange] = {}
        deferred: set[int] = set()
        for outcome in decided:
            row = _row_of(outcome)
            if row is None:
                continue
            answered.add(row.pk)
            changes[row.pk] = delivery_change(
                outcome, attempts=row.attempts + 1, expires_at=batch.run.expires_at
            )
            if outcome.deferred:
                deferred.add(row.pk)
        ready: list[tuple[DeliveryRow, PreparedDelivery]] = []
        for item in prepared:
            row = _row_of(item)
            if row is not None:
                answered.add(row.pk)
                ready.append((row, item))
        for pk in rows.keys() - answered:  # no enabled channel of that type
            changes[pk] = DeliveryChange(DeliveryStatus.SKIPPED, REASON_NO_CHANNEL)
        if changes:
            # Outcomes decided before sending (denied, expired, ...) are final; a RETRY here
            # (a policy's deferral, or a recoverable rendering error) keeps the row QUEUED
            # with its next attempt time.
            batch.record(changes, rows, expected=DeliveryStatus.QUEUED, deferred=deferred)
        _deliver_chunks(batch, sender, ready)


# 3. Send and 4. record --------------------------------------------------------------------


def _deliver_chunks(
    batch: _Batch, sender: BatchSender, ready: list[tuple[DeliveryRow, PreparedDelivery]]
) -> None:
    run = batch.run
    size = conf.send_chunk_size()
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
        marked = Delivery.objects.mark_sending(run_id=run.pk, pks=[row.pk for row, _item in chunk])
        if len(marked) < len(chunk):
            status = CampaignRun.objects.values_list("status", flat=True).get(pk=run.pk)
            if status not in CampaignRun.ACTIVE:
                unsent = [row for row, _item in chunk if row.pk not in marked]
                unsent += [row for row, _item in ready[position:]]
                _stopped(batch, status, batch.ids_for(row.key for row in unsent))
                position = len(ready)
        to_send = [(row, item) for row, item in chunk if row.pk in marked]
        if not to_send:
            continue
        results = sender.deliver([item for _row, item in to_send])
        changes = {
            row.pk: delivery_change(outcome, attempts=marked[row.pk], expires_at=run.expires_at)
            for (row, _item), outcome in zip(to_send, results, strict=True)
        }
        batch.record(
            changes, {row.pk: row for row, _item in to_send}, expected=DeliveryStatus.SENDING
        )


def _rate_limited(
    chunk: list[tuple[DeliveryRow, PreparedDelivery]],
) -> tuple[
    list[tuple[DeliveryRow, PreparedDelivery]],
    list[tuple[DeliveryRow, PreparedDelivery]],
    dt.timedelta,
]:
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
        batch.outcome.counts += run_cancel_queued(run_id=batch.run.pk)
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
        elif current in CampaignRun.ACTIVE and ids:
            enqueue.deliver_batch(run_id=batch.run.pk, recipient_ids=ids, batch_id=batch.batch_id)
            batch.outcome.followups += 1
    return batch.outcome
