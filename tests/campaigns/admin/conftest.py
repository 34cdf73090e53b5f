"""Fixtures for the admin tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.campaigns.plugin_caches import reset_plugin_caches


@pytest.fixture
def fresh_plugins() -> Iterator[None]:
    """Plugin lists and per-thread policy caches must not leak between tests."""
    reset_plugin_caches()
    yield
    reset_plugin_caches()
