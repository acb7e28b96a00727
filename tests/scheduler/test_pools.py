"""Pools of each runtime, from the catalog and from NVML readings recorded on real GPU nodes (no GPU here)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.gpu_agent.nvml import GpuReading, RecordedReader
from controlplane.pools import gpu_matches, host_memory, local_pools, pool_for, runtime_pools, units
from controlplane.tiers import default_catalog

DATA = Path(__file__).resolve().parent.parent / "metering" / "data"
CATALOG = default_catalog()


def recorded(name: str) -> list[GpuReading]:
    return RecordedReader(DATA / f"{name}.json").devices()


def gpu(model: str, gib: float) -> GpuReading:
    return GpuReading(uuid=f"GPU-{model}", index=0, model=model, utilization_pct=0.0, memory_used_bytes=0,
                      memory_total_bytes=int(gib * 2**30), power_watts=None)


def offered(pools) -> set[str]:
    return {t.name for t in CATALOG.tiers if pool_for(pools, t.name)}


def test_host_without_gpu_offers_cpu_tiers_only():
    pools = local_pools(CATALOG, [], cpu_capacity=None)
    assert offered(pools) == {"cpu-basic", "cpu-upgrade"}
    # The catalog's cpu pool sizes the local one unless the operator says otherwise.
    assert pools[0].capacity == CATALOG.pool_for("cpu-basic").capacity
    assert local_pools(CATALOG, [], cpu_capacity=3)[0].capacity == 3


def test_a10g_node_serves_single_gpu_a10g_tiers():
    pools = local_pools(CATALOG, recorded("a10g-node"), cpu_capacity=2)
    assert offered(pools) == {"cpu-basic", "cpu-upgrade", "a10g-small", "a10g-large"}  # not largex2: one GPU
    a10g = pool_for(pools, "a10g-small")
    assert (a10g.name, a10g.capacity) == ("local-a10g", 1)


def test_two_a10g_offer_the_2_gpu_tier_which_takes_both():
    two = [gpu("NVIDIA A10G", 22.5), replace(gpu("NVIDIA A10G", 22.5), index=1, uuid="GPU-b")]
    pools = local_pools(CATALOG, two, cpu_capacity=None)
    assert pool_for(pools, "a10g-largex2").capacity == 2
    assert units(CATALOG.tier("a10g-largex2")) == 2 and units(CATALOG.tier("cpu-basic")) == 1


def test_h100_serves_no_catalog_tier():
    # The default catalog has no H100 tier: two H100s add nothing, they do not pass for A100s.
    assert offered(local_pools(CATALOG, recorded("h100x2-node"), cpu_capacity=None)) == {"cpu-basic", "cpu-upgrade"}


def test_model_names_as_nvml_spells_them():
    t4, a100 = CATALOG.tier("t4-small"), CATALOG.tier("a100-large")
    assert gpu_matches(t4, gpu("Tesla T4", 15))
    assert gpu_matches(a100, gpu("NVIDIA A100-SXM4-80GB", 80))
    assert gpu_matches(a100, gpu("NVIDIA A100 80GB PCIe", 80))
    assert not gpu_matches(a100, gpu("NVIDIA A100-SXM4-40GB", 40))  # too small for a100-large
    assert not gpu_matches(CATALOG.tier("a10g-small"), gpu("NVIDIA A10", 24))  # A10 is not A10G


def test_kubernetes_pools_are_the_catalogs():
    pools = runtime_pools(Settings(runtime="kubernetes"), CATALOG, gpus=[])
    assert [(p.name, p.capacity) for p in pools] == [(p.name, p.capacity) for p in CATALOG.pools]
    assert offered(pools) == {t.name for t in CATALOG.tiers}


def test_docker_memory_sizes_never_exceed_the_host():
    host = host_memory(Settings(local_reserved_memory_gb=2, local_space_memory_gb=2), total_gb=24)
    assert host.allocatable_gb == 22
    # CPU tiers: the local default, never more than the tier itself; GPU tiers: their own memory.
    assert host.size(CATALOG.tier("cpu-basic")) == 2
    assert host.size(CATALOG.tier("t4-small")) == 15
    # Bigger than the whole host: scaled down to what the host can give one Space.
    assert host.size(CATALOG.tier("a100-large")) == 22
    # The operator's per-tier local size wins.
    assert host.size(CATALOG.tier("cpu-upgrade").model_copy(update={"local_memory_gb": 6})) == 6
    # A reserve bigger than the host still leaves Spaces a little (a limit of 0 is no limit to Docker).
    assert host_memory(Settings(local_reserved_memory_gb=64), total_gb=8).allocatable_gb == 1
