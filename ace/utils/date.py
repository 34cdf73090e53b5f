"""
:mod:`ace.utils.date` serializes and deserializes datetimes for ACE's JSON encoding.
It is intended for internal ACE use.
"""

from __future__ import annotations

from datetime import UTC, datetime


def get_current_time() -> datetime:
    """The current time in UTC, as a timezone-aware datetime."""
    return datetime.now(UTC)


def serialize(timestamp_obj: datetime) -> str:
    """
    Serialize a datetime to an ISO 8601 string.

    Args:
        timestamp_obj: The timestamp to serialize.

    Returns:
        The ISO 8601 representation; aware datetimes keep their UTC offset.

    Raises:
        TypeError: If ``timestamp_obj`` is not a datetime.
    """
    if not isinstance(timestamp_obj, datetime):
        raise TypeError(f"Expected a datetime, got {type(timestamp_obj).__name__}")
    return timestamp_obj.isoformat()


def deserialize(timestamp_iso8601_str: str) -> datetime:
    """
    Deserialize a datetime from an ISO 8601 string.

    Args:
        timestamp_iso8601_str: A timestamp as an ISO 8601 string (``Z`` is accepted for UTC).

    Returns:
        The datetime; timezone-aware whenever the string carries an offset.

    Raises:
        ValueError: If the string is not an ISO 8601 timestamp.
    """
    if not isinstance(timestamp_iso8601_str, str):
        raise TypeError(f"Expected an ISO 8601 string, got {type(timestamp_iso8601_str).__name__}")
    return datetime.fromisoformat(timestamp_iso8601_str)
