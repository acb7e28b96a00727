"""Monthly reports, CSV, spending limits."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from controlplane.metering.billing import (
    CSV_HEADER,
    month_bounds,
    over_limit,
    report_to_csv,
    spaces_to_pause,
    usage_for_month,
)
from controlplane.metering.intervals import on_stage_change, on_tier_change
from controlplane.models import Space, User


def at(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)


def move(session: Session, space: Space, stage: str, now: datetime) -> None:
    old, space.stage = space.stage, stage
    on_stage_change(session, space, old, stage, now=now)


def test_month_bounds_are_utc_and_roll_over_the_year():
    assert month_bounds("2024-12") == (at(2024, 12, 1), at(2025, 1, 1))
    for bad in ("2024-13", "2024-1", "24-10", "2024/10", ""):
        with pytest.raises(ValueError, match="YYYY-MM"):
            month_bounds(bad)


def test_an_interval_spanning_october_into_november_is_split_at_midnight_utc(session, make_space):
    space = make_space(tier="a10g-small")  # $1.00/h
    move(session, space, "APP_STARTING", at(2024, 10, 31, 22, 30))
    move(session, space, "STOPPED", at(2024, 11, 1, 1, 0))
    now = at(2024, 12, 5)
    october = usage_for_month(session, "alice", "2024-10", now=now)
    november = usage_for_month(session, "alice", "2024-11", now=now)
    assert october.seconds == 90 * 60 and november.seconds == 60 * 60
    assert october.cost == pytest.approx(1.5) and november.cost == pytest.approx(1.0)
    assert usage_for_month(session, "alice", "2024-09", now=now).rows == ()


def test_open_intervals_count_up_to_now(session, make_space):
    space = make_space(tier="t4-small")  # $0.40/h
    move(session, space, "RUNNING", at(2024, 10, 30, 12))
    nov = usage_for_month(session, "alice", "2024-11", now=at(2024, 11, 2, 6, 0, 0, 700_000))
    assert nov.seconds == 30 * 3600  # from Nov 1 00:00 to now, whole seconds
    assert nov.cost == pytest.approx(12.0)
    assert usage_for_month(session, "alice", "2024-10", now=at(2024, 11, 2)).seconds == 36 * 3600
    assert usage_for_month(session, "alice", "2024-12", now=at(2024, 11, 2)).seconds == 0


def test_rows_per_space_and_tier_with_gpu_hours_and_totals(session, make_space):
    big = make_space("big", tier="a10g-largex2")  # 2 GPUs, $3.00/h
    cpu = make_space("cpu", tier="cpu-upgrade")  # no GPU, $0.03/h
    other = make_space("theirs", owner="bob", tier="a100-large")
    move(session, big, "RUNNING", at(2024, 6, 1, 0))
    big.hardware_current = "t4-small"
    on_tier_change(session, big, "t4-small", now=at(2024, 6, 1, 2))
    move(session, big, "STOPPED", at(2024, 6, 1, 3))
    move(session, cpu, "RUNNING", at(2024, 6, 2, 0))
    move(session, cpu, "STOPPED", at(2024, 6, 2, 10))
    move(session, other, "RUNNING", at(2024, 6, 3, 0))
    move(session, other, "STOPPED", at(2024, 6, 3, 1))

    report = usage_for_month(session, "alice", "2024-06", now=at(2024, 7, 1))
    got = {(r.space, r.tier): (r.seconds, r.hours, r.gpu_hours, round(r.cost, 4)) for r in report.rows}
    assert got == {
        ("alice/big", "a10g-largex2"): (7200, 2.0, 4.0, 6.0),
        ("alice/big", "t4-small"): (3600, 1.0, 1.0, 0.4),
        ("alice/cpu", "cpu-upgrade"): (36000, 10.0, 0.0, 0.3),
    }
    assert (report.hours, report.gpu_hours, round(report.cost, 4)) == (13.0, 5.0, 6.7)
    everyone = usage_for_month(session, None, "2024-06", now=at(2024, 7, 1))
    assert {r.owner for r in everyone.rows} == {"alice", "bob"}
    assert everyone.cost == pytest.approx(6.7 + 2.5)


def test_csv_has_a_line_per_row_and_a_total(session, make_space):
    space = make_space(tier="a10g-small")
    move(session, space, "RUNNING", at(2024, 6, 1, 0))
    move(session, space, "STOPPED", at(2024, 6, 1, 0, 30))
    text = report_to_csv(usage_for_month(session, "alice", "2024-06", now=at(2024, 7, 1)))
    lines = list(csv.DictReader(io.StringIO(text)))
    assert tuple(lines[0]) == CSV_HEADER
    assert lines[0] | {} == {
        "month": "2024-06", "owner": "alice", "space": "alice/chat", "tier": "a10g-small", "gpu_model": "A10G",
        "gpu_count": "1", "seconds": "1800", "hours": "0.5000", "gpu_hours": "0.5000", "cost": "0.5000",
    }  # fmt: skip
    assert (lines[1]["space"], lines[1]["seconds"], lines[1]["cost"]) == ("TOTAL", "1800", "0.5000")
    assert len(lines) == 2


def test_spending_limit_pauses_the_owners_running_gpu_spaces_only(session, make_space):
    session.add(User(name="alice", spending_limit=5.0))
    gpu = make_space("gpu", tier="a10g-small")  # $1.00/h
    cpu = make_space("cpu", tier="cpu-upgrade")
    idle_gpu = make_space("idle", tier="t4-small")
    move(session, gpu, "RUNNING", at(2024, 6, 1, 0))
    move(session, cpu, "RUNNING", at(2024, 6, 1, 0))
    move(session, idle_gpu, "PAUSED", at(2024, 6, 1, 0))

    assert not over_limit(session, "alice", now=at(2024, 6, 1, 4, 45))
    assert spaces_to_pause(session, "alice", at(2024, 6, 1, 4, 45)) == []
    assert over_limit(session, "alice", now=at(2024, 6, 1, 5))
    assert [s.name for s in spaces_to_pause(session, "alice", at(2024, 6, 1, 5))] == ["gpu"]
    # The limit is per month: last month's spend does not count against July.
    move(session, gpu, "PAUSED", at(2024, 6, 1, 5))
    assert not over_limit(session, "alice", now=at(2024, 7, 1))


def test_no_limit_or_no_user_is_never_over(session, make_space):
    session.add(User(name="alice", spending_limit=None))
    space = make_space(tier="a100-large")
    move(session, space, "RUNNING", at(2024, 6, 1))
    assert not over_limit(session, "alice", now=at(2024, 6, 30))
    assert not over_limit(session, "nobody", now=at(2024, 6, 30))
