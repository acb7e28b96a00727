"""Hub-compatible likes: `POST`/`DELETE /api/spaces/{o}/{n}/like` (the client has `unlike`; the Hub's own pages
like), `HfApi.list_repo_likers` and `HfApi.list_liked_repos`. Only Spaces the caller can see are liked or listed,
so a private Space's likes and likers are not disclosed."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session, contains_eager

from controlplane.api.deps import DB, Caller, caller, find_space, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.views import iso
from controlplane.likes import like, unlike
from controlplane.listing import page, readable
from controlplane.models import SpaceLike, User

router = APIRouter(tags=["likes"])


@router.post("/api/spaces/{owner}/{name}/like")
def like_space(owner: str, name: str, who: Caller = Depends(signed_in), s: Session = DB) -> dict:
    like(s, who.user, find_space(s, who, owner, name))
    return {}


@router.delete("/api/spaces/{owner}/{name}/like")
def unlike_space(owner: str, name: str, who: Caller = Depends(signed_in), s: Session = DB) -> dict:
    unlike(s, who.user, find_space(s, who, owner, name))
    return {}


@router.get("/api/spaces/{owner}/{name}/likers")
def likers(
    owner: str,
    name: str,
    request: Request,
    response: Response,
    limit: int = Query(default=1000, ge=1),
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    s: Session = DB,
) -> list[dict]:
    space = find_space(s, who, owner, name)
    query = select(User).join(SpaceLike, SpaceLike.user_id == User.id).where(SpaceLike.space_id == space.id)
    users = page(s, request, response, query.order_by(SpaceLike.id), limit, cursor)
    return [{"user": u.name, "fullname": u.name, "avatarUrl": "", "type": "user", "isPro": False} for u in users]


@router.get("/api/users/{user}/likes")
def liked_repos(
    user: str,
    request: Request,
    response: Response,
    limit: int = Query(default=1000, ge=1),
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    s: Session = DB,
) -> list[dict]:
    liker = s.scalar(select(User).where(func.lower(User.name) == user.lower()))
    if liker is None:
        raise ApiError(404, f"User {user!r} not found.", "UserNotFound")
    query = (
        select(SpaceLike)
        .join(SpaceLike.space)
        .options(contains_eager(SpaceLike.space))
        .where(SpaceLike.user_id == liker.id, readable(who))
        .order_by(SpaceLike.id.desc())
    )
    likes = page(s, request, response, query, limit, cursor)
    return [{"createdAt": iso(lk.created_at), "repo": {"name": lk.space.full_name, "type": "space"}} for lk in likes]
