"""Dispatch invariants against real services: a ``celery worker -P prefork -c 2`` process, a
Redis broker, the PostgreSQL test database and an SMTP server on loopback.

Each test fails (REQUIRE_SERVICES=1) or skips when Redis or PostgreSQL is missing.
"""

from __future__ import annotations

import re
import time
from collections import Counter

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.services.controls import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
)
from campaigns.tasks import deliver_batch, start_run
from tests.campaigns.services.helpers import address, make_campaign, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services, pytest.mark.slow]

S = Delivery.Status
TERMINAL = set(Delivery.TERMINAL)
TASK_TIME = re.compile(r"Task campaigns\.tasks\.deliver_batch\[[^\]]+\] succeeded in ([0-9.e-]+)s")


def received(smtp_server) -> Counter:
    return Counter(rcpt.lower() for message in smtp_server.messages for rcpt in message.rcpt_tos)


def run_of(campaign: Campaign) -> CampaignRun:
    return CampaignRun.objects.get(campaign=campaign)


def wait_run(campaign: Campaign, status: str, timeout: float) -> CampaignRun:
    def check():
        run = CampaignRun.objects.filter(campaign=campaign).first()
        return run if run is not None and run.status == status else None

    return wait_for(check, timeout, f"the run to be {status}")


def batch_times(*workers) -> list[float]:
    return [float(t) for worker in workers for t in TASK_TIME.findall(worker.log())]


def test_a_run_is_sent_exactly_once_whatever_repeats(worker_factory, smtp_server):
    """Beat fires twice, start_run is restarted, every batch is delivered twice: one email each."""
    campaign = make_campaign(600)
    worker = worker_factory()
    due = timezone.now().replace(microsecond=0).isoformat()

    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": due})
    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": due})
    run = wait_run(campaign, CampaignRun.Status.COMPLETED, 180)
    batches = list(RunBatch.objects.filter(run=run).values_list("pk", "recipient_ids"))
    repeated = [
        deliver_batch.apply_async(  # a redelivered batch
            kwargs={"run_id": run.pk, "recipient_ids": ids, "batch_id": batch_id}
        ).id
        for batch_id, ids in batches
    ]
    repeated.append(  # a restarted start_run
        start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": due}).id
    )
    wait_for(
        lambda: all(f"[{task_id}] succeeded" in worker.log() for task_id in repeated),
        30,
        "the repeated tasks to run",
    )

    counts = received(smtp_server)
    assert set(counts) == {address(i) for i in range(600)}
    assert max(counts.values()) == 1
    assert CampaignRun.objects.filter(campaign=campaign).count() == 1
    run.refresh_from_db()
    assert (run.total, run.sent, run.status) == (600, 600, CampaignRun.Status.COMPLETED)
    assert len(batches) == 3


def test_kill_9_mid_run_then_a_new_worker_completes_it_without_resending(
    worker_factory, smtp_server
):
    """Nothing lost, nothing sent twice: a delivery whose send may have happened before the
    crash is UNKNOWN, never resent silently."""
    campaign = make_campaign(5000)
    first = worker_factory()
    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": timezone.now().isoformat()})
    wait_for(lambda: len(smtp_server.messages) >= 1500, 180, "1,500 messages before the crash")

    first.kill()
    at_crash = len(smtp_server.messages)
    assert 1500 <= at_crash < 5000, "the crash must happen in the middle of the run"
    worker_factory()  # a new worker; the lost tasks come back after the visibility timeout
    run = wait_run(campaign, CampaignRun.Status.COMPLETED, 90)

    counts = received(smtp_server)
    assert max(counts.values()) == 1, "an address received the run twice"
    rows = dict(Delivery.objects.filter(run=run).values_list("email", "status"))
    assert len(rows) == 5000
    assert set(rows.values()) <= TERMINAL
    sent = {email for email, status in rows.items() if status == S.SENT}
    unknown = {email for email, status in rows.items() if status == S.UNKNOWN}
    assert sent <= set(counts), "a delivery marked sent never reached the server"
    assert set(counts) <= sent | unknown, "a message went out without its row saying so"
    assert len(unknown) <= 2 * 100  # at most one sub-chunk per pool process was in flight
    assert (run.sent, run.unknown, run.total) == (len(sent), len(unknown), 5000)
    assert run.sent + run.unknown == 5000


