"""Administration: this runtime's pools and how full they are, the tier catalog, users and their month so far."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, Caller, services
from controlplane.dashboard.hardware import PoolUse, pool_use, tier_choices
from controlplane.dashboard.web import Page, admin, render
from controlplane.metering.billing import month_of, usage_for_month
from controlplane.metering.intervals import BILLED_STAGES
from controlplane.models import Space, Token, User
from controlplane.services import Services

router = APIRouter(route_class=Page)


@router.get("/admin")
def admin_page(
    request: Request, who: Caller = Depends(admin), svc: Services = Depends(services), s: Session = DB
) -> Response:
    # A Space holds its tier's hardware in the billed stages: that is what fills a pool.
    held = Counter(
        tier or requested
        for tier, requested in s.execute(
            select(Space.hardware_current, Space.hardware_requested).where(Space.stage.in_(BILLED_STAGES))
        )
    )
    # Without a scheduler in this process, count Spaces in billed stages: the same thing, less exact.
    pools = [u if u.in_use is not None else PoolUse(u.pool, sum(held[t] for t in u.pool.tiers))
             for u in pool_use(svc, s)]
    now = datetime.now(UTC)
    report = usage_for_month(s, None, month_of(now), now=now)
    cost = Counter()
    for row in report.rows:
        cost[row.owner] += row.cost
    spaces = dict(s.execute(select(Space.owner, func.count()).group_by(Space.owner)).all())
    tokens = dict(
        s.execute(select(Token.user_id, func.count()).where(Token.revoked.is_(False)).group_by(Token.user_id)).all()
    )
    users = [
        {"user": u, "spaces": spaces.get(u.name, 0), "tokens": tokens.get(u.id, 0), "cost": cost[u.name]}
        for u in s.scalars(select(User).order_by(User.name))
    ]
    return render(
        request, "admin.html", who, choices=tier_choices(svc, s), pools=pools, catalog_pools=svc.catalog.pools,
        held=held, users=users, runtime=svc.settings.runtime, month=report.month,
    )
