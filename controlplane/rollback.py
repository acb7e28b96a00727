"""Build history and rollback: every build of a Space with its commit, and serving an earlier successful build's
image again without rebuilding, through the Deployer like any deploy (zero-downtime: the old instance serves
until the new one answers). The Space stays pinned to that build until another build is deployed."""

from __future__ import annotations

import asyncio

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from controlplane import git_history
from controlplane.core.utc import iso
from controlplane.errors import Conflict, Gone, NotFound
from controlplane.models import Build, Space
from controlplane.repos import RepoError
from controlplane.services import Services


def builds_query(space: Space) -> Select:
    return select(Build).where(Build.space_id == space.id).order_by(Build.id.desc())


def build_view(svc: Services, space: Space, build: Build) -> dict:
    try:
        found = git_history.commits(svc.repos, space.owner, space.name, build.commit_sha, skip=0, limit=1)
    except RepoError:  # the commit is gone from the repo (a force push and gc): the build is still listed
        found = []
    commit = found[0] if found else None
    duration = None
    if build.started_at and build.finished_at:
        duration = round((build.finished_at - build.started_at).total_seconds(), 1)
    return {
        "id": build.id,
        "commit": build.commit_sha,
        "author": commit.authors[0] if commit else None,
        "message": commit.title if commit else None,
        "createdAt": iso(build.created_at),
        "startedAt": iso(build.started_at),
        "finishedAt": iso(build.finished_at),
        "durationSeconds": duration,
        "status": build.status,
        "image": build.image,
        "imageKept": build.status == "SUCCESS" and build.image_removed_at is None,
        "running": build.id == space.running_build_id,
        "pinned": build.id == space.pinned_build_id,
        "error": build.error_message,
    }


def target(s: Session, space: Space, build_id: int | None, kept: int) -> Build:
    """The build to serve again: `build_id`, or the newest successful one before the build that serves."""
    if build_id is None:
        build = s.scalar(
            builds_query(space).where(
                Build.status == "SUCCESS",
                Build.image_removed_at.is_(None),
                Build.id < (space.running_build_id or 0),
            )
        )
        if build is None:
            raise Conflict(f"{space.full_name} has no earlier successful build to roll back to.")
        return build
    build = s.get(Build, build_id)
    if build is None or build.space_id != space.id:
        raise NotFound(f"{space.full_name} has no build {build_id}.", "NotFound")
    if build.status != "SUCCESS":
        raise Conflict(f"Build {build_id} ended {build.status}: only a successful build can be served again.")
    if build.image_removed_at is not None:
        raise Gone(
            f"The image of build {build_id} was removed (only the last {kept} successful builds' images are kept); "
            "push its commit again to rebuild it.",
        )
    if build.id == space.running_build_id:
        raise Conflict(f"{space.full_name} already runs build {build_id}.")
    return build


def _pin(svc: Services, space_id: int, build_id: int | None) -> int:
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        build = target(s, space, build_id, svc.settings.build_images_kept)
        space.pinned_build_id = build.id
        return build.id


async def rollback(svc: Services, space_id: int, build_id: int | None) -> int:
    """Pin the Space to the chosen build and deploy it (on the event loop, like every deploy); returns its id."""
    chosen = await asyncio.to_thread(_pin, svc, space_id, build_id)
    svc.deployer.deploy(space_id, chosen)
    return chosen
