"""Fixtures for channel tests: a fake Sailthru API on loopback and settings pointing at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_sailthru import TEST_API_KEY, TEST_SECRET, TEST_TEMPLATE, FakeSailthru


@pytest.fixture
def fake_sailthru() -> Iterator[FakeSailthru]:
    """A running fake Sailthru that knows one template and checks every request's signature."""
    with FakeSailthru(api_key=TEST_API_KEY, secret=TEST_SECRET, templates={TEST_TEMPLATE}) as fake:
        yield fake


@pytest.fixture
def sailthru_settings(settings, fake_sailthru: FakeSailthru):
    """Configure the Sailthru channel to talk to ``fake_sailthru``; returns pytest-django's
    ``settings`` so a test can change one value (a wrong secret, debug mode ...)."""
    settings.ACE_CHANNEL_SAILTHRU_DEBUG = False
    settings.ACE_CHANNEL_SAILTHRU_TEMPLATE_NAME = TEST_TEMPLATE
    settings.ACE_CHANNEL_SAILTHRU_API_KEY = TEST_API_KEY
    settings.ACE_CHANNEL_SAILTHRU_API_SECRET = TEST_SECRET
    settings.ACE_CHANNEL_SAILTHRU_API_URL = fake_sailthru.url
    settings.ACE_CHANNEL_SAILTHRU_TIMEOUT = 5
    return settings
