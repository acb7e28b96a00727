"""Validation and storage of GPU samples posted by the agent."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from controlplane.metering.samples import store_samples
from controlplane.models import GpuSample

H100 = {
    "uuid": "GPU-8f6f4a2c-1b7e-9d3a-5c0e-2a4b6c8d0e1f",
    "index": 0,
    "model": "NVIDIA H100 80GB HBM3",
    "utilization_pct": 93.0,
    "memory_used_bytes": 64 * 1024**3,
    "memory_total_bytes": 85520809984,
    "power_watts": 612.4,
    "space": "alice/llm",
}


def test_samples_are_stored_one_row_per_gpu(session):
    idle = H100 | {"uuid": "GPU-other", "index": 1, "utilization_pct": 0, "power_watts": None, "space": None}
    n = store_samples(session, {"node": "node-a", "sampled_at": "2024-06-01T12:00:00+02:00", "gpus": [H100, idle]})
    assert n == 2
    busy, free = session.scalars(select(GpuSample).order_by(GpuSample.id))
    assert (busy.node, busy.gpu_model, busy.space_name, busy.utilization) == (
        "node-a", "NVIDIA H100 80GB HBM3", "alice/llm", 93.0
    )  # fmt: skip
    assert busy.memory_used == 64 * 1024**3
    assert busy.sampled_at.replace(tzinfo=None).hour == 10  # stored in UTC
    assert (free.space_name, free.power_watts) == (None, None)


@pytest.mark.parametrize(
    "change",
    [
        {"sampled_at": "2024-06-01T12:00:00"},  # no timezone: ambiguous
        {"gpus": [H100 | {"utilization_pct": 140}]},
        {"gpus": [H100 | {"memory_used_bytes": -1}]},
        {"gpus": [H100 | {"space": "not-a-space-name"}]},
        {"gpus": [H100] * 65},
        {"node": ""},
    ],
)
def test_invalid_payloads_are_rejected_before_anything_is_written(session, change):
    payload = {"node": "node-a", "sampled_at": "2024-06-01T12:00:00Z", "gpus": [H100]} | change
    with pytest.raises(ValidationError):
        store_samples(session, payload)
    assert session.scalars(select(GpuSample)).first() is None
