"""Prometheus exposition read from the database at scrape time."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client.parser import text_string_to_metric_families

from controlplane.metering.intervals import on_stage_change
from controlplane.metering.metrics import render_metrics
from controlplane.metering.samples import store_samples
from controlplane.models import Build

NOW = datetime(2024, 6, 1, 12, tzinfo=UTC)


def scrape(session_factory) -> dict[str, dict[tuple, float]]:
    body, content_type = render_metrics(session_factory, now=lambda: NOW)
    assert content_type.startswith("text/plain; version=")
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def gpu(uuid: str, util: float, space: str | None) -> dict:
    return {
        "uuid": uuid,
        "index": 0,
        "model": "NVIDIA A10G",
        "utilization_pct": util,
        "memory_used_bytes": 2**30,
        "memory_total_bytes": 24146608128,
        "power_watts": 120.0,
        "space": space,
    }


def test_metrics_expose_usage_gpus_stages_and_builds(session, session_factory, make_space):
    running = make_space("chat", tier="a10g-small")
    make_space("idle", tier="cpu-basic", stage="STOPPED")
    on_stage_change(session, running, "BUILDING", "APP_STARTING", now=datetime(2024, 6, 1, 11, tzinfo=UTC))
    running.stage = "RUNNING"
    session.add_all([
        Build(space_id=running.id, commit_sha="a" * 40, status="SUCCESS"),
        Build(space_id=running.id, commit_sha="b" * 40, status="SUCCESS"),
        Build(space_id=running.id, commit_sha="c" * 40, status="FAILED"),
        Build(space_id=running.id, commit_sha="d" * 40, status="RUNNING"),
    ])  # fmt: skip
    node = "gpu-node-1"
    store_samples(session, {"node": node, "sampled_at": "2024-06-01T11:58:00Z", "gpus": [gpu("GPU-a", 10, None)]})
    store_samples(
        session, {"node": node, "sampled_at": "2024-06-01T11:59:30Z", "gpus": [gpu("GPU-a", 87.5, "alice/chat")]}
    )
    # An agent that stopped reporting an hour ago: its GPU is not shown with a stale value.
    store_samples(session, {"node": "gone", "sampled_at": "2024-06-01T11:00:00Z", "gpus": [gpu("GPU-z", 99, None)]})
    session.commit()

    m = scrape(session_factory)
    assert m["spaceyard_usage_seconds_total"] == {
        (("owner", "alice"), ("space", "alice/chat"), ("tier", "a10g-small")): 3600.0
    }
    assert m["spaceyard_gpu_utilization"] == {(("gpu", "GPU-a"), ("node", node), ("space", "alice/chat")): 87.5}
    stages = {labels[0][1]: v for labels, v in m["spaceyard_spaces"].items()}
    assert stages["RUNNING"] == 1 and stages["STOPPED"] == 1 and stages["PAUSED"] == 0 and len(stages) == 12
    builds = {labels[0][1]: v for labels, v in m["spaceyard_builds_total"].items()}
    assert builds == {"SUCCESS": 2, "FAILED": 1, "CANCELLED": 0}
    in_progress = {labels[0][1]: v for labels, v in m["spaceyard_builds_in_progress"].items()}
    assert in_progress == {"QUEUED": 0, "RUNNING": 1}


def test_an_empty_database_scrapes_cleanly(session_factory):
    m = scrape(session_factory)
    assert "spaceyard_usage_seconds_total" not in m
    assert sum(m["spaceyard_spaces"].values()) == 0
