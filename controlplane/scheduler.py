"""Admission: a Space starts only when its tier's pool has room and its owner's GPU quota allows it.

The database is the ledger: a Space holds hardware while `stages.holds_hardware` says so (the rule metering
bills by), on the tier it runs on, or the tier it is starting on. Only the waiting line lives in memory: the
deploy task of a waiting Space awaits its turn inside `admit`, so it stays in `Deployer.starting` (the
reconciler leaves it alone) and pause, delete or a newer deploy cancel it like any start. After a restart
the reconciler deploys the Spaces left in APP_STARTING again and they queue anew.

Every stage change is a chance that hardware was freed (pause, delete, sleep, failure, tier change): the
waiting Spaces then look again, first in line first (FIFO per pool; the head blocks those behind it even if
they would fit, so a 2-GPU request is not starved by 1-GPU ones).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.errors import QuotaExceeded
from controlplane.models import Space, User
from controlplane.pools import PoolCapacity, host_memory_of, not_offered_message, pool_for, pools_of, units
from controlplane.services import Services
from controlplane.stages import (
    HOLDING,
    STARTING,
    WAITING_FOR_HARDWARE,
    Stage,
    holds_hardware,
    on_committed_change,
    set_stage,
)
from controlplane.tiers import Tier

log = logging.getLogger(__name__)
OVER_QUOTA = "over quota"
NOT_OFFERED = "hardware not offered"


@dataclass(frozen=True)
class Admission:
    serving: bool  # an older instance still serves; False once a GPU redeploy stopped it to make room


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


class Scheduler:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.pools = pools_of(svc)
        self.queues: dict[str, list[int]] = {p.name: [] for p in self.pools}  # pool -> space ids, first in line first
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        # Stopped by close() at shutdown (controlplane/wiring.py).
        self._unsubscribe = on_committed_change(self._stage_changed)

    def close(self) -> None:
        self._unsubscribe()

    # --- what is held ----------------------------------------------------------------------------

    def waiting(self, space_id: int) -> bool:
        return any(space_id in q for q in self.queues.values())

    def held_tier(self, space: Space) -> str | None:
        """The tier whose hardware this Space holds now, or None."""
        # The line is in memory here; metering, inside the stage write, reads it from the detail it sets.
        in_line = self.waiting(space.id)
        if not holds_hardware(space.stage, in_line, serving_instance=space.container_id is not None):
            return None
        if in_line:
            return space.hardware_current  # only the version that keeps serving holds anything
        if space.stage in STARTING:
            return space.hardware_requested
        return space.hardware_current or space.hardware_requested

    def holdings(self, s: Session, exclude: int | None = None) -> list[tuple[Space, Tier]]:
        held = []
        for space in s.scalars(select(Space).where(Space.stage.in_(HOLDING))):
            tier_name = self.held_tier(space)
            if space.id == exclude or tier_name is None:
                continue
            try:
                held.append((space, self.svc.catalog.tier(tier_name)))
            except KeyError:  # a tier removed from the catalog holds nothing we could hand out
                continue
        return held

    def in_use(self, s: Session, pool: PoolCapacity, exclude: int | None = None) -> int:
        return sum(units(tier) for _space, tier in self.holdings(s, exclude) if pool.serves(tier.name))

    def memory_short(self, s: Session, tier: Tier, exclude: int | None = None) -> str | None:
        """docker runtime: why the host's memory cannot take one more Space on `tier` now, or None."""
        host = host_memory_of(self.svc)
        if host is None:
            return None
        held = sum(host.size(t) for _space, t in self.holdings(s, exclude))
        need = host.size(tier)
        if held + need <= host.allocatable_gb:
            return None
        return (
            f"The host's memory for Spaces is taken: {held:.1f} of {host.allocatable_gb:.1f} GiB reserved, "
            f"this Space needs {need:.1f} GiB."
        )

    # --- refusals ---------------------------------------------------------------------------------

    def quota_refusal(self, s: Session, space: Space, tier: Tier) -> str | None:
        """Why the owner may not start this Space on `tier` now, or None."""
        if not tier.is_gpu:
            return None
        limit = s.scalar(select(User.max_gpus).where(User.name == space.owner))
        if limit is None:
            return None
        others = [(sp, t) for sp, t in self.holdings(s, exclude=space.id) if sp.owner == space.owner and t.is_gpu]
        used = sum(t.gpu_count for _sp, t in others)
        if used + tier.gpu_count <= limit:
            return None
        quota = f"Your quota of {plural(limit, 'GPU')}"
        if not others:
            return f"{quota} is too small for {tier.name}, which needs {plural(tier.gpu_count, 'GPU')}. Ask an admin."
        names = ", ".join(sp.full_name for sp, _t in others)
        return (
            f"{quota} is in use by {names}. Pause one of them (or ask an admin to raise the quota), "
            f"then restart this Space."
        )

    def check_quota(self, space_id: int, tier_name: str) -> None:
        """Refuse a hardware request the owner's quota can never allow right now (the API answers 403)."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            refusal = self.quota_refusal(s, space, self.svc.catalog.tier(tier_name))
        if refusal:
            raise QuotaExceeded(refusal, "QuotaExceeded")

    # --- admission --------------------------------------------------------------------------------

    async def admit(self, space_id: int, serving: bool) -> Admission | None:
        """Wait until the Space may start on its requested tier; None if it may not (the stage says why)."""
        pool: PoolCapacity | None = None
        waited = False
        try:
            while True:
                with self.svc.db.session() as s:
                    space = s.get(Space, space_id)
                    if space is None:
                        return None
                    tier = self.svc.catalog.tier(space.hardware_requested)
                    pool = pool_for(self.pools, tier.name)
                    if pool is None:
                        self._refuse(s, space, serving, not_offered_message(self.svc, tier.name), NOT_OFFERED)
                        return None
                    refusal = self.quota_refusal(s, space, tier)
                    if refusal:
                        self._refuse(s, space, serving, refusal, OVER_QUOTA)
                        return None
                    queue = self.queues[pool.name]
                    ahead = queue.index(space_id) if space_id in queue else len(queue)
                    used = self.in_use(s, pool, exclude=space_id)
                    short = self.memory_short(s, tier, exclude=space_id)
                    if ahead == 0 and used + units(tier) <= pool.capacity and short is None:
                        if space_id in queue:
                            queue.remove(space_id)
                            self._kick()  # the next in line moves up
                        if waited:
                            set_stage(s, space, Stage(space.stage), f"{tier.name} is free now: starting.")
                        break
                    if space_id not in queue:
                        queue.append(space_id)
                    waited = True
                    self._say_waiting(s, space, tier, pool, ahead, used, short)
                changed = self._changed
                await changed.wait()
        finally:
            if pool is not None and space_id in self.queues[pool.name]:  # cancelled while in line
                self.queues[pool.name].remove(space_id)
                self._kick()
        if serving:
            serving = not await self._make_room(space_id)
        return Admission(serving=serving)

    async def _make_room(self, space_id: int) -> bool:
        """A GPU Space cannot run old and new instance side by side (DESIGN: Kubernetes facts): stop the old
        one first. Returns whether it stopped one."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            gpu = self._is_gpu(space.hardware_current) or self._is_gpu(space.hardware_requested)
            if not space.container_id or not gpu:
                return False
            # hardware_current stays: metering bills the old tier until the new instance runs (as on any deploy).
            old, space.container_id, space.endpoint = space.container_id, None, None
            set_stage(
                s,
                space,
                Stage.APP_STARTING,
                f"Stopped the running version first: a GPU Space ({space.hardware_requested}) has no room for a "
                "second instance, so it is down until the new one answers.",
            )
        await asyncio.to_thread(self.svc.runtime.stop, old)
        return True

    def _is_gpu(self, tier: str | None) -> bool:
        try:
            return tier is not None and self.svc.catalog.tier(tier).is_gpu
        except KeyError:
            return False

    def _say_waiting(
        self, s: Session, space: Space, tier: Tier, pool: PoolCapacity, ahead: int, used: int, short: str | None
    ) -> None:
        line = f"{ahead} ahead of you" if ahead else "you are next"
        article = "an" if tier.name[0] in "aeiou" else "a"
        message = f"Waiting for {article} {tier.name}: {line} ({used} of {pool.capacity} in use in pool {pool.name})."
        if short:
            message += f" {short}"
        if space.container_id:
            message += " The current version keeps serving meanwhile."
        if space.error_message != message or space.detail != WAITING_FOR_HARDWARE:
            set_stage(s, space, Stage(space.stage), message, detail=WAITING_FOR_HARDWARE)

    def _refuse(self, s: Session, space: Space, serving: bool, message: str, detail: str) -> None:
        if serving:
            # Visitors keep the running version; the owner reads why the new one did not start.
            set_stage(s, space, Stage.RUNNING, f"The new version was not started. {message}")
        else:
            set_stage(s, space, Stage.PAUSED, f"Not started. {message}", detail=detail)

    def note_pending(self, space_name: str, reason: str | None) -> None:
        """The runtime placed the instance but it waits for a node (Kubernetes Pending): say why."""
        owner, _, name = space_name.partition("/")
        message = f"Waiting for hardware: {reason or 'no node has room yet'}"
        with self.svc.db.session() as s:
            space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
            if space is not None and space.stage in STARTING and space.error_message != message:
                set_stage(s, space, Stage(space.stage), message, detail=WAITING_FOR_HARDWARE)

    # --- waking the line --------------------------------------------------------------------------

    def _stage_changed(self, _name: str) -> None:
        # Announced after commit, from whichever thread committed; a stopped app's scheduler hears nothing.
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._kick)

    def _kick(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def line(self, pool: str) -> int:
        return len(self.queues.get(pool, []))
