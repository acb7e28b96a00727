"""Listing Spaces as the Hub does (`HfApi.list_spaces`): who may see which, filters, sort, and pages.

Private Spaces are visible to their owner (and admins, and the builder) only, in every listing. A page holds
`limit` rows (at most `MAX_PAGE`) and carries `Link: <...>; rel="next"` while more remain; the client follows it
(`huggingface_hub/utils/_pagination.py`) and stops at its own `limit`, so `list_spaces(limit=1500)` reads two
pages of 1000."""

from __future__ import annotations

from fastapi import Request, Response
from sqlalchemy import Select, func, or_, select, true
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from controlplane.auth import Caller
from controlplane.errors import InvalidInput
from controlplane.likes import like_counts
from controlplane.models import Space
from controlplane.spaces import SDKS

MAX_PAGE = 1000
# The Hub's sort keys (the client sends these for likes, last_modified, created_at). lastModified orders by the
# Space row's last change (a commit's build, a stage change), which the database holds for every Space.
SORTS = ("likes", "lastModified", "createdAt")


def readable(who: Caller) -> ColumnElement[bool]:
    """The SQL twin of `Caller.can_read`."""
    if who.is_builder or (who.user is not None and who.user.is_admin):
        return true()
    if who.user is None:
        return Space.private.is_(False)
    return or_(Space.private.is_(False), Space.owner == who.user.name)


def spaces_query(
    who: Caller,
    *,
    author: str | None = None,
    search: str | None = None,
    tags: list[str] | None = None,
    sort: str | None = None,
    direction: int = -1,
) -> Select:
    q = select(Space).where(readable(who))
    if author:
        q = q.where(func.lower(Space.owner) == author.lower())
    if search:
        # On the full id, as on the Hub: "alice/dem" and "ice/demo" both find alice/demo.
        full_id = func.lower(Space.owner + "/" + Space.name)
        q = q.where(full_id.contains(search.lower(), autoescape=True))
    for tag in tags or []:
        if tag not in SDKS:
            raise InvalidInput(f"Unsupported filter {tag!r}: Spaces are filtered by SDK tag ({', '.join(SDKS)}).")
        q = q.where(Space.sdk == tag)
    if sort is None:
        return q.order_by(Space.id)
    if sort not in SORTS:
        raise InvalidInput(f"Unsupported sort {sort!r}: use one of {', '.join(SORTS)}.")
    if direction not in (-1, 1):
        raise InvalidInput(f"Invalid direction {direction}: -1 (descending, the default) or 1.")
    if sort == "likes":
        # One grouped pass over the likes, joined: a count per Space (a correlated subquery) costs 2x at 10,000.
        counted = like_counts()
        q, key = q.outerjoin(counted, counted.c.space_id == Space.id), func.coalesce(counted.c.likes, 0)
    else:
        key = Space.updated_at if sort == "lastModified" else Space.created_at
    tie = Space.id
    return q.order_by(*((key.desc(), tie.desc()) if direction == -1 else (key.asc(), tie.asc())))


def page(s: Session, request: Request, response: Response, query: Select, limit: int, cursor: int) -> list:
    """One page of `query` from offset `cursor`, at most MAX_PAGE rows; the next page's URL in `Link`."""
    size = min(limit, MAX_PAGE)
    rows = list(s.scalars(query.offset(cursor).limit(size + 1)))
    if len(rows) > size:
        rows = rows[:size]
        nxt = request.url.include_query_params(cursor=cursor + size)
        response.headers["Link"] = f'<{nxt}>; rel="next"'
    return rows
