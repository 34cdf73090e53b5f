"""Tests for ace.utils.date."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ace.utils.date import deserialize, get_current_time, serialize


def test_current_time_is_aware_utc():
    now = get_current_time()
    assert now.tzinfo is not None and now.utcoffset() == timedelta(0)
    assert abs(now - datetime.now(UTC)) < timedelta(seconds=5)


def test_round_trip_keeps_the_offset():
    value = datetime(2030, 5, 6, 7, 8, 9, 123456, tzinfo=timezone(timedelta(hours=-5)))
    text = serialize(value)
    assert text == "2030-05-06T07:08:09.123456-05:00"
    assert deserialize(text) == value
    assert deserialize(text).utcoffset() == timedelta(hours=-5)


def test_z_suffix_and_naive_values():
    assert deserialize("2030-01-01T00:00:00Z") == datetime(2030, 1, 1, tzinfo=UTC)
    assert deserialize("2030-01-01T00:00:00").tzinfo is None


def test_bad_input():
    with pytest.raises(TypeError):
        serialize("2030-01-01")
    with pytest.raises(TypeError):
        deserialize(20300101)
    with pytest.raises(ValueError):
        deserialize("yesterday")


# Drop-in fidelity with edx-ace 1.15 ------------------------------------------------------------


def test_none_both_ways():
    assert serialize(None) is None
    assert deserialize(None) is None


def _zones():
    from zoneinfo import ZoneInfo

    return [
        None,
        UTC,
        timezone(timedelta(hours=5, minutes=30)),
        timezone(timedelta(hours=-23, minutes=-59)),
        timezone(timedelta(seconds=-30, microseconds=5)),
        ZoneInfo("Europe/Paris"),
        ZoneInfo("America/St_Johns"),
        ZoneInfo("Pacific/Kiritimati"),
    ]


EDGE_VALUES = [
    datetime(16, 3, 4, 5, 6, 7),
    datetime(16, 3, 4, 5, 6, 7, 8),
    datetime(999, 12, 31, 23, 59, 59, 999999),
    datetime(1, 1, 2),
    datetime(9999, 12, 30, 23, 59, 59, 999999),
    datetime(2030, 5, 6, 7, 8, 9, 123456),
    datetime(2021, 11, 7, 1, 30, fold=1),  # repeated hour in America/*: the fold matters
    datetime(2021, 10, 31, 2, 30, fold=1),  # repeated hour in Europe/Paris
]


def _assert_round_trip(value):
    text = serialize(value)
    back = deserialize(text)
    assert back == value, text
    assert back.utcoffset() == value.utcoffset(), text
    assert (back.tzinfo is None) == (value.tzinfo is None)
    assert back.replace(tzinfo=None) == value.replace(tzinfo=None), text
    assert serialize(back) == text


@pytest.mark.parametrize("value", EDGE_VALUES, ids=str)
@pytest.mark.parametrize("zone", _zones(), ids=str)
def test_every_datetime_round_trips_exactly(value, zone):
    _assert_round_trip(value if zone is None else value.replace(tzinfo=zone))


def test_years_below_1000_keep_four_digits():
    assert serialize(datetime(16, 1, 2, 3, 4, 5)) == "0016-01-02T03:04:05"
    assert deserialize("0016-01-02T03:04:05+00:00") == datetime(16, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_a_random_sweep_of_datetimes_and_offsets_round_trips():
    import random

    rng = random.Random(20261201)
    zones = _zones()
    for _ in range(2000):
        value = datetime.min + timedelta(
            microseconds=rng.randrange((datetime.max - datetime.min) // timedelta(microseconds=1))
        )
        zone = rng.choice([*zones, timezone(timedelta(minutes=rng.randrange(-1439, 1440)))])
        if zone is not None:
            value = value.replace(tzinfo=zone, fold=rng.randrange(2))
            try:
                value.utcoffset()
                (value - value.utcoffset()).replace(tzinfo=None)  # representable in UTC
            except OverflowError:
                continue
        _assert_round_trip(value)


def test_a_named_zone_is_written_rfc_9557_style_and_comes_back():
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    second_half_past_two = datetime(2021, 10, 31, 2, 30, fold=1, tzinfo=paris)
    text = serialize(second_half_past_two)
    assert text == "2021-10-31T02:30:00+01:00[Europe/Paris]"
    back = deserialize(text)
    assert back.tzinfo is paris
    assert (back.fold, back.utcoffset()) == (1, timedelta(hours=1))
    # A wall time in the spring gap keeps its wall time and offset too.
    gap = datetime(2021, 3, 28, 2, 30, tzinfo=paris)
    assert deserialize(serialize(gap)).replace(tzinfo=None) == datetime(2021, 3, 28, 2, 30)


def test_an_unknown_zone_keeps_the_instant_and_offset():
    back = deserialize("2030-01-01T00:00:00+05:00[Nowhere/Atlantis]")
    assert back == datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=5)))
    # An offset the zone never had there: the instant wins.
    odd = deserialize("2030-01-01T00:00:00+05:00[Europe/Paris]")
    assert odd == datetime(2029, 12, 31, 19, tzinfo=UTC)
    assert str(odd.tzinfo) == "Europe/Paris"


def test_strings_from_the_reference_still_parse():
    assert deserialize("2030-05-06T07:08:09.123456+00:00") == datetime(
        2030, 5, 6, 7, 8, 9, 123456, tzinfo=UTC
    )
