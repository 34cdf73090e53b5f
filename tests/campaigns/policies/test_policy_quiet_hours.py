"""Quiet hours (campaigns/policies/quiet_hours.py)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core.exceptions import ValidationError

from ace import policy as ace_policy
from campaigns.policies import QuietHoursPolicy
from campaigns.services.policies import policy_toggle_set
from tests.campaigns.policies.helpers import EMAIL, PUSH, allowed_and_reasons, message

pytestmark = pytest.mark.django_db


def test_quiet_hours_use_the_recipient_time_zone(clock, quiet_hours):
    # 12:00 UTC is 21:00 in Tokyo (quiet) and 14:00 in Paris (not quiet).
    tokyo = message(recipient_time_zone="Asia/Tokyo")
    paris = message(recipient_time_zone="Europe/Paris")
    result = QuietHoursPolicy().check(tokyo)
    assert result.deny == {EMAIL, PUSH}
    allowed, reasons = allowed_and_reasons(tokyo)
    assert allowed == set()
    assert "quiet hours 21:00-08:00 in Asia/Tokyo (local time 21:00)" in reasons[EMAIL]
    assert allowed_and_reasons(paris)[0] == {EMAIL, PUSH}


def test_quiet_hours_fall_back_to_campaign_then_default_zone(clock):
    params = QuietHoursPolicy.clean_parameters(
        {"start_hour": 9, "end_hour": 17, "default_time_zone": "America/New_York"}
    )
    policy = QuietHoursPolicy()
    # No recipient zone: the campaign's (Tokyo, 21:00 -> outside 9-17).
    assert policy.evaluate(message(campaign_time_zone="Asia/Tokyo"), params).deny == set()
    # Neither: the toggle's default (New York, 08:00 -> outside); invalid names are skipped.
    assert policy.evaluate(message(recipient_time_zone="Mars/Base"), params).deny == set()
    clock.when = clock.when.replace(hour=15)  # 11:00 in New York
    assert policy.evaluate(message(), params).deny == {EMAIL, PUSH}


def test_quiet_hours_can_keep_only_some_channels_quiet(clock):
    params = QuietHoursPolicy.clean_parameters(
        {"start_hour": 11, "end_hour": 13, "channels": ["push"]}
    )
    result = QuietHoursPolicy().evaluate(message(recipient_time_zone="UTC"), params)
    assert result.deny == {PUSH}


def test_quiet_hours_postpone_until_they_end_in_the_recipients_zone(clock, quiet_hours):
    # 12:00 UTC is 21:00 in Tokyo: quiet until 08:00 there, 23:00 UTC.
    result = QuietHoursPolicy().check(message(recipient_time_zone="Asia/Tokyo"))
    assert result.defer_until == dt.datetime(2030, 6, 1, 23, 0, tzinfo=dt.UTC)
    assert result.reason.endswith("postponed until 08:00 Asia/Tokyo")
    decision = ace_policy.decide(message(recipient_time_zone="Asia/Tokyo"))
    assert decision.denials == {}
    assert decision.deferrals[EMAIL].until == result.defer_until
    assert "campaigns_quiet_hours: quiet hours 21:00-08:00" in decision.deferrals[EMAIL].reason


def test_quiet_hours_end_keeps_the_local_hour_across_a_dst_change():
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    # The night clocks go forward (30 March 2025): 07:00 is then UTC+2.
    evening = dt.datetime(2025, 3, 29, 22, 0, tzinfo=paris)
    assert QuietHoursPolicy.quiet_until(evening, 7) == dt.datetime(2025, 3, 30, 5, 0, tzinfo=dt.UTC)
    # Early morning: today's end, not tomorrow's.
    early = dt.datetime(2025, 10, 26, 1, 30, tzinfo=paris)
    assert QuietHoursPolicy.quiet_until(early, 7) == dt.datetime(2025, 10, 26, 6, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("hour", "start", "end", "quiet"),
    [
        (22, 21, 8, True),
        (3, 21, 8, True),
        (8, 21, 8, False),
        (12, 21, 8, False),
        (13, 12, 14, True),
        (14, 12, 14, False),
        (11, 12, 14, False),
    ],
)
def test_quiet_hours_windows(hour, start, end, quiet):
    assert QuietHoursPolicy.is_quiet(hour, start, end) is quiet


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"start_hour": 24, "end_hour": 8}, "start_hour:"),
        ({"start_hour": 8, "end_hour": 8}, "start_hour and end_hour must differ"),
        ({"start_hour": 1, "end_hour": 2, "channels": ["fax"]}, "channels:"),
        ({"start_hour": 1, "end_hour": 2, "default_time_zone": "Mars/Base"}, "default_time_zone:"),
        ({"start_hour": 1, "end_hour": 2, "quiet": True}, "Unknown parameter: quiet"),
    ],
)
def test_quiet_hours_parameters_are_validated(parameters, fragment):
    with pytest.raises(ValidationError) as exc:
        policy_toggle_set(policy="campaigns_quiet_hours", enabled=True, parameters=parameters)
    assert any(fragment in m for m in exc.value.messages), exc.value.messages
