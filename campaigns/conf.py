"""The ``CAMPAIGNS_*`` settings, each read through one getter with its default written once.

``config/settings/base.py`` fills these from the environment and leaves them ``None`` when a
variable is not set, so the default below applies (post_office's ``settings.py`` pattern).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    "CAMPAIGNS_BATCH_SIZE": 500,
    "CAMPAIGNS_SEND_CHUNK_SIZE": 100,
    "CAMPAIGNS_SENDING_LEASE_SECONDS": 60.0,
    "CAMPAIGNS_STALLED_RUN_SECONDS": 120.0,
    "CAMPAIGNS_RETRY_BACKOFF_SECONDS": 30.0,
    "CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS": 1800.0,
    "CAMPAIGNS_DEFAULT_EXPIRATION_HOURS": 24,
    "CAMPAIGNS_CHANNEL_RATE_LIMITS": "",
    "CAMPAIGNS_RATE_LIMIT_BURST_SECONDS": 1.0,
    "CAMPAIGNS_RATE_LIMIT_REDIS_URL": "",
    "CAMPAIGNS_TEMPLATE_CACHE_TTL": 5.0,
    "CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES": 1_000_000,
    "CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS": 2.0,
    "CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH": 5,
    "CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH": 1000,
    "CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS": None,
    "CAMPAIGNS_IMPORT_MAX_BYTES": 20 * 1024 * 1024,
    "CAMPAIGNS_IMPORT_MAX_ROWS": 100_000,
    "CAMPAIGNS_IMPORT_MAX_UNPACKED_BYTES": 200 * 1024 * 1024,
    "CAMPAIGNS_IMPORT_BACKGROUND_ROWS": 5_000,
    "CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS": 6 * 3600.0,
    # Delivery feedback (campaigns/feedback; README "Delivery feedback")
    "CAMPAIGNS_SOFT_BOUNCE_THRESHOLD": 3,
    "CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS": 72.0,
    "CAMPAIGNS_BOUNCE_IMAP_URL": "",
    "CAMPAIGNS_BOUNCE_IMAP_DELETE": False,
    "CAMPAIGNS_BOUNCE_MAILBOX_BATCH": 200,
}


def setting(name: str) -> Any:
    """``settings.<name>``, or its default when unset or ``None``."""
    value = getattr(settings, name, None)
    return DEFAULTS[name] if value is None else value


def batch_size() -> int:
    """Recipients per ``deliver_batch`` task."""
    return max(1, int(setting("CAMPAIGNS_BATCH_SIZE")))


def send_chunk_size() -> int:
    """Messages marked SENDING at once: the most a crash can leave UNKNOWN per worker, and how
    often a batch checks for pause/cancel."""
    return max(1, int(setting("CAMPAIGNS_SEND_CHUNK_SIZE")))


def sending_lease() -> dt.timedelta:
    """How long a SENDING row belongs to the attempt that marked it (then: UNKNOWN). A late
    outcome of that attempt still replaces the UNKNOWN, so a short lease loses nothing."""
    return dt.timedelta(seconds=float(setting("CAMPAIGNS_SENDING_LEASE_SECONDS")))


def stalled_after() -> dt.timedelta:
    """How long an active run may show no progress before its work is enqueued again."""
    return dt.timedelta(seconds=float(setting("CAMPAIGNS_STALLED_RUN_SECONDS")))


def retry_backoff() -> dt.timedelta:
    """First delay of a recoverable error when the channel suggests none."""
    return dt.timedelta(seconds=float(setting("CAMPAIGNS_RETRY_BACKOFF_SECONDS")))


def max_task_delay() -> dt.timedelta:
    """The longest retry delay, and the longest a re-enqueued ``deliver_batch`` waits on the
    broker (keep it under the visibility timeout: Redis redelivers eta tasks held longer)."""
    return dt.timedelta(seconds=float(setting("CAMPAIGNS_RETRY_BACKOFF_MAX_SECONDS")))


def default_expiration() -> dt.timedelta:
    """How long a run's undelivered messages stay deliverable unless the campaign says."""
    return dt.timedelta(hours=int(setting("CAMPAIGNS_DEFAULT_EXPIRATION_HOURS")))


def channel_rate_limits_raw() -> str | dict:
    """``CAMPAIGNS_CHANNEL_RATE_LIMITS`` as configured (parsed by the rate limit service)."""
    return setting("CAMPAIGNS_CHANNEL_RATE_LIMITS")


