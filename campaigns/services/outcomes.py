"""Outcomes: write what a batch learned about its deliveries, even through a database outage.

A batch holds outcomes it cannot get again (the SMTP server's answers), so writing them must
not fail on a database blip: the write is retried on a fresh connection, and if the database
is still away the outcomes travel through the broker as a ``record_outcomes`` task.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter

from django.db import InterfaceError, OperationalError, connection

from campaigns.models import Delivery
from campaigns.querysets import DeliveryChange
from campaigns.services import enqueue

log = logging.getLogger(__name__)

#: Database errors a batch rides out while it records outcomes it already has, and the waits
#: between its attempts (about 15 s in all; then the broker carries the outcomes).
DATABASE_ERRORS = (OperationalError, InterfaceError)
RECORD_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)


def outcomes_record(
    *,
    run_id: int,
    changes: dict[int, DeliveryChange],
    expected: str,
    attempts: dict[int, int] | None = None,
    hand_to_broker: bool = True,
) -> Counter:
    """Record outcomes the worker already has, riding out a database outage: the write is
    retried on a fresh connection (``RECORD_RETRY_DELAYS``); if the database is still away,
    the outcomes go to the broker as a ``record_outcomes`` task that keeps retrying
    (``hand_to_broker``; that task itself passes False), and the error is raised. Rows a
    later attempt marked UNKNOWN meanwhile still take the outcome (``attempts``), so an
    accepted message is never left to be resent."""
    for delay in (*RECORD_RETRY_DELAYS, None):
        try:
            return Delivery.objects.record(
                run_id=run_id, changes=changes, expected=expected, attempts=attempts
            )
        except DATABASE_ERRORS as error:
            if delay is None or connection.in_atomic_block:
                if not hand_to_broker:
                    raise
                enqueue.record_outcomes(
                    run_id=run_id,
                    changes=outcomes_to_json(changes),
                    expected=expected,
                    attempts=attempts,
                )
                raise
            log.warning(
                "Recording %s outcomes of run %s failed (%s); again in %s s",
                len(changes),
                run_id,
                error,
                delay,
            )
            connection.close()  # a broken connection is not reused
            time.sleep(delay)
    raise AssertionError("unreachable")


def outcomes_to_json(changes: dict[int, DeliveryChange]) -> dict[str, list]:
    """Outcomes as the ``record_outcomes`` task carries them."""
    return {
        str(pk): [
            c.status,
            c.reason,
            c.exception_type,
            c.next_attempt_at.isoformat() if c.next_attempt_at else None,
        ]
        for pk, c in changes.items()
    }


def outcomes_from_json(data: dict[str, list]) -> dict[int, DeliveryChange]:
    """The inverse of :func:`outcomes_to_json`."""
    return {
        int(pk): DeliveryChange(
            status, reason, exception_type, dt.datetime.fromisoformat(at) if at else None
        )
        for pk, (status, reason, exception_type, at) in data.items()
    }
