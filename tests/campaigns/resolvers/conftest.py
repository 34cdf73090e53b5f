"""Fixtures for the resolver tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.campaigns.plugin_caches import reset_plugin_caches


@pytest.fixture(autouse=True)
def _fresh_plugins() -> Iterator[None]:
    """Plugin lists must not leak between tests (some tests add a plugin)."""
    reset_plugin_caches()
    yield
    reset_plugin_caches()
