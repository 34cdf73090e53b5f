"""Campaign schedules as django-celery-beat rows, and the due time a beat fire stands for."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign, CampaignRun
from campaigns.services.controls import (
    campaign_cancel,
    campaign_pause,
    campaign_resume,
)
from campaigns.services.schedules import (
    SCHEDULE_AT_MISSING,
    SCHEDULE_AT_PAST,
    SCHEDULE_CRONTAB_FORMAT,
    SCHEDULE_INTERVAL_MISSING,
    SCHEDULE_TIME_ZONE_INVALID,
    START_RUN_TASK,
    campaign_schedule,
    campaign_schedule_delete,
    campaign_schedule_validate,
    periodic_task_name,
    schedule_due_at,
)
from campaigns.tasks import start_run
from tests.campaigns.services.helpers import make_campaign

pytestmark = pytest.mark.django_db

UTC = dt.UTC
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def approved(size: int = 2, **fields) -> Campaign:
    return make_campaign(size, status=Campaign.Status.APPROVED, **fields)


def last_update():
    row = PeriodicTasks.objects.filter(ident=1).first()
    return row.last_update if row else None


def test_a_one_off_campaign_gets_a_clocked_one_off_task(dispatch_settings):
    when = timezone.now() + dt.timedelta(days=2)
    campaign = approved(schedule_kind=Campaign.ScheduleKind.ONCE, scheduled_at=when)

    task = campaign_schedule(campaign=campaign)

    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED
    assert campaign.periodic_task == task
    assert task.name == periodic_task_name(campaign)
    assert task.task == START_RUN_TASK
    assert json.loads(task.kwargs) == {"campaign_id": campaign.pk}
    assert task.one_off and task.enabled
    assert task.clocked.clocked_time == when
    assert task.crontab is None and task.interval is None
    assert CampaignRun.objects.count() == 0  # nothing runs before its time


def test_a_crontab_campaign_uses_its_time_zone(dispatch_settings):
    campaign = approved(
        schedule_kind=Campaign.ScheduleKind.CRONTAB,
        crontab="30 9 * * 1-5",
        time_zone="Europe/Paris",
    )

    task = campaign_schedule(campaign=campaign)

    cron = task.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "30",
        "9",
        "*",
        "*",
        "1-5",
    )
    assert str(cron.timezone) == "Europe/Paris"
    assert not task.one_off and task.clocked is None


def test_an_interval_campaign_uses_an_interval_schedule(dispatch_settings):
    campaign = approved(schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=3600)

    task = campaign_schedule(campaign=campaign)

    assert (task.interval.every, task.interval.period) == (3600, IntervalSchedule.SECONDS)
    # Crontab and interval rows are shared, not duplicated per campaign.
    other = approved(schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=3600)
    assert campaign_schedule(campaign=other).interval == task.interval


def test_send_now_starts_a_run_at_once_without_a_periodic_task(
    dispatch_settings, django_capture_on_commit_callbacks
):
    campaign = approved(3)

    with django_capture_on_commit_callbacks(execute=True):
        assert campaign_schedule(campaign=campaign) is None

    assert not PeriodicTask.objects.filter(name=periodic_task_name(campaign)).exists()
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.status == CampaignRun.Status.COMPLETED
    assert len(mail.outbox) == 3


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"schedule_kind": "crontab", "crontab": "0 9 * *"}, "crontab", SCHEDULE_CRONTAB_FORMAT),
        ({"schedule_kind": "crontab", "crontab": "0 25 * * *"}, "crontab", "Invalid crontab"),
        ({"schedule_kind": "interval", "interval_seconds": None}, "interval_seconds", None),
        ({"schedule_kind": "interval", "interval_seconds": 5}, "interval_seconds", None),
        ({"schedule_kind": "once", "scheduled_at": None}, "scheduled_at", SCHEDULE_AT_MISSING),
        ({"schedule_kind": "now", "time_zone": "Mars/Olympus"}, "time_zone", None),
    ],
)
def test_bad_schedules_are_refused_with_a_clear_message(dispatch_settings, fields, field, message):
    campaign = approved(**fields)

    with pytest.raises(ValidationError) as error:
        campaign_schedule(campaign=campaign)

    text = " ".join(error.value.message_dict[field])
    expected = {
        "interval_seconds": SCHEDULE_INTERVAL_MISSING.format(minimum=60),
        "time_zone": SCHEDULE_TIME_ZONE_INVALID.format(value="Mars/Olympus"),
    }.get(field, message)
    assert expected.split("{")[0] in text
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.APPROVED
    assert not PeriodicTask.objects.exists()


def test_a_past_one_off_time_is_refused(dispatch_settings):
    past = timezone.now() - dt.timedelta(minutes=5)
    campaign = approved(schedule_kind=Campaign.ScheduleKind.ONCE, scheduled_at=past)

    with pytest.raises(ValidationError) as error:
        campaign_schedule_validate(campaign=campaign)

    assert error.value.message_dict["scheduled_at"] == [SCHEDULE_AT_PAST.format(value=past)]


@pytest.mark.parametrize("status", [Campaign.Status.DRAFT, Campaign.Status.SCHEDULED])
def test_only_approved_campaigns_can_be_scheduled(
    dispatch_settings, django_capture_on_commit_callbacks, status
):
    campaign = make_campaign(1, status=status)

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(CampaignError) as error:
        campaign_schedule(campaign=campaign)

    assert "only approved campaigns" in error.value.message
    assert not CampaignRun.objects.exists()  # a second "send now" would start another run


def test_pause_resume_and_cancel_follow_the_periodic_task(dispatch_settings):
    campaign = approved(schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=600)
    task = campaign_schedule(campaign=campaign)
    stamp = last_update()

    campaign_pause(campaign=campaign)
    task.refresh_from_db()
    assert not task.enabled
    assert last_update() > stamp  # beat is told about the bulk change
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.PAUSED

    campaign_resume(campaign=campaign)
    task.refresh_from_db()
    assert task.enabled
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.SCHEDULED

    campaign_cancel(campaign=campaign)
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    campaign.refresh_from_db()
    assert campaign.status == Campaign.Status.CANCELLED


def test_deleting_a_one_off_schedule_removes_its_clock(dispatch_settings):
    campaign = approved(
        schedule_kind=Campaign.ScheduleKind.ONCE,
        scheduled_at=timezone.now() + dt.timedelta(hours=1),
    )
    task = campaign_schedule(campaign=campaign)
    clocked_id = task.clocked_id

    campaign_schedule_delete(campaign=campaign)

    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
    assert not ClockedSchedule.objects.filter(pk=clocked_id).exists()
    assert CrontabSchedule.objects.count() == 0


def test_due_time_of_an_interval_is_the_tick_the_fire_belongs_to():
    campaign = Campaign(schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=3600)
    on_time = dt.datetime(2030, 3, 1, 10, 0, 0, 120_000, tzinfo=UTC)
    late = dt.datetime(2030, 3, 1, 10, 0, 3, tzinfo=UTC)
    next_tick = dt.datetime(2030, 3, 1, 11, 0, 1, tzinfo=UTC)

    ten = dt.datetime(2030, 3, 1, 10, tzinfo=UTC)
    assert schedule_due_at(campaign=campaign, now=on_time) == ten
    assert schedule_due_at(campaign=campaign, now=late) == schedule_due_at(
        campaign=campaign, now=on_time
    )
    assert schedule_due_at(campaign=campaign, now=next_tick) == dt.datetime(
        2030, 3, 1, 11, tzinfo=UTC
    )


def test_due_time_of_a_crontab_is_its_latest_tick_in_the_campaign_time_zone():
    campaign = Campaign(
        schedule_kind=Campaign.ScheduleKind.CRONTAB, crontab="30 9 * * *", time_zone="Europe/Paris"
    )
    # 09:30 in Paris is 07:30 UTC in summer and 08:30 UTC in winter.
    summer = dt.datetime(2030, 7, 1, 7, 30, 2, tzinfo=UTC)
    summer_late = dt.datetime(2030, 7, 1, 7, 34, 0, tzinfo=UTC)
    winter = dt.datetime(2030, 1, 15, 8, 30, 1, tzinfo=UTC)

    due = schedule_due_at(campaign=campaign, now=summer)
    assert due == dt.datetime(2030, 7, 1, 7, 30, tzinfo=UTC)
    assert due.astimezone(PARIS).hour == 9
    assert schedule_due_at(campaign=campaign, now=summer_late) == due
    assert schedule_due_at(campaign=campaign, now=winter) == dt.datetime(
        2030, 1, 15, 8, 30, tzinfo=UTC
    )


def test_due_time_of_a_one_off_is_its_clocked_time():
    when = dt.datetime(2030, 5, 5, 12, 0, tzinfo=UTC)
    campaign = Campaign(schedule_kind=Campaign.ScheduleKind.ONCE, scheduled_at=when)
    assert schedule_due_at(campaign=campaign, now=when + dt.timedelta(seconds=7)) == when


def test_beat_firing_twice_makes_one_run(dispatch_settings, django_capture_on_commit_callbacks):
    campaign = make_campaign(
        4, schedule_kind=Campaign.ScheduleKind.INTERVAL, interval_seconds=86400
    )

    with django_capture_on_commit_callbacks(execute=True):
        first = start_run.delay(campaign_id=campaign.pk).get()
    with django_capture_on_commit_callbacks(execute=True):
        second = start_run.delay(campaign_id=campaign.pk).get()

    assert first == second
    run = CampaignRun.objects.get(campaign=campaign)
    assert run.due_at == schedule_due_at(campaign=campaign)
    assert len(mail.outbox) == 4


def test_start_run_for_a_missing_or_unscheduled_campaign_does_nothing(dispatch_settings):
    draft = make_campaign(2, status=Campaign.Status.DRAFT)

    assert start_run.delay(campaign_id=draft.pk + 1000).get() is None
    assert start_run.delay(campaign_id=draft.pk).get() is None
    assert CampaignRun.objects.count() == 0
    assert mail.outbox == []
