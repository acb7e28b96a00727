"""`GET /api/whoami-v2`, as `HfApi.whoami()` reads it."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from controlplane.api.deps import Caller, signed_in

router = APIRouter(prefix="/api", tags=["users"])


@router.get("/whoami-v2")
def whoami(who: Caller = Depends(signed_in)) -> dict:
    token = who.token
    return {
        "type": "user",
        "id": str(who.user.id),
        "name": who.user.name,
        "fullname": who.user.name,
        "isAdmin": who.user.is_admin,
        "orgs": [],
        "auth": {
            "type": "access_token",
            "accessToken": {
                "displayName": token.name if token else "session",
                "role": token.role if token else "write",
            },
        },
    }
