"""Hub-compatible Space calls: info, list, settings, runtime, hardware, sleep time, pause, restart."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from controlplane.api.bodies import Hardware, SleepTime, SpaceSettings
from controlplane.api.deps import DB, Caller, caller, find_space, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.routes.files import resolve_revision
from controlplane.api.views import files_of, runtime, space_info
from controlplane.lifecycle import change_hardware, pause, restart
from controlplane.likes import counts
from controlplane.listing import page, refresh_last_commits, spaces_query
from controlplane.models import Space
from controlplane.services import Services
from controlplane.spaces import requested_private
from controlplane.stages import announce_after_commit

router = APIRouter(prefix="/api/spaces", tags=["spaces"])


@router.get("")
def list_spaces(
    request: Request,
    response: Response,
    author: str | None = None,
    search: str | None = None,
    filter: list[str] = Query(default=[]),
    sort: str | None = None,
    direction: int = -1,
    limit: int = Query(default=100, ge=1),
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    query = spaces_query(who, author=author, search=search, tags=filter, sort=sort, direction=direction)
    refresh_last_commits(svc)  # before the page is read: its order and its entries' lastModified
    rows = page(s, request, response, query, limit, cursor)
    likes = counts(s, [sp.id for sp in rows])
    return [space_info(svc, sp, likes=likes.get(sp.id, 0), listed=True) for sp in rows]


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
    info = space_info(svc, space, likes=counts(s, [space.id]).get(space.id, 0))
    # blobs=True is the client's files_metadata: sizes, blob ids, LFS details.
    info["sha"], info["siblings"] = sha, files_of(svc.repos.tree(owner, name, sha), files_metadata=blobs)
    return info


@router.put("/{owner}/{name}/settings")
def update_settings(
    owner: str,
    name: str,
    payload: SpaceSettings,
    who: Caller = Depends(signed_in),
    s: Session = DB,
) -> dict:
    """`HfApi.update_repo_settings`: visibility (2.x sends `visibility`, 0.x `private`)."""
    space = owned_space(s, who, owner, name)
    unknown = set(payload.model_extra or {})
    if unknown:
        raise ApiError(
            400, f"Unsupported setting(s) {', '.join(sorted(unknown))}: Spaces take visibility (or private)."
        )
    if payload.gated not in (None, False):
        raise ApiError(400, "Spaces cannot be gated: gated access is for models and datasets.")
    if payload.xet_enabled:
        raise ApiError(400, "Xet storage is not offered here: Spaces keep large files in Git LFS.")
    if not payload.model_fields_set & {"visibility", "private", "gated"}:
        raise ApiError(400, "Nothing to change: pass visibility ('public' or 'private').")
    space.private = requested_private(payload.fields(), space.private)
    announce_after_commit(s, space.full_name)  # the router and the proxy's public routes follow it
    return {}


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
    payload: Hardware,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    if payload.sleep_time_seconds is not None:
        with svc.db.session() as s:
            s.get(Space, space_id).sleep_time = payload.sleep_time_seconds
    await change_hardware(svc, svc.deployer, space_id, payload.flavor or "")
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/sleeptime")
def set_sleeptime(
    owner: str,
    name: str,
    payload: SleepTime,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    seconds = payload.seconds
    with svc.db.session() as s:
        # -1 (the Hub's "never") and null both mean the Space never sleeps.
        s.get(Space, space_id).sleep_time = None if seconds in (None, -1) else seconds
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/pause")
async def pause_space(
    owner: str, name: str, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    await pause(svc, svc.deployer, space_id)
    return _runtime_of(svc, space_id)


@router.post("/{owner}/{name}/restart")
async def restart_space(
    owner: str, name: str, factory: bool = False, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    space_id = owned_space_id(svc, who, owner, name)
    await restart(svc, svc.deployer, space_id, factory=factory)
    return _runtime_of(svc, space_id)
