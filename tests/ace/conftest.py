"""Fixtures for the ACE tests: test templates, stub channels and policies."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
from ace_stubs import StubEmailChannel, StubPushChannel

from ace.test_utils import patch_channels, patch_policies

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"


@pytest.fixture(autouse=True)
def ace_templates(settings):
    """Serve tests/ace/templates (testapp/edx_ace/...) through Django's file loaders.

    The project's database loader is left out so these tests need no database.
    """
    templates = copy.deepcopy(settings.TEMPLATES)
    engine = templates[0]
    engine["DIRS"] = [TEMPLATES_DIR, *engine.get("DIRS", [])]
    engine["OPTIONS"]["loaders"] = [
        (
            "django.template.loaders.cached.Loader",
            [
                "django.template.loaders.filesystem.Loader",
                "django.template.loaders.app_directories.Loader",
            ],
        )
    ]
    settings.TEMPLATES = templates
    return TEMPLATES_DIR


@pytest.fixture(autouse=True)
def ace_settings(settings):
    """Plain ACE settings: django_email only, no policies, a from-address, locmem mail."""
    settings.ACE_ENABLED_CHANNELS = ["django_email"]
    settings.ACE_ENABLED_POLICIES = []
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "django_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "django_email"
    settings.DEFAULT_FROM_EMAIL = "Platform <noreply@example.org>"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.LANGUAGE_CODE = "en"
    return settings


@pytest.fixture
def no_policies(request):
    """No policies at all (patched, so no plugin loading)."""
    patch_policies(request, [])


@pytest.fixture
def stub_email(request, no_policies, settings) -> StubEmailChannel:
    """A stub email channel as the only channel ("stub_email")."""
    channel = StubEmailChannel()
    patch_channels(request, {"stub_email": channel})
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "stub_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "stub_email"
    return channel


@pytest.fixture
def stub_channels(request, no_policies, settings) -> dict:
    """Two email channels (default and transactional) and a push channel."""
    chans = {
        "stub_email": StubEmailChannel(),
        "stub_transactional": StubEmailChannel(),
        "stub_push": StubPushChannel(),
    }
    patch_channels(request, chans)
    settings.ACE_CHANNEL_DEFAULT_EMAIL = "stub_email"
    settings.ACE_CHANNEL_TRANSACTIONAL_EMAIL = "stub_transactional"
    return chans


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    """Record delivery retry waits instead of sleeping."""
    waits: list[float] = []
    monkeypatch.setattr("ace.delivery._sleep", waits.append)
    return waits
