"""UTC for every timestamp: SQLite drops the zone on the way in and out, so what it hands back is naive UTC."""

from __future__ import annotations

from datetime import UTC, datetime


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; naive input is taken as UTC (that is how the database returns it)."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def iso(when: datetime | None) -> str | None:
    """Hub timestamps end in Z; SQLite hands datetimes back without a zone, and they are UTC."""
    if when is None:
        return None
    return as_utc(when).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
