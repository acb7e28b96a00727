"""Tiers as the pickers show them: specs and price from the catalog, availability from this runtime's pools."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from controlplane.pools import PoolCapacity, pool_for, pools_of
from controlplane.services import Services
from controlplane.tiers import Tier


@dataclass(frozen=True)
class PoolUse:
    pool: PoolCapacity
    in_use: int | None  # None: no scheduler in this process (pages served without the background loops)

    @property
    def free(self) -> int | None:
        return None if self.in_use is None else max(self.pool.capacity - self.in_use, 0)


@dataclass(frozen=True)
class TierChoice:
    tier: Tier
    pool: PoolUse | None  # None: no pool of this runtime serves the tier, so it cannot be picked

    @property
    def availability(self) -> str:
        if self.pool is None:
            return "not offered here"
        if self.pool.free is None:
            return "offered"
        if self.pool.free == 0:
            return "offered · all in use (you would wait in line)"
        unit = "GPU" if self.tier.is_gpu else "slot"
        return f"offered · {self.pool.free} of {self.pool.pool.capacity} {unit}s free"


def pool_use(svc: Services, s: Session) -> list[PoolUse]:
    scheduler = svc.scheduler
    return [PoolUse(p, scheduler.in_use(s, p) if scheduler else None) for p in pools_of(svc)]


def tier_choices(svc: Services, s: Session) -> list[TierChoice]:
    uses = pool_use(svc, s)
    by_name = {u.pool.name: u for u in uses}
    choices = []
    for tier in svc.catalog.tiers:
        pool = pool_for([u.pool for u in uses], tier.name)
        choices.append(TierChoice(tier, by_name[pool.name] if pool else None))
    return choices
