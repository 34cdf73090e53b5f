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
