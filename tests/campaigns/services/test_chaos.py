"""Chaos: a run sent through a faulty SMTP server while its worker is killed twice.

600 recipients, a real ``celery worker -P prefork -c 2`` on Redis, the PostgreSQL test database
and the fault-injecting SMTP server on loopback, which takes 30 ms to accept each message (so
a kill lands while messages are in flight), refuses some recipients for good (550 at RCPT,
554 after the content), answers 451 twice to others, drops the connection once at RCPT for a
few, and for a few more keeps the message and drops the connection instead of replying. The
worker is killed with SIGKILL twice during the run; a new worker is started after each kill.

Invariants 1, 2 and 8 of DESIGN.md are checked on the result: nothing received twice, no wrong
FAILED, every recipient terminal, the log true to what the server received, the run's columns
adding up to its total, and UNKNOWN only for what was really in flight at a kill (at most
``CAMPAIGNS_SEND_CHUNK_SIZE`` per worker process) or whose reply the server never sent.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest
from django.utils import timezone

from campaigns.models import CampaignRun, Delivery
from campaigns.services.batches import REASON_INTERRUPTED
from campaigns.tasks import start_run
from tests.campaigns.services.helpers import address, make_campaign, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

S = Delivery.Status
TERMINAL = set(Delivery.TERMINAL)

N = 600
CHUNK = 20  # CAMPAIGNS_SEND_CHUNK_SIZE: the most a killed worker process leaves in flight
PROCESSES = 2  # the Worker helper runs -c 2
# A killed worker's unacknowledged tasks come back after this (Redis); a batch that runs longer
# on a live worker is delivered again meanwhile, which the run must ride out too.
VISIBILITY = 5

REJECTED_AT_RCPT = {address(i) for i in range(7, N, 50)}  # 550 at RCPT: FAILED
REJECTED_AFTER_CONTENT = {address(i) for i in range(13, N, 50)}  # 554 after the content: FAILED
BUSY = {address(i) for i in range(21, N, 50)}  # 451 twice, then accepted: SENT on attempt 3
DROPPED = {address(i) for i in range(33, N, 75)}  # connection dropped at RCPT once: attempt 2
KEPT_THEN_DROPPED = {address(i) for i in range(47, N, 100)}  # kept, reply never sent: UNKNOWN
REJECTED = REJECTED_AT_RCPT | REJECTED_AFTER_CONTENT


def received(smtp_server) -> Counter:
    return Counter(rcpt.lower() for message in smtp_server.messages for rcpt in message.rcpt_tos)


def faulty(smtp_server) -> None:
    """Every fault of the scenario, on the server (rules by whole address, one per address)."""
    for email in REJECTED_AT_RCPT:
        smtp_server.reply(email, "550 5.1.1 No such user here")
    for email in REJECTED_AFTER_CONTENT:
        smtp_server.reply(email, "554 5.7.1 Message refused", stage="data")
    for email in BUSY:
        smtp_server.reply(email, "451 4.3.0 Mailbox busy, try later", times=2)
    for email in DROPPED:
        smtp_server.drop(email, times=1)
    for email in KEPT_THEN_DROPPED:
        smtp_server.drop_after_accepting(email, times=1)
    # Every other message: 30 ms between its content and the server's 250 (a token rule).
    smtp_server.delay("example.org", 0.03, stage="data")


def test_two_kill_9_and_a_faulty_server_lose_nothing_and_send_nothing_twice(
    worker_factory, smtp_server
):
    faulty(smtp_server)
    campaign = make_campaign(N)
    env = {"CAMPAIGNS_SEND_CHUNK_SIZE": str(CHUNK), "CELERY_VISIBILITY_TIMEOUT": str(VISIBILITY)}
    worker = worker_factory(**env)
    started = time.monotonic()
    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": timezone.now().isoformat()})

    in_flight: list[set[str]] = []  # per kill: the rows SENDING once the worker is dead
    at_kills: list[int] = []
    for threshold in (150, 350):
        wait_for(
            lambda t=threshold: len(smtp_server.messages) >= t,
            90,
            f"{threshold} messages received",
            every=0.01,
        )
        worker.kill()
        at_kills.append(len(smtp_server.messages))
        time.sleep(0.3)  # let PostgreSQL end the killed worker's sessions
        run = CampaignRun.objects.get(campaign=campaign)
        in_flight.append(
            set(Delivery.objects.filter(run=run, status=S.SENDING).values_list("email", flat=True))
        )
        worker = worker_factory(**env)
    last_kill = time.monotonic()
    assert at_kills[-1] < N - 100, f"the second kill came too late ({at_kills})"

    run = wait_for(
        lambda: CampaignRun.objects.filter(
            campaign=campaign, status=CampaignRun.Status.COMPLETED
        ).first(),
        120,
        "the run to complete",
    )
    print(  # shown with -s: how long the scenario took
        f"\nchaos: kills at {at_kills} messages, in flight {[len(s) for s in in_flight]} "
        f"(both: {len(in_flight[0] & in_flight[1])}), "
        f"completed {time.monotonic() - last_kill:.1f} s after the last kill, "
        f"{time.monotonic() - started:.1f} s in all"
    )

    counts = received(smtp_server)
    rows = {
        email: (status, attempts, reason)
        for email, status, attempts, reason in Delivery.objects.filter(run=run).values_list(
            "email", "status", "attempts", "reason"
        )
    }
    status_of = {email: status for email, (status, _a, _r) in rows.items()}

    def having(*statuses: str) -> set[str]:
        return {email for email, status in status_of.items() if status in statuses}

    # 1. Exactly once: nobody received the run twice.
    duplicates = {email: n for email, n in counts.items() if n > 1}
    assert not duplicates, f"received more than once: {duplicates}"

    # 2. Nothing lost: every recipient has a row, every row is terminal, the run is completed.
    assert len(rows) == N
    assert set(status_of.values()) <= TERMINAL, Counter(status_of.values())
    assert run.status == CampaignRun.Status.COMPLETED

    # 8. True outcomes. UNKNOWN is what a kill left in flight (its lease ran out) or what the
    # server kept without replying, nothing else; at most one chunk per process per kill.
    interrupted = {
        email
        for email, (status, _attempts, reason) in rows.items()
        if status == S.UNKNOWN and reason == REASON_INTERRUPTED
    }
    reply_lost = having(S.UNKNOWN) - interrupted
    earlier: set[str] = set()
    for kill, rows_in_flight in enumerate(in_flight, 1):
        # Rows an earlier kill left SENDING may still be SENDING (their task not back yet).
        new = rows_in_flight - earlier
        assert len(new) <= CHUNK * PROCESSES, f"kill {kill} left {len(new)} rows in flight"
        earlier |= rows_in_flight
    assert interrupted == set().union(*in_flight), "UNKNOWN is not what the kills left in flight"
    assert reply_lost == KEPT_THEN_DROPPED - interrupted, "UNKNOWN for a reply the server sent"

    # No wrong FAILED: exactly the refused addresses (unless a kill took their answer away),
    # each after one attempt with the server's reply; none of them reached the server.
    failed = having(S.FAILED)
    assert failed == REJECTED - interrupted, f"wrongly failed: {failed - REJECTED}"
    for email in failed:
        _status, attempts, reason = rows[email]
        code = "550 5.1.1" if email in REJECTED_AT_RCPT else "554 5.7.1"
        assert attempts == 1 and code in reason, (email, attempts, reason)
    assert not REJECTED & set(counts)

    # The log is true to the server: whatever arrived is SENT or UNKNOWN, every SENT arrived.
    sent = having(S.SENT)
    assert sent <= set(counts), f"SENT but never received: {sorted(sent - set(counts))[:10]}"
    assert set(counts) <= sent | having(S.UNKNOWN), "received, yet neither SENT nor UNKNOWN"
    assert sent == {address(i) for i in range(N)} - REJECTED - having(S.UNKNOWN)

    # Retries came back from the queue: 451 twice -> attempt 3, one dropped connection -> 2.
    for email in BUSY - interrupted:
        assert rows[email][:2] == (S.SENT, 3), (email, rows[email])
    for email in DROPPED - interrupted:
        assert rows[email][:2] == (S.SENT, 2), (email, rows[email])

    # The run's columns match its rows and add up to its total.
    by_status = Counter(status_of.values())
    assert run.total == N
    for status in Delivery.TERMINAL:
        assert getattr(run, str(status)) == by_status[status], status
    assert sum(getattr(run, str(status)) for status in Delivery.TERMINAL) == run.total
