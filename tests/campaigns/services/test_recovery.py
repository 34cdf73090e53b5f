"""Runs whose tasks were lost (not just redelivered) are picked up again by the watchdog."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.models import CampaignRun, Delivery, RunBatch
from campaigns.services import batches, enqueue
from campaigns.services.batches import batch_deliver
from campaigns.services.recovery import runs_recover_stalled
from campaigns.services.runs import run_start
from tests.campaigns.services.helpers import address, make_campaign

pytestmark = pytest.mark.django_db

S = Delivery.Status


def lost_run(size: int, monkeypatch) -> CampaignRun:
    """A run whose batches were enqueued into a broker that lost them, started an hour ago."""
    campaign = make_campaign(size)
    with monkeypatch.context() as patch:
        patch.setattr(enqueue, "deliver_batch", lambda **kwargs: None)
        run = run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))
    CampaignRun.objects.filter(pk=run.pk).update(started_at=timezone.now() - dt.timedelta(hours=1))
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.RUNNING and mail.outbox == []
    return run


def test_a_run_whose_tasks_were_lost_is_recovered_and_completes(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    run = lost_run(6, monkeypatch)
    # The first batch had been half sent by a task that then failed for good.
    first = RunBatch.objects.filter(run=run).order_by("pk").first()
    with monkeypatch.context() as patch:
        patch.setattr(batches, "_deliver_chunks", lambda *args: None)
        batch_deliver(run=run, recipient_ids=first.recipient_ids, batch_id=first.pk)
    Delivery.objects.filter(run=run, email=address(0)).update(
        status=S.SENDING, updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Delivery.objects.filter(run=run).update(updated_at=an_hour_ago)
    RunBatch.objects.filter(pk=first.pk).update(claimed_at=an_hour_ago)

    with django_capture_on_commit_callbacks(execute=True):
        recovered = runs_recover_stalled()

    assert recovered == {run.pk: 2}
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.COMPLETED
    assert sorted(to for m in mail.outbox for to in m.to) == [address(i) for i in range(1, 6)]
    assert Delivery.objects.get(run=run, email=address(0)).status == S.UNKNOWN
    assert (run.sent, run.unknown, run.total) == (5, 1, 6)


def test_a_run_making_progress_or_waiting_for_a_retry_is_left_alone(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    busy = lost_run(2, monkeypatch)
    first = RunBatch.objects.get(run=busy)
    with monkeypatch.context() as patch:
        patch.setattr(batches, "_deliver_chunks", lambda *args: None)
        batch_deliver(run=busy, recipient_ids=first.recipient_ids, batch_id=first.pk)
    assert busy.deliveries.filter(updated_at__gte=timezone.now() - dt.timedelta(minutes=1))

    waiting = lost_run(1, monkeypatch)
    batch = RunBatch.objects.get(run=waiting)
    RunBatch.objects.filter(pk=batch.pk).update(claimed_at=timezone.now() - dt.timedelta(hours=1))
    Delivery.objects.create(
        run=waiting,
        recipient_key="email:r00000@example.org",
        email=address(0),
        channel="email",
        status=S.QUEUED,
        next_attempt_at=timezone.now() + dt.timedelta(minutes=20),
    )
    Delivery.objects.filter(run=waiting).update(updated_at=timezone.now() - dt.timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True):
        assert runs_recover_stalled() == {}
    assert mail.outbox == []


def test_setup_periodic_tasks_declares_the_watchdog_once(db):
    call_command("setup_periodic_tasks")
    task = PeriodicTask.objects.get(name="campaigns: recover stalled runs")
    task.enabled = False  # an operator's choice survives the next deploy
    task.save()

    call_command("setup_periodic_tasks")

    task.refresh_from_db()
    assert task.task == "campaigns.tasks.recover_stalled_runs"
    assert task.interval.every == 60
    assert not task.enabled
    assert PeriodicTask.objects.filter(task="campaigns.tasks.recover_stalled_runs").count() == 1


def test_a_lost_batch_is_recovered_although_another_row_waits_for_a_later_retry(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    """A row with a retry scheduled in 20 minutes no longer hides a batch that was lost."""
    run = lost_run(6, monkeypatch)  # two batches of 4 and 2, both lost
    first = RunBatch.objects.filter(run=run).order_by("pk").first()
    with monkeypatch.context() as patch:
        patch.setattr(batches, "_deliver_chunks", lambda *args: None)
        batch_deliver(run=run, recipient_ids=first.recipient_ids, batch_id=first.pk)
    later = timezone.now() + dt.timedelta(minutes=20)
    Delivery.objects.filter(run=run).update(next_attempt_at=later)
    an_hour_ago = timezone.now() - dt.timedelta(hours=1)
    Delivery.objects.filter(run=run).update(updated_at=an_hour_ago)
    RunBatch.objects.filter(pk=first.pk).update(claimed_at=an_hour_ago)

    with django_capture_on_commit_callbacks(execute=True):
        recovered = runs_recover_stalled()

    assert recovered == {run.pk: 2}
    # The lost second batch went out; the first batch's rows still wait for their retry.
    assert sorted(to for m in mail.outbox for to in m.to) == [address(4), address(5)]
    assert Delivery.objects.filter(run=run, status=S.QUEUED, next_attempt_at=later).count() == 4
