"""Campaign schedules as django-celery-beat ``PeriodicTask`` rows, kept in step with the campaign.

A campaign is sent now, once at a date and time (a ``ClockedSchedule`` with ``one_off``), or
repeatedly (a ``CrontabSchedule`` in the campaign's time zone, or an ``IntervalSchedule``).
Each scheduled campaign owns one ``PeriodicTask`` named ``campaign:<id>`` whose task is
``campaigns.tasks.start_run``; operators can see (and pause) it in beat's admin. Bulk changes
call ``PeriodicTasks.update_changed()`` so a running beat notices them
(https://django-celery-beat.readthedocs.io/en/latest/#example-creating-interval-based-periodic-task).
"""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from collections.abc import Iterable

from celery.schedules import crontab as celery_crontab
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
)

from campaigns.exceptions import CampaignError
from campaigns.models import Campaign
from campaigns.services import enqueue
from campaigns.services.campaigns import campaign_transition

START_RUN_TASK = enqueue.START_RUN

SCHEDULE_CRONTAB_FORMAT = (
    'A crontab needs five fields "minute hour day-of-month month day-of-week", e.g. "0 9 * * 1" '
    "(https://crontab.guru); got {value!r}."
)
SCHEDULE_CRONTAB_INVALID = "Invalid crontab {value!r}: {problem}."
SCHEDULE_INTERVAL_MISSING = "A recurring interval needs a number of seconds of at least {minimum}."
SCHEDULE_AT_MISSING = "A one-off schedule needs a date and time."
SCHEDULE_AT_PAST = "The scheduled time {value} is in the past."
SCHEDULE_TIME_ZONE_INVALID = "Unknown time zone {value!r} (use an IANA name like Europe/Paris)."
SCHEDULE_NOT_ALLOWED = "Campaign {name!r} is {status}; only approved campaigns can be scheduled."

#: Shortest interval a recurring campaign may use (beat's resolution is seconds, a run is not).
MIN_INTERVAL_SECONDS = 60
#: How far back to look for the crontab tick a late beat fire belongs to.
CRONTAB_LOOKBACK = dt.timedelta(days=8)
#: Campaign states from which ``campaign_schedule`` may schedule.
SCHEDULABLE = (Campaign.Status.APPROVED,)
RECURRING = (Campaign.ScheduleKind.CRONTAB, Campaign.ScheduleKind.INTERVAL)


def periodic_task_name(campaign: Campaign) -> str:
    """The unique ``PeriodicTask.name`` of a campaign's schedule."""
    return f"campaign:{campaign.pk}"


def _time_zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValidationError(
            {"time_zone": SCHEDULE_TIME_ZONE_INVALID.format(value=name)}, code="time_zone"
        )


def parse_crontab(value: str) -> celery_crontab:
    """A Celery ``crontab`` from five cron fields; ``ValidationError`` naming the problem."""
    fields = (value or "").split()
    if len(fields) != 5:
        raise ValidationError(
            {"crontab": SCHEDULE_CRONTAB_FORMAT.format(value=value)}, code="crontab"
        )
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        return celery_crontab(
            minute=minute,
            hour=hour,
            day_of_week=day_of_week,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
        )
    except ValueError as exc:
        raise ValidationError(
            {"crontab": SCHEDULE_CRONTAB_INVALID.format(value=value, problem=exc)},
            code="crontab",
        )


def campaign_schedule_validate(
    *, campaign: Campaign, now: dt.datetime | None = None, check_past: bool = True
) -> None:
    """Check the schedule fields of ``campaign``; raises ``ValidationError`` keyed by field.

    ``check_past=False`` accepts a one-off time already passed (re-syncing a task that fired).
    """
    _time_zone(campaign.time_zone)
    kind = campaign.schedule_kind
    if kind == Campaign.ScheduleKind.ONCE:
        if campaign.scheduled_at is None:
            raise ValidationError({"scheduled_at": SCHEDULE_AT_MISSING}, code="scheduled_at")
        if check_past and campaign.scheduled_at < (now or timezone.now()):
            raise ValidationError(
                {"scheduled_at": SCHEDULE_AT_PAST.format(value=campaign.scheduled_at)},
                code="scheduled_at_past",
            )
    elif kind == Campaign.ScheduleKind.CRONTAB:
        parse_crontab(campaign.crontab)
    elif kind == Campaign.ScheduleKind.INTERVAL and (
        not campaign.interval_seconds or campaign.interval_seconds < MIN_INTERVAL_SECONDS
    ):
        message = SCHEDULE_INTERVAL_MISSING.format(minimum=MIN_INTERVAL_SECONDS)
        raise ValidationError({"interval_seconds": message}, code="interval")


