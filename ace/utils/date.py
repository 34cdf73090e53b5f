"""
:mod:`ace.utils.date` serializes and deserializes datetimes for ACE's JSON encoding.
It is intended for internal ACE use.

The format is ISO 8601 as written by :meth:`datetime.isoformat`: a four-digit year (``0016`` for
year 16, where ``strftime('%Y')`` writes ``16`` on Linux), microseconds when there are any, and
the UTC offset of an aware datetime, to the second or microsecond when needed. A datetime whose
tzinfo is an IANA :class:`~zoneinfo.ZoneInfo` also gets the zone's name in brackets, as RFC 9557
extends ISO 8601 (``2021-10-31T02:30:00+01:00[Europe/Paris]``), because an offset alone cannot
bring back the zone (nor, in a repeated hour, compare equal to the original).

So every datetime round-trips: naive stays naive; an aware one comes back with the same wall
time, UTC offset and fold, in the same zone when it had a named one, else in a fixed-offset
:class:`datetime.timezone`. A zone this machine does not know keeps the instant, at its offset.
``None`` stands for "no datetime" both ways, as in the reference.
"""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def get_current_time() -> datetime:
    """The current time in UTC, as a timezone-aware datetime."""
    return datetime.now(UTC)


def serialize(timestamp_obj: datetime | None) -> str | None:
    """
    Serialize a datetime to an ISO 8601 string.

    Args:
        timestamp_obj: The timestamp to serialize, or ``None``.

    Returns:
        The ISO 8601 representation (aware datetimes keep their UTC offset, and their zone's
        name in brackets when it has an IANA one), or ``None`` for ``None``.

    Raises:
        TypeError: If ``timestamp_obj`` is neither a datetime nor ``None``.
    """
    if timestamp_obj is None:
        return None
    if not isinstance(timestamp_obj, datetime):
        raise TypeError(f"Expected a datetime, got {type(timestamp_obj).__name__}")
    text = timestamp_obj.isoformat()
    zone = timestamp_obj.tzinfo
    if isinstance(zone, ZoneInfo) and zone.key and timestamp_obj.utcoffset() is not None:
        text = f"{text}[{zone.key}]"
    return text


def deserialize(timestamp_iso8601_str: str | None) -> datetime | None:
    """
    Deserialize a datetime from an ISO 8601 string.

    Args:
        timestamp_iso8601_str: A timestamp as an ISO 8601 string (``Z`` is accepted for UTC;
            an RFC 9557 ``[Area/City]`` suffix names the zone), or ``None``.

    Returns:
        The datetime, timezone-aware whenever the string carries an offset; ``None`` for
        ``None``.

    Raises:
        TypeError: If the value is neither a string nor ``None``.
        ValueError: If the string is not an ISO 8601 timestamp.
    """
    if timestamp_iso8601_str is None:
        return None
    if not isinstance(timestamp_iso8601_str, str):
        raise TypeError(f"Expected an ISO 8601 string, got {type(timestamp_iso8601_str).__name__}")
    text, zone_key = timestamp_iso8601_str, None
    if text.endswith("]") and "[" in text:
        text, _, zone_key = text[:-1].partition("[")
    parsed = datetime.fromisoformat(text)
    return _in_zone(parsed, zone_key) if zone_key else parsed


def _in_zone(parsed: datetime, key: str) -> datetime:
    """``parsed`` (with its offset) given back its named zone: same wall time, the fold whose
    offset matches, or the same instant if neither does (the zone's rules differ here)."""
    try:
        zone = ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        return parsed
    offset = parsed.utcoffset()
    wall = parsed.replace(tzinfo=zone)
    if offset is None:
        return wall
    for fold in (0, 1):
        candidate = wall.replace(fold=fold)
        if candidate.utcoffset() == offset:
            return candidate
    return parsed.astimezone(zone)
