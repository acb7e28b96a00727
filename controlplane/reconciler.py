"""Converges the runtime to the database: on start and every `reconcile_interval` seconds.

The database says what should run (a Space in a serving stage runs its last good build); the engine says
what does. Instances nobody wants are removed; wanted ones that vanished are started again.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from controlplane.deploy import Deployer
from controlplane.lifecycle import latest_success, pause
from controlplane.metering.intervals import reconcile_open_intervals
from controlplane.models import Space, utcnow
from controlplane.runtime.base import Instance
from controlplane.services import Services
from controlplane.spending import over_limit_spaces
from controlplane.stages import SERVING, STARTING, Stage, announce_after_commit, set_stage

log = logging.getLogger(__name__)


class Reconciler:
    def __init__(self, svc: Services, deployer: Deployer) -> None:
        self.svc, self.deployer = svc, deployer

    def meter(self, instances: list[Instance]) -> None:
        """Close or continue usage intervals from what the runtime really ran (crash safety), including runs
        whose instances are gone but whose real end the runtime saw (a deleted pod)."""
        ended = self.svc.runtime.ended() if self.svc.runtime else []
        with self.svc.db.session() as s:
            ids = {sp.full_name: sp.id for sp in s.scalars(select(Space))}
            actual: dict[int, list] = {space_id: [] for space_id in ids.values()}
            for inst in [*instances, *ended]:
                if inst.space in ids and inst.started_at is not None:
                    actual[ids[inst.space]].append((inst.started_at, inst.finished_at))
            reconcile_open_intervals(s, actual, now=utcnow(), catalog=self.svc.catalog)

    async def once(self) -> None:
        instances = await asyncio.to_thread(self.svc.runtime.list)
        # The scan reads every Space: in a worker thread, never on the loop the API and router share.
        redeploy, wanted = await asyncio.to_thread(self.plan, instances, set(self.deployer.starting))
        # Meter first: the usage of an instance that died is closed at its real end before its replacement
        # starts, so the replacement's start opens a new interval instead of extending the dead one's.
        await asyncio.to_thread(self.meter, instances)
        for space_id, build_id in redeploy:
            if space_id not in self.deployer.starting:  # a deploy that began during the scan stands
                self.deployer.deploy(space_id, build_id)
        for space_id, message in await asyncio.to_thread(over_limit_spaces, self.svc):
            await pause(self.svc, self.deployer, space_id, message)
        for inst in instances:
            if inst.id not in wanted and inst.id not in self.deployer.retiring:  # a redeploy's old one drains
                log.info("reconcile: removing orphan instance %s of %s", inst.id[:12], inst.space)
                await asyncio.to_thread(self.svc.runtime.stop, inst.id)

    def plan(self, instances: list[Instance], starting: set[int]) -> tuple[list[tuple[int, int]], set[str]]:
        """(Spaces to start again with which build, instances that are wanted); corrects endpoints."""
        by_id = {i.id: i for i in instances}
        redeploy: list[tuple[int, int]] = []
        wanted: set[str] = set()
        with self.svc.db.session() as s:
            for space in s.scalars(select(Space)):
                stage = Stage(space.stage)
                if space.container_id:
                    wanted.add(space.container_id)
                if space.id in starting:
                    wanted.update(i.id for i in instances if i.space == space.full_name)
                    continue
                inst = by_id.get(space.container_id or "")
                if stage in SERVING and inst is not None and inst.state == "running":
                    if inst.endpoint != space.endpoint:
                        space.endpoint = inst.endpoint
                        announce_after_commit(s, space.full_name)  # the router and proxy follow it
                    continue
                if stage in SERVING or stage in STARTING:
                    build = latest_success(s, space)
                    if build is None:
                        set_stage(s, space, Stage.RUNTIME_ERROR, "The app is gone and no image is left to restart.")
                        continue
                    log.info("reconcile: %s should run but does not; starting build %s", space.full_name, build.id)
                    space.container_id, space.endpoint = None, None
                    redeploy.append((space.id, build.id))
        return redeploy, wanted
