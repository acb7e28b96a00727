"""Every failure a user can cause ends in a clear stage and message; nothing hangs."""

from __future__ import annotations

import json
import signal
import time

import httpx
import pytest

from tests.e2e.spaces import GRADIO_APP, create, push, readme

pytestmark = pytest.mark.docker
FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"}


def build_log(platform, space: str, follow: bool = True) -> str:
    url = f"{platform.url}/api/spaces/{space}/logs/build?follow={str(follow).lower()}"
    with httpx.stream("GET", url, timeout=60) as resp:
        return "\n".join(json.loads(line[6:])["data"] for line in resp.iter_lines() if line.startswith("data: "))


def test_new_space_has_no_app_file(platform):
    create(platform, "frank", "empty")
    with platform.api("frank") as api:
        runtime = api.get("/api/spaces/frank/empty/runtime").json()
    assert runtime["stage"] == "NO_APP_FILE"
    assert "app.py" in runtime["errorMessage"]


def test_push_without_app_file_is_no_app_file(platform, tmp_path):
    create(platform, "frank", "noapp")
    push(platform, "frank", "noapp", {"README.md": readme("gradio"), "other.py": "print(1)\n"}, tmp_path)
    runtime = platform.wait_stage("frank/noapp", FINAL)
    assert runtime["stage"] == "NO_APP_FILE", runtime
    assert "app.py" in runtime["errorMessage"]


def test_invalid_front_matter_is_config_error_naming_the_key(platform, tmp_path):
    create(platform, "frank", "badyaml")
    push(platform, "frank", "badyaml", {"README.md": readme("gradio", app_port="not-a-port"), "app.py": GRADIO_APP},
         tmp_path)
    runtime = platform.wait_stage("frank/badyaml", FINAL - {"NO_APP_FILE"})
    assert runtime["stage"] == "CONFIG_ERROR", runtime
    assert "app_port" in runtime["errorMessage"]


def test_malformed_yaml_is_config_error(platform, tmp_path):
    create(platform, "frank", "brokenyaml")
    push(platform, "frank", "brokenyaml", {"README.md": "---\nsdk: gradio\ntitle: [unclosed\n---\n",
                                           "app.py": GRADIO_APP}, tmp_path)
    runtime = platform.wait_stage("frank/brokenyaml", FINAL - {"NO_APP_FILE"})
    assert runtime["stage"] == "CONFIG_ERROR", runtime
    assert "yaml" in runtime["errorMessage"].lower() or "line" in runtime["errorMessage"].lower()


def test_failing_pip_install_is_build_error_with_pips_message(platform, tmp_path):
    create(platform, "frank", "badpip")
    push(platform, "frank", "badpip", {"README.md": readme("gradio"), "app.py": GRADIO_APP,
                                       "requirements.txt": "this-package-does-not-exist-spaceyard==9.9.9\n"}, tmp_path)
    runtime = platform.wait_stage("frank/badpip", FINAL - {"NO_APP_FILE"})
    assert runtime["stage"] == "BUILD_ERROR", runtime
    log = build_log(platform, "frank/badpip")
    assert "this-package-does-not-exist-spaceyard" in log
    assert "No matching distribution" in log or "ERROR" in log


def test_crashing_app_is_runtime_error_with_its_last_lines(platform, tmp_path):
    create(platform, "frank", "crash")
    app = "print('starting up')\nraise SystemExit('boom: missing model weights')\n"
    push(platform, "frank", "crash", {"README.md": readme("gradio"), "app.py": app}, tmp_path)
    runtime = platform.wait_stage("frank/crash", FINAL - {"NO_APP_FILE"})
    assert runtime["stage"] == "RUNTIME_ERROR", runtime
    assert "boom: missing model weights" in runtime["errorMessage"]


def test_app_that_never_listens_times_out(platform, tmp_path):
    create(platform, "frank", "silent")
    app = "import time\nprint('thinking forever')\nwhile True:\n    time.sleep(1)\n"
    push(platform, "frank", "silent", {"README.md": readme("gradio", startup_duration_timeout="5s"), "app.py": app},
         tmp_path)
    runtime = platform.wait_stage("frank/silent", FINAL - {"NO_APP_FILE"})
    assert runtime["stage"] == "RUNTIME_ERROR", runtime
    assert "did not answer" in runtime["errorMessage"] and "thinking forever" in runtime["errorMessage"]


def test_bad_token_is_401(platform):
    resp = httpx.get(f"{platform.url}/api/whoami-v2", headers={"Authorization": "Bearer sy_not-a-real-token"})
    assert resp.status_code == 401 and "token" in resp.json()["error"]
    resp = httpx.post(f"{platform.url}/api/repos/create", json={"type": "space", "name": "x"})
    assert resp.status_code == 401


@pytest.mark.parametrize("name", ["-bad", "has space", "a--b", "x" * 97, "dots..dots", "ends.git"])
def test_invalid_space_names_are_400(platform, name):
    with platform.api("frank") as api:
        resp = api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "gradio"})
    assert resp.status_code == 400, resp.text
    assert "Invalid Space name" in resp.json()["error"]


SLOW_DOCKERFILE = """FROM spaceyard/base:py3.11
RUN sleep 20
WORKDIR /app
CMD ["python3", "-m", "http.server", "7860"]
"""


def test_builder_killed_mid_build_is_retried_not_stuck(platform, tmp_path):
    """Kill the worker inside a slow build step: the build is sent again and ends, never stays BUILDING."""
    create(platform, "frank", "killed", sdk="docker")
    push(platform, "frank", "killed", {"README.md": readme("docker"), "Dockerfile": SLOW_DOCKERFILE}, tmp_path)
    deadline = time.monotonic() + 60
    while "sleep 20" not in build_log(platform, "frank/killed", follow=False) and time.monotonic() < deadline:
        time.sleep(0.2)
    platform.platform.stop_process("builder", signal.SIGKILL)
    platform.platform.start_builder()
    runtime = platform.wait_stage("frank/killed", FINAL - {"NO_APP_FILE"}, timeout=240)
    assert runtime["stage"] == "RUNNING", runtime
    with httpx.stream("GET", f"{platform.url}/api/spaces/frank/killed/logs/build?follow=false") as resp:
        assert resp.status_code == 200


def test_app_crashing_after_it_runs_is_runtime_error(platform, tmp_path):
    """The engine's event stream, not polling, notices a serving app that dies."""
    create(platform, "frank", "latecrash")
    app = GRADIO_APP.replace("demo.launch()", "import os, threading\nthreading.Timer(6, lambda: (print("
                             "'out of memory, giving up', flush=True), os._exit(3))).start()\ndemo.launch()")
    push(platform, "frank", "latecrash", {"README.md": readme("gradio"), "app.py": app}, tmp_path)
    assert platform.wait_stage("frank/latecrash", FINAL - {"NO_APP_FILE"})["stage"] == "RUNNING"
    runtime = platform.wait_stage("frank/latecrash", {"RUNTIME_ERROR"}, timeout=60)
    assert "exit code 3" in runtime["errorMessage"] and "out of memory, giving up" in runtime["errorMessage"]
