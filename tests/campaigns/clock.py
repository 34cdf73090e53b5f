"""The policies' clock for tests: ``clock`` freezes ``campaigns.policies.clock.now``."""

from __future__ import annotations

import datetime as dt

import pytest

from campaigns import policies


class Clock:
    """A settable ``campaigns.policies.clock.now``."""

    def __init__(self, when: dt.datetime) -> None:
        self.when = when

    def __call__(self) -> dt.datetime:
        return self.when


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Freeze the policies' clock at 2030-06-01 12:00 UTC; set ``clock.when`` to move it."""
    fixed = Clock(dt.datetime(2030, 6, 1, 12, 0, tzinfo=dt.UTC))
    monkeypatch.setattr(policies.clock, "now", fixed)
    return fixed
