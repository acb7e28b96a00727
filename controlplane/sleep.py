"""Sleep and wake: idle Spaces stop (their container is kept), and the next request through the router wakes them.

The router's `touched()` records last requests in memory only; the sleeper flushes them to
`Space.last_request_at` on each pass (every `sleep_check_interval` seconds) and puts every RUNNING Space
idle for longer than its sleep time to sleep: STOPPED with detail "sleeping" (unbilled, as every STOPPED
stage), the instance stopped with `remove=False` so that waking is a `docker start`, not a new container.

HAProxy logs a request it served directly once, when its answer starts (the log format needs nothing from its end),
so a WebSocket or stream open for hours is one line at its start and nothing at its close. So before putting Spaces
to sleep the sleeper asks the proxy what it has open on them (`Pusher.in_use`): one found in use counts as active
then (the Python router's WebSocket proxy touches it every 10 s), and is asked about on every pass after that until
nothing is open on it any more, which counts as its last activity: its sleep time runs from the close.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import MutableMapping
from datetime import UTC, datetime

from sqlalchemy import select, update

from controlplane.core.config import Settings
from controlplane.core.utc import as_utc
from controlplane.deploy import Deployer
from controlplane.lifecycle import latest_success
from controlplane.models import Build, Space, utcnow
from controlplane.services import Services
from controlplane.stages import SLEEPING, Stage, set_stage

log = logging.getLogger(__name__)


def sleep_seconds(settings: Settings, space: Space) -> int | None:
    """Seconds without a request before the Space sleeps; None: never (paid tiers unless the owner sets one)."""
    if space.sleep_time is not None:
        return space.sleep_time if space.sleep_time > 0 else None
    return settings.cpu_basic_sleep_seconds if space.hardware_requested == "cpu-basic" else None


def _utc(when: datetime | None) -> datetime:
    return as_utc(when) if when is not None else datetime.min.replace(tzinfo=UTC)


class Sleeper:
    """The sleeper loop, and the one wake-up per Space that concurrent requests share."""

    def __init__(self, svc: Services, deployer: Deployer, activity: MutableMapping[str, float]) -> None:
        self.svc, self.deployer = svc, deployer
        self.activity = activity  # "owner/name" -> time.time() of the last request (the resolver's memory)
        self._flushed: dict[str, float] = {}
        # Spaces the proxy had something open on at the last look; asked about again on each pass until it closes.
        self._open: set[str] = set()
        self.waking: dict[str, asyncio.Task] = {}
        # Sleeping and waking one Space never overlap: a wake waits until the sleep's stop has finished.
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def once(self, now: datetime | None = None) -> list[str]:
        """Flush last requests, then put idle Spaces to sleep; returns their names. `now` is for tests."""
        now = now or utcnow()
        idle = await asyncio.to_thread(self._flush_and_find_idle, now)
        await self._note_open(idle, now)
        return [name for name in idle if await self._sleep(name, now)]

    async def _note_open(self, idle: list[str], now: datetime) -> None:
        """Idle Spaces with something open on the proxy's direct path are in use now, and so are those that were
        until this pass (their close is logged nowhere). Asked only when there are such Spaces: one `show table`
        per proxy replica, however many; a pass with nothing idle and nothing open asks nothing."""
        proxy = self.svc.proxy_routes
        if proxy is None or not (idle or self._open):
            return
        found = await proxy.in_use({*idle, *self._open})
        stamp = now.timestamp()
        for name in (found & set(idle)) | (self._open - found):
            if stamp > self.activity.get(name, 0.0):
                self.activity[name] = stamp
        self._open = found

    def _last_activity(self, space: Space) -> datetime:
        # updated_at moves with every stage change (set_stage), so a Space never visited sleeps `seconds`
        # after it started; the flush below leaves updated_at alone so that it stays that mark.
        seen = self.activity.get(space.full_name)
        memory = datetime.fromtimestamp(seen, UTC) if seen is not None else None
        return max(_utc(space.updated_at), _utc(space.last_request_at), _utc(memory))

    def _is_idle(self, space: Space, now: datetime) -> bool:
        seconds = sleep_seconds(self.svc.settings, space)
        return (
            seconds is not None
            and space.stage == Stage.RUNNING
            and space.container_id is not None
            and space.id not in self.deployer.starting
            and (now - self._last_activity(space)).total_seconds() >= seconds
        )

    def _flush_and_find_idle(self, now: datetime) -> list[str]:
        pending = {name: ts for name, ts in list(self.activity.items()) if self._flushed.get(name) != ts}
        with self.svc.db.session() as s:
            for name, ts in pending.items():
                owner, _, repo = name.partition("/")
                s.execute(
                    update(Space)
                    .where(Space.owner == owner, Space.name == repo)
                    .values(last_request_at=datetime.fromtimestamp(ts, UTC), updated_at=Space.updated_at)
                )
            self._flushed.update(pending)
            running = s.scalars(select(Space).where(Space.stage == Stage.RUNNING.value))
            return [space.full_name for space in running if self._is_idle(space, now)]

    async def _sleep(self, full_name: str, now: datetime) -> bool:
        async with self._locks[full_name]:
            instance = await asyncio.to_thread(self._mark_sleeping, full_name, now)
            if instance is None:
                return False
            # Commit first, stop second: the engine's "die" event then finds a STOPPED Space and ignores it.
            await asyncio.to_thread(self.svc.runtime.stop, instance, False)
        return True

    def _mark_sleeping(self, full_name: str, now: datetime) -> str | None:
        owner, _, name = full_name.partition("/")
        with self.svc.db.session() as s:
            space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
            if space is None or not self._is_idle(space, now):  # a request came in since the scan
                return None
            seconds = sleep_seconds(self.svc.settings, space)
            # container_id stays: it is the stopped instance a wake starts again.
            space.endpoint, space.hardware_current = None, None
            set_stage(
                s, space, Stage.STOPPED, f"Sleeping: no request for {seconds} s. The next visit wakes it.",
                detail=SLEEPING, now=now,
            )
            log.info("%s is going to sleep", full_name)
            return space.container_id

    def wake(self, full_name: str) -> asyncio.Task:
        """Start waking the Space, or join the wake already under way: one start however many requests wait."""
        task = self.waking.get(full_name)
        if task is None:
            task = asyncio.create_task(self._wake(full_name), name=f"wake-{full_name}")
            self.waking[full_name] = task
            task.add_done_callback(lambda _t: self.waking.pop(full_name, None))
        return task

    async def _wake(self, full_name: str) -> None:
        async with self._locks[full_name]:
            plan = await asyncio.to_thread(self._wake_plan, full_name)
            if plan is None:
                return
            log.info("waking %s", full_name)
            # A newer deploy (a push, a restart) may cancel this one; waiting requests then follow the stage.
            await asyncio.wait([self.deployer.deploy(*plan)])

    def _wake_plan(self, full_name: str) -> tuple[int, int, str | None] | None:
        """(space id, build to start, kept instance to resume), or None when the Space is not asleep."""
        owner, _, name = full_name.partition("/")
        with self.svc.db.session() as s:
            space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
            if space is None or space.detail != SLEEPING:
                return None
            build = s.get(Build, space.running_build_id) if space.running_build_id else None
            if build is None or build.status != "SUCCESS":
                build = latest_success(s, space)
            if build is None:
                return None
            return space.id, build.id, space.container_id if build.id == space.running_build_id else None
