"""UTC for every timestamp: SQLite drops the zone on the way in and out, so what it hands back is naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken as UTC (that is how the database returns it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)
