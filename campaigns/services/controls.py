"""Operator controls of runs and campaigns: pause, resume, cancel, resend unknown deliveries.

Each run control locks the run row and checks its status first (:func:`_run_lock`), so two
operators, or an operator and a finishing batch, cannot interleave. Batches see a pause or a
cancel between sub-chunks, when they try to mark rows SENDING (the UPDATE checks the run).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.services import enqueue
from campaigns.services.campaigns import campaign_transition, campaign_transition_allowed
from campaigns.services.runs import campaign_after_run, run_complete_if_done
from campaigns.services.schedules import campaign_schedule_delete, campaign_schedules_set_enabled

log = logging.getLogger(__name__)

RunStatus = CampaignRun.Status
DeliveryStatus = Delivery.Status

RUN_NOT_PAUSABLE = "Run {run} is {status}; only resolving or running runs can be paused."
RUN_NOT_RESUMABLE = "Run {run} is {status}; only paused runs can be resumed."
RUN_NOT_CANCELLABLE = "Run {run} is already {status}."
RESEND_FORBIDDEN = "You don't have permission to resend unknown deliveries."
RESEND_RUN_ACTIVE = "Run {run} is {status}; resend unknown deliveries once it is finished."
CAMPAIGN_NOT_PAUSABLE = "Campaign {name!r} is {status}; only scheduled or running ones can pause."
CAMPAIGN_NOT_RESUMABLE = "Campaign {name!r} is {status}; only paused campaigns can be resumed."
CAMPAIGN_NOT_CANCELLABLE = "Campaign {name!r} is already {status}."

REASON_CANCELLED = "The run was cancelled before this delivery was sent."
REASON_RESENT = "Resent by {user} after an unknown outcome."


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
        locked = _run_lock(run=run, allowed=CampaignRun.ACTIVE, error=RUN_NOT_PAUSABLE)
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
            enqueue.deliver_batch(run_id=locked.pk, recipient_ids=ids, batch_id=batch_pk)
        if not resolved:
            enqueue.start_run(campaign_id=locked.campaign_id, due_at=locked.due_at)
    run.status = locked.status
    if resolved:
        run_complete_if_done(run_id=run.pk)
    return run


def run_cancel(*, run: CampaignRun) -> int:
    """Cancel a run: nothing more is sent (rows being sent right now finish); its QUEUED rows
    and the recipients of batches not claimed yet are counted CANCELLED, so its columns add
    up to its total. Returns how many deliveries were cancelled."""
    with transaction.atomic():
        locked = _run_lock(run=run, allowed=CampaignRun.UNFINISHED, error=RUN_NOT_CANCELLABLE)
        locked.status = RunStatus.CANCELLED
        locked.finished_at = timezone.now()
        locked.save(update_fields=["status", "finished_at"])
        unclaimed = _cancel_unclaimed_batches(locked)
    run.status = locked.status
    # A second transaction, not holding the run row: a batch recording outcomes locks rows
    # first and the run row last, so holding both here could deadlock with it.
    return unclaimed + run_cancel_queued(run_id=run.pk)[DeliveryStatus.CANCELLED]


def _cancel_unclaimed_batches(run: CampaignRun) -> int:
    """Claim the run's unclaimed batches for the cancel and count their deliveries CANCELLED
    (a batch that claims first keeps its rows, which the cancel then sweeps); returns that
    count. Inside the caller's transaction, with the run's status already CANCELLED."""
    channels = len(run.campaign.channels)
    unclaimed = RunBatch.objects.filter(run=run, claimed_at__isnull=True)
    count = sum(len(ids) * channels for ids in unclaimed.values_list("recipient_ids", flat=True))
    unclaimed.update(claimed_at=timezone.now(), paused_at=None)
    if count:
        CampaignRun.objects.filter(pk=run.pk).update(cancelled=F("cancelled") + count)
    return count


def run_cancel_queued(*, run_id: int) -> Counter:
    """The QUEUED rows of a cancelled run -> CANCELLED, counted on the run."""
    return Delivery.objects.cancel_queued(run_id=run_id, reason=REASON_CANCELLED)


def run_resend_unknown(*, run: CampaignRun, user: Any) -> int:
    """Deliberately resend the deliveries left UNKNOWN by a crash (they may arrive twice).

    Needs ``campaigns.resend_unknown_campaign``. The rows go back to QUEUED and the run's
    batches are enqueued again; returns how many rows will be resent.
    """
    if not user.has_perm("campaigns.resend_unknown_campaign"):
        raise CampaignError(RESEND_FORBIDDEN, {"run_id": run.pk})
    with transaction.atomic():
        finished = set(RunStatus) - set(CampaignRun.UNFINISHED)
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
            enqueue.deliver_batch(run_id=locked.pk, recipient_ids=ids, batch_id=batch_pk)
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
        runs = list(CampaignRun.objects.filter(campaign=campaign, status__in=CampaignRun.ACTIVE))
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
        campaign_after_run(campaign_id=campaign.pk)
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
        runs = list(
            CampaignRun.objects.select_for_update()
            .select_related("campaign")
            .filter(campaign=campaign, status__in=CampaignRun.UNFINISHED)
        )
        CampaignRun.objects.filter(pk__in=[run.pk for run in runs]).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now()
        )
        for run in runs:
            _cancel_unclaimed_batches(run)
    for run in runs:  # after the commit: see run_cancel
        run_cancel_queued(run_id=run.pk)
    return len(runs)
