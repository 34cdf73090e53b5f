"""Runs: start one for a due time, stream its audience into batches, finish it.

:func:`run_start` (task ``start_run``) creates the run for ``(campaign, due_at)`` under a lock
on the campaign row and the unique ``(campaign, due_at)`` constraint, then streams recipient
ids from the resolver in keyset-paginated chunks. Each chunk becomes a :class:`RunBatch` and a
``deliver_batch`` task (ids only, enqueued after commit); ``resolve_cursor`` is saved with it,
so a restarted ``start_run`` continues where it stopped. A run is COMPLETED when its
resolution is done, every batch is claimed and every delivery is terminal
(:func:`run_complete_if_done`, one conditional UPDATE after each batch).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from campaigns import conf
from campaigns.messages import campaign_expires_at
from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.resolvers import resolver_for_source
from campaigns.services import enqueue
from campaigns.services.approvals import campaign_withdraw_outdated_approval
from campaigns.services.campaigns import campaign_approval_current, campaign_transition
from campaigns.services.schedules import RECURRING, schedule_due_at

log = logging.getLogger(__name__)

RunStatus = CampaignRun.Status

RUN_REFUSED = "Campaign {name!r} is {status}; runs start only for scheduled or running campaigns."
RESOLVER_FAILED = "The audience cannot be resolved: {error}"
RUN_NOT_APPROVED = (
    "Campaign {name!r} changed since it was approved (its content digest no longer matches);"
    " no run starts until it is approved again."
)


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
            if not campaign_approval_current(campaign=campaign):
                # Changed behind the approval (a template, the audience): nothing is sent, and
                # a scheduled campaign goes back to draft so beat stops firing it.
                log.warning(RUN_NOT_APPROVED.format(name=campaign.name))
                campaign_withdraw_outdated_approval(campaign=campaign)
                return None
            now = timezone.now()
            run = CampaignRun.objects.create(
                campaign=campaign,
                due_at=due_at,
                status=RunStatus.RESOLVING,
                started_at=now,
                expires_at=campaign_expires_at(campaign=campaign, start=now),
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
                enqueue.deliver_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch_pk)
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
    size = conf.batch_size()
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
            enqueue.deliver_batch(run_id=run.pk, recipient_ids=ids, batch_id=batch.pk)
    run_complete_if_done(run_id=run.pk)


def run_fail(*, run: CampaignRun, error: str) -> None:
    """Mark a run FAILED (e.g. its audience can no longer be resolved)."""
    log.error("Run %s failed: %s", run.pk, error)
    CampaignRun.objects.filter(pk=run.pk, status__in=CampaignRun.UNFINISHED).update(
        status=RunStatus.FAILED, error=error, finished_at=timezone.now()
    )
    campaign_after_run(campaign_id=run.campaign_id)


def run_complete_if_done(*, run_id: int, campaign_id: int | None = None) -> bool:
    """COMPLETED if resolution is done, every batch claimed and every delivery terminal (safe
    to call from every batch at once); then the campaign moves on if nothing else runs."""
    done = CampaignRun.objects.complete_if_done(run_id=run_id)
    if done:
        if campaign_id is None:
            campaign_id = CampaignRun.objects.values_list("campaign_id", flat=True).get(pk=run_id)
        campaign_after_run(campaign_id=campaign_id)
    return done


def campaign_after_run(*, campaign_id: int) -> None:
    """A running campaign with no unfinished run left: back to SCHEDULED if it recurs, else
    COMPLETED."""
    if CampaignRun.objects.filter(
        campaign_id=campaign_id, status__in=CampaignRun.UNFINISHED
    ).exists():
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


def run_progress(*, run: CampaignRun, now: dt.datetime | None = None) -> dict[str, Any]:
    """A run's counters with derived progress: done, percent, sent per minute and an ETA."""
    now = now or timezone.now()
    counts = {str(status): getattr(run, str(status)) for status in Delivery.TERMINAL}
    done = sum(counts.values())
    end = run.finished_at or now
    elapsed = (end - run.started_at).total_seconds() if run.started_at else 0.0
    rate = done / elapsed * 60 if elapsed > 0 else 0.0
    remaining = max(run.total - done, 0)
    finished = run.status not in CampaignRun.UNFINISHED
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
