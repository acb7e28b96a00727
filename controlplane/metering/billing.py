"""Monthly usage and cost from usage intervals; spending limits.

Intervals are split at month boundaries (UTC) and open intervals count up to `now`, so a report for the
current month grows second by second and the months of a year add up to the year. Cost uses the price copied
onto each interval when it opened.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.metering.clock import as_utc, seconds_between, to_second
from controlplane.metering.intervals import BILLED_STAGES, current_tier, resolve_catalog
from controlplane.models import Space, UsageInterval, User
from controlplane.tiers import Catalog

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class UsageRow:
    owner: str
    space: str
    tier: str
    gpu_model: str | None
    gpu_count: int
    seconds: int
    cost: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return self.seconds * self.gpu_count / 3600


@dataclass(frozen=True)
class Report:
    month: str
    owner: str | None
    rows: tuple[UsageRow, ...]

    @property
    def seconds(self) -> int:
        return sum(r.seconds for r in self.rows)

    @property
    def hours(self) -> float:
        return self.seconds / 3600

    @property
    def gpu_hours(self) -> float:
        return sum(r.gpu_hours for r in self.rows)

    @property
    def cost(self) -> float:
        return sum(r.cost for r in self.rows)


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[first second of the month, first second of the next) in UTC, for "YYYY-MM"."""
    m = _MONTH.match(month)
    if not m:
        raise ValueError(f"month must be YYYY-MM, got {month!r}")
    year, mon = int(m.group(1)), int(m.group(2))
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_of(when: datetime) -> str:
    return as_utc(when).strftime("%Y-%m")


def usage_for_month(session: Session, owner: str | None, month: str, *, now: datetime) -> Report:
    """Usage per Space and tier in `month` (all owners when `owner` is None), open intervals counted to `now`."""
    start, end = month_bounds(month)
    cutoff = min(end, to_second(now))
    stmt = select(UsageInterval).where(
        UsageInterval.started_at < end,
        UsageInterval.ended_at.is_(None) | (UsageInterval.ended_at > start),
    )
    if owner is not None:
        stmt = stmt.where(UsageInterval.owner == owner)
    totals: dict[tuple[str, str, str], list] = {}
    for iv in session.scalars(stmt):
        stop = cutoff if iv.ended_at is None else min(as_utc(iv.ended_at), end)
        seconds = seconds_between(max(as_utc(iv.started_at), start), stop)
        if seconds == 0:
            continue
        key = (iv.owner, iv.space_name, iv.tier)
        # A tier's GPU shape is fixed by its name; the price may differ between intervals (catalog edits).
        acc = totals.setdefault(key, [iv.gpu_model, iv.gpu_count, 0, 0.0])
        acc[2] += seconds
        acc[3] += seconds * iv.unit_cost / 3600
    rows = tuple(
        UsageRow(owner=o, space=s, tier=t, gpu_model=g, gpu_count=n, seconds=sec, cost=cost)
        for (o, s, t), (g, n, sec, cost) in sorted(totals.items())
    )
    return Report(month=month, owner=owner, rows=rows)


CSV_HEADER = ("month", "owner", "space", "tier", "gpu_model", "gpu_count", "seconds", "hours", "gpu_hours", "cost")


def report_to_csv(report: Report) -> str:
    """One line per Space and tier, then a TOTAL line. Hours, GPU-hours and cost to 4 decimals."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for r in report.rows:
        w.writerow(
            (
                report.month,
                r.owner,
                r.space,
                r.tier,
                r.gpu_model or "",
                r.gpu_count,
                r.seconds,
                f"{r.hours:.4f}",
                f"{r.gpu_hours:.4f}",
                f"{r.cost:.4f}",
            )
        )
    w.writerow(
        (
            report.month,
            report.owner or "",
            "TOTAL",
            "",
            "",
            "",
            report.seconds,
            f"{report.hours:.4f}",
            f"{report.gpu_hours:.4f}",
            f"{report.cost:.4f}",
        )
    )
    return out.getvalue()


def over_limit(session: Session, owner: str, *, now: datetime) -> bool:
    """Whether the owner's cost this month (UTC) has reached their spending limit. No limit: never."""
    limit = session.scalar(select(User.spending_limit).where(User.name == owner))
    if limit is None:
        return False
    return usage_for_month(session, owner, month_of(now), now=now).cost >= limit


def spaces_to_pause(session: Session, owner: str, now: datetime, *, catalog: Catalog | None = None) -> list[Space]:
    """The owner's Spaces holding GPU hardware, when the owner is over their limit; empty otherwise."""
    if not over_limit(session, owner, now=now):
        return []
    cat = resolve_catalog(catalog)
    gpu_tiers = {t.name for t in cat.tiers if t.is_gpu}
    spaces = session.scalars(
        select(Space).where(Space.owner == owner, Space.stage.in_(BILLED_STAGES)).order_by(Space.name)
    )
    return [s for s in spaces if current_tier(s) in gpu_tiers]
