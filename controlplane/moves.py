"""Renaming a Space or moving it to another owner (`HfApi.move_repo`), as on the Hub: its git repo, LFS links,
secrets, variables, likes and history move with it; its old name redirects (API, git, app URL path form; see
`api/redirects.py`) until another Space takes that name; its app is started again under the new name (the app's
env names it: SPACE_ID, SPACE_HOST, the root path)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.auth import Caller, owned_space
from controlplane.errors import Forbidden, InvalidInput
from controlplane.metering.intervals import close_interval, open_interval, open_intervals
from controlplane.models import Space, SpaceRedirect, utcnow
from controlplane.services import Services
from controlplane.spaces import holder, name_taken, release_redirect, validate_name
from controlplane.stages import announce_after_commit
from controlplane.tiers import Catalog


def split_id(value: object, field: str) -> tuple[str, str]:
    owner, slash, name = str(value or "").partition("/")
    if not slash or not owner or not name or "/" in name:
        raise InvalidInput(f'"{field}" must be a repo id "owner/name", not {value!r}.')
    return owner, name


def move(svc: Services, s: Session, who: Caller, payload: dict) -> Space:
    """Move the Space `fromRepo` to `toRepo` in the caller's transaction; the caller restarts its app afterwards."""
    if payload.get("type", "model") != "space":
        raise InvalidInput('Spaceyard hosts Spaces only: pass type="space" (repo_type="space").')
    from_owner, from_name = split_id(payload.get("fromRepo"), "fromRepo")
    to_owner, to_name = split_id(payload.get("toRepo"), "toRepo")
    space = owned_space(s, who, from_owner, from_name)
    if to_owner != who.name and not who.user.is_admin:
        raise Forbidden(f"You ({who.name}) can't move Spaces to {to_owner!r}.", "Forbidden")
    validate_name("owner", to_owner)
    validate_name("Space", to_name)
    if (to_owner, to_name) == (space.owner, space.name):
        raise InvalidInput(f"{space.full_name} already has this name.")
    taken = holder(s, to_owner, to_name)
    if taken is not None and taken.id != space.id:
        raise name_taken(svc, to_owner, to_name, taken.full_name)
    old_owner, old_name = space.owner, space.name
    # The new name may have redirected elsewhere (or here) until now; the old one may already redirect here in
    # another case (after a case-only rename): one row per name.
    release_redirect(s, to_owner, to_name)
    release_redirect(s, old_owner, old_name)
    s.add(SpaceRedirect(owner=old_owner, name=old_name, space_id=space.id))
    space.owner, space.name = to_owner, to_name
    try:
        s.flush()
    except IntegrityError:  # a Space created under that name meanwhile
        raise name_taken(svc, to_owner, to_name, None) from None
    _rebill(s, space, svc.catalog)
    svc.repos.move(old_owner, old_name, to_owner, to_name)
    for name in (f"{old_owner}/{old_name}", space.full_name):
        announce_after_commit(s, name)  # the router and the proxy drop the old name and learn the new one
    return space


def _rebill(s: Session, space: Space, catalog: Catalog) -> None:
    """Usage from now on is the new owner's, under the new name: the open interval ends, a new one starts."""
    now = utcnow()
    for row in open_intervals(s, space.id):
        close_interval(row, now)
        open_interval(s, space, row.tier, now, catalog=catalog)
