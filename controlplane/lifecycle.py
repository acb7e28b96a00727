"""The owner's controls: pause, restart (and factory rebuild), hardware change, delete.

Each one changes the stage through `set_stage` and asks the runtime to follow; none waits for the app.
"""

from __future__ import annotations

import asyncio

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.builds import ACTIVE, start_build
from controlplane.deploy import Deployer
from controlplane.errors import InvalidInput
from controlplane.models import Build, Space, SpaceRedirect, utcnow
from controlplane.services import Services
from controlplane.spaces import check_tier
from controlplane.stages import SLEEPING, Stage, set_stage


def release(space: Space) -> str | None:
    """Forget the serving instance in the DB; return its id so the caller can stop it after commit."""
    instance, space.container_id, space.endpoint = space.container_id, None, None
    space.hardware_current = None
    return instance


async def stop_instance(svc: Services, instance_id: str | None) -> None:
    if instance_id:
        await asyncio.to_thread(svc.runtime.stop, instance_id)


def latest_success(s: Session, space: Space) -> Build | None:
    """The build a restart or wake starts: the one a rollback pinned, else the newest successful one."""
    pinned = s.get(Build, space.pinned_build_id) if space.pinned_build_id else None
    if pinned is not None and pinned.status == "SUCCESS" and pinned.image_removed_at is None:
        return pinned
    return s.scalar(
        select(Build).where(Build.space_id == space.id, Build.status == "SUCCESS").order_by(Build.id.desc()).limit(1)
    )


async def pause(svc: Services, deployer: Deployer, space_id: int, message: str = "Paused by its owner.") -> None:
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        task = deployer.starting.pop(space_id, None)
        if task:
            task.cancel()
        instance = release(space)
        set_stage(s, space, Stage.PAUSED, message)
    await stop_instance(svc, instance)


async def restart(svc: Services, deployer: Deployer, space_id: int, *, factory: bool = False) -> None:
    """Start the last good image again; factory=True rebuilds the head commit with no cache."""
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        build = latest_success(s, space)
        building = s.scalar(select(Build.id).where(Build.space_id == space_id, Build.status.in_(ACTIVE)))
        if factory or build is None:
            if space.head_sha is None:
                raise InvalidInput("This Space has no commit to build yet.")
            if building is None or factory:
                start_build(svc, s, space, space.head_sha, no_cache=factory)
            return
        if space.stage == Stage.PAUSED:
            set_stage(s, space, Stage.APP_STARTING, "Resuming.")
    deployer.deploy(space_id, build.id)


async def change_hardware(svc: Services, deployer: Deployer, space_id: int, flavor: str) -> None:
    check_tier(svc, flavor)
    scheduler = svc.scheduler
    scheduler.check_quota(space_id, flavor)
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        changed = space.hardware_requested != flavor
        space.hardware_requested = flavor
        resume = space.stage in (Stage.PAUSED, Stage.STOPPED) or space.detail == SLEEPING
        # A Space waiting in line for the old tier queues again for the new one.
        running = space.container_id is not None or scheduler.waiting(space_id)
    if changed and running or resume:
        await restart(svc, deployer, space_id)


async def delete(svc: Services, deployer: Deployer, space_id: int) -> None:
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        task = deployer.starting.pop(space_id, None)
        if task:
            task.cancel()
        release(space)
        set_stage(s, space, Stage.DELETING, "Deleting.")
        for build in s.scalars(select(Build).where(Build.space_id == space_id, Build.status.in_(ACTIVE))):
            build.status, build.finished_at = "CANCELLED", utcnow()
        full_name, owner, name = space.full_name, space.owner, space.name
        # Images built before a move carry a former name in their label (controlplane/moves.py); no other Space
        # holds that name while it redirects here, so nothing else goes with them.
        moves = s.scalars(select(SpaceRedirect).where(SpaceRedirect.space_id == space_id))
        former = [f"{r.owner}/{r.name}" for r in moves]
    for label in (full_name, *former):
        await asyncio.to_thread(svc.runtime.remove_space, label)
    await asyncio.to_thread(svc.repos.delete, owner, name)
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        if space is not None:
            s.delete(space)
