"""Prometheus metrics, read from the database at scrape time.

A custom collector on a private registry: no counters live in process memory, so every control-plane replica
answers the same numbers and a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.coldstart import BUCKETS
from controlplane.metering.clock import seconds_between, to_second
from controlplane.metering.intervals import ALL_STAGES
from controlplane.models import Build, ColdStart, GpuSample, Space, UsageInterval

# A GPU whose last sample is older than this has lost its agent; reporting its old utilisation forever would
# hide that, so the series disappears instead.
SAMPLE_MAX_AGE = timedelta(minutes=5)
# Builds in these states come and go; they are a gauge, the finished ones a counter.
_BUILDS_IN_PROGRESS = ("QUEUED", "RUNNING")


class SpaceyardCollector(Collector):
    def __init__(self, session_factory: Callable[[], Session], now: Callable[[], datetime]) -> None:
        self._session_factory = session_factory
        self._now = now

    def collect(self) -> Iterator[Metric]:
        now = to_second(self._now())
        with self._session_factory() as session:
            yield _usage_seconds(session, now)
            yield _gpu_utilization(session, now)
            yield _spaces_by_stage(session)
            yield from _builds(session)
            yield _cold_starts(session)


def _usage_seconds(session: Session, now: datetime) -> Metric:
    family = CounterMetricFamily(
        "spaceyard_usage_seconds", "Seconds Spaces held their tier's hardware.", labels=["owner", "space", "tier"]
    )
    totals: dict[tuple[str, str, str], int] = {}
    rows = session.execute(
        select(
            UsageInterval.owner,
            UsageInterval.space_name,
            UsageInterval.tier,
            UsageInterval.started_at,
            UsageInterval.ended_at,
        )
    )
    for owner, space, tier, started, ended in rows:
        key = (owner, space, tier)
        totals[key] = totals.get(key, 0) + seconds_between(started, now if ended is None else ended)
    for key, seconds in sorted(totals.items()):
        family.add_metric(list(key), seconds)
    return family


def _gpu_utilization(session: Session, now: datetime) -> Metric:
    family = GaugeMetricFamily(
        "spaceyard_gpu_utilization",
        "GPU utilisation in percent, last NVML agent sample.",
        labels=["gpu", "space", "node"],
    )
    latest = (
        select(GpuSample.node, GpuSample.gpu_uuid, func.max(GpuSample.sampled_at).label("at"))
        .where(GpuSample.sampled_at >= now - SAMPLE_MAX_AGE)
        .group_by(GpuSample.node, GpuSample.gpu_uuid)
        .subquery()
    )
    stmt = select(GpuSample).join(
        latest,
        (GpuSample.node == latest.c.node)
        & (GpuSample.gpu_uuid == latest.c.gpu_uuid)
        & (GpuSample.sampled_at == latest.c.at),
    )
    seen: set[tuple[str, str]] = set()
    for s in session.scalars(stmt.order_by(GpuSample.node, GpuSample.gpu_uuid, GpuSample.id.desc())):
        if (s.node, s.gpu_uuid) in seen:  # two posts with the same timestamp: the later row wins
            continue
        seen.add((s.node, s.gpu_uuid))
        family.add_metric([s.gpu_uuid, s.space_name or "", s.node], s.utilization)
    return family


def _spaces_by_stage(session: Session) -> Metric:
    family = GaugeMetricFamily("spaceyard_spaces", "Spaces per stage.", labels=["stage"])
    counts = dict.fromkeys(ALL_STAGES, 0)  # every stage present, so dashboards see zeros rather than gaps
    counts.update({stage: n for stage, n in session.execute(select(Space.stage, func.count()).group_by(Space.stage))})
    for stage, n in sorted(counts.items()):
        family.add_metric([stage], n)
    return family


def _builds(session: Session) -> Iterator[Metric]:
    counts = {status: n for status, n in session.execute(select(Build.status, func.count()).group_by(Build.status))}
    finished = CounterMetricFamily("spaceyard_builds", "Finished builds by result.", labels=["status"])
    active = GaugeMetricFamily("spaceyard_builds_in_progress", "Builds queued or running.", labels=["status"])
    for status in ("SUCCESS", "FAILED", "CANCELLED"):
        finished.add_metric([status], counts.pop(status, 0))
    for status in _BUILDS_IN_PROGRESS:
        active.add_metric([status], counts.pop(status, 0))
    for status, n in sorted(counts.items()):  # a status added later still shows up
        finished.add_metric([status], n)
    yield finished
    yield active


def _cold_starts(session: Session) -> Metric:
    family = HistogramMetricFamily(
        "spaceyard_cold_start_seconds",
        "Seconds from a start's request (deploy, wake, restart, rollback) to the app's first answer.",
        labels=["space", "kind"],
    )
    seen: dict[tuple[str, str], list[float]] = {}
    rows = session.execute(
        select(Space.owner, Space.name, ColdStart.kind, ColdStart.seconds).join(Space, Space.id == ColdStart.space_id)
    )
    for owner, name, kind, seconds in rows:
        seen.setdefault((f"{owner}/{name}", kind), []).append(seconds)
    for key, values in sorted(seen.items()):
        buckets = [(str(le), sum(v <= le for v in values)) for le in BUCKETS]
        family.add_metric(list(key), [*buckets, ("+Inf", len(values))], sum(values))
    return family


def render_metrics(
    session_factory: Callable[[], Session],
    *,
    now: Callable[[], datetime] | None = None,
    others: tuple[Collector, ...] = (),
) -> tuple[bytes, str]:
    """The exposition body and its Content-Type, for `GET /metrics`; `others`: collectors of other sources."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SpaceyardCollector(session_factory, now or (lambda: datetime.now(UTC))))
    for collector in others:
        registry.register(collector)
    return generate_latest(registry), CONTENT_TYPE_LATEST
