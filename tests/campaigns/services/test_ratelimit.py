"""Per-channel token buckets: parsing, the database bucket and the Redis (Lua) bucket."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from django.core.exceptions import ImproperlyConfigured

from campaigns.models import ChannelRateBucket
from campaigns.services import ratelimit
from campaigns.services.ratelimit import (
    RATE_LIMIT_FORMAT,
    Grant,
    parse_rate_limits,
    rate_limit_reset,
    rate_limit_take,
)

pytestmark = pytest.mark.django_db


def test_rates_are_parsed_from_the_environment_format():
    assert parse_rate_limits("email=50, push=2.5") == {"email": 50.0, "push": 2.5}
    assert parse_rate_limits("") == {}
    assert parse_rate_limits({"email": 10}) == {"email": 10.0}


@pytest.mark.parametrize("value", ["email", "email=fast", "email=0", "=5", "email=-1"])
def test_bad_rates_are_refused_clearly(value):
    with pytest.raises(ImproperlyConfigured) as error:
        parse_rate_limits(value)
    assert str(error.value).startswith(RATE_LIMIT_FORMAT.split("{")[0])


def test_an_unlimited_channel_gets_everything(settings):
    settings.CAMPAIGNS_CHANNEL_RATE_LIMITS = "push=1"
    assert rate_limit_take(channel="email", count=1000) == Grant(granted=1000)


def test_the_database_bucket_grants_a_burst_then_refills_at_the_rate(settings):
    settings.CAMPAIGNS_CHANNEL_RATE_LIMITS = "email=20"
    settings.CAMPAIGNS_RATE_LIMIT_BURST_SECONDS = 1.0
    settings.CAMPAIGNS_RATE_LIMIT_REDIS_URL = ""

    first = rate_limit_take(channel="email", count=50)
    assert first.granted == 20
    assert first.retry_after == pytest.approx(1.0, abs=0.1)  # 20 more tokens at 20/s
    empty = rate_limit_take(channel="email", count=5)
    assert empty.granted == 0
    assert 0.2 <= empty.retry_after <= 0.3  # 5 tokens at 20/s
    time.sleep(0.3)
    assert rate_limit_take(channel="email", count=50).granted in (5, 6, 7)
    assert ChannelRateBucket.objects.filter(channel="email").count() == 1


@pytest.fixture
def redis_bucket(settings, redis_service):
    """Settings pointing the buckets at the test Redis; the channel name is unique per test."""
    settings.CAMPAIGNS_RATE_LIMIT_REDIS_URL = redis_service
    settings.CAMPAIGNS_RATE_LIMIT_BURST_SECONDS = 1.0
    channel = f"test-{uuid.uuid4().hex[:8]}"
    settings.CAMPAIGNS_CHANNEL_RATE_LIMITS = f"{channel}=40"
    ratelimit._redis_script.cache_clear()
    yield channel
    rate_limit_reset(channel=channel)
    ratelimit._redis_script.cache_clear()


def test_the_redis_bucket_grants_a_burst_then_refills_at_the_rate(redis_bucket):
    first = rate_limit_take(channel=redis_bucket, count=100)
    assert first.granted == 40
    assert first.retry_after == pytest.approx(1.0, abs=0.1)
    assert rate_limit_take(channel=redis_bucket, count=1).granted == 0
    time.sleep(0.25)
    assert 9 <= rate_limit_take(channel=redis_bucket, count=100).granted <= 12
    assert not ChannelRateBucket.objects.exists()  # nothing in the database


def test_the_redis_bucket_is_shared_by_concurrent_takers(redis_bucket):
    """Eight threads hammering the bucket for 0.5 s get no more than burst + rate x time."""
    granted: list[int] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + 0.5

    def take() -> None:
        while time.monotonic() < stop_at:
            got = rate_limit_take(channel=redis_bucket, count=3).granted
            with lock:
                granted.append(got)

    threads = [threading.Thread(target=take) for _ in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started

    assert sum(granted) <= 40 + 40 * elapsed + 1
    assert sum(granted) >= 40  # the burst was handed out
