"""Hub-compatible Space calls: info, list, runtime, hardware, sleep time, pause, restart."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Query, Request, Response
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, Caller, caller, find_space, owned_space, services, signed_in
from controlplane.api.routes.files import resolve_revision
from controlplane.api.views import files_of, runtime, space_info
from controlplane.lifecycle import change_hardware, pause, restart
from controlplane.models import Space
from controlplane.services import Services

router = APIRouter(prefix="/api/spaces", tags=["spaces"])


@router.get("")
def list_spaces(
    request: Request,
    response: Response,
    author: str | None = None,
    search: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    q = select(Space).where(Space.id > cursor).order_by(Space.id)
    visible = Space.private.is_(False)
    if who.user is not None:
        visible = or_(visible, Space.owner == who.user.name) if not who.user.is_admin else Space.id.isnot(None)
    q = q.where(visible)
    if author:
        q = q.where(Space.owner == author)
    if search:
        q = q.where(Space.name.contains(search))
    rows = list(s.scalars(q.limit(limit + 1)))
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = request.url.include_query_params(cursor=rows[-1].id, limit=limit)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return [space_info(svc, sp) for sp in rows]


@router.get("/{owner}/{name}")
@router.get("/{owner}/{name}/revision/{rev:path}")
def get_space(
    owner: str,
    name: str,
    rev: str = "main",
    blobs: bool = False,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = find_space(s, who, owner, name)
    sha = resolve_revision(svc, space, rev)
    info = space_info(svc, space)
    # blobs=True is the client's files_metadata: sizes, blob ids, LFS details.
    info["sha"], info["siblings"] = sha, files_of(svc.repos.tree(owner, name, sha), files_metadata=blobs)
    return info


@router.get("/{owner}/{name}/runtime")
def get_runtime(
    owner: str,
    name: str,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    return runtime(svc, find_space(s, who, owner, name))


def owned_space_id(svc: Services, who: Caller, owner: str, name: str) -> int:
    with svc.db.session() as s:
        return owned_space(s, who, owner, name).id


def _runtime_of(svc: Services, space_id: int) -> dict:
    with svc.db.session() as s:
        return runtime(svc, s.get(Space, space_id))


@router.post("/{owner}/{name}/hardware")
async def request_hardware(
    owner: str,
    name: str,
    payload: dict = Body(...),
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    if payload.get("sleepTimeSeconds") is not None:
        with svc.db.session() as s:
            s.get(Space, space_id).sleep_time = int(payload["sleepTimeSeconds"])
    await change_hardware(svc, svc.extras["deployer"], space_id, str(payload.get("flavor") or ""))
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/sleeptime")
def set_sleeptime(
    owner: str,
    name: str,
    payload: dict = Body(...),
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    seconds = payload.get("seconds")
    with svc.db.session() as s:
        # -1 (the Hub's "never") and null both mean the Space never sleeps.
        s.get(Space, space_id).sleep_time = None if seconds in (None, -1) else int(seconds)
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/pause")
async def pause_space(
    owner: str, name: str, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    await pause(svc, svc.extras["deployer"], space_id)
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/restart")
async def restart_space(
    owner: str, name: str, factory: bool = False, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    await restart(svc, svc.extras["deployer"], space_id, factory=factory)
    return _runtime_of(svc, space_id)
