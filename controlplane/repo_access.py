"""Who may read or write a Space's repo: one rule for git (clone, push) and LFS (download, upload)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.auth import Caller, identify
from controlplane.errors import Forbidden, NotFound, Unauthenticated
from controlplane.models import Space
from controlplane.services import Services


def write_refusal(who: Caller, space: Space) -> str | None:
    """Why a signed-in caller may not write to this Space's repo (git objects or LFS objects), or None."""
    if who.token is not None and who.token.role != "write":
        return f"This token has the {who.token.role} role; pushing needs a write token."
    if not who.owns(space):
        return f"You ({who.name}) don't have write access to {space.owner}/{space.name}."
    return None


def repo_caller(svc: Services, s: Session, headers, owner: str, name: str, write: str | None) -> tuple[Caller, Space]:
    """The caller and the Space of a git or LFS request, or a domain error: Unauthenticated when credentials would
    help (git asks for them again), NotFound, Forbidden. `write` names the write ("push", "upload"), None to read."""
    who = identify(svc, s, headers, {})
    space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
    if space is None or not who.can_read(space):
        if who.user is None and not who.is_builder:
            raise Unauthenticated("Authentication required")
        raise NotFound(f"Repository not found: {owner}/{name}")
    if write:
        if who.user is None:
            raise Unauthenticated(f"Authentication required to {write}")
        if refusal := write_refusal(who, space):
            raise Forbidden(refusal)
    return who, space
