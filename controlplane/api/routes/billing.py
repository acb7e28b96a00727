"""Usage and billing (`/api/billing/...`), GPU samples from the agents, and `/metrics` for Prometheus."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.api.bodies import SpendingLimit
from controlplane.api.deps import DB, Caller, bearer_or_basic, identify, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.core.security import secret_matches
from controlplane.errors import Unauthenticated
from controlplane.metering.billing import month_of, report_to_csv, usage_for_month
from controlplane.metering.metrics import render_metrics
from controlplane.metering.samples import GpuSamplesIn, store_samples
from controlplane.models import User, utcnow
from controlplane.part_restarts import PartRestarts
from controlplane.services import Services

router = APIRouter(tags=["billing"])
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


def report_json(report) -> dict:
    rows = [
        {
            "space": r.space,
            "owner": r.owner,
            "tier": r.tier,
            "gpuModel": r.gpu_model,
            "gpuCount": r.gpu_count,
            "seconds": r.seconds,
            "hours": round(r.hours, 4),
            "gpuHours": round(r.gpu_hours, 4),
            "cost": round(r.cost, 4),
        }
        for r in report.rows
    ]
    return {
        "month": report.month,
        "owner": report.owner,
        "rows": rows,
        "totals": {
            "seconds": report.seconds,
            "hours": round(report.hours, 4),
            "gpuHours": round(report.gpu_hours, 4),
            "cost": round(report.cost, 4),
        },
    }


@router.get("/api/billing/usage")
def usage(
    month: str | None = None,
    owner: str | None = None,
    format: str = "json",
    who: Caller = Depends(signed_in),
    s: Session = DB,
) -> Response:
    """One owner's usage for a month (default: this month); admins may pass owner=NAME or owner=all."""
    now = utcnow()
    month = month or month_of(now)
    if not MONTH.match(month):
        raise ApiError(400, f"Invalid month {month!r}: use YYYY-MM, e.g. 2026-11.")
    target: str | None = who.user.name
    if owner and owner != who.user.name:
        if not who.user.is_admin:
            raise ApiError(403, "Only admins can read other owners' usage.", "Forbidden")
        target = None if owner == "all" else owner
    report = usage_for_month(s, target, month, now=now)
    if format == "csv":
        name = f"spaceyard-usage-{target or 'all'}-{month}.csv"
        return Response(
            report_to_csv(report),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )
    data = report_json(report)
    limit = s.scalar(select(User.spending_limit).where(User.name == who.user.name))
    data["spendingLimit"] = limit if target == who.user.name else None
    return JSONResponse(data)


@router.put("/api/billing/limit")
def set_limit(payload: SpendingLimit, who: Caller = Depends(signed_in), s: Session = DB) -> dict:
    """Set (a number, in the catalog's currency per month) or clear (null) the caller's spending limit."""
    limit = payload.limit
    s.get(User, who.user.id).spending_limit = limit
    return {"spendingLimit": limit}


def gpu_agent(request: Request, svc: Services = Depends(services)) -> None:
    """A dependency, so the token is checked before the body is judged: a stranger learns nothing of the format."""
    if not secret_matches(bearer_or_basic(request.headers), svc.settings.gpu_agent_credential()):
        raise ApiError(
            401, "GPU samples need the agent token (`spaceyard agent-token` prints it).", "InvalidCredentials"
        )


@router.post("/api/metering/gpu-samples", include_in_schema=True, dependencies=[Depends(gpu_agent)])
def gpu_samples(payload: GpuSamplesIn, s: Session = DB) -> dict:
    return {"stored": store_samples(s, payload)}


def may_scrape(svc: Services, s: Session, request: Request) -> bool:
    """Metrics name every Space, private ones too: the scraper's token (SPACEYARD_METRICS_TOKEN) or an admin."""
    if secret_matches(bearer_or_basic(request.headers), svc.settings.metrics_token):
        return True
    try:
        who = identify(svc, s, request.headers, request.cookies)
    except Unauthenticated:
        return False
    return who.user is not None and who.user.is_admin


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request, svc: Services = Depends(services), s: Session = DB) -> Response:
    if not may_scrape(svc, s, request):
        raise ApiError(
            401,
            "Metrics need a credential: 'Authorization: Bearer <SPACEYARD_METRICS_TOKEN>' or an admin's token.",
            "InvalidCredentials",
            headers={"WWW-Authenticate": 'Bearer realm="Spaceyard metrics"'},
        )
    body, content_type = render_metrics(svc.db.sessionmaker, others=(PartRestarts(svc.settings.data_dir),))
    return Response(body, media_type=content_type)
