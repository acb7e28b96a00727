"""Likes of Spaces, as on the Hub: a user likes a Space they can see; `likes` counts them in `space_info`, the
listing (sortable) and the dashboard. Who liked what is shown only for Spaces the viewer can see."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import Subquery

from controlplane.models import Space, SpaceLike, User


def liked(s: Session, user: User | None, space: Space) -> bool:
    if user is None:
        return False
    mine = select(SpaceLike.id).where(SpaceLike.space_id == space.id, SpaceLike.user_id == user.id)
    return s.scalar(mine) is not None


def like(s: Session, user: User, space: Space) -> None:
    """Idempotent, as on the Hub: liking twice is one like."""
    if not liked(s, user, space):
        s.add(SpaceLike(space_id=space.id, user_id=user.id))


def unlike(s: Session, user: User, space: Space) -> None:
    s.execute(delete(SpaceLike).where(SpaceLike.space_id == space.id, SpaceLike.user_id == user.id))


def like_counts() -> Subquery:
    """(space_id, likes) of every liked Space, to join a listing on (sorting by likes)."""
    return select(SpaceLike.space_id, func.count(SpaceLike.id).label("likes")).group_by(SpaceLike.space_id).subquery()


def counts(s: Session, space_ids: list[int]) -> dict[int, int]:
    """Likes per Space, for a page of Spaces in one query."""
    if not space_ids:
        return {}
    rows = s.execute(
        select(SpaceLike.space_id, func.count(SpaceLike.id))
        .where(SpaceLike.space_id.in_(space_ids))
        .group_by(SpaceLike.space_id)
    )
    return {space_id: n for space_id, n in rows}
