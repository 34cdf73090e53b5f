"""Recovery: enqueue again the work of a run that stopped moving (a task the broker lost).

A run is stalled when nothing changed for ``CAMPAIGNS_STALLED_RUN_SECONDS`` although work is
due; the beat task runs every minute, so a lost batch is picked up within about three minutes
on any broker (a killed worker process's task comes back sooner: ``task_acks_late`` with
``task_reject_on_worker_lost`` give it straight back to the broker).

A row found in SENDING by a later attempt belongs to an attempt that died; the batch path marks
it UNKNOWN once its lease is over (never resent silently). What this module covers is a task
that never ran at all: one that failed on a bug or ran out of retries, a broker without
acknowledgements (the filesystem one), a flushed Redis. The beat task ``recover_stalled_runs``
(``manage.py setup_periodic_tasks``) calls :func:`runs_recover_stalled`.
"""

from __future__ import annotations

import datetime as dt
import logging

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from campaigns import conf
from campaigns.models import CampaignRun, Delivery, RunBatch
from campaigns.services import enqueue

log = logging.getLogger(__name__)


def run_recover(*, run: CampaignRun, quiet_since: dt.datetime | None = None) -> int:
    """Enqueue an active run's work again: its unpaused batches, and ``start_run`` if it is
    still resolving. Returns the number of tasks enqueued.

    Safe at any time: claims, terminal rows and SENDING leases make the duplicates harmless.
    With ``quiet_since``, does nothing if the run changed since then (it is making progress)
    or has nothing due: rows waiting for a retry at a later time are waiting on purpose, but
    they no longer hide a lost batch, a due row or a row left SENDING past its lease.
    """
    if run.status not in CampaignRun.ACTIVE:
        return 0
    if quiet_since is not None and not _stalled(run, quiet_since):
        return 0
    enqueued = 0
    with transaction.atomic():
        if run.status == CampaignRun.Status.RESOLVING:
            enqueue.start_run(campaign_id=run.campaign_id, due_at=run.due_at)
            enqueued += 1
        for batch_pk, ids in RunBatch.objects.filter(run=run, paused_at__isnull=True).values_list(
            "pk", "recipient_ids"
        ):
            enqueue.deliver_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch_pk)
            enqueued += 1
    if enqueued:
        log.warning("Run %s made no progress; tasks enqueued again: %s", run.pk, enqueued)
    return enqueued


def _stalled(run: CampaignRun, quiet_since: dt.datetime) -> bool:
    """Nothing moved since ``quiet_since`` although something is due: a batch never claimed,
    a QUEUED row due, a SENDING row past its lease, or a resolution that stopped."""
    deliveries = Delivery.objects.filter(run=run)
    batches = RunBatch.objects.filter(run=run)
    resolving = run.status == CampaignRun.Status.RESOLVING
    if (
        deliveries.filter(updated_at__gte=quiet_since).exists()
        or batches.filter(claimed_at__gte=quiet_since).exists()
        or (resolving and batches.filter(created_at__gte=quiet_since).exists())
    ):
        return False
    now = timezone.now()
    due = Q(status=Delivery.Status.QUEUED) & (
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)
    )
    stale = Q(status=Delivery.Status.SENDING, updated_at__lte=now - conf.sending_lease())
    return (
        resolving
        or batches.filter(claimed_at__isnull=True, paused_at__isnull=True).exists()
        or deliveries.filter(due | stale).exists()
    )


def runs_recover_stalled(*, now: dt.datetime | None = None) -> dict[int, int]:
    """:func:`run_recover` every active run started over ``CAMPAIGNS_STALLED_RUN_SECONDS`` ago
    that changed nothing since then. Returns ``{run id: tasks enqueued}`` for those recovered."""
    quiet_since = (now or timezone.now()) - conf.stalled_after()
    recovered = {}
    for run in CampaignRun.objects.filter(
        status__in=CampaignRun.ACTIVE, started_at__lt=quiet_since
    ):
        count = run_recover(run=run, quiet_since=quiet_since)
        if count:
            recovered[run.pk] = count
    return recovered
