"""Build history, rollback and cold starts of a Space (controlplane/rollback.py, controlplane/coldstart.py)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from controlplane import coldstart
from controlplane.api.bodies import Rollback
from controlplane.api.deps import DB, Caller, caller, find_space, services, signed_in
from controlplane.api.routes.spaces import _runtime_of, owned_space_id
from controlplane.listing import page
from controlplane.rollback import build_view, builds_query, rollback
from controlplane.services import Services

router = APIRouter(prefix="/api/spaces/{owner}/{name}", tags=["builds"])


@router.get("/builds")
def list_builds(
    owner: str,
    name: str,
    request: Request,
    response: Response,
    limit: int = Query(default=20, ge=1),
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    """Every build, newest first; the next page's URL in `Link`."""
    space = find_space(s, who, owner, name)
    return [build_view(svc, space, b) for b in page(s, request, response, builds_query(space), limit, cursor)]


@router.post("/rollback")
async def roll_back(
    owner: str,
    name: str,
    payload: Rollback | None = None,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    """Serve an earlier successful build again (`{"build": id}`; by default the one before the build that serves)."""
    wanted = payload.build if payload else None
    # Async: the deploy is a task on the event loop; the database calls run in worker threads.
    space_id = await asyncio.to_thread(owned_space_id, svc, who, owner, name)
    chosen = await rollback(svc, space_id, wanted)
    return {"build": chosen, "runtime": await asyncio.to_thread(_runtime_of, svc, space_id)}


@router.get("/coldstarts")
def cold_starts(owner: str, name: str, who: Caller = Depends(caller), s: Session = DB) -> dict:
    """Seconds from each start's request to the app's first answer: last, p50, p95 over the recent starts."""
    return coldstart.summary(s, find_space(s, who, owner, name).id)
