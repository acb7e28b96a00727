"""Duplicating a Space (`HfApi.duplicate_repo(..., repo_type="space")`): its git history, its variables (not
its secrets: those belong to the source's owner), then a build of the copy."""

from __future__ import annotations

import subprocess

from sqlalchemy.orm import Session

from controlplane.auth import Caller
from controlplane.builds import start_build
from controlplane.errors import Failed, Forbidden
from controlplane.models import Space
from controlplane.repos import BRANCH
from controlplane.secrets_vars import copy_variables, payload_items, set_items
from controlplane.services import Services
from controlplane.spaces import create_space, requested_private


def duplicate(svc: Services, s: Session, who: Caller, source: Space, payload: dict) -> Space:
    owner, _, name = str(payload.get("repository") or "").rpartition("/")
    owner = owner or who.name or ""
    if owner != who.name and not who.user.is_admin:
        raise Forbidden(f"You ({who.name}) can't create Spaces under {owner!r}.", "Forbidden")
    private = requested_private(payload, source.private)
    secrets, variables = payload_items(payload)
    space = create_space(svc, s, owner=owner, name=name, sdk=source.sdk, private=private,
                         hardware=payload.get("hardware"), sleep_time=payload.get("sleepTimeSeconds"))
    _copy_history(svc, source, space)
    space.card_data = dict(source.card_data or {})
    copy_variables(s, source, space)
    # The caller may pass its own secrets and variables ([{key, value, description?}]), as on the Hub.
    set_items(svc, s, space, secrets, variables)
    s.flush()
    head = svc.repos.head(space.owner, space.name)
    if head is None:
        raise Failed(f"{source.full_name} has no {BRANCH} branch to copy.")
    start_build(svc, s, space, head)
    return space


def _copy_history(svc: Services, source: Space, target: Space) -> None:
    """Fetch every branch and tag of the source into the new bare repo: the real commits, not a snapshot.
    Forced, so `main` replaces the initial commit `create_space` wrote."""
    src = svc.repos.path(source.owner, source.name)
    dst = svc.repos.path(target.owner, target.name)
    proc = subprocess.run(
        ["git", "fetch", "-q", "--force", str(src), "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
        cwd=dst, capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise Failed(f"Copying the repository of {source.full_name} failed: {proc.stderr.strip()}")
    svc.repos.lfs.copy_links(src, dst)  # the copy serves the LFS objects its history references
