"""The Hub's own client against a private Gradio Space (issue 12, items 1 and 2): gradio_client sends the token
as x-hf-authorization; the owner gets in, a stranger and an anonymous client do not, and the app (which reports
the headers of each call) never sees the token."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RunningPlatform
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker

APP = '''import json

import gradio as gr


def greet(name, request: gr.Request):
    return json.dumps({"greeting": "Hello " + name + "!", "headers": dict(request.headers)})


demo = gr.Interface(fn=greet, inputs="text", outputs="text", api_name="greet")
demo.launch()
'''
SPACE = "gwen/private-gradio"


@pytest.fixture(scope="module")
def private_gradio(platform: RunningPlatform, tmp_path_factory) -> str:
    owner, name = SPACE.split("/")
    create(platform, owner, name, sdk="gradio", private=True)
    push(platform, owner, name, {"app.py": APP, "README.md": readme("gradio")}, tmp_path_factory.mktemp("gr"))
    runtime = platform.wait_stage(SPACE, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, owner)
    assert runtime["stage"] == "RUNNING", runtime
    return SPACE


def call(platform: RunningPlatform, token: str | None, tmp_path: Path) -> subprocess.CompletedProcess:
    """Client("owner/name", token=...) in a fresh interpreter: huggingface_hub reads HF_ENDPOINT on import."""
    script = (
        "import sys\n"
        "from gradio_client import Client\n"
        f"client = Client({SPACE!r}, token={token!r}, verbose=False, analytics_enabled=False)\n"
        "print(client.predict('World', api_name='/greet'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_ENDPOINT": platform.url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)


def test_owner_gets_in_and_the_app_never_sees_the_token(platform, private_gradio, tmp_path) -> None:
    token = platform.user("gwen")
    out = call(platform, token, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    answer = json.loads(out.stdout.strip().splitlines()[-1])
    assert answer["greeting"] == "Hello World!"
    assert token not in json.dumps(answer)
    assert "x-hf-authorization" not in answer["headers"] and "authorization" not in answer["headers"]


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
def test_others_are_refused(platform, private_gradio, tmp_path, who) -> None:
    token = platform.user("stan") if who == "stranger" else None
    out = call(platform, token, tmp_path)
    assert out.returncode != 0
    assert "Hello World!" not in out.stdout
