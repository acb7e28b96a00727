"""Hub-compatible repo creation and deletion (`HfApi.create_repo` / `delete_repo` for Spaces)."""

from __future__ import annotations

from fastapi import APIRouter, Body, Depends, Response
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, Caller, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.views import app_url
from controlplane.lifecycle import delete
from controlplane.services import Services
from controlplane.spaces import create_space

router = APIRouter(prefix="/api/repos", tags=["repos"])


def split_name(payload: dict, who: Caller) -> tuple[str, str]:
    name = payload.get("name") or ""
    owner = payload.get("organization") or who.name
    if "/" in name:
        owner, name = name.split("/", 1)
    if payload.get("type", "model") != "space":
        raise ApiError(400, 'Spaceyard hosts Spaces only: pass type="space" (repo_type="space").')
    return owner, name


@router.post("/create")
def create_repo(
    response: Response,
    payload: dict = Body(...),
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    owner, name = split_name(payload, who)
    if owner != who.name and not who.user.is_admin:
        raise ApiError(403, f"You ({who.name}) can't create Spaces under {owner!r}.", "Forbidden")
    private = payload.get("visibility") == "private" if "visibility" in payload else bool(payload.get("private"))
    url = f"{svc.settings.base_url}/spaces/{owner}/{name}"
    try:
        space = create_space(
            svc,
            s,
            owner=owner,
            name=name,
            sdk=payload.get("sdk") or "gradio",
            private=private,
            hardware=payload.get("hardware"),
            sleep_time=payload.get("sleepTimeSeconds"),
        )
    except ApiError as e:
        if e.status != 409:
            raise
        # create_repo(exist_ok=True) reads the existing repo's url from the 409 body, as the Hub sends it.
        response.status_code = 409
        response.headers.update({"X-Error-Code": e.code or "RepoExists", "X-Error-Message": e.message})
        return {"error": e.message, "url": url}
    return {
        "url": url,
        "name": space.full_name,
        "id": f"space-{space.id}",
        "appUrl": app_url(svc, space),
    }


@router.delete("/delete")
async def delete_repo(
    payload: dict = Body(...), who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    owner, name = split_name(payload, who)
    with svc.db.session() as s:
        space_id = owned_space(s, who, owner, name).id
    await delete(svc, svc.extras["deployer"], space_id)
    return {}
