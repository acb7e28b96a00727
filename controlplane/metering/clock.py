"""Time handling shared by metering: UTC everywhere, whole seconds.

Metering is per second, so every timestamp is truncated to the second when it is recorded; every duration is
then an integer number of seconds and splitting at month boundaries never creates fractions. SQLite drops the
timezone on the way in and out, so values are normalised to UTC before writing and naive values read back are
UTC by construction.
"""

from __future__ import annotations

from datetime import datetime

from controlplane.core.utc import as_utc


def to_second(value: datetime) -> datetime:
    """UTC, truncated to the whole second: the resolution usage is metered at."""
    return as_utc(value).replace(microsecond=0)


def seconds_between(start: datetime, end: datetime) -> int:
    """Whole seconds from start to end, never negative."""
    return max(0, int((to_second(end) - to_second(start)).total_seconds()))
