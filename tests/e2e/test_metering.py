"""Metering on the real docker backend: a control-plane crash loses no second and counts none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from tests.e2e.spaces import GRADIO_APP, create, push, readme

pytestmark = pytest.mark.docker


def parse(ts: str) -> datetime:
    head, _, frac = ts.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


def run_seconds(attrs: dict) -> float:
    state = attrs["State"]
    return (parse(state["FinishedAt"]) - parse(state["StartedAt"])).total_seconds()


def test_usage_survives_a_control_plane_crash(platform, tmp_path):
    create(platform, "gina", "metered")
    push(platform, "gina", "metered", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    assert platform.wait_stage("gina/metered", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    first = platform.containers("gina/metered")[0]
    time.sleep(3)

    # The control plane dies; while it is down, the app's container dies too.
    platform.platform.stop_process("controlplane", signal.SIGKILL)
    try:
        first.stop(timeout=1)
        first.reload()
        first_run = run_seconds(first.attrs)
        time.sleep(3)
    finally:  # the platform is shared: it must come back whatever happened here
        platform.platform.start_controlplane()

    # On restart the reconciler closes the usage at the container's real end and starts the app again.
    platform.wait_stage("gina/metered", {"RUNNING"}, timeout=120)
    second = next(c for c in platform.containers("gina/metered") if c.id != first.id)
    second.reload()
    second_start = parse(second.attrs["State"]["StartedAt"])
    time.sleep(3)
    with platform.api("gina") as api:
        paused_at = datetime.now(second_start.tzinfo)  # billing ends at the pause, not when the container is gone
        assert api.post("/api/spaces/gina/metered/pause").json()["stage"] == "PAUSED"
        second_run = (paused_at - second_start).total_seconds()
        usage = api.get("/api/billing/usage").json()
    rows = [r for r in usage["rows"] if r["space"] == "gina/metered"]
    assert rows and rows[0]["tier"] == "cpu-basic" and rows[0]["cost"] == 0
    billed = sum(r["seconds"] for r in rows)
    # Billing covers the first container's run, none of the outage after it died, and the second run
    # (from its start to the pause). Whole seconds, plus the start-up before each container runs.
    expected = first_run + second_run
    assert expected - 2 <= billed <= expected + 3, (billed, first_run, second_run)

    # Running the reconciler again changes nothing: the totals stay put while the Space is paused.
    time.sleep(6)  # SPACEYARD_RECONCILE_INTERVAL is 5 s in tests
    with platform.api("gina") as api:
        again = api.get("/api/billing/usage").json()
    assert sum(r["seconds"] for r in again["rows"] if r["space"] == "gina/metered") == billed


def test_billing_api_csv_spending_limit_and_metrics(platform):
    with platform.api("gina") as api:
        assert api.put("/api/billing/limit", json={"limit": 0}).json() == {"spendingLimit": 0}
        assert api.get("/api/billing/usage").json()["spendingLimit"] == 0
        csv = api.get("/api/billing/usage?format=csv")
        assert csv.headers["content-type"].startswith("text/csv") and "space" in csv.text.splitlines()[0]
        assert api.get("/api/billing/usage?month=2026-13").status_code == 400
        assert api.get("/api/billing/usage?owner=all").status_code == 403
        assert api.put("/api/billing/limit", json={"limit": None}).json() == {"spendingLimit": None}
    # /metrics names private Spaces: an admin's token reads it (tests/security/test_web_metrics.py: no one else).
    admin = subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", "metrics-admin", "--admin"],
                           env={**os.environ, **platform.env}, capture_output=True, text=True, check=True)
    metrics = platform.api().get("/metrics", headers={"Authorization": f"Bearer {admin.stdout.strip()}"}).text
    assert "spaceyard_usage_seconds_total" in metrics and "spaceyard_spaces" in metrics
