"""Fixtures for push tests (channel, endpoint, campaigns): a loopback push service and VAPID keys.

Test modules bring the fixtures in with ``from push_fixtures import *`` (``__all__`` lists
only fixtures) and import helpers by name.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fake_push_service import BrowserSubscription, FakePushService, new_vapid_private_key

__all__ = ["push_service", "push_settings", "vapid_keys"]

VAPID_SUBJECT = "mailto:push-tests@example.org"


@pytest.fixture(scope="session")
def vapid_keys() -> tuple[str, str]:
    """A VAPID key pair made for this test session: (private key, public key), base64url."""
    return new_vapid_private_key()


@pytest.fixture
def push_service() -> Iterator[FakePushService]:
    """A running push service on 127.0.0.1."""
    with FakePushService() as service:
        yield service


@pytest.fixture
def push_settings(settings, vapid_keys: tuple[str, str]):
    """VAPID configured (as the environment would configure it) and the push channel enabled."""
    settings.PUSH_NOTIFICATIONS_SETTINGS = {
        "WP_PRIVATE_KEY": vapid_keys[0],
        "WP_CLAIMS": {"sub": VAPID_SUBJECT},
        "WP_ERROR_TIMEOUT": 5,
    }
    settings.ACE_ENABLED_CHANNELS = ["push_notification"]
    settings.ACE_CHANNEL_PUSH_RETRY_DELAY = 60
    settings.ACE_CHANNEL_PUSH_TTL = 3600
    settings.PUSH_ALLOW_HTTP_LOOPBACK_ENDPOINTS = True
    return settings


def add_device(user: Any, subscription: BrowserSubscription, **fields: Any):
    """Store a subscription as a WebPushDevice of ``user`` (what the endpoint does)."""
    from push_notifications.models import WebPushDevice

    return WebPushDevice.objects.create(
        user=user,
        registration_id=subscription.endpoint,
        p256dh=subscription.p256dh,
        auth=subscription.auth,
        browser="FIREFOX",
        **fields,
    )
