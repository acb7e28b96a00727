"""What hardware this installation can run at once: the pools of the current runtime and their capacity.

Kubernetes: the catalog's pools, as the operator sized them. Docker: the local host is the only machine, so
its "pools" are one for CPU tiers (a configured number of Spaces) and one per GPU model NVML sees (as many
GPUs as there are of that model). A tier no pool serves is not offered on this installation.

Capacity units: a CPU pool counts Spaces, a GPU pool counts GPUs (a 2-GPU tier takes two). On docker the host's
memory is one more capacity, shared by every pool: Spaces' memory limits together never exceed it (HostMemory).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from controlplane.core.config import Settings
from controlplane.gpu_agent.nvml import GpuReading, NvmlUnavailable
from controlplane.tiers import Catalog, Tier

if TYPE_CHECKING:
    from controlplane.services import Services

log = logging.getLogger(__name__)
DEFAULT_LOCAL_CPU_CAPACITY = 50
# NVML reports a little less (or more) than the marketed size: a "16 GB" T4 shows 15 GiB.
VRAM_TOLERANCE = 0.9


@dataclass(frozen=True)
class PoolCapacity:
    name: str
    tiers: tuple[str, ...]
    capacity: int  # Spaces on a CPU pool, GPUs on a GPU pool

    def serves(self, tier: str) -> bool:
        return tier in self.tiers


@dataclass(frozen=True)
class HostMemory:
    """docker runtime: the host memory Spaces' limits share; admission never over-commits it (docs/tiers.md)."""

    total_gb: float
    allocatable_gb: float  # the total minus what the platform and builds keep
    cpu_tier_gb: float  # a CPU tier's size where the catalog gives no local_memory_gb

    def size(self, tier: Tier) -> float:
        """GiB one Space of `tier` is limited to, and reserves, on this host."""
        # The Hub's 16 GB cpu-basic would let a 24 GB host run one Space; GPU hosts are sized for their tiers.
        default = tier.memory_gb if tier.is_gpu else min(tier.memory_gb, self.cpu_tier_gb)
        wanted = tier.local_memory_gb or default
        # A tier bigger than the host gets what the host can give one Space.
        return min(wanted, self.allocatable_gb)


def host_memory(settings: Settings, total_gb: float | None = None) -> HostMemory:
    """What the docker runtime hands out: this host's memory less the platform's reserve."""
    if total_gb is None:
        total_gb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    # A reserve as big as the host still leaves Spaces 1 GiB: a limit of 0 would mean no limit to Docker.
    allocatable = max(total_gb - settings.local_reserved_memory_gb, min(total_gb, 1.0))
    return HostMemory(total_gb, allocatable, settings.local_space_memory_gb)


def units(tier: Tier) -> int:
    """What one Space on this tier takes from its pool."""
    return tier.gpu_count or 1


def kubernetes_pools(catalog: Catalog) -> list[PoolCapacity]:
    return [PoolCapacity(p.name, p.tiers, p.capacity) for p in catalog.pools if p.capacity > 0]


def gpu_matches(tier: Tier, gpu: GpuReading) -> bool:
    """Does this GPU serve the tier's model? "T4" matches "Tesla T4", "A100" matches "NVIDIA A100-SXM4-80GB"."""
    if not tier.gpu_model:
        return False
    words = re.split(r"[\s\-_/]+", gpu.model.upper())
    if tier.gpu_model.upper() not in words:
        return False
    # An A100 40GB is not an a100-large (80 GB).
    return tier.gpu_memory_gb is None or gpu.memory_total_bytes >= tier.gpu_memory_gb * 1e9 * VRAM_TOLERANCE


def local_pools(catalog: Catalog, gpus: Iterable[GpuReading], cpu_capacity: int | None) -> list[PoolCapacity]:
    """The docker runtime's pools: every CPU tier on the host, and each GPU tier on the GPUs that match it."""
    gpus = list(gpus)
    cpu_tiers = tuple(t.name for t in catalog.tiers if not t.is_gpu)
    if cpu_capacity is None:
        catalog_cpu = next((p for p in catalog.pools if cpu_tiers and cpu_tiers[0] in p.tiers), None)
        cpu_capacity = catalog_cpu.capacity if catalog_cpu else DEFAULT_LOCAL_CPU_CAPACITY
    pools = [PoolCapacity("local-cpu", cpu_tiers, cpu_capacity)] if cpu_tiers and cpu_capacity > 0 else []
    by_model: dict[str, list[str]] = {}
    for tier in catalog.tiers:
        matching = [g for g in gpus if gpu_matches(tier, g)]
        # A tier asking for more GPUs than the host has of its model could never start.
        if tier.is_gpu and len(matching) >= tier.gpu_count:
            by_model.setdefault(tier.gpu_model or "", []).append(tier.name)
    for model, tiers in by_model.items():
        count = sum(1 for g in gpus if gpu_matches(catalog.tier(tiers[0]), g))
        pools.append(PoolCapacity(f"local-{model.lower()}", tuple(tiers), count))
    return pools


def host_gpus(settings: Settings) -> list[GpuReading]:
    """The host's GPUs through NVML (or the operator's recording of them); none where there is no driver."""
    from controlplane.gpu_agent.nvml import NvmlReader, RecordedReader

    if settings.gpu_recording:
        return RecordedReader(settings.gpu_recording).devices()
    try:
        reader = NvmlReader()
    except NvmlUnavailable as e:
        log.info("docker runtime without GPUs: %s", e)
        return []
    try:
        return reader.devices()
    except NvmlUnavailable as e:
        log.warning("could not read the host's GPUs: %s", e)
        return []
    finally:
        reader.close()


def runtime_pools(settings: Settings, catalog: Catalog, gpus: Iterable[GpuReading] | None = None) -> list[PoolCapacity]:
    if settings.runtime == "kubernetes":
        return kubernetes_pools(catalog)
    return local_pools(catalog, host_gpus(settings) if gpus is None else gpus, settings.local_cpu_capacity)


def pool_for(pools: Iterable[PoolCapacity], tier: str) -> PoolCapacity | None:
    return next((p for p in pools if p.serves(tier)), None)


def pools_of(svc: Services) -> list[PoolCapacity]:
    """This process's pools, computed once: NVML is read at the first question, not per request."""
    if svc.pools is None:
        svc.pools = runtime_pools(svc.settings, svc.catalog)
    return svc.pools


def host_memory_of(svc: Services) -> HostMemory | None:
    """The docker runtime's memory view; None on kubernetes, whose scheduler places pods by their requests."""
    if svc.host_memory is None and svc.settings.runtime == "docker":
        svc.host_memory = host_memory(svc.settings)
    return svc.host_memory


def offered_tiers(svc: Services) -> list[str]:
    pools = pools_of(svc)
    return [t.name for t in svc.catalog.tiers if pool_for(pools, t.name)]


def not_offered_message(svc: Services, tier: str) -> str:
    available = ", ".join(offered_tiers(svc)) or "none"
    if tier not in {t.name for t in svc.catalog.tiers}:
        return f"Unknown hardware {tier!r}. Available here: {available}."
    where = "this host has no matching GPU" if svc.settings.runtime == "docker" else "no node pool serves it"
    return f"Hardware {tier!r} is not offered here ({where}). Available here: {available}."
