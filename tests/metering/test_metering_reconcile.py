"""Crash safety: open intervals lined up with the runs the runtime reports."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.metering.billing import usage_for_month
from controlplane.metering.intervals import on_stage_change, reconcile_open_intervals
from controlplane.models import Space, UsageInterval


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def naive(*parts: int) -> datetime:
    return datetime(*parts)


def start(session: Session, space: Space, now: datetime) -> None:
    old, space.stage = space.stage, "RUNNING"
    on_stage_change(session, space, old, "RUNNING", now=now)


def rows(session: Session) -> list[tuple]:
    found = session.scalars(select(UsageInterval).order_by(UsageInterval.started_at, UsageInterval.id))
    return [
        (r.space_name, r.started_at.replace(tzinfo=None), r.ended_at and r.ended_at.replace(tzinfo=None)) for r in found
    ]


def test_open_interval_is_closed_at_the_instance_real_finish(session, make_space):
    space = make_space()
    start(session, space, at(2024, 5, 1, 8))
    # The control plane crashed; the container died at 09:30 (State.FinishedAt) while nobody was watching.
    actual = {space.id: [(at(2024, 5, 1, 8, 0, 2, 5000), at(2024, 5, 1, 9, 30, 0, 123456))]}
    result = reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12))
    assert rows(session) == [("alice/chat", naive(2024, 5, 1, 8), naive(2024, 5, 1, 9, 30))]
    assert result.closed and not result.added and not result.continued


def test_open_interval_continues_while_the_instance_still_runs(session, make_space):
    space = make_space()
    start(session, space, at(2024, 5, 1, 8))
    result = reconcile_open_intervals(session, {space.id: [(at(2024, 5, 1, 8, 0, 1), None)]}, now=at(2024, 5, 1, 12))
    assert rows(session) == [("alice/chat", naive(2024, 5, 1, 8), None)]
    assert result.continued and not result.changed


def test_a_run_the_database_never_recorded_is_added_from_the_runtime_start(session, make_space):
    done, live = make_space("done"), make_space("live")
    actual = {
        done.id: [(at(2024, 5, 1, 6), at(2024, 5, 1, 7))],
        live.id: [(at(2024, 5, 1, 10), None)],
    }
    result = reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12))
    assert rows(session) == [
        ("alice/done", naive(2024, 5, 1, 6), naive(2024, 5, 1, 7)),
        ("alice/live", naive(2024, 5, 1, 10), None),
    ]
    assert len(result.added) == 2
    added = session.scalars(select(UsageInterval)).first()
    assert (added.tier, added.unit_cost, added.gpu_model) == ("a10g-small", 1.0, "A10G")


def test_overlapping_runs_and_partly_recorded_runs_never_count_a_second_twice(session, make_space):
    space = make_space()
    start(session, space, at(2024, 5, 1, 8))
    actual = {
        space.id: [
            (at(2024, 5, 1, 7, 59, 58), at(2024, 5, 1, 9)),  # began 2 s before the stage write: not topped up
            (at(2024, 5, 1, 8, 58), at(2024, 5, 1, 10)),  # new instance overlapping the old one's last minutes
        ]
    }
    reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12))
    assert rows(session) == [("alice/chat", naive(2024, 5, 1, 8), naive(2024, 5, 1, 10))]
    assert usage_for_month(session, "alice", "2024-05", now=at(2024, 5, 1, 12)).seconds == 2 * 3600


def test_gap_between_runs_is_not_billed(session, make_space):
    space = make_space()
    start(session, space, at(2024, 5, 1, 8))
    # The instance died at 09:00 and the runtime restarted it at 11:00; it still runs.
    actual = {space.id: [(at(2024, 5, 1, 8), at(2024, 5, 1, 9)), (at(2024, 5, 1, 11), None)]}
    reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12))
    assert rows(session) == [
        ("alice/chat", naive(2024, 5, 1, 8), naive(2024, 5, 1, 9)),
        ("alice/chat", naive(2024, 5, 1, 11), None),
    ]


def test_reconcile_twice_changes_nothing(session, make_space):
    a, b, c = make_space("a"), make_space("b"), make_space("c")
    start(session, a, at(2024, 5, 1, 8))
    start(session, b, at(2024, 5, 1, 8))
    actual = {
        a.id: [(at(2024, 5, 1, 8), at(2024, 5, 1, 9))],
        b.id: [(at(2024, 5, 1, 8), None)],
        c.id: [(at(2024, 5, 1, 6), at(2024, 5, 1, 7)), (at(2024, 5, 1, 10), None)],
    }
    first = reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12))
    before = rows(session)
    second = reconcile_open_intervals(session, actual, now=at(2024, 5, 1, 12, 0, 30))
    assert first.changed and not second.changed
    assert rows(session) == before
    assert len(before) == 4


def test_no_evidence_of_an_end_leaves_the_interval_open_for_the_stage_machine(session, make_space):
    space = make_space()
    start(session, space, at(2024, 5, 1, 8))
    # The runtime knows no instance at all (e.g. a pod still Pending, or removed before the crash).
    result = reconcile_open_intervals(session, {}, now=at(2024, 5, 1, 12))
    assert rows(session) == [("alice/chat", naive(2024, 5, 1, 8), None)]
    assert result.continued and not result.changed
    # Runs that ended before the interval began say nothing about it either.
    reconcile_open_intervals(session, {space.id: [(at(2024, 5, 1, 6), at(2024, 5, 1, 7))]}, now=at(2024, 5, 1, 12))
    assert ("alice/chat", naive(2024, 5, 1, 8), None) in rows(session)


def test_runs_of_a_space_gone_from_the_database_are_reported_not_invented(session):
    result = reconcile_open_intervals(session, {999: [(at(2024, 5, 1, 8), None)]}, now=at(2024, 5, 1, 12))
    assert result.unknown_spaces == [999]
    assert rows(session) == []


def test_runs_in_the_future_of_the_clock_are_ignored(session, make_space):
    space = make_space()
    reconcile_open_intervals(session, {space.id: [(at(2024, 5, 1, 13), None)]}, now=at(2024, 5, 1, 12))
    assert rows(session) == []
