"""Usage intervals: the ONE place a hardware-second (and so a GPU-second) is counted.

A Space is billed while it holds its hardware. The control plane calls `on_stage_change` inside the same
transaction as every stage write and `on_tier_change` with every hardware change, so the interval table can
never disagree with a committed stage. After a crash, `reconcile_open_intervals` lines the table up with what
the runtime actually ran.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.core.utc import as_utc
from controlplane.metering.clock import to_second
from controlplane.models import Space, UsageInterval
from controlplane.stages import HOLDING, WAITING_FOR_HARDWARE, Stage, holds_hardware
from controlplane.tiers import Catalog, default_catalog

log = logging.getLogger(__name__)

# A Space is billed in the stages in which it holds its tier's hardware (controlplane.stages.HOLDING).
BILLED_STAGES: frozenset[str] = HOLDING
ALL_STAGES: frozenset[str] = frozenset(s.value for s in Stage)
# NO_APP_FILE, CONFIG_ERROR, BUILDING, BUILD_ERROR, RUNTIME_ERROR, PAUSED, STOPPED (sleeping included: the Hub
# reports a sleeping Space as STOPPED) and DELETING hold no hardware.
UNBILLED_STAGES: frozenset[str] = ALL_STAGES - BILLED_STAGES

# One runtime run of a Space: (started_at, finished_at), finished_at None while it still runs.
Run = tuple[datetime, datetime | None]


def is_billed(stage: str | None) -> bool:
    """Whether a Space in this stage holds (and pays for) its hardware; None (a new Space) does not.
    Unknown stages are a bug: raise."""
    if stage is None:
        return False
    if stage not in ALL_STAGES:
        raise ValueError(f"unknown Space stage {stage!r}")
    return stage in BILLED_STAGES


def resolve_catalog(catalog: Catalog | None = None) -> Catalog:
    """The catalog prices come from: the one passed in (the control plane passes the one it loaded at start-up,
    Services.catalog), else the built-in one. Metering never reads the settings itself."""
    return catalog if catalog is not None else default_catalog()


def current_tier(space: Space) -> str:
    """The tier the Space's hardware is on: what it runs on if known, else what was asked for."""
    return space.hardware_current or space.hardware_requested


def open_intervals(session: Session, space_id: int) -> list[UsageInterval]:
    stmt = (
        select(UsageInterval)
        .where(UsageInterval.space_id == space_id, UsageInterval.ended_at.is_(None))
        .order_by(UsageInterval.started_at, UsageInterval.id)
    )
    return list(session.scalars(stmt))


def open_interval(
    session: Session, space: Space, tier: str, start: datetime, *, catalog: Catalog | None = None
) -> UsageInterval:
    """Start billing `space` on `tier` from `start`. GPU model/count and price are copied from the catalog
    now, so later catalog edits never re-price past usage."""
    row = UsageInterval(
        space_id=space.id,
        space_name=space.full_name,
        owner=space.owner,
        tier=tier,
        started_at=to_second(start),
        ended_at=None,
        **_tier_terms(tier, resolve_catalog(catalog)),
    )
    session.add(row)
    session.flush()
    return row


def _tier_terms(tier: str, catalog: Catalog) -> dict:
    try:
        t = catalog.tier(tier)
    except KeyError:
        # A tier removed from the catalog must not block a stage write; the seconds are still recorded, at no
        # price, and the log says why the bill shows 0 for them.
        log.warning("tier %r is not in the catalog: metering its usage at price 0", tier)
        return {"gpu_model": None, "gpu_count": 0, "unit_cost": 0.0}
    return {"gpu_model": t.gpu_model, "gpu_count": t.gpu_count, "unit_cost": t.price_per_hour}


def close_interval(row: UsageInterval, end: datetime) -> None:
    # Never before its start: an end earlier than the start (clock skew between runtime and control plane)
    # would be a negative duration.
    row.ended_at = max(to_second(end), as_utc(row.started_at))


def on_stage_change(
    session: Session,
    space: Space,
    old_stage: str | None,
    new_stage: str,
    *,
    now: datetime,
    catalog: Catalog | None = None,
) -> UsageInterval | None:
    """Keep the Space's interval in line with a stage write; returns the interval left open, if any.

    Entering a billed stage opens an interval on the Space's current tier; leaving billing closes it; moving
    between billed stages keeps the same interval (the tier only changes through `on_tier_change`). The result
    depends on `new_stage` and the open interval, not on `old_stage` alone, so a missed call heals itself on the
    next stage write instead of leaving an interval open (or missing) forever.
    """
    was_billed = is_billed(old_stage)
    # The scheduler marks a Space in line for hardware with its detail; in line, only a serving instance holds.
    billed = is_billed(new_stage) and holds_hardware(
        new_stage, in_line=space.detail == WAITING_FOR_HARDWARE, serving_instance=space.container_id is not None
    )
    if space.id is None:  # a Space created in this transaction: its interval needs the id
        session.flush()
    rows = open_intervals(session, space.id)
    if was_billed != bool(rows):
        log.warning(
            "space %s: stage %s -> %s with %d open interval(s); metering follows the new stage",
            space.full_name,
            old_stage,
            new_stage,
            len(rows),
        )
    if billed:
        if rows:
            return rows[-1]
        return open_interval(session, space, current_tier(space), now, catalog=catalog)
    for row in rows:
        close_interval(row, now)
    return None


