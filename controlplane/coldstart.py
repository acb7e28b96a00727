"""Cold starts: for each start of a Space (deploy, wake, restart, rollback), the seconds from "start requested"
(the Deployer takes the start) to the app's first successful answer (its readiness probe; a wake's waiting
requests are proxied right after it). One row per start, read by the API (last, p50, p95) and by /metrics (a
histogram); rows are kept, so the histogram's counts only grow."""

from __future__ import annotations

import math

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.core.utc import iso
from controlplane.models import ColdStart, Space
from controlplane.services import Services
from controlplane.stages import SLEEPING

# Histogram buckets (seconds): a static app answers in about a second, a large model can take minutes.
BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# The API's percentiles are over a Space's most recent starts.
RECENT = 100


def kind_of(svc: Services, space_id: int, build_id: int) -> str:
    """What this start is, read before it changes the stage: a wake, a restart of the build that serves, a
    rollback to the pinned build, or a deploy of a new build."""
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        if space is None:
            return "deploy"
        if space.detail == SLEEPING:
            return "wake"
        if build_id == space.running_build_id:
            return "restart"
        return "rollback" if build_id == space.pinned_build_id else "deploy"


def record(svc: Services, space_id: int, kind: str, seconds: float) -> None:
    with svc.db.session() as s:
        if s.get(Space, space_id) is not None:
            s.add(ColdStart(space_id=space_id, kind=kind, seconds=round(seconds, 3)))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def summary(s: Session, space_id: int) -> dict:
    rows = list(
        s.scalars(select(ColdStart).where(ColdStart.space_id == space_id).order_by(ColdStart.id.desc()).limit(RECENT))
    )
    if not rows:
        return {"count": 0, "last": None, "p50": None, "p95": None, "recent": []}
    seconds = [r.seconds for r in rows]
    return {
        "count": len(rows),
        "last": {"kind": rows[0].kind, "seconds": rows[0].seconds, "at": iso(rows[0].at)},
        "p50": percentile(seconds, 0.5),
        "p95": percentile(seconds, 0.95),
        "recent": [{"kind": r.kind, "seconds": r.seconds, "at": iso(r.at)} for r in rows[:10]],
    }
