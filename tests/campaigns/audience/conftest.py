"""Fixtures for the audience tests (resolvers, imports, unsubscribe, dry run)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ace import policy as ace_policy
from campaigns import policies, resolvers
from tests.campaigns.clock import clock  # noqa: F401 - a fixture


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