def _schedule_for(
    campaign: Campaign, task: PeriodicTask | None
) -> dict[str, ClockedSchedule | CrontabSchedule | IntervalSchedule | None]:
    """The schedule foreign keys of the campaign's PeriodicTask (exactly one set)."""
    fks: dict = {"clocked": None, "crontab": None, "interval": None, "solar": None}
    kind = campaign.schedule_kind
    if kind == Campaign.ScheduleKind.ONCE:
        clocked = task.clocked if task is not None and task.clocked_id else None
        if clocked is None:
            clocked = ClockedSchedule.objects.create(clocked_time=campaign.scheduled_at)
        elif clocked.clocked_time != campaign.scheduled_at:
            clocked.clocked_time = campaign.scheduled_at
            clocked.save(update_fields=["clocked_time"])
        fks["clocked"] = clocked
    elif kind == Campaign.ScheduleKind.CRONTAB:
        minute, hour, day_of_month, month_of_year, day_of_week = campaign.crontab.split()
        fields = {
            "minute": minute,
            "hour": hour,
            "day_of_month": day_of_month,
            "month_of_year": month_of_year,
            "day_of_week": day_of_week,
            "timezone": _time_zone(campaign.time_zone),
        }
        # Crontab rows are shared between tasks; there may already be duplicates.
        fks["crontab"] = CrontabSchedule.objects.filter(**fields).order_by(
            "pk"
        ).first() or CrontabSchedule.objects.create(**fields)
    elif kind == Campaign.ScheduleKind.INTERVAL:
        fields = {"every": campaign.interval_seconds, "period": IntervalSchedule.SECONDS}
        fks["interval"] = IntervalSchedule.objects.filter(**fields).order_by(
            "pk"
        ).first() or IntervalSchedule.objects.create(**fields)
    return fks


@transaction.atomic
def campaign_schedule_sync(*, campaign: Campaign) -> PeriodicTask | None:
    """Create, update or delete the campaign's ``PeriodicTask`` to match its schedule fields.

    "Send now" campaigns have no periodic task (``campaign_schedule`` starts their run).
    The task is enabled only while the campaign is SCHEDULED or RUNNING.
    """
    task = PeriodicTask.objects.filter(name=periodic_task_name(campaign)).first()
    if campaign.schedule_kind == Campaign.ScheduleKind.NOW:
        campaign_schedule_delete(campaign=campaign)
        return None
    campaign_schedule_validate(campaign=campaign, check_past=False)
    old_clocked = task.clocked if task is not None and task.clocked_id else None
    fks = _schedule_for(campaign, task)
    if task is None:
        task = PeriodicTask(name=periodic_task_name(campaign), task=START_RUN_TASK)
    task.task = START_RUN_TASK
    task.kwargs = json.dumps({"campaign_id": campaign.pk})
    task.one_off = campaign.schedule_kind == Campaign.ScheduleKind.ONCE
    task.enabled = campaign.status in (Campaign.Status.SCHEDULED, Campaign.Status.RUNNING)
    task.description = f"Starts a run of campaign {campaign.pk} ({campaign.name})."[:2000]
    for name, value in fks.items():
        setattr(task, name, value)
    task.save()  # PeriodicTask.save() calls PeriodicTasks.changed()
    if old_clocked is not None and fks["clocked"] is None:
        old_clocked.delete()
    if campaign.periodic_task_id != task.pk:
        campaign.periodic_task = task
        Campaign.objects.filter(pk=campaign.pk).update(periodic_task=task)
    return task


