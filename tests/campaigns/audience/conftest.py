"""Fixtures for the audience tests (resolvers, imports, policies, unsubscribe, dry run)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from ace import policy as ace_policy
from campaigns import policies, resolvers


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Plugin lists and per-thread policy caches must not leak between tests."""
    resolvers.available_resolvers.cache_clear()
    policies.reset_plugin_caches()
    ace_policy.policies.reset()
    policies.set_batch_toggles(None)
    yield
    resolvers.available_resolvers.cache_clear()
    policies.reset_plugin_caches()
    ace_policy.policies.reset()
    policies.set_batch_toggles(None)


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