def test_retries_wait_in_the_queue_not_in_the_worker(worker_factory, smtp_server):
    """4xx and dropped connections come back later (backoff), 5xx fails at once with the
    server's reply; no task ever sleeps."""
    campaign = make_campaign(40)
    smtp_server.reply(address(3), "451 4.3.0 Mailbox busy, try later", times=2)
    smtp_server.drop(address(5), times=1)
    smtp_server.reply(address(7), "550 5.1.1 No such user here")
    # Retries after 3 s, then 6 s: a task that slept through one would take longer than that.
    worker = worker_factory(ACE_CHANNEL_DJANGO_EMAIL_RETRY_DELAY="3")
    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": timezone.now().isoformat()})

    run = wait_run(campaign, CampaignRun.Status.COMPLETED, 180)

    counts = received(smtp_server)
    assert set(counts) == {address(i) for i in range(40)} - {address(7)}
    assert max(counts.values()) == 1
    busy = Delivery.objects.get(run=run, email=address(3))
    assert (busy.status, busy.attempts) == (S.SENT, 3)
    dropped = Delivery.objects.get(run=run, email=address(5))
    assert (dropped.status, dropped.attempts) == (S.SENT, 2)
    refused = Delivery.objects.get(run=run, email=address(7))
    assert (refused.status, refused.attempts) == (S.FAILED, 1)
    assert "550 5.1.1 No such user here" in refused.reason
    assert (run.sent, run.failed) == (39, 1)
    # The run completes inside the last task, before the worker logs that task's time.
    wait_for(lambda: len(batch_times(worker)) >= 3, 30, "the batch and two retries logged")
    times = batch_times(worker)
    assert max(times) < 3.0, f"a deliver_batch task took {max(times)} s: did it sleep?"


def test_a_shared_rate_limit_spreads_the_run_without_sleeping(worker_factory, smtp_server):
    campaign = make_campaign(150)
    worker = worker_factory(CAMPAIGNS_CHANNEL_RATE_LIMITS="email=25")
    start = time.monotonic()
    start_run.apply_async(kwargs={"campaign_id": campaign.pk, "due_at": timezone.now().isoformat()})

    run = wait_run(campaign, CampaignRun.Status.COMPLETED, 180)

    elapsed = time.monotonic() - start
    assert run.sent == 150
    assert max(received(smtp_server).values()) == 1
    # 25 tokens up front, then 25/s for both pool processes together: at least 5 s.
    assert elapsed >= 4.8, f"150 emails at 25/s took only {elapsed:.1f} s"
    # Each task sends what the bucket grants and hands the rest back to the queue: none lasts
    # anywhere near the spread (a task waiting for tokens would last about all of it).
    assert max(batch_times(worker)) < elapsed / 2


def test_pause_resume_and_cancel_take_effect_within_a_batch(worker_factory, smtp_server):
    paused_campaign = make_campaign(1500)
    worker_factory(CAMPAIGNS_CHANNEL_RATE_LIMITS="email=300")
    start_run.apply_async(
        kwargs={"campaign_id": paused_campaign.pk, "due_at": timezone.now().isoformat()}
    )
    wait_for(lambda: len(smtp_server.messages) >= 200, 30, "the run to start sending")

    campaign_pause(campaign=Campaign.objects.get(pk=paused_campaign.pk))
    at_pause = len(smtp_server.messages)
    time.sleep(2)
    after_pause = len(smtp_server.messages)
    assert after_pause - at_pause <= 2 * 100, "more than the sub-chunks in flight went out"
    time.sleep(1)
    assert len(smtp_server.messages) == after_pause, "still sending while paused"
    run = run_of(paused_campaign)
    assert run.status == CampaignRun.Status.PAUSED
    assert run.deliveries.filter(status=S.SENDING).count() == 0

    campaign_resume(campaign=Campaign.objects.get(pk=paused_campaign.pk))
    run = wait_run(paused_campaign, CampaignRun.Status.COMPLETED, 180)
    counts = received(smtp_server)
    assert set(counts) == {address(i) for i in range(1500)}
    assert max(counts.values()) == 1, "resume sent something twice"
    assert run.sent == 1500

    smtp_server.reset()
    cancelled = make_campaign(1500)
    start_run.apply_async(
        kwargs={"campaign_id": cancelled.pk, "due_at": timezone.now().isoformat()}
    )
    wait_for(lambda: len(smtp_server.messages) >= 200, 30, "the second run to start sending")
    campaign_cancel(campaign=Campaign.objects.get(pk=cancelled.pk))
    at_cancel = len(smtp_server.messages)
    time.sleep(3)
    final = len(smtp_server.messages)
    assert final - at_cancel <= 2 * 100
    run = run_of(cancelled)
    assert run.status == CampaignRun.Status.CANCELLED
    rows = Counter(run.deliveries.values_list("status", flat=True))
    assert rows[S.SENT] == final
    assert rows[S.QUEUED] == rows[S.SENDING] == 0
    assert max(received(smtp_server).values()) == 1
    # Everyone resolved is in exactly one column, the unclaimed batches' recipients included.
    columns = sum(getattr(run, str(status)) for status in Delivery.TERMINAL)
    assert columns == run.total and run.cancelled == run.total - run.sent
