"""Fixtures for the policy tests: fresh plugin caches, the policies' clock, quiet hours on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from campaigns.services.policies import policy_toggle_set
from tests.campaigns.clock import clock  # noqa: F401 - a fixture
from tests.campaigns.plugin_caches import reset_plugin_caches


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Plugin lists and per-thread policy caches must not leak between tests."""
    reset_plugin_caches()
    yield
    reset_plugin_caches()


@pytest.fixture
def quiet_hours():
    return policy_toggle_set(
        policy="campaigns_quiet_hours",
        enabled=True,
        parameters={"start_hour": 21, "end_hour": 8},
    )
