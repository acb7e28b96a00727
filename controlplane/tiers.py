"""The hardware catalog: tiers (what a user picks) and pools (where they run). Loaded from YAML, validated."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field, ValidationError, model_validator

DEFAULT_FILE = Path(__file__).with_name("tiers.yaml")


class Tier(BaseModel, frozen=True):
    name: str
    pretty_name: str
    vcpu: float = Field(gt=0)
    memory_gb: float = Field(gt=0)
    gpu_model: str | None = None
    gpu_count: int = Field(default=0, ge=0)
    gpu_memory_gb: float | None = None
    price_per_hour: float = Field(default=0.0, ge=0)
    local_memory_gb: float | None = Field(
        default=None,
        gt=0,
        description="docker runtime: GiB one Space of this tier is limited to, and reserves, on the host; default "
        "memory_gb on GPU tiers, SPACEYARD_LOCAL_SPACE_MEMORY_GB (at most memory_gb) on CPU tiers.",
    )

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0


class Pool(BaseModel, frozen=True):
    name: str
    tiers: tuple[str, ...]
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()
    gpu_resource: str = "nvidia.com/gpu"
    capacity: int = Field(default=1, ge=0, description="Spaces this pool runs at once.")


class Catalog(BaseModel, frozen=True):
    tiers: tuple[Tier, ...]
    pools: tuple[Pool, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Catalog:
        names = [t.name for t in self.tiers]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"tier names must be unique; repeated: {', '.join(sorted(dupes))}")
        for pool in self.pools:
            unknown = [t for t in pool.tiers if t not in names]
            if unknown:
                raise ValueError(f"pool {pool.name!r} serves unknown tiers: {', '.join(unknown)}")
        return self

    def tier(self, name: str) -> Tier:
        for t in self.tiers:
            if t.name == name:
                return t
        raise KeyError(name)

    def pool_for(self, tier: str) -> Pool | None:
        return next((p for p in self.pools if tier in p.tiers), None)


class CatalogError(ValueError):
    pass


def load_catalog(path: Path | None = None) -> Catalog:
    path = path or DEFAULT_FILE
    try:
        raw = yaml.safe_load(path.read_text())
        return Catalog.model_validate(raw)
    except FileNotFoundError as e:
        raise CatalogError(f"tier catalog {path} not found") from e
    except yaml.YAMLError as e:
        raise CatalogError(f"tier catalog {path} is not valid YAML: {e}") from e
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in e.errors())
        raise CatalogError(f"tier catalog {path} is invalid: {problems}") from e


@lru_cache
def default_catalog() -> Catalog:
    return load_catalog()
