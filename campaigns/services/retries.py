"""Retries: when a delivery that did not go out is tried again, or expires instead.

A recoverable error puts the row back to QUEUED with ``next_attempt_at`` (exponential backoff
with jitter, from the channel's hint, bounded by the run's expiry); the batch re-enqueues just
those recipients with an ``eta``. No worker sleeps. A policy that postpones a message (quiet
hours: ACE's RETRY outcome with ``deferred``) keeps the policy's own time and counts no
attempt. A task never waits on the broker longer than ``conf.max_task_delay()``: a later time is
reached by hops, each finding the row not yet due.
"""

from __future__ import annotations

import datetime as dt
import random

from django.utils import timezone

from ace.outcome import DeliveryOutcome, OutcomeStatus, expiry_reason, would_expire
from campaigns import conf
from campaigns.models import Delivery
from campaigns.querysets import DeliveryChange

DeliveryStatus = Delivery.Status

#: A QUEUED row whose next attempt is at most this far away is sent now.
DUE_SLACK = dt.timedelta(seconds=1)

#: The delivery status an ACE outcome ends in (RETRY is decided by :func:`delivery_change`).
OUTCOME_STATUS = {
    OutcomeStatus.SENT: DeliveryStatus.SENT,
    OutcomeStatus.DENIED: DeliveryStatus.DENIED,
    OutcomeStatus.FAILED: DeliveryStatus.FAILED,
    OutcomeStatus.EXPIRED: DeliveryStatus.EXPIRED,
    OutcomeStatus.NO_ADDRESS: DeliveryStatus.SKIPPED,
    OutcomeStatus.UNKNOWN: DeliveryStatus.UNKNOWN,
}


def retry_delay(*, attempts: int, hint: dt.timedelta | None = None) -> dt.timedelta:
    """Exponential backoff with jitter: the channel's suggested delay (or
    ``CAMPAIGNS_RETRY_BACKOFF_SECONDS``) doubled per earlier attempt, plus up to 25 % jitter,
    capped at ``CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS``."""
    base = (hint or conf.retry_backoff()).total_seconds()
    cap = conf.max_task_delay().total_seconds()
    delay = min(cap, max(base, 0.0) * 2 ** max(attempts - 1, 0))
    return dt.timedelta(seconds=delay * (1 + random.uniform(0, 0.25)))


def delivery_change(
    outcome: DeliveryOutcome, *, attempts: int, expires_at: dt.datetime | None
) -> DeliveryChange:
    """The new state of a row from an ACE outcome (RETRY -> QUEUED later, or EXPIRED)."""
    if outcome.status is not OutcomeStatus.RETRY:
        return DeliveryChange(
            OUTCOME_STATUS[outcome.status], outcome.reason, outcome.exception_type
        )
    now = timezone.now()
    if outcome.deferred and outcome.next_attempt_time is not None:
        next_at = max(outcome.next_attempt_time, now + DUE_SLACK)
    else:
        hint = outcome.next_attempt_time - now if outcome.next_attempt_time else None
        next_at = now + retry_delay(attempts=attempts, hint=hint)
    if would_expire(expires_at, next_at):
        return DeliveryChange(
            DeliveryStatus.EXPIRED,
            expiry_reason(outcome.reason, at=next_at),
            outcome.exception_type,
        )
    return DeliveryChange(DeliveryStatus.QUEUED, outcome.reason, outcome.exception_type, next_at)
