"""Quiet hours: during the recipient's local night, messages wait for the morning."""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo
from typing import TYPE_CHECKING

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from ace.channel import ChannelType
from ace.policy import PolicyResult
from campaigns.policies import clock
from campaigns.policies.base import CampaignPolicy, allow, defer

if TYPE_CHECKING:
    from ace.message import Message


def _time_zone_choices() -> list[tuple[str, str]]:
    return [("", "---")] + [(name, name) for name in sorted(zoneinfo.available_timezones())]


class QuietHoursForm(forms.Form):
    """Parameters of quiet hours."""

    start_hour = forms.IntegerField(
        min_value=0, max_value=23, initial=21, help_text="local hour the quiet period starts"
    )
    end_hour = forms.IntegerField(
        min_value=0, max_value=23, initial=8, help_text="local hour it ends (exclusive)"
    )
    channels = forms.MultipleChoiceField(
        choices=[(c.value, c.value) for c in ChannelType],
        initial=[c.value for c in ChannelType],
        help_text="channels kept quiet",
    )
    default_time_zone = forms.ChoiceField(
        choices=_time_zone_choices,
        required=False,
        initial="",
        help_text="when neither recipient nor campaign has one (default: settings.TIME_ZONE)",
    )

    def clean(self) -> dict:
        data = super().clean()
        if data.get("start_hour") is not None and data.get("start_hour") == data.get("end_hour"):
            raise ValidationError("start_hour and end_hour must differ.")
        return data


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> zoneinfo.ZoneInfo | None:
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


class QuietHoursPolicy(CampaignPolicy):
    """Postpone, during the quiet hours of the recipient's local time, to the end of those
    hours (``defer_until``): a message is delivered when the recipient's morning comes, not
    dropped. Local time is the recipient's time zone (``options["recipient_time_zone"]``),
    else the campaign's (``options["campaign_time_zone"]``), else the toggle's
    ``default_time_zone``, else ``settings.TIME_ZONE``."""

    name = "campaigns_quiet_hours"
    label = "Quiet hours"
    parameters_form = QuietHoursForm

    @staticmethod
    def time_zone_for(message: Message, parameters: dict) -> zoneinfo.ZoneInfo:
        options = message.options or {}
        for candidate in (
            options.get("recipient_time_zone"),
            options.get("campaign_time_zone"),
            parameters.get("default_time_zone"),
            settings.TIME_ZONE,
        ):
            zone = _zone(candidate or "")
            if zone is not None:
                return zone
        return zoneinfo.ZoneInfo("UTC")

    @staticmethod
    def is_quiet(hour: int, start: int, end: int) -> bool:
        if start < end:
            return start <= hour < end
        return hour >= start or hour < end  # the period wraps around midnight

    @staticmethod
    def quiet_until(local: dt.datetime, end: int) -> dt.datetime:
        """The first ``end:00`` local wall-clock time after ``local`` (aware, any zone), in
        UTC. Across a DST change the wall-clock hour is kept (07:00 stays 07:00); an hour
        that a DST change skips that day maps to the moment the clocks jump.
        """
        zone = local.tzinfo
        day = local.date()
        for _ in range(3):  # today or tomorrow; a third day only as a guard
            candidate = dt.datetime.combine(day, dt.time(end), tzinfo=zone)
            instant = candidate.astimezone(dt.UTC)  # a real instant, even inside a DST gap
            if instant > local:
                return instant
            day += dt.timedelta(days=1)
        raise AssertionError("unreachable: a later end hour always exists")

    def evaluate(self, message: Message, parameters: dict) -> PolicyResult:
        zone = self.time_zone_for(message, parameters)
        local = clock.now().astimezone(zone)
        start, end = parameters["start_hour"], parameters["end_hour"]
        if not self.is_quiet(local.hour, start, end):
            return allow()
        channels = {ChannelType(c) for c in parameters["channels"]}
        return defer(
            f"quiet hours {start:02d}:00-{end:02d}:00 in {zone.key} (local time {local:%H:%M}): "
            f"postponed until {end:02d}:00 {zone.key}",
            self.quiet_until(local, end),
            channels,
        )
