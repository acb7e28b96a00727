"""Build and run logs through the real client: `HfApi.fetch_space_logs` and `hf spaces logs`, which parse the
Hub's event shape (`{"data": "<line>\\n", "timestamp": "...Z"}`) with the client's own strict time parser."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import parse_datetime

from tests.e2e.spaces import GRADIO_APP, readme

pytestmark = pytest.mark.docker
HF = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "hf"


@pytest.fixture(scope="module")
def logged(platform, tmp_path_factory) -> str:
    """A built, running Gradio Space whose build and run logs have lines."""
    api = HfApi(endpoint=platform.url, token=platform.user("logger"))
    api.create_repo("logger/app", repo_type="space", space_sdk="gradio")
    folder = tmp_path_factory.mktemp("logged")
    (folder / "app.py").write_text(GRADIO_APP)
    (folder / "README.md").write_text(readme("gradio"))
    api.upload_folder(repo_id="logger/app", repo_type="space", folder_path=folder)
    assert api.wait_for_space("logger/app", timeout=600, poll_interval=0.5).stage == "RUNNING"
    return "logger/app"


def test_fetch_space_logs_reads_build_and_run_logs(platform, logged):
    api = HfApi(endpoint=platform.url, token=platform.user("logger"))
    build = list(api.fetch_space_logs(logged, build=True))
    assert build and all(line.endswith("\n") for line in build), build[:5]
    assert any("app.py" in line or "Step" in line for line in build), build[-20:]
    # The app prints its banner around the moment it starts answering, and the engine's log may get it a moment
    # after the probe that made the Space RUNNING: a no-follow read shows it once it is written.
    deadline = time.monotonic() + 30
    while True:
        run = list(api.fetch_space_logs(logged))
        if any("Running on" in line for line in run):
            break
        assert time.monotonic() < deadline, run
        time.sleep(0.5)


def test_log_events_have_the_hubs_shape(platform, logged):
    headers = {"Authorization": f"Bearer {platform.user('logger')}"}
    url = f"{platform.url}/api/spaces/{logged}/logs/build?follow=false"
    with httpx.stream("GET", url, headers=headers, timeout=60) as resp:
        events = [json.loads(line[6:]) for line in resp.iter_lines() if line.startswith("data: ")]
    assert events
    for event in events:
        assert set(event) == {"data", "timestamp"}
        assert event["timestamp"].endswith("Z"), event
        parse_datetime(event["timestamp"])  # the client's parser: raises on "+00:00"


def test_hf_spaces_logs_cli(platform, logged, tmp_path):
    env = {
        **os.environ,
        "HF_ENDPOINT": platform.url,
        "HF_TOKEN": platform.user("logger"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "NO_COLOR": "1",
    }
    out = subprocess.run(
        [str(HF), "spaces", "logs", logged, "--build"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert len(out.stdout.splitlines()) > 3, out.stdout
    out = subprocess.run([str(HF), "spaces", "logs", logged], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Running on" in out.stdout, out.stdout
