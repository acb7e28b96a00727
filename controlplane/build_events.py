"""Reads the builder's event streams: a build's result becomes its Build row, the Space's stage, and a deploy.

Also the watchdog: a build whose worker went silent is sent again, then failed, never left in BUILDING.
And the dispatcher's clock: a settled build frees a builder for the next one in line (builds.dispatch), and a
pass every DISPATCH_INTERVAL hands out what a restart or a failed send left waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

import redis.asyncio as aioredis
from sqlalchemy import select

from controlplane.builds import ACTIVE, dispatch_safely, events_key, send
from controlplane.deploy import Deployer
from controlplane.models import Build, Space, utcnow
from controlplane.services import Services
from controlplane.stages import SERVING, Stage, set_stage

log = logging.getLogger(__name__)
STREAM_TTL = 7 * 24 * 3600
ERROR_STAGE = {"NO_APP_FILE": Stage.NO_APP_FILE, "CONFIG_ERROR": Stage.CONFIG_ERROR}
DISPATCH_INTERVAL = 5.0


def stream_log(entries: list[tuple[str, dict]]) -> str:
    return "\n".join(fields.get("line", "") for _id, fields in entries if fields.get("type") == "log")


class BuildEventsConsumer:
    def __init__(self, svc: Services, redis: aioredis.Redis, deployer: Deployer) -> None:
        self.svc, self.redis, self.deployer = svc, redis, deployer
        self.instance = svc.settings.instance
        self.cursors: dict[int, str] = {}  # build id -> last stream entry read
        self.last_seen: dict[int, float] = {}  # build id -> monotonic time of its last event
        self.next_dispatch = 0.0  # at once: builds queued before a restart wait for no push

    async def step(self) -> None:
        active = await asyncio.to_thread(self._active_builds)
        now = time.monotonic()
        for build_id in active:
            self.cursors.setdefault(build_id, "0")
            self.last_seen.setdefault(build_id, now)
        for gone in set(self.cursors) - set(active):
            self.cursors.pop(gone, None)
            self.last_seen.pop(gone, None)
        if not self.cursors:
            await asyncio.sleep(0.5)
            return
        if now >= self.next_dispatch:
            self.next_dispatch = now + DISPATCH_INTERVAL
            await asyncio.to_thread(dispatch_safely, self.svc)
        streams = {events_key(self.instance, b): cursor for b, cursor in self.cursors.items()}
        replies = await self.redis.xread(streams, block=1000, count=500)
        for key, entries in replies or []:
            build_id = int(key.rsplit(":", 1)[1])
            self.cursors[build_id] = entries[-1][0]
            self.last_seen[build_id] = time.monotonic()
            for _entry_id, fields in entries:
                await self.handle(build_id, fields)
        await self.watchdog()

    def _active_builds(self) -> list[int]:
        with self.svc.db.session() as s:
            return list(s.scalars(select(Build.id).where(Build.status.in_(ACTIVE))))

    async def handle(self, build_id: int, fields: dict) -> None:
        kind = fields.get("type")
        if kind == "started":
            await asyncio.to_thread(self._started, build_id)
        elif kind == "result":
            entries = await self.redis.xrange(events_key(self.instance, build_id))
            await self.redis.expire(events_key(self.instance, build_id), STREAM_TTL)
            deploy = await asyncio.to_thread(self._result, build_id, fields, stream_log(entries))
            await asyncio.to_thread(dispatch_safely, self.svc)  # its builder is free for the next in line
            if deploy:
                self.deployer.deploy(*deploy)

    def _started(self, build_id: int) -> None:
        with self.svc.db.session() as s:
            build = s.get(Build, build_id)
            if build is None or build.status not in ACTIVE:
                return
            build.status, build.started_at, build.last_event_at = "RUNNING", build.started_at or utcnow(), utcnow()
            space = s.get(Space, build.space_id)
            if space and space.stage in (Stage.BUILDING, Stage.RUNNING_BUILDING):
                set_stage(s, space, Stage(space.stage), f"Building commit {build.commit_sha[:7]}.")

    def _result(self, build_id: int, fields: dict, log_text: str) -> tuple[int, int] | None:
        with self.svc.db.session() as s:
            build = s.get(Build, build_id)
            if build is None or build.status not in ACTIVE:
                return None  # superseded or already settled
            ok = fields.get("status") == "success"
            config = json.loads(fields.get("config") or "{}")
            build.status = "SUCCESS" if ok else "FAILED"
            build.finished_at = build.last_event_at = utcnow()
            build.log, build.config = log_text, config
            build.error_kind = fields.get("error_kind") or None
            build.error_message = fields.get("error_message") or None
            space = s.get(Space, build.space_id)
            if space is None:
                return None
            if config.get("card_data") is not None:
                space.card_data = config["card_data"]
            if ok:
                return space.id, build.id
            serving = Stage(space.stage) in SERVING and space.container_id is not None
            stage = ERROR_STAGE.get(build.error_kind or "", Stage.BUILD_ERROR)
            message = build.error_message or "The build failed; see the build log."
            if serving:
                set_stage(s, space, Stage.RUNNING, f"The last build failed; the previous version still runs. {message}")
            else:
                set_stage(s, space, stage, message)
            return None

    async def watchdog(self) -> None:
        timeout = self.svc.settings.build_heartbeat_timeout
        now = time.monotonic()
        for build_id, seen in list(self.last_seen.items()):
            if now - seen > timeout:
                self.last_seen[build_id] = now
                await asyncio.to_thread(self._lost, build_id)
                await asyncio.to_thread(dispatch_safely, self.svc)

    def _lost(self, build_id: int) -> None:
        with self.svc.db.session() as s:
            build = s.get(Build, build_id)
            if build is None or build.status != "RUNNING":
                return  # QUEUED builds wait for a worker; only a started build can be lost
            space = s.get(Space, build.space_id)
            if build.attempt < self.svc.settings.build_max_attempts and space is not None:
                build.attempt += 1
                build.status, build.last_event_at = "QUEUED", utcnow()  # handed out again: it holds a slot
                log.warning("build %s lost its worker; sending it again (attempt %s)", build_id, build.attempt)
                send(self.svc, s, space, build)
                return
            build.status, build.finished_at = "FAILED", utcnow()
            build.error_kind = "BUILD_ERROR"
            build.error_message = (
                f"The builder stopped responding during the build (no event for "
                f"{int(self.svc.settings.build_heartbeat_timeout)} s, {build.attempt} attempts)."
            )
            if space is not None:
                serving = Stage(space.stage) in SERVING and space.container_id is not None
                set_stage(s, space, Stage.RUNNING if serving else Stage.BUILD_ERROR, build.error_message)
