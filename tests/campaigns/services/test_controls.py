"""Run controls in one process: pause, resume, cancel and resend unknown deliveries."""

from __future__ import annotations

import datetime as dt

import pytest
from django.core import mail
from django.utils import timezone

from ace.channel.django_email import DjangoEmailSession
from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignRun, Delivery, RunBatch
from campaigns.services.batches import batch_deliver
from campaigns.services.controls import (
    REASON_CANCELLED,
    RESEND_FORBIDDEN,
    campaign_cancel,
    campaign_pause,
    campaign_resume,
    run_resend_unknown,
)
from campaigns.services.runs import run_start
from tests.campaigns.factories import StaffUserFactory
from tests.campaigns.services.helpers import (
    address,
    claimed_run,
    make_campaign,
    recipients_of_outbox,
    statuses,
)

pytestmark = pytest.mark.django_db

S = Delivery.Status


def test_resend_unknown_needs_the_permission_then_resends_only_those(dispatch_settings, enqueued):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    campaign = make_campaign(3)
    run, batch = claimed_run(campaign)
    Delivery.objects.filter(run=run, email=address(0)).update(
        status=S.SENDING, updated_at=timezone.now() - dt.timedelta(hours=1)
    )
    batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)
    run.refresh_from_db()
    assert (run.status, run.unknown) == (CampaignRun.Status.COMPLETED, 1)
    mail.outbox.clear()

    with pytest.raises(CampaignError) as refused:
        run_resend_unknown(run=run, user=StaffUserFactory())
    assert refused.value.message == RESEND_FORBIDDEN

    operator = StaffUserFactory(permissions=["campaigns.resend_unknown_campaign"])
    enqueued.clear()
    assert run_resend_unknown(run=run, user=operator) == 1
    (again,) = enqueued
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.RUNNING
    batch_deliver(run=run, recipient_ids=again["ids"], batch_id=again["batch"])

    assert recipients_of_outbox() == [address(0)]
    run.refresh_from_db()
    assert (run.status, run.sent, run.unknown) == (CampaignRun.Status.COMPLETED, 3, 0)


def test_pause_stops_between_sub_chunks_and_resume_sends_the_rest_once(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 6
    dispatch_settings.CAMPAIGNS_SEND_CHUNK_SIZE = 2
    campaign = make_campaign(12)
    original = DjangoEmailSession.deliver_many
    calls = {"n": 0}

    def pause_after_first_chunk(self, items):
        result = original(self, items)
        calls["n"] += 1
        if calls["n"] == 1:
            campaign_pause(campaign=Campaign.objects.get(pk=campaign.pk))
        return result

    monkeypatch.setattr(DjangoEmailSession, "deliver_many", pause_after_first_chunk)
    with django_capture_on_commit_callbacks(execute=True):
        run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))

    assert len(mail.outbox) == 2  # the sub-chunk in flight finished; nothing after it
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.status == CampaignRun.Status.PAUSED
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert RunBatch.objects.filter(run=run, paused_at__isnull=False).count() == 2
    assert statuses(run) == {S.SENT: 2, S.QUEUED: 4}

    with django_capture_on_commit_callbacks(execute=True):
        campaign_resume(campaign=campaign)

    assert sorted(recipients_of_outbox()) == [address(i) for i in range(12)]
    run.refresh_from_db()
    assert (run.status, run.sent) == (CampaignRun.Status.COMPLETED, 12)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.COMPLETED


def test_cancel_counts_everyone_left_as_cancelled_and_sends_nothing_more(
    dispatch_settings, django_capture_on_commit_callbacks, monkeypatch
):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 6
    campaign = make_campaign(12)
    original = DjangoEmailSession.deliver_many

    def cancel_after_first_chunk(self, items):
        result = original(self, items)
        if len(mail.outbox) == 2:
            campaign_cancel(campaign=Campaign.objects.get(pk=campaign.pk))
        return result

    monkeypatch.setattr(DjangoEmailSession, "deliver_many", cancel_after_first_chunk)
    with django_capture_on_commit_callbacks(execute=True):
        run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))

    assert len(mail.outbox) == 2
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.status == CampaignRun.Status.CANCELLED
    assert statuses(run) == {S.SENT: 2, S.CANCELLED: 4}
    assert set(run.deliveries.filter(status=S.CANCELLED).values_list("reason", flat=True)) == {
        REASON_CANCELLED
    }
    # The second batch was never claimed: its 6 recipients are counted cancelled too, so
    # every recipient is in exactly one column and the columns add up to the total.
    assert (run.total, run.sent, run.cancelled, run.skipped) == (12, 2, 10, 0)
    assert RunBatch.objects.filter(run=run, claimed_at__isnull=True).count() == 0
