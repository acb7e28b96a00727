"""Sleep after the sleep time, wake on the next request: once however many requests arrive."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from huggingface_hub import HfApi

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

    wait_asleep(life, env_space)
    url = life.url.replace("http://", "ws://") + f"/apps/{env_space}/"
    # The app speaks no WebSocket: its refusal (501 from http.server) proves the upgrade reached it awake.
    with pytest.raises(InvalidStatus) as refused:
        connect(url, open_timeout=90)
    assert refused.value.response.status_code != 503
    HfApi(endpoint=life.url, token=life.user("alice")).set_space_sleep_time(env_space, -1)
    life.wait_stage(env_space, {"RUNNING"}, user="alice")
