"""Who may write to a Space's repo: one rule for git pushes and LFS uploads."""

from __future__ import annotations

from controlplane.api.deps import Caller
from controlplane.models import Space


def write_refusal(who: Caller, space: Space) -> str | None:
    """Why a signed-in caller may not write to this Space's repo (git objects or LFS objects), or None."""
    if who.token is not None and who.token.role != "write":
        return f"This token has the {who.token.role} role; pushing needs a write token."
    if not who.owns(space):
        return f"You ({who.name}) don't have write access to {space.owner}/{space.name}."
    return None
