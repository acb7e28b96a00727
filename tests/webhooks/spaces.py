"""Linked Spaces for the tests: a static Space following a repository on the tests' forge."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import RunningPlatform
from tests.e2e.spaces import create
from tests.webhooks.forge import Forge, Upstream, static_files


def link(platform: RunningPlatform, owner: str, name: str, up: Upstream, **extra) -> dict:
    """Create the Space and link it to `up` (its first sync builds the branch's head); the API's answer."""
    create(platform, owner, name, sdk="static")
    with platform.api(owner) as api:
        resp = api.put(f"/api/spaces/{owner}/{name}/link", json={"url": up.url, "branch": "main", **extra})
    assert resp.status_code == 200, resp.text
    return resp.json()


def linked_serving(
    platform: RunningPlatform, forge: Forge, owner: str, name: str, text: str
) -> tuple[str, Upstream, str]:
    """A static Space linked to a new repository on the forge whose page shows `text`, built and serving:
    (its full name, the repository, the webhook secret)."""
    up = forge.create(name, static_files(text))
    secret = link(platform, owner, name, up)["webhookSecret"]
    space = f"{owner}/{name}"
    wait_serving(platform, space, text)
    return space, up, secret


def wait_serving(platform: RunningPlatform, space: str, text: str, timeout: float = 240) -> None:
    """Until the app's page shows `text` (what a visitor sees), with the Space RUNNING."""
    deadline = time.monotonic() + timeout
    body = ""
    while time.monotonic() < deadline:
        resp = httpx.get(f"{platform.url}/apps/{space}/", timeout=10)
        body = resp.text
        if resp.status_code == 200 and text in body:
            platform.wait_stage(space, {"RUNNING"}, timeout=60)
            return
        time.sleep(0.5)
    raise AssertionError(f"{space} never served {text!r}; last page: {body[:300]}\n{platform.log_tail()}")


def deliveries(platform: RunningPlatform, owner: str, space: str) -> list[dict]:
    with platform.api(owner) as api:
        resp = api.get(f"/api/spaces/{space}/webhooks/deliveries")
    assert resp.status_code == 200, resp.text
    return resp.json()


def wait_delivery(platform: RunningPlatform, owner: str, space: str, delivery_id: str, timeout: float = 60) -> dict:
    """The delivery once its fetch is done (result no longer "accepted")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = [d for d in deliveries(platform, owner, space) if d["deliveryId"] == delivery_id]
        if rows and rows[0]["result"] != "accepted":
            return rows[0]
        time.sleep(0.3)
    raise AssertionError(f"delivery {delivery_id} of {space} never settled")


def build_log(platform: RunningPlatform, owner: str, space: str) -> str:
    """The latest build's log as `spaceyard logs --build` prints it."""
    with platform.api(owner) as api:
        resp = api.get(f"/api/spaces/{space}/logs/build", params={"follow": "false"})
    assert resp.status_code == 200, resp.text
    return "".join(json.loads(line[6:])["data"] for line in resp.text.splitlines() if line.startswith("data: "))
