"""Hub-compatible repo creation, deletion and moves (`HfApi.create_repo`, `delete_repo`, `move_repo` for Spaces)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from controlplane.api.bodies import CreateRepo, MoveRepo, RepoRef
from controlplane.api.deps import DB, Caller, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.views import app_url
from controlplane.lifecycle import delete
from controlplane.moves import move
from controlplane.secrets_vars import apply_change, payload_items, set_items
from controlplane.services import Services
from controlplane.spaces import create_space, requested_private

router = APIRouter(prefix="/api/repos", tags=["repos"])


def split_name(payload: RepoRef | CreateRepo, who: Caller) -> tuple[str, str]:
    name = payload.name
    owner = payload.organization or who.name
    if "/" in name:
        owner, name = name.split("/", 1)
    if payload.type != "space":
        raise ApiError(400, 'Spaceyard hosts Spaces only: pass type="space" (repo_type="space").')
    return owner, name


@router.post("/create")
def create_repo(
    payload: CreateRepo,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    owner, name = split_name(payload, who)
    if owner != who.name and not who.user.is_admin:
        raise ApiError(403, f"You ({who.name}) can't create Spaces under {owner!r}.", "Forbidden")
    fields = payload.fields()
    private = requested_private(fields, False)
    secrets, variables = payload_items(fields)
    space = create_space(
        svc,
        s,
        owner=owner,
        name=name,
        sdk=payload.sdk or "gradio",
        private=private,
        hardware=payload.hardware,
        sleep_time=payload.sleep_time_seconds,
    )
    set_items(svc, s, space, secrets, variables)
    return {
        "url": f"{svc.settings.base_url}/spaces/{space.full_name}",
        "name": space.full_name,
        "id": f"space-{space.id}",
        "appUrl": app_url(svc, space),
    }


@router.delete("/delete")
async def delete_repo(payload: RepoRef, who: Caller = Depends(signed_in), svc: Services = Depends(services)) -> dict:
    owner, name = split_name(payload, who)
    with svc.db.session() as s:
        space_id = owned_space(s, who, owner, name).id
    await delete(svc, svc.deployer, space_id)
    return {}


@router.post("/move")
async def move_repo(payload: MoveRepo, who: Caller = Depends(signed_in), svc: Services = Depends(services)) -> dict:
    """`HfApi.move_repo`: rename a Space or move it to another owner; its old URLs redirect (controlplane/moves.py)."""
    with svc.db.session() as s:
        space = move(svc, s, who, payload.fields())
        space_id, full_name = space.id, space.full_name
    # The app's env names the Space (SPACE_ID, SPACE_HOST, its root path): it starts again under the new name.
    await apply_change(svc, svc.deployer, space_id)
    return {"url": f"{svc.settings.base_url}/spaces/{full_name}"}
