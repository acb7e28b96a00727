"""Listing Spaces as the Hub does (`HfApi.list_spaces`): who may see which, filters, sort, and pages.

Private Spaces are visible to their owner (and admins, and the builder) only, in every listing. A page holds
`limit` rows (at most `MAX_PAGE`) and carries `Link: <...>; rel="next"` while more remain; the client follows it
(`huggingface_hub/utils/_pagination.py`) and stops at its own `limit`, so `list_spaces(limit=1500)` reads two
pages of 1000.

`lastModified` is the date of main's last commit, as `space_info` shows it. The database keeps it per Space
(`Space.last_commit_at`, indexed) so that it can sort 10,000 Spaces; `refresh_last_commits` reads it from git for
the rows that changed since it was last read, before each listing."""

from __future__ import annotations

import logging
from datetime import datetime

from fastapi import Request, Response
from sqlalchemy import Select, func, or_, select, true, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from controlplane.auth import Caller
from controlplane.core.utc import as_utc
from controlplane.errors import InvalidInput
from controlplane.git_history import last_modified
from controlplane.likes import like_counts
from controlplane.models import LAST_COMMIT_STALE, Space
from controlplane.repos import RepoError
from controlplane.services import Services
from controlplane.spaces import SDKS

log = logging.getLogger(__name__)
MAX_PAGE = 1000
# The Hub's sort keys (the client sends these for likes, last_modified, created_at).
SORTS = ("likes", "lastModified", "createdAt")
# At most this many changed Spaces are read from git per listing: each new head costs one git process, so a
# burst (thousands of Spaces changed at once) is caught up over a few listings instead of stalling one.
REFRESH_BATCH = 200


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
        key = Space.last_commit_at if sort == "lastModified" else Space.created_at
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


def refresh_last_commits(svc: Services) -> int:
    """Read main's last commit date from git for the Spaces whose row changed since it was last read; returns how
    many were read.

    Every way a commit lands on main (a push, an API commit, a duplicate, a deploy from a linked repo) shows the
    Space BUILDING, which moves `updated_at` after git has the commit. A row is stale while `updated_at` is past
    `last_commit_checked_at`; it is written back only if `updated_at` is still the one seen before git was read,
    so a commit landing meanwhile leaves it stale for the next listing. Stage changes without a commit cost a read
    of the ref file (the commit's date is cached) and change nothing. The write keeps `updated_at` (the sleeper
    measures idleness from it)."""
    with svc.db.session() as s:
        stale = s.execute(
            select(Space.id, Space.owner, Space.name, Space.created_at, Space.updated_at)
            .where(LAST_COMMIT_STALE)
            .limit(REFRESH_BATCH)
        ).all()
    if not stale:
        return 0
    found: list[tuple[int, datetime, datetime]] = []
    for space_id, owner, name, created_at, seen in stale:
        try:
            date = last_modified(svc.repos, owner, name) or created_at
        except FileNotFoundError:  # a repo being created or deleted
            date = created_at
        except RepoError as e:  # git failed: keep the stored date, try again at the next listing
            log.warning("could not read the last commit of %s/%s: %s", owner, name, e)
            continue
        # UTC: SQLite keeps no zone, and git dates carry the committer's.
        found.append((space_id, as_utc(date), seen))
    with svc.db.session() as s:
        for space_id, date, seen in found:
            s.execute(
                update(Space)
                .where(Space.id == space_id, Space.updated_at == seen)
                .values(last_commit_at=date, last_commit_checked_at=seen, updated_at=Space.updated_at)
                .execution_options(synchronize_session=False)
            )
    return len(found)