def rate_limit_burst_seconds() -> float:
    """How many seconds' worth of messages a rate limit lets through at once."""
    return float(setting("CAMPAIGNS_RATE_LIMIT_BURST_SECONDS"))


def rate_limit_redis_url() -> str:
    """Redis for the token buckets; empty: the database."""
    return setting("CAMPAIGNS_RATE_LIMIT_REDIS_URL") or ""


def template_cache_ttl() -> float:
    """Seconds between two checks of the database template loader for edits."""
    return float(setting("CAMPAIGNS_TEMPLATE_CACHE_TTL"))


def template_max_output_bytes() -> int:
    """The most one part of a template edited in the admin may render to (UTF-8 bytes)."""
    return max(1, int(setting("CAMPAIGNS_TEMPLATE_MAX_OUTPUT_BYTES")))


def template_max_render_seconds() -> float:
    """How long rendering one part of a template edited in the admin may take."""
    return max(0.001, float(setting("CAMPAIGNS_TEMPLATE_MAX_RENDER_SECONDS")))


def template_max_include_depth() -> int:
    """How deep ``{% include %}`` / ``{% extends %}`` of admin-edited templates may nest."""
    return max(0, int(setting("CAMPAIGNS_TEMPLATE_MAX_INCLUDE_DEPTH")))


def template_max_filter_width() -> int:
    """The largest width/count argument of ``ljust``, ``center``, ``rjust``, ``wordwrap``,
    ``floatformat`` and ``stringformat`` in admin-edited templates."""
    return max(1, int(setting("CAMPAIGNS_TEMPLATE_MAX_FILTER_WIDTH")))


def unsubscribe_max_age() -> dt.timedelta | None:
    """How long an unsubscribe link works; ``None`` (the default): forever. Laws such as
    CAN-SPAM want at least 30 days after the mail was sent."""
    days = setting("CAMPAIGNS_UNSUBSCRIBE_MAX_AGE_DAYS")
    return None if days is None else dt.timedelta(days=float(days))


def import_max_bytes() -> int:
    """The largest recipient list file (CSV or XLSX) the admin accepts, in bytes."""
    return max(1, int(setting("CAMPAIGNS_IMPORT_MAX_BYTES")))


def import_max_rows() -> int:
    """The most rows (not counting the header) one recipient list import may have."""
    return max(1, int(setting("CAMPAIGNS_IMPORT_MAX_ROWS")))


def import_max_unpacked_bytes() -> int:
    """The most an XLSX file may unpack to (its zip members added up), checked before parsing."""
    return max(1, int(setting("CAMPAIGNS_IMPORT_MAX_UNPACKED_BYTES")))


def import_background_rows() -> int:
    """Imports with more rows than this run in a Celery task, never in a web request."""
    return max(0, int(setting("CAMPAIGNS_IMPORT_BACKGROUND_ROWS")))


def import_tmp_max_age() -> dt.timedelta:
    """How long an uploaded file waits for its import to be confirmed before it is deleted."""
    return dt.timedelta(seconds=float(setting("CAMPAIGNS_IMPORT_TMP_MAX_AGE_SECONDS")))


# Delivery feedback --------------------------------------------------------------------------


def soft_bounce_threshold() -> int:
    """Soft bounces of an address (since its last delivery, or since a suppression of it was
    lifted) that put it on the suppression list."""
    return max(1, int(setting("CAMPAIGNS_SOFT_BOUNCE_THRESHOLD")))


def feedback_recipient_match_window() -> dt.timedelta | None:
    """How far back an event that names no message of ours may be matched by its address alone
    (only when exactly one delivery to that address was sent in that time); ``None``: never."""
    hours = float(setting("CAMPAIGNS_FEEDBACK_RECIPIENT_MATCH_HOURS"))
    return dt.timedelta(hours=hours) if hours > 0 else None


def bounce_imap_url() -> str:
    """The bounce mailbox, e.g. ``imaps://user:pass@host:993/INBOX``; empty: not polled."""
    return setting("CAMPAIGNS_BOUNCE_IMAP_URL") or ""


def bounce_imap_delete() -> bool:
    """Delete bounce messages once recorded (default: only mark them read)."""
    value = setting("CAMPAIGNS_BOUNCE_IMAP_DELETE")
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on"}
    return bool(value)


def bounce_mailbox_batch() -> int:
    """The most messages one poll of the bounce mailbox reads."""
    return max(1, int(setting("CAMPAIGNS_BOUNCE_MAILBOX_BATCH")))
