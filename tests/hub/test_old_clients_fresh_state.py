"""Issue 15 items 2 and 3 with the clients' previous major versions, each in its own venv (tests/hub/old_clients.py):
huggingface_hub 0.x (0.36) and gradio_client 1.x. The current ones: test_fresh_state.py and test_logs_api.py.

What 0.36 lacks, and so is not tested with it: `HfApi.wait_for_space` and `fetch_space_logs` (both came in 1.x) and
the `hf spaces logs` command. Its users poll `get_space_runtime`, which is what the script below does after
`upload_folder`, and read logs over HTTP; the log events are parsed with 0.36's own `parse_datetime`. gradio_client
1.x resolves `Client("owner/name")` through the huggingface_hub its venv installs (1.x), at HF_ENDPOINT.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.hub.old_clients import gradio_client_1x, hub_0x, version
from tests.hub.test_fresh_state import app_folder

pytestmark = pytest.mark.docker

HUB_0X_SCRIPT = """
import json, os, tempfile, time
from pathlib import Path
import requests  # 0.x's own HTTP library (it has no httpx)
from huggingface_hub import HfApi, __version__
from huggingface_hub.utils import parse_datetime

endpoint, token, space = os.environ["ENDPOINT"], os.environ["TOKEN"], os.environ["SPACE"]
api = HfApi(endpoint=endpoint, token=token)
api.create_repo(space, repo_type="space", space_sdk="static")

def upload(text):
    folder = Path(tempfile.mkdtemp())
    (folder / "index.html").write_text(text)
    return api.upload_folder(repo_id=space, repo_type="space", folder_path=folder)

def wait():
    # 0.x has no wait_for_space: its users poll the runtime until it leaves the transient stages.
    deadline = time.monotonic() + 300
    while (runtime := api.get_space_runtime(space)).stage in ("BUILDING", "RUNNING_BUILDING", "APP_STARTING",
                                                               "RUNNING_APP_STARTING"):
        assert time.monotonic() < deadline, runtime.raw
        time.sleep(0.5)
    return runtime

upload("<p>v1</p>")
runtime = api.get_space_runtime(space)
assert runtime.stage == "BUILDING", runtime.raw  # from the commit on, not the empty Space's NO_APP_FILE
assert wait().stage == "RUNNING"
second = upload("<p>v2</p>")
runtime = api.get_space_runtime(space)
assert runtime.stage == "RUNNING_BUILDING", runtime.raw  # the old build serves; polling must not stop on it
runtime = wait()
assert runtime.stage == "RUNNING", runtime.raw
# 0.36's SpaceRuntime parses the runtime as the Hub sends it.
assert runtime.hardware == "cpu-basic" and runtime.requested_hardware == "cpu-basic", runtime.raw
info = api.space_info(space)
assert info.sha == second.oid, (info.sha, second.oid)
page = requests.get(info.host, timeout=30)
assert "v2" in page.text, page.text[:300]

# Logs in the Hub's event shape; every timestamp parses with 0.36's own parser.
headers = {"Authorization": f"Bearer {token}"}
for kind in ("build", "run"):
    url = f"{endpoint}/api/spaces/{space}/logs/{kind}?follow=false"
    with requests.get(url, headers=headers, timeout=60, stream=True) as resp:
        lines = resp.iter_lines(decode_unicode=True)
        events = [json.loads(line[6:]) for line in lines if line.startswith("data: ")]
    assert kind == "run" or events, kind
    for event in events:
        assert set(event) == {"data", "timestamp"} and event["data"].endswith("\\n"), event
        parse_datetime(event["timestamp"])
print("ok", __version__)
"""

PREDICT = """
import sys
import gradio_client
from gradio_client import Client
client = Client(sys.argv[1], verbose=False, analytics_enabled=False)  # default timeouts
print(gradio_client.__version__, client.predict(sys.argv[2], api_name="/version"))
"""


def clean_env(platform, user: str, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_ENDPOINT")}
    return env | {
        "HF_ENDPOINT": platform.url,
        "HF_TOKEN": platform.user(user),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "GRADIO_ANALYTICS_ENABLED": "False",
    }


def predict_1x(python: Path, platform, space: str, user: str, tmp_path: Path, text: str) -> str:
    env = clean_env(platform, user, tmp_path)
    out = subprocess.run(
        [str(python), "-c", PREDICT, space, text], env=env, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:] + platform.log_tail()
    client_version, answer = out.stdout.strip().splitlines()[-1].split(" ", 1)
    assert client_version.startswith("1."), client_version
    return answer


def test_huggingface_hub_0x_sees_the_new_build_and_parses_runtime_and_logs(platform, tmp_path):
    python = hub_0x()
    if python is None:
        pytest.skip("could not install huggingface_hub 0.x in its own venv (pip without network?)")
    assert version(python, "huggingface_hub").startswith("0."), version(python, "huggingface_hub")
    env = clean_env(platform, "oldfresh", tmp_path)
    env |= {"ENDPOINT": platform.url, "TOKEN": platform.user("oldfresh"), "SPACE": "oldfresh/static"}
    out = subprocess.run([str(python), "-c", HUB_0X_SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0 and out.stdout.startswith("ok 0."), out.stderr[-3000:] + platform.log_tail()


def test_gradio_client_1x_predicts_right_after_a_build_and_wakes_a_sleeping_space(platform, tmp_path):
    python = gradio_client_1x()
    if python is None:
        pytest.skip("could not install gradio_client 1.x in its own venv (pip without network?)")
    api = HfApi(endpoint=platform.url, token=platform.user("oldfresh"))
    api.create_repo("oldfresh/gradio", repo_type="space", space_sdk="gradio")
    folder = app_folder(tmp_path / "app", "g1")
    api.upload_folder(repo_id="oldfresh/gradio", repo_type="space", folder_path=folder)
    # At once: the 1.x client waits out BUILDING itself, then the starting app holds its requests.
    assert api.get_space_runtime("oldfresh/gradio").stage == "BUILDING"
    assert predict_1x(python, platform, "oldfresh/gradio", "oldfresh", tmp_path, "one") == "g1 one"

    api.set_space_sleep_time("oldfresh/gradio", 1)
    # The sleeper looks every SPACEYARD_SLEEP_CHECK_INTERVAL (30 s on the shared platform).
    runtime = platform.wait_stage("oldfresh/gradio", {"STOPPED"}, user="oldfresh", timeout=120)
    assert runtime["spaceyard"]["detail"] == "sleeping", runtime
    api.set_space_sleep_time("oldfresh/gradio", 3600)  # once awake, it stays so for the call
    assert predict_1x(python, platform, "oldfresh/gradio", "oldfresh", tmp_path, "awake") == "g1 awake"
