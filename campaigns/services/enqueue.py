"""The one place services put work on the queue: ``start_run`` and ``deliver_batch`` tasks.

Tasks are named, not imported (``campaigns.tasks`` imports the services, so importing it back
would make a cycle); ``CampaignsConfig.ready`` imports ``campaigns.tasks`` so the names are
registered in every process. Everything is enqueued after the current transaction commits,
so a task never runs before the rows it reads exist.
"""

from __future__ import annotations

import datetime as dt
import logging

from celery import current_app
from django.db import transaction
from django.utils import timezone

log = logging.getLogger(__name__)

START_RUN = "campaigns.tasks.start_run"
DELIVER_BATCH = "campaigns.tasks.deliver_batch"
RECORD_OUTCOMES = "campaigns.tasks.record_outcomes"


def deliver_batch(
    *, run_id: int, recipient_ids: list[int], batch_id: int | None, eta: dt.datetime | None = None
) -> None:
    """Enqueue ``deliver_batch`` for these recipients of a run, at ``eta`` or now."""
    if eta is not None and current_app.conf.task_always_eager and eta > timezone.now():
        # Eager mode (tests, shell) runs a task at once and cannot wait for an eta; the rows
        # stay QUEUED with their next_attempt_at for a real worker to pick up.
        log.warning("Eager Celery: not re-running run %s batch %s before %s", run_id, batch_id, eta)
        return
    kwargs = {"run_id": run_id, "recipient_ids": list(recipient_ids), "batch_id": batch_id}
    task = current_app.tasks[DELIVER_BATCH]
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs, eta=eta))


def start_run(*, campaign_id: int, due_at: dt.datetime) -> None:
    """Enqueue ``start_run`` for the run of ``campaign_id`` due at ``due_at``."""
    kwargs = {"campaign_id": campaign_id, "due_at": due_at.isoformat()}
    task = current_app.tasks[START_RUN]
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs))


def record_outcomes(
    *, run_id: int, changes: dict[str, list], expected: str, attempts: dict[int, int] | None
) -> None:
    """Hand outcomes the database would not take to the broker, at once (not after a commit:
    the database is what failed)."""
    kwargs = {
        "run_id": run_id,
        "changes": changes,
        "expected": expected,
        "attempts": {str(pk): n for pk, n in (attempts or {}).items()},
    }
    current_app.tasks[RECORD_OUTCOMES].apply_async(kwargs=kwargs, countdown=5)
