"""Reads the builder's event streams: a build's result becomes its Build row, the Space's stage, and a deploy.

Also the watchdog: a handed-out build that is silent for `build_heartbeat_timeout` (its worker died before or
after it started, or the broker lost its task in a restart) is sent again, then failed, never left in BUILDING.
The database says which builds are pending, so nothing depends on what Redis kept. A second delivery of a build
does nothing: the builder's claim (docs/build-contract.md) lets one run it, and a result settles a build once.
And the dispatcher's clock: a settled build frees a builder for the next one in line (builds.dispatch), and a
pass every DISPATCH_INTERVAL hands out what a restart or a failed send left waiting, and settles a Space left
BUILDING or RUNNING_BUILDING with no build in the line (the control plane stopped between a result and its deploy).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import timedelta

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from controlplane.builds import ACTIVE, dispatch_safely, events_key, send, start_build
from controlplane.deploy import Deployer
from controlplane.models import Build, Space, utcnow
from controlplane.repos import RepoError
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
        for build_id, handed_out in active.items():
            self.cursors.setdefault(build_id, "0")
            if not handed_out:  # waiting in Spaceyard's own line: its silence clock starts at the hand-out
                self.last_seen[build_id] = now
            self.last_seen.setdefault(build_id, now)
        for gone in set(self.cursors) - set(active):
            self.cursors.pop(gone, None)
            self.last_seen.pop(gone, None)
            await self.settled(gone)
        if now >= self.next_dispatch:
            self.next_dispatch = now + DISPATCH_INTERVAL
            await asyncio.to_thread(dispatch_safely, self.svc)
            for deploy in await asyncio.to_thread(self._stranded, set(self.deployer.starting)):
                self.deployer.deploy(*deploy)
        if not self.cursors:
            await asyncio.sleep(0.5)
            return
        streams = {events_key(self.instance, b): cursor for b, cursor in self.cursors.items()}
        try:
            replies = await self.redis.xread(streams, block=1000, count=500)
        except RedisError:
            # Blind while Redis is away: builders get a whole timeout after it is back to show they live.
            self.last_seen = dict.fromkeys(self.last_seen, time.monotonic())
            raise
        for key, entries in replies or []:
            build_id = int(key.rsplit(":", 1)[1])
            self.last_seen[build_id] = time.monotonic()
            for entry_id, fields in entries:
                try:
                    await self.handle(build_id, fields)
                except (RedisError, OperationalError):
                    raise  # the database or Redis is away: this entry is read again on the next pass
                except Exception:
                    log.exception("build %s: its event %s could not be handled; skipped", build_id, entry_id)
                self.cursors[build_id] = entry_id
        await self.watchdog()

    def _active_builds(self) -> dict[int, bool]:
        """Queued and running builds: id -> whether it was handed to the builders."""
        with self.svc.db.session() as s:
            rows = s.execute(select(Build.id, Build.last_event_at).where(Build.status.in_(ACTIVE)))
            return {build_id: sent is not None for build_id, sent in rows}

    async def settled(self, build_id: int) -> None:
        """Mark a build that left the active set done for the builders: a superseded build's task still in the
        broker is never built, and a worker building it stops at its next line (its claim is gone)."""
        key = f"{events_key(self.instance, build_id)}:claim"
        try:
            await self.redis.set(key, "done", ex=STREAM_TTL)
        except RedisError:
            log.warning("could not mark build %s done for the builders; a late delivery may build it", build_id)

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
        ok = fields.get("status") == "success"
        with self.svc.db.session() as s:
            # A compare-and-set: of two results of one build (two deliveries, two consumers) one settles it.
            settle = update(Build).where(Build.id == build_id, Build.status.in_(ACTIVE))
            if s.execute(settle.values(status="SUCCESS" if ok else "FAILED")).rowcount != 1:
                return None  # superseded or already settled
            build = s.get(Build, build_id)
            assert build is not None
            config = json.loads(fields.get("config") or "{}")
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
            show_failure(s, space, build)
            return None

    def _stranded(self, starting: set[int]) -> list[tuple[int, int]]:
        """Spaces BUILDING or RUNNING_BUILDING for a whole heartbeat timeout with no build queued or running (the
        control plane stopped between a result and its deploy, or before an API commit's build began): the head
        of main is built if no build has it, else the last build deployed if it succeeded and does not run,
        else the stage says how it ended. Returns the (Space, build) pairs to deploy."""
        deploys = []
        quiet_since = utcnow() - timedelta(seconds=self.svc.settings.build_heartbeat_timeout)
        with self.svc.db.session() as s:
            building = select(Space).where(
                Space.stage.in_([Stage.BUILDING, Stage.RUNNING_BUILDING]), Space.updated_at < quiet_since
            )
            for space in s.scalars(building):
                last = s.scalar(select(Build).where(Build.space_id == space.id).order_by(Build.id.desc()).limit(1))
                if space.id in starting or (last is not None and last.status in ACTIVE):
                    continue
                try:
                    head = self.svc.repos.head(space.owner, space.name)
                except RepoError as e:
                    log.error("could not read the head of %s to settle its stage: %s", space.full_name, e)
                    continue
                log.warning("%s was left %s with no build in the line; settling it", space.full_name, space.stage)
                if head is not None and (last is None or last.commit_sha != head):
                    start_build(self.svc, s, space, head)
                elif last is not None and last.status == "SUCCESS" and last.id != space.running_build_id:
                    deploys.append((space.id, last.id))
                elif last is not None and last.status == "FAILED":
                    show_failure(s, space, last)
                else:
                    serving = space.container_id is not None
                    set_stage(
                        s,
                        space,
                        Stage.RUNNING if serving else Stage.BUILD_ERROR,
                        None if serving else "The build was lost; push again to build.",
                    )
        return deploys

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
            if build is None or build.status not in ACTIVE or build.last_event_at is None:
                return  # settled meanwhile, or still waiting in Spaceyard's own line
            space = s.get(Space, build.space_id)
            if space is None:
                return
            if build.status == "QUEUED":
                # Handed out but never started: its worker died holding it, or the broker lost it. Not an
                # attempt (it never ran), so it is sent until a worker starts it.
                build.last_event_at = utcnow()
                log.warning("build %s was handed out but never started; sending it again", build_id)
                send(self.svc, s, space, build)
                return
            if build.attempt < self.svc.settings.build_max_attempts:
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
            show_failure(s, space, build)


def show_failure(s: Session, space: Space, build: Build) -> None:
    """A failed build's stage: its error, or RUNNING with a note while the previous version still serves."""
    serving = Stage(space.stage) in SERVING and space.container_id is not None
    message = build.error_message or "The build failed; see the build log."
    if serving:
        set_stage(s, space, Stage.RUNNING, f"The last build failed; the previous version still runs. {message}")
    else:
        set_stage(s, space, ERROR_STAGE.get(build.error_kind or "", Stage.BUILD_ERROR), message)
