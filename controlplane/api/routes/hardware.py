"""`GET /api/spaces/hardware`: the tiers as `HfApi.list_spaces_hardware()` reads them, plus what is free now."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, services
from controlplane.pools import pool_for
from controlplane.scheduler import Scheduler
from controlplane.services import Services
from controlplane.tiers import Tier

router = APIRouter(prefix="/api/spaces", tags=["hardware"])


def hub_fields(tier: Tier) -> dict:
    """The Hub's shape; the client requires every key here except accelerator (null on CPU tiers)."""
    per_minute = tier.price_per_hour / 60  # the Hub prices per minute; Spaceyard meters per second
    accelerator = None
    if tier.is_gpu:
        vram = (tier.gpu_memory_gb or 0) * tier.gpu_count
        accelerator = {
            "type": "gpu",
            "model": tier.gpu_model,
            "quantity": str(tier.gpu_count),
            "vram": f"{vram:g} GB",
            "manufacturer": "Nvidia",
        }
    return {
        "name": tier.name,
        "prettyName": tier.pretty_name,
        "cpu": f"{tier.vcpu:g} vCPU",
        "ram": f"{tier.memory_gb:g} GB",
        "accelerator": accelerator,
        "unitCostMicroUSD": round(per_minute * 1_000_000),
        "unitCostUSD": round(per_minute, 8),
        "unitLabel": "minute",
    }


@router.get("/hardware")
def list_hardware(svc: Services = Depends(services), s: Session = DB) -> list[dict]:
    scheduler: Scheduler = svc.scheduler
    out = []
    for tier in svc.catalog.tiers:
        pool = pool_for(scheduler.pools, tier.name)
        own = {"offered": pool is not None, "pricePerHour": tier.price_per_hour, "pool": None}
        if pool is not None:
            used = scheduler.in_use(s, pool)
            own |= {
                "pool": pool.name,
                "capacity": pool.capacity,
                "inUse": used,
                # Units: Spaces on a CPU pool, GPUs on a GPU pool; a 2-GPU tier needs 2 free.
                "free": max(0, pool.capacity - used),
                "waiting": scheduler.line(pool.name),
            }
        out.append({**hub_fields(tier), "spaceyard": own})
    return out
