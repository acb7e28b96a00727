"""Usage & billing: this month's hours and cost per Space and tier, a daily chart, CSV, the spending limit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from controlplane.api.deps import DB, Caller, services
from controlplane.dashboard.forms import checked_form
from controlplane.dashboard.web import Page, PageError, member, redirect, render
from controlplane.metering.billing import month_bounds, month_of, report_to_csv, usage_for_month
from controlplane.metering.clock import as_utc, seconds_between, to_second
from controlplane.models import UsageInterval, User, utcnow
from controlplane.services import Services

router = APIRouter(route_class=Page)


@dataclass(frozen=True)
class Day:
    date: datetime
    seconds: int
    cost: float

    @property
    def hours(self) -> float:
        return self.seconds / 3600


def daily_usage(s: Session, owner: str, month: str, *, now: datetime) -> list[Day]:
    """Seconds and cost per UTC day of `month`, intervals split at midnight, open ones counted to `now`."""
    start, end = month_bounds(month)
    cutoff = min(end, to_second(now))
    days = int((end - start).total_seconds() // 86400)
    seconds, cost = [0] * days, [0.0] * days
    rows = s.scalars(
        select(UsageInterval).where(
            UsageInterval.owner == owner,
            UsageInterval.started_at < end,
            UsageInterval.ended_at.is_(None) | (UsageInterval.ended_at > start),
        )
    )
    for iv in rows:
        lo = max(as_utc(iv.started_at), start)
        hi = cutoff if iv.ended_at is None else min(as_utc(iv.ended_at), end)
        while lo < hi:
            index = (lo - start).days
            piece = seconds_between(lo, min(hi, start + timedelta(days=index + 1)))
            seconds[index] += piece
            cost[index] += piece * iv.unit_cost / 3600
            lo = start + timedelta(days=index + 1)
    return [Day(start + timedelta(days=i), seconds[i], cost[i]) for i in range(days)]


def chart(days: list[Day], width: int = 720, height: int = 180) -> dict:
    """Bar geometry for the inline SVG (drawn server-side: no chart library, works without script)."""
    top = max((d.hours for d in days), default=0) or 1
    slot = width / max(len(days), 1)
    bars = [
        {"x": round(i * slot + 1, 1), "w": round(slot - 2, 1), "h": round(d.hours / top * (height - 20), 1),
         "day": d.date.day, "hours": d.hours, "cost": d.cost}
        for i, d in enumerate(days)
    ]
    return {"bars": bars, "width": width, "height": height, "top": top}


def _month(value: str | None) -> str:
    month = value or month_of(utcnow())
    try:
        month_bounds(month)
    except ValueError as e:
        raise PageError(400, str(e)) from e
    return month


def _shift(month: str, by: int) -> str:
    start, _ = month_bounds(month)
    index = start.year * 12 + start.month - 1 + by
    return f"{index // 12:04d}-{index % 12 + 1:02d}"


@router.get("/usage")
def usage_page(
    request: Request, month: str | None = None, who: Caller = Depends(member), s: Session = DB
) -> Response:
    month = _month(month)
    now = datetime.now(UTC)
    report = usage_for_month(s, who.user.name, month, now=now)
    return render(
        request, "usage.html", who, report=report, chart=chart(daily_usage(s, who.user.name, month, now=now)),
        month=month, prev_month=_shift(month, -1), next_month=_shift(month, 1) if month < month_of(now) else None,
        limit=who.user.spending_limit,
    )


@router.get("/usage.csv")
def usage_csv(month: str | None = None, who: Caller = Depends(member), s: Session = DB) -> Response:
    month = _month(month)
    report = usage_for_month(s, who.user.name, month, now=datetime.now(UTC))
    return PlainTextResponse(
        report_to_csv(report), media_type="text/csv",
        headers={"Content-Disposition": f'attachment; filename="spaceyard-usage-{who.user.name}-{month}.csv"'},
    )


@router.post("/usage/limit")
def set_limit(
    form: FormData = Depends(checked_form), who: Caller = Depends(member), svc: Services = Depends(services)
) -> Response:
    raw = str(form.get("limit") or "").strip().lstrip("$")
    try:
        limit = float(raw) if raw else None
    except ValueError as e:
        raise PageError(400, f"The spending limit must be an amount in dollars, not {raw!r}.") from e
    if limit is not None and limit < 0:
        raise PageError(400, "The spending limit cannot be negative.")
    with svc.db.session() as s:
        s.get(User, who.user.id).spending_limit = limit
    return redirect("/usage")
