"""Interval bookkeeping across stage sequences and tier changes."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.metering.intervals import (
    ALL_STAGES,
    BILLED_STAGES,
    is_billed,
    on_stage_change,
    on_tier_change,
)
from controlplane.models import Space, UsageInterval
from controlplane.tiers import Catalog, Tier, default_catalog


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def move(session: Session, space: Space, stage: str, now: datetime) -> None:
    """What the control plane does on a stage write: set it, tell metering, same transaction."""
    old, space.stage = space.stage, stage
    on_stage_change(session, space, old, stage, now=now)


def intervals(session: Session) -> list[tuple]:
    rows = session.scalars(select(UsageInterval).order_by(UsageInterval.started_at, UsageInterval.id))
    return [(r.tier, r.started_at.replace(tzinfo=None), r.ended_at and r.ended_at.replace(tzinfo=None)) for r in rows]


def naive(*parts: int) -> datetime:
    return datetime(*parts)


def test_billed_stages_are_exactly_those_holding_hardware():
    assert {"APP_STARTING", "RUNNING", "RUNNING_APP_STARTING", "RUNNING_BUILDING"} == BILLED_STAGES
    assert {
        "NO_APP_FILE",
        "CONFIG_ERROR",
        "BUILDING",
        "BUILD_ERROR",
        "RUNTIME_ERROR",
        "PAUSED",
        "STOPPED",
        "DELETING",
    } == ALL_STAGES - BILLED_STAGES
    assert not is_billed(None)
    with pytest.raises(ValueError, match="unknown Space stage 'RUNING'"):
        is_billed("RUNING")


def test_build_start_run_rebuild_stop_is_one_interval_from_start_to_stop(session, make_space):
    space = make_space(tier="a10g-small")
    move(session, space, "BUILDING", at(2024, 5, 1, 10, 0))
    move(session, space, "APP_STARTING", at(2024, 5, 1, 10, 5))
    move(session, space, "RUNNING", at(2024, 5, 1, 10, 6))
    move(session, space, "RUNNING_BUILDING", at(2024, 5, 1, 12, 0))  # the old instance keeps running
    move(session, space, "RUNNING_APP_STARTING", at(2024, 5, 1, 12, 3))
    move(session, space, "RUNNING", at(2024, 5, 1, 12, 4))
    move(session, space, "STOPPED", at(2024, 5, 1, 13, 5))

    row = session.scalars(select(UsageInterval)).one()
    assert (row.tier, row.gpu_model, row.gpu_count, row.unit_cost) == ("a10g-small", "A10G", 1, 1.0)
    assert (row.owner, row.space_name, row.space_id) == ("alice", "alice/chat", space.id)
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 10, 5), naive(2024, 5, 1, 13, 5))]


def test_build_failure_and_runtime_error_bill_nothing_beyond_the_run(session, make_space):
    space = make_space()
    move(session, space, "BUILDING", at(2024, 5, 1, 9))
    move(session, space, "BUILD_ERROR", at(2024, 5, 1, 9, 1))
    assert intervals(session) == []
    move(session, space, "BUILDING", at(2024, 5, 1, 10))
    move(session, space, "APP_STARTING", at(2024, 5, 1, 10, 2))
    move(session, space, "RUNTIME_ERROR", at(2024, 5, 1, 10, 4))
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 10, 2), naive(2024, 5, 1, 10, 4))]


def test_pause_and_sleep_close_the_interval_and_waking_opens_a_new_one(session, make_space):
    space = make_space()
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8))
    move(session, space, "RUNNING", at(2024, 5, 1, 8, 1))
    move(session, space, "PAUSED", at(2024, 5, 1, 9))
    move(session, space, "APP_STARTING", at(2024, 5, 1, 11))
    move(session, space, "RUNNING", at(2024, 5, 1, 11, 1))
    space.detail = "sleeping"
    move(session, space, "STOPPED", at(2024, 5, 1, 12))  # a sleeping Space is STOPPED to the Hub
    move(session, space, "APP_STARTING", at(2024, 5, 2, 7))  # woken by a request
    assert intervals(session) == [
        ("a10g-small", naive(2024, 5, 1, 8), naive(2024, 5, 1, 9)),
        ("a10g-small", naive(2024, 5, 1, 11), naive(2024, 5, 1, 12)),
        ("a10g-small", naive(2024, 5, 2, 7), None),
    ]


def test_delete_closes_and_the_interval_outlives_the_space(session, make_space):
    space = make_space()
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8))
    move(session, space, "DELETING", at(2024, 5, 1, 9))
    session.delete(space)
    session.flush()
    session.expire_all()
    row = session.scalars(select(UsageInterval)).one()
    assert (row.space_id, row.space_name, row.ended_at.hour) == (None, "alice/chat", 9)


def test_tier_change_splits_the_interval(session, make_space):
    space = make_space(tier="t4-small")
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8))
    move(session, space, "RUNNING", at(2024, 5, 1, 8, 1))
    space.hardware_current = "a10g-largex2"
    on_tier_change(session, space, "a10g-largex2", now=at(2024, 5, 1, 10))
    on_tier_change(session, space, "a10g-largex2", now=at(2024, 5, 1, 10, 30))  # same tier again: nothing
    move(session, space, "STOPPED", at(2024, 5, 1, 11))
    assert intervals(session) == [
        ("t4-small", naive(2024, 5, 1, 8), naive(2024, 5, 1, 10)),
        ("a10g-largex2", naive(2024, 5, 1, 10), naive(2024, 5, 1, 11)),
    ]
    second = session.scalars(select(UsageInterval).where(UsageInterval.tier == "a10g-largex2")).one()
    assert (second.gpu_model, second.gpu_count, second.unit_cost) == ("A10G", 2, 3.0)


def test_tier_change_while_not_billed_opens_nothing_and_the_next_start_uses_the_new_tier(session, make_space):
    space = make_space(tier="cpu-basic")
    move(session, space, "STOPPED", at(2024, 5, 1, 8))
    space.hardware_requested = "t4-medium"
    on_tier_change(session, space, "t4-medium", now=at(2024, 5, 1, 9))
    assert intervals(session) == []
    move(session, space, "APP_STARTING", at(2024, 5, 1, 9, 0, 1))
    assert intervals(session) == [("t4-medium", naive(2024, 5, 1, 9, 0, 1), None)]


def test_hardware_current_wins_over_requested(session, make_space):
    space = make_space(tier="a100-large")
    space.hardware_current = "t4-small"  # e.g. still on the old hardware while the new one is awaited
    move(session, space, "APP_STARTING", at(2024, 5, 1))
    assert intervals(session)[0][0] == "t4-small"


def test_times_are_metered_at_whole_seconds(session, make_space):
    space = make_space()
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8, 0, 0, 999_999))
    move(session, space, "STOPPED", at(2024, 5, 1, 8, 0, 7, 400_000))
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 8), naive(2024, 5, 1, 8, 0, 7))]


def test_a_missed_call_heals_on_the_next_stage_write(session, make_space):
    space = make_space()
    space.stage = "RUNNING"  # written without telling metering (a bug elsewhere)
    move(session, space, "RUNNING_BUILDING", at(2024, 5, 1, 9))  # billed -> billed, nothing open: open one
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 9), None)]
    space.stage = "STOPPED"
    move(session, space, "STOPPED", at(2024, 5, 1, 10))  # a non-billed write closes a stray interval
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 9), naive(2024, 5, 1, 10))]


def test_a_space_created_in_the_same_transaction_gets_its_interval(session):
    space = Space(owner="bob", name="new", hardware_requested="cpu-upgrade")
    session.add(space)
    on_stage_change(session, space, None, "APP_STARTING", now=at(2024, 5, 1))
    row = session.scalars(select(UsageInterval)).one()
    assert row.space_id == space.id and row.unit_cost == 0.03


def test_prices_are_copied_when_the_interval_opens(session, make_space):
    space = make_space(tier="a10g-small")
    dearer = Catalog(
        tiers=tuple(
            t.model_copy(update={"price_per_hour": 2.0}) if t.name == "a10g-small" else t
            for t in default_catalog().tiers
        )
    )
    on_stage_change(session, space, "NO_APP_FILE", "APP_STARTING", now=at(2024, 5, 1), catalog=dearer)
    space.stage = "APP_STARTING"
    assert session.scalars(select(UsageInterval.unit_cost)).one() == 2.0


def test_a_tier_missing_from_the_catalog_is_metered_at_no_cost(session, make_space, caplog):
    space = make_space(tier="h100-gone")
    cat = Catalog(tiers=(Tier(name="cpu-basic", pretty_name="CPU", vcpu=2, memory_gb=16),))
    on_stage_change(session, space, "STOPPED", "APP_STARTING", now=at(2024, 5, 1), catalog=cat)
    row = session.scalars(select(UsageInterval)).one()
    assert (row.tier, row.unit_cost, row.gpu_count) == ("h100-gone", 0.0, 0)
    assert "not in the catalog" in caplog.text



def test_a_space_waiting_in_line_for_hardware_is_not_billed(session, make_space):
    """Queued behind a full pool it holds nothing; billing starts when it gets the hardware."""
    space = make_space()
    space.detail = "waiting for hardware"
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8))
    space.detail = None
    move(session, space, "APP_STARTING", at(2024, 5, 1, 8, 30))
    move(session, space, "PAUSED", at(2024, 5, 1, 9))
    assert intervals(session) == [("a10g-small", naive(2024, 5, 1, 8, 30), naive(2024, 5, 1, 9))]
