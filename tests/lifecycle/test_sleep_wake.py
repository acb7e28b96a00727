"""Sleep after the sleep time, wake on the next request: once however many requests arrive."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from huggingface_hub import HfApi

from tests.e2e.spaces import push, readme
from tests.lifecycle.conftest import DOCKERFILE
from tests.lifecycle.helpers import JSON, app_json, container, containers, wait_asleep, wait_until

pytestmark = pytest.mark.docker


def test_space_sleeps_then_a_browser_gets_the_waking_page(life, env_space):
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    assert api.set_space_sleep_time(env_space, 3).sleep_time == 3
    wait_until(lambda: len(containers(env_space, life)) == 1, what="older instances to be retired")
    kept = container(env_space, life).id
    runtime = wait_asleep(life, env_space)
    assert api.get_space_runtime(env_space).stage == "STOPPED" and runtime["gcTimeout"] == 3
    box = container(env_space, life)
    assert box.id == kept and box.status == "exited"  # stopped, kept for a fast wake

    page = httpx.get(f"{life.url}/apps/{env_space}/", headers={"Accept": "text/html"}, timeout=30)
    assert page.status_code == 503 and "waking up" in page.text
    assert '<meta http-equiv=refresh content=2>' in page.text and page.headers["retry-after"] == "2"
    life.wait_stage(env_space, {"RUNNING"}, user="alice", timeout=60)
    assert container(env_space, life).id == kept


def test_concurrent_requests_wake_it_once(life, env_space):
    before = app_json(life, env_space)["starts"]
    wait_asleep(life, env_space)

    def call(_: int) -> httpx.Response:
        return httpx.get(f"{life.url}/apps/{env_space}/", headers=JSON, timeout=90)

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(call, range(10)))
    assert [a.status_code for a in answers] == [200] * 10, [a.text for a in answers]
    assert {a.json()["starts"] for a in answers} == {before + 1}  # one container start for ten requests
    assert life.wait_stage(env_space, {"RUNNING"}, user="alice")["spaceyard"]["detail"] is None


def test_websocket_upgrade_waits_like_an_api_client(life, env_space):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    before = app_json(life, env_space)["starts"]
    wait_asleep(life, env_space)
    url = life.url.replace("http://", "ws://") + f"/apps/{env_space}/"
    # The app speaks no WebSocket: its plain answer to the upgrade proves the upgrade reached it awake.
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=90)
    assert refused.value.response.status_code == 200, refused.value.response.body
    assert app_json(life, env_space)["starts"] == before + 1
    HfApi(endpoint=life.url, token=life.user("alice")).set_space_sleep_time(env_space, -1)
    life.wait_stage(env_space, {"RUNNING"}, user="alice")


# Listens only after 15 s: every request meanwhile is held by the control plane (APP_STARTING).
SLOW_APP = """import http.server, os, time
time.sleep(15)
class Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # a WebSocket client reads only HTTP/1.1 answers


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""


def test_a_websocket_opened_while_the_app_starts_is_held_until_it_answers(life, tmp_path):
    """Held as an API request is (SPACEYARD_WAKE_TIMEOUT, 60 s here), past the 10 s after which the websockets
    library's legacy server (not the one uvicorn picks now) would close a handshake with no answer at all."""
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    api = HfApi(endpoint=life.url, token=life.user("alice"))
    api.create_repo("alice/slowws", repo_type="space", space_sdk="docker")
    files = {"README.md": readme("docker", app_port="7860"), "Dockerfile": DOCKERFILE, "app.py": SLOW_APP}
    push(life, "alice", "slowws", files, tmp_path)
    life.wait_stage("alice/slowws", {"APP_STARTING"}, user="alice", timeout=120)
    started = time.monotonic()
    with pytest.raises(InvalidStatus) as refused:  # the app speaks no WebSocket: its plain answer proves it was reached
        connect(life.url.replace("http://", "ws://") + "/apps/alice/slowws/", open_timeout=90)
    held = time.monotonic() - started
    assert refused.value.response.status_code == 200, refused.value.response.body  # the app's own directory page
    assert held > 10, f"answered after {held:.1f} s: the hold did not outlast the old 10 s handshake limit"
