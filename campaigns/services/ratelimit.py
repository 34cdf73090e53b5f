"""Per-channel send rates shared by every worker: a token bucket in Redis, else in the database.

``CAMPAIGNS_CHANNEL_RATE_LIMITS`` (env, e.g. ``"email=50,push=200"``: messages per second) caps
each channel across all workers. A batch asks for as many tokens as it is about to send; when it
gets fewer it sends what it got and re-enqueues the rest with an ``eta`` — no worker sleeps.
The bucket holds at most ``rate * CAMPAIGNS_RATE_LIMIT_BURST_SECONDS`` tokens.

With Redis (``CAMPAIGNS_RATE_LIMIT_REDIS_URL``, defaulting to ``REDIS_URL`` or a Redis broker)
the bucket is one hash updated atomically by a Lua script using the server's clock
(https://redis.io/docs/latest/develop/interact/programmability/eval-intro/); otherwise it is a
``ChannelRateBucket`` row updated under ``SELECT ... FOR UPDATE``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import attrs
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from campaigns import conf
from campaigns.models import ChannelRateBucket

RATE_LIMIT_FORMAT = (
    "CAMPAIGNS_CHANNEL_RATE_LIMITS entries look like 'email=50' (messages per second, > 0); "
    "got {value!r}."
)
REDIS_KEY = "campaigns:ratelimit:{channel}"

# KEYS[1]: the bucket hash. ARGV: rate (tokens/s), capacity, requested.
# Returns {granted, seconds until min(remaining, capacity) tokens are available} as strings
# (Lua numbers would be truncated to integers in the reply).
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local requested = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if tokens == nil or ts == nil then
  tokens = capacity
  ts = now
end
tokens = math.min(capacity, tokens + math.max(0, now - ts) * rate)
local granted = math.min(requested, math.floor(tokens))
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
local wait = 0
local missing = math.min(requested - granted, capacity)
if missing > 0 then
  wait = (missing - tokens) / rate
end
return {tostring(granted), tostring(wait)}
"""


@attrs.define(frozen=True)
class Grant:
    """How many of the requested sends may go now, and when to come back for the rest."""

    granted: int
    retry_after: float = 0.0  # seconds; 0 when everything was granted


def parse_rate_limits(value: str | dict | None) -> dict[str, float]:
    """``"email=50, push=10"`` (or a dict) -> ``{"email": 50.0, "push": 10.0}``."""
    if not value:
        return {}
    if isinstance(value, dict):
        items = list(value.items())
    else:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        items = [tuple(p.split("=", 1)) if "=" in p else (p, "") for p in parts]
    limits: dict[str, float] = {}
    for channel, rate in items:
        try:
            number = float(rate)
        except (TypeError, ValueError):
            number = 0.0
        if not str(channel).strip() or not math.isfinite(number) or number <= 0:
            raise ImproperlyConfigured(RATE_LIMIT_FORMAT.format(value=f"{channel}={rate}"))
        limits[str(channel).strip()] = number
    return limits


def channel_rate_limits() -> dict[str, float]:
    """The configured rates (messages per second) by channel type value."""
    return parse_rate_limits(conf.channel_rate_limits_raw())


def _capacity(rate: float) -> float:
    burst = conf.rate_limit_burst_seconds()
    return max(1.0, rate * burst)


@functools.cache
def _redis_script(url: str) -> Any:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=5)
    return client.register_script(TOKEN_BUCKET_LUA)


def _take_redis(url: str, channel: str, rate: float, count: int) -> Grant:
    granted, wait = _redis_script(url)(
        keys=[REDIS_KEY.format(channel=channel)], args=[rate, _capacity(rate), count]
    )
    return Grant(granted=int(float(granted)), retry_after=max(0.0, float(wait)))


def _take_database(channel: str, rate: float, count: int) -> Grant:
    capacity = _capacity(rate)
    with transaction.atomic():
        now = timezone.now()
        bucket, _created = ChannelRateBucket.objects.select_for_update().get_or_create(
            channel=channel, defaults={"tokens": capacity, "updated_at": now}
        )
        elapsed = max(0.0, (now - bucket.updated_at).total_seconds())
        tokens = min(capacity, bucket.tokens + elapsed * rate)
        granted = min(count, math.floor(tokens))
        tokens -= granted
        ChannelRateBucket.objects.filter(pk=bucket.pk).update(tokens=tokens, updated_at=now)
    missing = min(count - granted, capacity)
    wait = (missing - tokens) / rate if missing > 0 else 0.0
    return Grant(granted=granted, retry_after=max(0.0, wait))


def rate_limit_take(*, channel: str, count: int) -> Grant:
    """Take up to ``count`` tokens from ``channel``'s bucket; unlimited channels get them all."""
    if count <= 0:
        return Grant(granted=0)
    rate = channel_rate_limits().get(channel)
    if not rate:
        return Grant(granted=count)
    url = conf.rate_limit_redis_url()
    if url:
        return _take_redis(url, channel, rate, count)
    return _take_database(channel, rate, count)


def rate_limit_reset(*, channel: str) -> None:
    """Forget a channel's bucket (tests, or after changing its rate)."""
    url = conf.rate_limit_redis_url()
    if url:
        _redis_script(url).registered_client.delete(REDIS_KEY.format(channel=channel))
    ChannelRateBucket.objects.filter(channel=channel).delete()
