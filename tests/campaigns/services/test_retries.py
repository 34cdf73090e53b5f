"""Dispatch of the outcomes that are neither sent nor failed: a policy postponing a message
(quiet hours: delivered when they end, no attempt counted) and a delivery whose result cannot
be known (the SMTP connection dropped after the message went out: UNKNOWN, never resent
automatically)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core import mail
from django.utils import timezone

from campaigns import policies
from campaigns.models import CampaignRun, Delivery, RunBatch
from campaigns.policies import QuietHoursPolicy
from campaigns.services.batches import batch_deliver
from campaigns.services.controls import (
    run_resend_unknown,
)
from campaigns.services.runs import run_start
from tests.campaigns.factories import PolicyToggleFactory, StaffUserFactory
from tests.campaigns.services.helpers import address, list_of, make_campaign

pytestmark = pytest.mark.django_db

S = Delivery.Status
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def claimed_run(campaign) -> tuple[CampaignRun, RunBatch]:
    """A run resolved into one batch, not delivered yet (its task is recorded, not run)."""
    run = run_start(campaign_id=campaign.pk, due_at=timezone.now().replace(microsecond=0))
    return run, RunBatch.objects.get(run=run)


def quiet_now_in_paris() -> tuple[dict, dt.datetime]:
    """Quiet-hours parameters that make it quiet in Paris right now (for two hours from the
    current local hour), and the end of those hours: the expected delivery time."""
    local = timezone.now().astimezone(PARIS)
    start, end = local.hour, (local.hour + 2) % 24
    parameters = {"start_hour": start, "end_hour": end}
    return parameters, QuietHoursPolicy.quiet_until(local, end)


def awake_zone(parameters: dict) -> str:
    """A time zone where it is not quiet right now."""
    for name in ("Asia/Tokyo", "America/New_York", "Pacific/Auckland"):
        hour = timezone.now().astimezone(zoneinfo.ZoneInfo(name)).hour
        if not QuietHoursPolicy.is_quiet(hour, parameters["start_hour"], parameters["end_hour"]):
            return name
    raise AssertionError("no awake zone found")


def test_quiet_hours_postpone_to_their_end_then_deliver_once(
    dispatch_settings, enqueued, monkeypatch
):
    dispatch_settings.CAMPAIGNS_BATCH_SIZE = 10
    dispatch_settings.CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS = 600
    parameters, quiet_end = quiet_now_in_paris()
    PolicyToggleFactory(policy="campaigns_quiet_hours", parameters=parameters)
    campaign = make_campaign(2)
    entries = list_of(campaign).entries
    entries.filter(email=address(0)).update(time_zone="Europe/Paris")
    entries.filter(email=address(1)).update(time_zone=awake_zone(parameters))
    run, batch = claimed_run(campaign)
    enqueued.clear()

    outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    # The awake recipient gets it now; the one in quiet hours waits for their end.
    assert [m.to for m in mail.outbox] == [[address(1)]]
    assert outcome.counts == {S.SENT: 1}
    assert (outcome.deferred, outcome.retried) == (1, 0)
    waiting = Delivery.objects.get(run=run, email=address(0))
    assert waiting.status == S.QUEUED
    assert waiting.next_attempt_at == quiet_end  # exactly the policy's time: no backoff
    assert waiting.attempts == 0  # a deferral is not a delivery attempt
    end = f"{parameters['end_hour']:02d}:00"
    assert f"postponed until {end} Europe/Paris" in waiting.reason
    assert "campaigns_quiet_hours" in waiting.reason
    # The follow-up task never waits on the broker longer than the backoff cap.
    (followup,) = enqueued
    entry_id = entries.get(email=address(0)).pk
    assert followup["ids"] == [entry_id]
    assert followup["eta"] <= timezone.now() + dt.timedelta(seconds=600)
    assert followup["eta"] < quiet_end
    run.refresh_from_db()
    assert run.status == CampaignRun.Status.RUNNING  # not done while a recipient waits

    # That task fires early: the row is not due, nothing is sent, it hops again.
    enqueued.clear()
    batch_deliver(run=run, recipient_ids=followup["ids"], batch_id=batch.pk)
    assert len(mail.outbox) == 1
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts, waiting.next_attempt_at) == (S.QUEUED, 0, quiet_end)
    (hop,) = enqueued
    assert hop["ids"] == [entry_id] and hop["eta"] < quiet_end

    # Quiet hours are over (the policies' clock) and the retry is due (the row's time).
    monkeypatch.setattr(policies.clock, "now", lambda: quiet_end + dt.timedelta(minutes=1))
    Delivery.objects.filter(pk=waiting.pk).update(next_attempt_at=timezone.now())
    enqueued.clear()
    batch_deliver(run=run, recipient_ids=followup["ids"], batch_id=batch.pk)
    batch_deliver(run=run, recipient_ids=followup["ids"], batch_id=batch.pk)  # a duplicate

    assert sorted(to for m in mail.outbox for to in m.to) == [address(0), address(1)]
    waiting.refresh_from_db()
    assert (waiting.status, waiting.attempts, waiting.reason) == (S.SENT, 1, "")
    run.refresh_from_db()
    assert (run.status, run.sent) == (CampaignRun.Status.COMPLETED, 2)
    assert enqueued == []


def test_quiet_hours_ending_after_the_run_expires_expire_the_delivery(dispatch_settings, enqueued):
    parameters, quiet_end = quiet_now_in_paris()
    PolicyToggleFactory(policy="campaigns_quiet_hours", parameters=parameters)
    campaign = make_campaign(1)
    list_of(campaign).entries.update(time_zone="Europe/Paris")
    run, batch = claimed_run(campaign)
    CampaignRun.objects.filter(pk=run.pk).update(expires_at=quiet_end - dt.timedelta(minutes=5))
    run.refresh_from_db()
    enqueued.clear()

    outcome = batch_deliver(run=run, recipient_ids=batch.recipient_ids, batch_id=batch.pk)

    assert mail.outbox == []
    assert outcome.counts == {S.EXPIRED: 1}
    delivery = Delivery.objects.get(run=run)
    assert delivery.status == S.EXPIRED
    assert "quiet hours" in delivery.reason
    assert delivery.attempts == 0
    assert enqueued == []
    run.refresh_from_db()
    assert (run.status, run.expired) == (CampaignRun.Status.COMPLETED, 1)


@pytest.mark.parametrize("fast_smtp", [True, False], ids=["fast-transport", "django-session"])
def test_a_connection_lost_after_the_message_went_out_is_unknown_and_not_retried(
    dispatch_settings, start, smtp_server, fast_smtp, django_capture_on_commit_callbacks
):
    dispatch_settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    dispatch_settings.EMAIL_HOST = smtp_server.host
    dispatch_settings.EMAIL_PORT = smtp_server.port
    dispatch_settings.EMAIL_USE_TLS = dispatch_settings.EMAIL_USE_SSL = False
    dispatch_settings.EMAIL_HOST_USER = dispatch_settings.EMAIL_HOST_PASSWORD = ""
    dispatch_settings.EMAIL_TIMEOUT = 5
    dispatch_settings.ACE_CHANNEL_DJANGO_EMAIL_FAST_SMTP = fast_smtp
    smtp_server.drop_after_accepting(address(1), times=1)
    campaign = make_campaign(3)

    run = start(campaign)

    # Every recipient received exactly one message, the one whose reply was lost included.
    received = sorted(m.rcpt_tos[0] for m in smtp_server.messages)
    assert received == [address(0), address(1), address(2)]
    unknown = Delivery.objects.get(run=run, email=address(1))
    assert unknown.status == S.UNKNOWN
    assert "may have been delivered" in unknown.reason
    assert unknown.exception_type == "DeliveryOutcomeUnknownError"
    assert unknown.next_attempt_at is None
    assert set(
        Delivery.objects.filter(run=run).exclude(pk=unknown.pk).values_list("status", flat=True)
    ) == {S.SENT}
    run.refresh_from_db()
    assert (run.status, run.sent, run.unknown) == (CampaignRun.Status.COMPLETED, 2, 1)

    # Only an operator's deliberate resend sends it again.
    operator = StaffUserFactory(permissions=["campaigns.resend_unknown_campaign"])
    with django_capture_on_commit_callbacks(execute=True):
        assert run_resend_unknown(run=run, user=operator) == 1
    assert [m.rcpt_tos[0] for m in smtp_server.messages].count(address(1)) == 2
    unknown.refresh_from_db()
    assert unknown.status == S.SENT
    run.refresh_from_db()
    assert (run.status, run.sent, run.unknown) == (CampaignRun.Status.COMPLETED, 3, 0)


def test_an_unknown_outcome_is_terminal_and_the_run_completes(dispatch_settings, start):
    """Whatever channel reports it: UNKNOWN with the reason, nothing queued for a retry."""
    from ace.channel.django_email import DjangoEmailSession
    from ace.errors import DeliveryOutcomeUnknownError

    campaign = make_campaign(2)

    def lost(self, email):
        return DeliveryOutcomeUnknownError("connection lost after the message was sent")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DjangoEmailSession, "send_email", lost)
        run = start(campaign)
    assert not Delivery.objects.filter(run=run, status=S.QUEUED).exists()
    run.refresh_from_db()
    assert (run.status, run.unknown) == (CampaignRun.Status.COMPLETED, 2)
    assert set(run.deliveries.values_list("reason", flat=True)) == {
        "connection lost after the message was sent"
    }
