"""Cold starts: each start's seconds from its request to the app's first answer, per Space in the API (last,
p50, p95), on the dashboard and as a Prometheus histogram."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx
import pytest
from huggingface_hub import HfApi

from tests.lifecycle.helpers import JSON, wait_asleep

pytestmark = pytest.mark.docker


def cold_starts(life, space: str) -> dict:
    with life.api("alice") as api:
        resp = api.get(f"/api/spaces/{space}/coldstarts")
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_a_deploy_and_a_wake_are_measured_and_exported(life, env_space):
    deployed = cold_starts(life, env_space)
    assert deployed["count"] >= 1 and 0 < deployed["p50"] <= deployed["p95"], deployed
    assert any(r["kind"] == "deploy" and r["seconds"] > 0 for r in deployed["recent"]), deployed

    api = HfApi(endpoint=life.url, token=life.user("alice"))
    api.set_space_sleep_time(env_space, 2)
    try:
        wait_asleep(life, env_space)
        answer = httpx.get(f"{life.url}/apps/{env_space}/", headers=JSON, timeout=90)  # wakes it
        assert answer.status_code == 200, answer.text
    finally:
        api.set_space_sleep_time(env_space, -1)
    life.wait_stage(env_space, {"RUNNING"}, user="alice")
    woken = cold_starts(life, env_space)
    assert woken["count"] == deployed["count"] + 1, woken
    assert woken["last"]["kind"] == "wake" and 0 < woken["last"]["seconds"] < 90, woken

    page = httpx.get(f"{life.url}/spaces/{env_space}", headers={"Authorization": f"Bearer {life.user('alice')}"})
    assert f"last {woken['last']['seconds']:.1f} s (wake)" in page.text

    admin = subprocess.run(
        [sys.executable, "-m", "controlplane.cli", "user", "add", "cold-admin", "--admin"],
        env={**os.environ, **life.env},
        capture_output=True,
        text=True,
        check=True,
    )
    metrics = httpx.get(f"{life.url}/metrics", headers={"Authorization": f"Bearer {admin.stdout.strip()}"}).text
    assert "# TYPE spaceyard_cold_start_seconds histogram" in metrics
    count = re.search(rf'spaceyard_cold_start_seconds_count{{kind="wake",space="{env_space}"}} (\S+)', metrics)
    assert count and float(count.group(1)) >= 1, metrics[-2000:]
    assert re.search(
        rf'spaceyard_cold_start_seconds_bucket{{kind="deploy",le="\+Inf",space="{env_space}"}} [1-9]', metrics
    )