def on_tier_change(
    session: Session, space: Space, new_tier: str, *, now: datetime, catalog: Catalog | None = None
) -> UsageInterval | None:
    """The Space moves to `new_tier`: end the old tier's interval and, if still billed, start one on the new tier.

    Call it with the Space's stage as it is after the change (if the change restarts the Space, the stage
    write that follows is handled by `on_stage_change`)."""
    rows = open_intervals(session, space.id)
    if rows and all(r.tier == new_tier for r in rows):
        return rows[-1]
    for row in rows:
        close_interval(row, now)
    if is_billed(space.stage):
        return open_interval(session, space, new_tier, now, catalog=catalog)
    return None


@dataclass
class ReconcileResult:
    """What a reconcile pass changed (ids of usage_intervals rows), for the control plane's log."""

    closed: list[int] = field(default_factory=list)
    continued: list[int] = field(default_factory=list)
    added: list[int] = field(default_factory=list)
    unknown_spaces: list[int] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.closed or self.added)


def reconcile_open_intervals(
    session: Session,
    actual: Mapping[int, Sequence[Run]],
    *,
    now: datetime,
    catalog: Catalog | None = None,
) -> ReconcileResult:
    """Line the interval table up with the runs the runtime reports, after a control-plane crash.

    `actual` is the runtime's complete view: for every Space id, its instances' (started_at, finished_at)
    from container State / pod status, finished_at None while running. A Space missing from it has no runs.

    - An open interval is continued if the first run overlapping it still runs, and closed at that run's real
      finish time otherwise. With no run at all overlapping it, there is no evidence of an end: it stays open
      until the control plane decides the Space's stage (that stage write closes it through on_stage_change).
    - A run that no interval overlaps was never recorded: an interval is added from the run's start to its
      finish (open if it still runs), on the Space's current tier.
    - A run already overlapped by an interval is not topped up at its edges: the few seconds between a stage
      write and the engine's own start/finish timestamps would become sliver rows and could count twice.
    Running it again changes nothing.
    """
    result = ReconcileResult()
    space_ids = set(actual) | set(
        session.scalars(select(UsageInterval.space_id).where(UsageInterval.ended_at.is_(None)).distinct())
    )
    for space_id in sorted(i for i in space_ids if i is not None):
        spans = _merge_runs(actual.get(space_id, ()), now)
        for row in open_intervals(session, space_id):
            span = _first_span_overlapping(spans, as_utc(row.started_at))
            if span is None or span[1] is None:
                result.continued.append(row.id)
            else:
                close_interval(row, span[1])
                result.closed.append(row.id)
        session.flush()
        uncovered = [s for s in spans if not _covered(session, space_id, s, now)]
        if not uncovered:
            continue
        space = session.get(Space, space_id)
        if space is None:
            result.unknown_spaces.append(space_id)
            continue
        for start, end in uncovered:
            row = open_interval(session, space, current_tier(space), start, catalog=catalog)
            if end is not None:
                close_interval(row, end)
            result.added.append(row.id)
    session.flush()
    return result


def _merge_runs(runs: Iterable[Run], now: datetime) -> list[Run]:
    """Union of the runs as disjoint spans in time order, at whole seconds. Runs that overlap (the old instance
    serving while the new one starts) hold the Space's hardware once, not twice."""
    spans: list[list] = []
    cutoff = to_second(now)
    for start, end in sorted(
        ((to_second(s), None if e is None else to_second(e)) for s, e in runs), key=lambda r: r[0]
    ):
        if start > cutoff or (end is not None and end <= start):
            continue  # not begun yet by our clock, or no time held
        if spans and (spans[-1][1] is None or start <= spans[-1][1]):
            last = spans[-1]
            last[1] = None if last[1] is None or end is None else max(last[1], end)
        else:
            spans.append([start, end])
    return [(s, e) for s, e in spans]


def _first_span_overlapping(spans: Sequence[Run], start: datetime) -> Run | None:
    return next((s for s in spans if s[1] is None or s[1] > start), None)


def _covered(session: Session, space_id: int, span: Run, now: datetime) -> bool:
    """Whether any interval of the Space shares time with the span."""
    start, end = span
    stmt = select(UsageInterval.id).where(
        UsageInterval.space_id == space_id,
        UsageInterval.started_at < (end if end is not None else to_second(now) + timedelta(seconds=1)),
        (UsageInterval.ended_at.is_(None)) | (UsageInterval.ended_at > start),
    )
    return session.scalars(stmt.limit(1)).first() is not None
