"""Sending from the campaign admin (campaigns/admin/runs.py): permission-checked actions and
buttons, the live progress endpoint and its script, schedule clean-up on delete."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from campaigns.admin.runs import MSG_PAUSED, eta_text
from campaigns.models import Campaign, CampaignRun, Delivery
from campaigns.services.schedules import campaign_schedule, periodic_task_name
from tests.campaigns.factories import DeliveryFactory, StaffUserFactory
from tests.campaigns.services.helpers import make_campaign

pytestmark = pytest.mark.django_db

VIEW = "campaigns.view_campaign"
CHANGE = "campaigns.change_campaign"
SCHEDULE = "campaigns.schedule_campaign"
RESEND = "campaigns.resend_unknown_campaign"
CHANGELIST = "admin:campaigns_campaign_changelist"


def login(client, *permissions: str):
    user = StaffUserFactory(permissions=list(permissions))
    client.force_login(user)
    return user


def hourly(status=Campaign.Status.APPROVED) -> Campaign:
    return make_campaign(2, status=status, schedule_kind="interval", interval_seconds=3600)


def offered_actions(client) -> set[str]:
    form = client.get(reverse(CHANGELIST)).context["action_form"]
    return set() if form is None else set(dict(form.fields["action"].choices))


def post_action(client, action: str, campaign: Campaign):
    return client.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [campaign.pk], "index": 0},
        follow=True,
    )


def test_actions_are_offered_only_with_their_permission(client, dispatch_settings):
    hourly()
    login(client, VIEW, CHANGE)
    actions = offered_actions(client)
    assert "schedule_selected" not in actions and "resend_unknown_selected" not in actions

    login(client, VIEW, CHANGE, SCHEDULE)
    actions = offered_actions(client)
    assert {"schedule_selected", "pause_selected", "resume_selected", "cancel_selected"} <= set(
        actions
    )
    assert "resend_unknown_selected" not in actions


def test_posting_an_action_without_the_permission_changes_nothing(client, dispatch_settings):
    campaign = hourly()
    login(client, VIEW, CHANGE)

    post_action(client, "schedule_selected", campaign)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.APPROVED
    assert not PeriodicTask.objects.exists()


def test_schedule_and_pause_actions_call_the_services(client, dispatch_settings):
    campaign = hourly()
    login(client, VIEW, CHANGE, SCHEDULE)

    page = post_action(client, "schedule_selected", campaign)
    assert "1 of 1 campaign: schedule." in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert PeriodicTask.objects.get(name=periodic_task_name(campaign)).enabled

    post_action(client, "pause_selected", campaign)
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED
    assert not PeriodicTask.objects.get(name=periodic_task_name(campaign)).enabled


def test_a_refused_action_says_why(client, dispatch_settings):
    campaign = hourly(status=Campaign.Status.DRAFT)
    login(client, VIEW, CHANGE, SCHEDULE)

    page = post_action(client, "schedule_selected", campaign)

    assert "only approved campaigns can be scheduled" in page.content.decode()


def test_buttons_post_to_permission_checked_views(client, dispatch_settings):
    campaign = hourly()
    campaign_schedule(campaign=campaign)
    url = reverse("admin:campaigns_campaign_dispatch", args=[campaign.pk, "pause"])

    login(client, VIEW, CHANGE)
    change = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert url not in change.content.decode()
    assert client.post(url).status_code == 403

    login(client, VIEW, CHANGE, SCHEDULE)
    change = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert url in change.content.decode()
    assert client.get(url).status_code == 302  # GET changes nothing
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    page = client.post(url, follow=True)
    assert MSG_PAUSED % {"name": campaign.name, "runs": 0} in page.content.decode()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED


def finished_run_with_unknown(campaign: Campaign) -> CampaignRun:
    run = CampaignRun.objects.create(
        campaign=campaign,
        due_at=timezone.now().replace(microsecond=0),
        status=CampaignRun.Status.COMPLETED,
        total=2,
        sent=1,
        unknown=1,
        started_at=timezone.now() - dt.timedelta(minutes=1),
        finished_at=timezone.now(),
    )
    DeliveryFactory(run=run, status=Delivery.Status.SENT)
    DeliveryFactory(run=run, status=Delivery.Status.UNKNOWN, attempts=1)
    return run


def test_resend_unknown_needs_its_own_permission(client, dispatch_settings):
    campaign = hourly(status=Campaign.Status.COMPLETED)
    run = finished_run_with_unknown(campaign)
    url = reverse("admin:campaigns_campaign_dispatch", args=[campaign.pk, "resend_unknown"])

    login(client, VIEW, CHANGE, SCHEDULE)
    assert client.post(url).status_code == 403
    post_action(client, "resend_unknown_selected", campaign)
    assert run.deliveries.filter(status=Delivery.Status.UNKNOWN).count() == 1

    login(client, VIEW, CHANGE, RESEND)
    change = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk]))
    assert url in change.content.decode()
    page = client.post(url, follow=True)
    assert "1 unknown delivery of" in page.content.decode()
    assert run.deliveries.filter(status=Delivery.Status.UNKNOWN).count() == 0
    run.refresh_from_db()
    assert (run.status, run.unknown) == (CampaignRun.Status.RUNNING, 0)


def test_the_progress_endpoint_needs_view_permission(client, dispatch_settings):
    campaign = hourly(status=Campaign.Status.RUNNING)
    CampaignRun.objects.create(
        campaign=campaign,
        due_at=timezone.now().replace(microsecond=0),
        status=CampaignRun.Status.RUNNING,
        total=200,
        sent=50,
        failed=10,
        started_at=timezone.now() - dt.timedelta(minutes=2),
    )
    url = reverse("admin:campaigns_campaign_progress", args=[campaign.pk])

    login(client)
    assert client.get(url).status_code == 403

    login(client, VIEW)
    data = client.get(url).json()
    assert data["campaign"] == {"id": campaign.pk, "status": "running"}
    (run,) = data["runs"]
    assert (run["total"], run["sent"], run["failed"], run["done"]) == (200, 50, 10, 60)
    assert run["percent"] == 30.0
    assert run["per_minute"] == pytest.approx(30, rel=0.05)  # 60 in 2 minutes
    assert run["eta_seconds"] == pytest.approx(280, rel=0.05)  # 140 left at 30/min
    assert run["finished"] is False


def test_the_change_page_shows_live_progress(client, dispatch_settings):
    campaign = hourly(status=Campaign.Status.RUNNING)
    run = CampaignRun.objects.create(
        campaign=campaign,
        due_at=timezone.now().replace(microsecond=0),
        status=CampaignRun.Status.RUNNING,
        total=10,
        sent=5,
        started_at=timezone.now() - dt.timedelta(seconds=30),
    )
    login(client, VIEW, CHANGE, "campaigns.view_campaignrun")

    html = client.get(reverse("admin:campaigns_campaign_change", args=[campaign.pk])).content
    html = html.decode()

    progress_url = reverse("admin:campaigns_campaign_progress", args=[campaign.pk])
    assert f'data-run="{run.pk}"' in html
    assert f'data-url="{progress_url}"' in html
    assert 'data-finished="0"' in html
    assert "campaigns/admin/dispatch_progress.js" in html
    rate = re.search(r"50\.0% \(5 / 10\) · ([0-9.]+) sent/min", html)
    assert rate and 9 <= float(rate.group(1)) <= 10  # 5 sent in about 30 s


def test_eta_text():
    assert eta_text(None) == "—"
    assert eta_text(42) == "42 s"
    assert eta_text(125) == "2 min 5 s"


def test_deleting_a_campaign_deletes_its_schedule(admin_client, dispatch_settings):
    campaign = hourly()
    task = campaign_schedule(campaign=campaign)
    Campaign.objects.filter(pk=campaign.pk).update(status=Campaign.Status.CANCELLED)

    admin_client.post(
        reverse("admin:campaigns_campaign_delete", args=[campaign.pk]), {"post": "yes"}
    )

    assert not Campaign.objects.filter(pk=campaign.pk).exists()
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
