"""Right after a change the clients see it: the runtime says BUILDING from the moment a commit is accepted, and a
starting or sleeping app holds API requests (within httpx's 5 s default timeout) instead of refusing them."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from tests.conftest import git
from tests.e2e.spaces import readme

pytestmark = pytest.mark.docker

VERSIONED_APP = """import gradio as gr


def version(name):
    return "{version} " + name


gr.Interface(fn=version, inputs="text", outputs="text").launch()
"""


def app_folder(root: Path, version: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "app.py").write_text(VERSIONED_APP.format(version=version))
    (root / "README.md").write_text(readme("gradio"))
    return root


def predict_in_fresh_interpreter(platform, space: str, user: str, tmp_path: Path, text: str) -> str:
    """gradio_client.Client("owner/name") with its default timeouts, as a user runs it: it reads the runtime and
    the app's URL through huggingface_hub at HF_ENDPOINT (read at import, hence a fresh interpreter)."""
    script = (
        "import sys\n"
        "from gradio_client import Client\n"
        "client = Client(sys.argv[1], verbose=False, analytics_enabled=False)\n"
        "print(client.predict(sys.argv[2], api_name='/version'))\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": platform.url,
        "HF_TOKEN": platform.user(user),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run(
        [sys.executable, "-c", script, space, text], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:] + platform.log_tail()
    return out.stdout.strip().splitlines()[-1]


def test_upload_folder_then_wait_for_space_waits_for_the_new_build(platform, tmp_path):
    api = HfApi(endpoint=platform.url, token=platform.user("fresh"))
    api.create_repo("fresh/versions", repo_type="space", space_sdk="gradio")
    api.upload_folder(repo_id="fresh/versions", repo_type="space", folder_path=app_folder(tmp_path / "v1", "v1"))
    # Right after the commit: building (the build itself starts a moment later), never the empty Space's stage.
    assert api.get_space_runtime("fresh/versions").stage == "BUILDING"
    # gradio_client at once: it waits out BUILDING itself, then the starting app holds its requests.
    assert predict_in_fresh_interpreter(platform, "fresh/versions", "fresh", tmp_path, "one") == "v1 one"
    assert api.get_space_runtime("fresh/versions").stage == "RUNNING"

    second = api.upload_folder(
        repo_id="fresh/versions", repo_type="space", folder_path=app_folder(tmp_path / "v2", "v2")
    )
    # The old build still serves: RUNNING_BUILDING, so wait_for_space does not return on it.
    assert api.get_space_runtime("fresh/versions").stage == "RUNNING_BUILDING"
    runtime = api.wait_for_space("fresh/versions", timeout=600, poll_interval=0.5)
    assert runtime.stage == "RUNNING", runtime.raw
    assert api.space_info("fresh/versions").sha == second.oid
    host = api.space_info("fresh/versions").host
    answer = httpx.post(f"{host}gradio_api/call/version", json={"data": ["two"]}, timeout=30)
    assert answer.status_code == 200, answer.text
    event_id = answer.json()["event_id"]
    result = httpx.get(f"{host}gradio_api/call/version/{event_id}", timeout=30).text
    assert '"v2 two"' in result, result  # the new build answers, not the old one


def test_git_push_shows_building_before_it_returns(platform, tmp_path):
    api = HfApi(endpoint=platform.url, token=platform.user("fresh"))
    api.create_repo("fresh/pushed", repo_type="space", space_sdk="static")
    token = platform.user("fresh")
    url = platform.url.replace("http://", f"http://fresh:{token}@") + "/spaces/fresh/pushed"
    repo = tmp_path / "pushed"
    git("clone", "-q", url, str(repo))
    (repo / "index.html").write_text("<p>pushed</p>\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "page", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    assert api.get_space_runtime("fresh/pushed").stage == "BUILDING"
    assert api.wait_for_space("fresh/pushed", timeout=300, poll_interval=0.5).stage == "RUNNING"


def test_a_starting_app_holds_api_requests_and_a_browser_gets_the_page(platform, tmp_path):
    api = HfApi(endpoint=platform.url, token=platform.user("fresh"))
    api.create_repo("fresh/starting", repo_type="space", space_sdk="gradio")
    api.upload_folder(repo_id="fresh/starting", repo_type="space", folder_path=app_folder(tmp_path / "app", "s"))
    deadline = time.monotonic() + 600
    while (stage := api.get_space_runtime("fresh/starting").stage) == "BUILDING":
        assert time.monotonic() < deadline, "the build never ended"
        time.sleep(0.05)
    assert stage == "APP_STARTING", stage  # Gradio takes seconds to import: the app is caught starting
    app = f"{platform.url}/apps/fresh/starting/"
    page = httpx.get(app, headers={"Accept": "text/html"})
    assert page.status_code == 503 and "starting" in page.text and page.headers["retry-after"]
    start = time.monotonic()
    held = httpx.get(f"{app}config")  # httpx's default timeouts: 5 s without a byte is a ReadTimeout
    if held.status_code == 503:  # not up within the hold: a retry hint, after the hold rather than at once
        assert time.monotonic() - start > 3 and held.headers["retry-after"], held.text
        time.sleep(int(held.headers["retry-after"]))
        held = httpx.get(f"{app}config")
    assert held.status_code == 200, held.text
    assert held.json()["mode"] in ("interface", "blocks")


def test_gradio_client_wakes_a_sleeping_space_with_default_timeouts(platform, tmp_path):
    api = HfApi(endpoint=platform.url, token=platform.user("fresh"))
    api.create_repo("fresh/sleepy", repo_type="space", space_sdk="gradio")
    api.upload_folder(repo_id="fresh/sleepy", repo_type="space", folder_path=app_folder(tmp_path / "app", "z"))
    assert api.wait_for_space("fresh/sleepy", timeout=600, poll_interval=0.5).stage == "RUNNING"
    api.set_space_sleep_time("fresh/sleepy", 1)
    # The sleeper looks every SPACEYARD_SLEEP_CHECK_INTERVAL (30 s on the shared platform).
    runtime = platform.wait_stage("fresh/sleepy", {"STOPPED"}, user="fresh", timeout=120)
    assert runtime["spaceyard"]["detail"] == "sleeping", runtime
    api.set_space_sleep_time("fresh/sleepy", 3600)  # once awake, it stays so for the call
    assert predict_in_fresh_interpreter(platform, "fresh/sleepy", "fresh", tmp_path, "awake") == "z awake"
