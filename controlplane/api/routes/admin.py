"""Admin-only calls: per-user quotas, disabling an account."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import select

from controlplane import sessions
from controlplane.api.deps import Caller, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.models import User
from controlplane.services import Services

router = APIRouter(prefix="/api/admin", tags=["admin"])


class UserPatch(BaseModel):
    max_gpus: int | None = Field(default=None, ge=0, description="GPUs the user's Spaces hold at once; null: no limit.")
    disabled: bool | None = Field(default=None, description="true: the user's tokens and sessions stop working.")


def admin(who: Caller = Depends(signed_in)) -> Caller:
    if not who.user.is_admin:
        raise ApiError(403, "Only admins can change users.", "Forbidden")
    return who


@router.patch("/users/{name}")
def patch_user(name: str, patch: UserPatch, _who: Caller = Depends(admin), svc: Services = Depends(services)) -> dict:
    # Its own transaction: the request's session has read already, and SQLite cannot upgrade a stale reader.
    with svc.db.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        if user is None:
            raise ApiError(404, f"No user {name!r}.", "UserNotFound")
        if "max_gpus" in patch.model_fields_set:
            user.max_gpus = patch.max_gpus
        if patch.disabled is not None:
            sessions.set_disabled(s, user, patch.disabled)
        return {"name": user.name, "isAdmin": user.is_admin, "max_gpus": user.max_gpus, "disabled": user.disabled}
