"""Small helpers for lifecycle tests: the app's JSON, the Space's container, waiting for sleep."""

from __future__ import annotations

import json
import time

import docker
import httpx

from tests.conftest import RunningPlatform

JSON = {"Accept": "application/json"}


def app_json(life: RunningPlatform, space: str) -> dict:
    resp = httpx.get(f"{life.url}/apps/{space}/", headers=JSON, timeout=90)
    assert resp.status_code == 200, resp.text
    return resp.json()


def containers(space: str, life: RunningPlatform) -> list[docker.models.containers.Container]:
    from controlplane.core.config import Settings

    instance = Settings(data_dir=life.data_dir).instance
    return docker.from_env().containers.list(
        all=True, filters={"label": [f"spaceyard.instance={instance}", f"spaceyard.space={space}"]}
    )


def container(space: str, life: RunningPlatform) -> docker.models.containers.Container:
    found = containers(space, life)
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def wait_asleep(life: RunningPlatform, space: str, timeout: float = 30) -> dict:
    runtime = life.wait_stage(space, {"STOPPED"}, user="alice", timeout=timeout)
    assert runtime["spaceyard"]["detail"] == "sleeping", runtime
    # The sleeper commits STOPPED before it stops the container: until then a request may still reach the app.
    wait_until(lambda: all(c.status == "exited" for c in containers(space, life)), what="the container to stop")
    return runtime


def sse_lines(life: RunningPlatform, path: str, user: str = "alice") -> list[str]:
    headers = {"Authorization": f"Bearer {life.user(user)}"}
    with httpx.stream("GET", f"{life.url}{path}", headers=headers, timeout=60) as resp:
        assert resp.status_code == 200, resp.read()
        # Each event is one log line with its newline, as the Hub sends them.
        return [json.loads(line[6:])["data"].removesuffix("\n") for line in resp.iter_lines()
                if line.startswith("data: ")]


def wait_until(check, timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.3)