@transaction.atomic
def campaign_schedule_delete(*, campaign: Campaign) -> None:
    """Delete the campaign's ``PeriodicTask`` (and its one-off clock); no-op if none."""
    task = PeriodicTask.objects.filter(name=periodic_task_name(campaign)).first()
    if task is None:
        return
    clocked = task.clocked if task.clocked_id else None
    task.delete()  # PeriodicTask.delete() calls PeriodicTasks.changed()
    if clocked is not None and not PeriodicTask.objects.filter(clocked=clocked).exists():
        clocked.delete()
    if campaign.periodic_task_id is not None:
        campaign.periodic_task = None


def campaign_schedules_set_enabled(*, campaigns: Iterable[Campaign], enabled: bool) -> int:
    """Enable or disable the periodic tasks of many campaigns in one UPDATE; returns the count.

    A queryset ``update`` bypasses ``PeriodicTask.save``, so tell beat with ``update_changed``.
    """
    names = [periodic_task_name(c) for c in campaigns]
    fields: dict = {"enabled": enabled}
    if not enabled:
        fields["last_run_at"] = None  # as PeriodicTask.save() does for a disabled task
    count = PeriodicTask.objects.filter(name__in=names).update(**fields)
    if count:
        PeriodicTasks.update_changed()
    return count


def campaign_schedule(*, campaign: Campaign, now: dt.datetime | None = None) -> PeriodicTask | None:
    """Schedule an approved campaign: status SCHEDULED and its ``PeriodicTask`` enabled.

    A "send now" campaign gets no periodic task: its run is started at once (after commit)
    with the current time as due time. Raises ``CampaignError`` if the campaign is not approved
    (a scheduled one is already scheduled), ``ValidationError`` for a bad schedule.
    """
    now = now or timezone.now()
    with transaction.atomic():
        locked = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if locked.status not in SCHEDULABLE:
            raise CampaignError(
                SCHEDULE_NOT_ALLOWED.format(name=locked.name, status=locked.get_status_display()),
                {"campaign_id": locked.pk, "status": locked.status},
            )
        campaign_schedule_validate(campaign=locked, now=now)
        campaign_transition(campaign=locked, to=Campaign.Status.SCHEDULED)
        task = campaign_schedule_sync(campaign=locked)
        if locked.schedule_kind == Campaign.ScheduleKind.NOW:
            enqueue.start_run(campaign_id=locked.pk, due_at=now)
    campaign.status = locked.status
    campaign.periodic_task = locked.periodic_task
    return task


# Due times -----------------------------------------------------------------------------------


def _crontab_matches(schedule: celery_crontab, local: dt.datetime) -> bool:
    return (
        local.minute in schedule.minute
        and local.hour in schedule.hour
        and local.day in schedule.day_of_month
        and local.month in schedule.month_of_year
        and local.isoweekday() % 7 in schedule.day_of_week
    )


def schedule_due_at(*, campaign: Campaign, now: dt.datetime | None = None) -> dt.datetime:
    """The due time a beat fire at ``now`` stands for: ``now`` truncated to the schedule's tick.

    Beat does not pass its due time to the task, so two fires for the same tick (two beats, a
    redelivered message) must map to the same value for the unique (campaign, due_at) run:
    one-off -> the clocked time; interval -> ``now`` floored to a multiple of the interval since
    the epoch; crontab -> the latest matching minute at or before ``now`` in the campaign's
    time zone; "now" campaigns -> ``now`` to the second.
    """
    now = (now or timezone.now()).astimezone(dt.UTC)
    kind = campaign.schedule_kind
    if kind == Campaign.ScheduleKind.ONCE and campaign.scheduled_at is not None:
        return campaign.scheduled_at.astimezone(dt.UTC).replace(microsecond=0)
    if kind == Campaign.ScheduleKind.INTERVAL and campaign.interval_seconds:
        step = campaign.interval_seconds
        return dt.datetime.fromtimestamp(int(now.timestamp()) // step * step, tz=dt.UTC)
    if kind == Campaign.ScheduleKind.CRONTAB and campaign.crontab:
        schedule = parse_crontab(campaign.crontab)
        tz = _time_zone(campaign.time_zone)
        minute = now.replace(second=0, microsecond=0)
        earliest = minute - CRONTAB_LOOKBACK
        candidate = minute
        while candidate > earliest:
            if _crontab_matches(schedule, candidate.astimezone(tz)):
                return candidate
            candidate -= dt.timedelta(minutes=1)
        return minute
    return now.replace(microsecond=0)
