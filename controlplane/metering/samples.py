"""GPU samples posted by the NVML agent (`POST /api/metering/gpu-samples`): validate, then store.

Samples are for utilisation dashboards and metrics; billing never reads them (intervals are the bill).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from controlplane.metering.clock import as_utc
from controlplane.models import GpuSample

MAX_GPUS_PER_NODE = 64


class GpuSampleIn(BaseModel):
    model_config = ConfigDict(extra="ignore")  # newer agents may send more; older control planes keep working

    uuid: str = Field(min_length=1, max_length=128)
    index: int = Field(ge=0)
    model: str = Field(min_length=1, max_length=64)
    utilization_pct: float = Field(ge=0, le=100)
    memory_used_bytes: int = Field(ge=0)
    memory_total_bytes: int = Field(ge=0)
    power_watts: float | None = Field(default=None, ge=0)
    space: str | None = Field(default=None, max_length=200, pattern=r"^[^/\s]+/[^/\s]+$")


class GpuSamplesIn(BaseModel):
    """The agent's payload: one sampling of every GPU on one node."""

    model_config = ConfigDict(extra="ignore")

    node: str = Field(min_length=1, max_length=128)
    sampled_at: AwareDatetime
    gpus: list[GpuSampleIn] = Field(max_length=MAX_GPUS_PER_NODE)


def store_samples(session: Session, payload: GpuSamplesIn | dict[str, Any]) -> int:
    """Validate (pydantic.ValidationError on bad input: answer 422) and insert one row per GPU; returns the count.

    Power stays NULL when the GPU does not report it.
    """
    data = payload if isinstance(payload, GpuSamplesIn) else GpuSamplesIn.model_validate(payload)
    sampled_at: datetime = as_utc(data.sampled_at)
    session.add_all(
        GpuSample(
            node=data.node,
            gpu_uuid=g.uuid,
            gpu_model=g.model,
            space_name=g.space,
            utilization=g.utilization_pct,
            memory_used=g.memory_used_bytes,
            power_watts=g.power_watts,
            sampled_at=sampled_at,
        )
        for g in data.gpus
    )
    session.flush()
    return len(data.gpus)
