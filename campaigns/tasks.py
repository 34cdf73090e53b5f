"""Celery tasks of the campaigns app: thin wrappers (ids in, one service call).

``start_run`` is what django-celery-beat fires for a scheduled campaign; it fans a run out into
``deliver_batch`` tasks. Delivery retries are not Celery retries: the service re-enqueues just
the recipients to retry with an ``eta``. Celery's own retry is kept for a short, named list of
transient infrastructure errors (database or Redis connection trouble), never for everything.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils.dateparse import parse_datetime
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from campaigns.models import CampaignRun
from campaigns.services.batches import batch_deliver
from campaigns.services.outcomes import outcomes_from_json, outcomes_record
from campaigns.services.recovery import runs_recover_stalled
from campaigns.services.runs import run_complete_if_done, run_start

logger = get_task_logger(__name__)

#: Errors worth retrying the whole task for: the database or Redis (rate limits) went away
#: for a moment. Anything else is a bug and should fail loudly.
KNOWN_RETRY_ERRORS = (OperationalError, InterfaceError, RedisConnectionError, RedisTimeoutError)
BAD_DUE_AT = "start_run: due_at {value!r} is not an ISO 8601 date and time"
#: Soft and hard time limits of each task (seconds; config/settings/base.py): SoftTimeLimitExceeded
#: is raised in the task at the first, the worker process is killed at the second. A
#: deliver_batch of CAMPAIGNS_BATCH_SIZE (500) recipients takes seconds; a template edited in
#: the admin fails its message after CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS and then fails the
#: batch's other messages at once (campaigns.sandbox), so a bad template can't use the limit up.
TIME_LIMITS = {
    "soft_time_limit": getattr(settings, "CELERY_TASK_SOFT_TIME_LIMIT", 300),
    "time_limit": getattr(settings, "CELERY_TASK_TIME_LIMIT", 360),
}


@shared_task(
    name="campaigns.tasks.start_run",
    **TIME_LIMITS,
    autoretry_for=KNOWN_RETRY_ERRORS,
    retry_backoff=True,
    max_retries=5,
)
def start_run(campaign_id: int, due_at: str | None = None) -> int | None:
    """Start (or continue) the run of a campaign for a due time; returns the run id.

    Beat calls it with the campaign id only: the due time is then the schedule's current tick.
    """
    due = None
    if due_at:
        due = parse_datetime(due_at)
        if due is None:
            raise ValueError(BAD_DUE_AT.format(value=due_at))
    run = run_start(campaign_id=campaign_id, due_at=due)
    return run.pk if run is not None else None


@shared_task(
    name="campaigns.tasks.deliver_batch",
    **TIME_LIMITS,
    autoretry_for=KNOWN_RETRY_ERRORS,
    retry_backoff=True,
    max_retries=5,
)
def deliver_batch(
    run_id: int, recipient_ids: list[int], batch_id: int | None = None
) -> dict[str, Any]:
    """Deliver one batch of a run (see ``campaigns.services.batches.batch_deliver``)."""
    run = (
        CampaignRun.objects.select_related("campaign__message_type", "campaign__recipient_source")
        .filter(pk=run_id)
        .first()
    )
    if run is None:
        logger.warning("deliver_batch: run %s no longer exists", run_id)
        return {}
    return batch_deliver(run=run, recipient_ids=recipient_ids, batch_id=batch_id).as_dict()


@shared_task(name="campaigns.tasks.recover_stalled_runs", **TIME_LIMITS)
def recover_stalled_runs() -> dict[str, int]:
    """Beat task (``setup_periodic_tasks``): re-enqueue the work of runs that stopped moving."""
    return {str(run_id): count for run_id, count in runs_recover_stalled().items()}


@shared_task(
    name="campaigns.tasks.record_outcomes",
    **TIME_LIMITS,
    autoretry_for=KNOWN_RETRY_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    max_retries=100,
)
def record_outcomes(
    run_id: int, changes: dict[str, list], expected: str, attempts: dict[str, int]
) -> dict[str, int]:
    """Record delivery outcomes a batch could not write while the database was away."""
    counts = outcomes_record(
        run_id=run_id,
        changes=outcomes_from_json(changes),
        expected=expected,
        attempts={int(pk): n for pk, n in attempts.items()},
        hand_to_broker=False,
    )
    run_complete_if_done(run_id=run_id)
    return dict(counts)


# Delivery feedback (campaigns/feedback) --------------------------------------------------------
from campaigns.feedback.mailbox import mailbox_poll  # noqa: E402


@shared_task(name="campaigns.tasks.poll_bounce_mailbox", autoretry_for=(), max_retries=0)
def poll_bounce_mailbox() -> dict[str, Any]:
    """Beat task (``setup_periodic_tasks``): read the bounce mailbox
    (``CAMPAIGNS_BOUNCE_IMAP_URL``) once; does nothing when it is not set. An unreachable
    mailbox fails the task (logged); the next poll tries again and nothing is lost."""
    return mailbox_poll().as_dict()


# Recipient list imports -------------------------------------------------------------------------


@shared_task(
    name="campaigns.tasks.import_recipient_list",
    # A big import runs longer than the default limits of the sending tasks; a redelivered
    # task finds its job finished, or starts it again (the import is one transaction).
    soft_time_limit=3600,
    time_limit=3660,
)
def import_recipient_list(job_id: str) -> dict[str, Any]:
    """Import a recipient list file too big for a web request (``campaigns.services.imports``)."""
    from campaigns.services.imports import job_run

    job = job_run(job_id=job_id)
    if job is None:
        logger.warning("import_recipient_list: job %s no longer exists", job_id)
        return {}
    return {"status": job.status, "imported": job.imported, "errors": job.error_count}
