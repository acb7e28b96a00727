"""Build history and rollback: every build listed with its commit; an earlier successful build served again
without a build and without a failed request; pinned until the next push; only the last K images kept."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator

import docker
import httpx
import pytest

from controlplane.core.config import Settings
from controlplane.launcher import docker_ok
from tests.conftest import RunningPlatform, launch
from tests.e2e.spaces import push, readme
from tests.lifecycle.helpers import containers, wait_until

pytestmark = pytest.mark.docker
KEPT = 2
APP = """import http.server, os
VERSION = open("/version").read().strip()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
"""
DOCKERFILE = """FROM spaceyard/base:py3.11
COPY version /version
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""
BROKEN = DOCKERFILE.replace("COPY version", "RUN exit 3\nCOPY version")


@pytest.fixture(scope="module")
def roll(tmp_path_factory) -> Iterator[RunningPlatform]:
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    running = launch(tmp_path_factory.mktemp("rollback"), extra_env={"SPACEYARD_BUILD_IMAGES_KEPT": str(KEPT)})
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("work")


def deploy(roll: RunningPlatform, work, name: str, version: str, dockerfile: str = DOCKERFILE) -> str:
    files = {
        "README.md": readme("docker", app_port="7860"),
        "Dockerfile": dockerfile,
        "app.py": APP,
        "version": version,
    }
    return push(roll, "alice", name, files, work, message=f"release {version}")


def builds(roll: RunningPlatform, space: str) -> list[dict]:
    with roll.api("alice") as api:
        resp = api.get(f"/api/spaces/{space}/builds")
    assert resp.status_code == 200, resp.text
    return resp.json()


def serves(roll: RunningPlatform, space: str) -> str:
    return httpx.get(f"{roll.url}/apps/{space}/", timeout=30).text


def wait_build(roll: RunningPlatform, space: str, sha: str) -> dict:
    def settled() -> bool:
        found = [b for b in builds(roll, space) if b["commit"] == sha]
        return bool(found) and found[0]["status"] in ("SUCCESS", "FAILED")

    wait_until(settled, timeout=300, what=f"the build of {sha[:7]}")
    return next(b for b in builds(roll, space) if b["commit"] == sha)


def images(roll: RunningPlatform, space: str) -> set[str]:
    instance = Settings(data_dir=roll.data_dir).instance
    found = docker.from_env().images.list(filters={"label": f"spaceyard.space={space}"})
    return {t for image in found for t in image.tags if t.startswith(f"spaceyard-{instance}/")}


def rollback(roll: RunningPlatform, space: str, body: dict | None = None, user: str = "alice") -> httpx.Response:
    with roll.api(user) as api:
        return api.post(f"/api/spaces/{space}/rollback", json=body or {})


@pytest.fixture(scope="module")
def history(roll: RunningPlatform, work) -> dict[str, dict]:
    """alice/roll: v1 and v2 built and served, then a push whose build fails (v2 still serves)."""
    with roll.api("alice") as api:
        assert (
            api.post(
                "/api/repos/create", json={"type": "space", "name": "roll", "organization": "alice", "sdk": "docker"}
            ).status_code
            == 200
        )
    out = {}
    for version, dockerfile in (("v1", DOCKERFILE), ("v2", DOCKERFILE), ("broken", BROKEN)):
        sha = deploy(roll, work, "roll", version, dockerfile)
        out[version] = wait_build(roll, "alice/roll", sha)
        if version != "broken":
            wait_until(lambda v=version: serves(roll, "alice/roll") == v, timeout=120, what=f"{version} to serve")
    return out


def test_history_lists_every_build_with_its_commit(roll, history):
    listed = builds(roll, "alice/roll")
    assert [b["id"] for b in listed] == sorted((b["id"] for b in history.values()), reverse=True)
    newest, v2, v1 = listed
    assert newest["status"] == "FAILED" and newest["error"] and newest["message"] == "release broken"
    for build, version in ((v2, "v2"), (v1, "v1")):
        assert build["status"] == "SUCCESS" and build["message"] == f"release {version}"
        assert build["author"] and len(build["commit"]) == 40 and build["image"].endswith(f":b{build['id']}")
        assert build["durationSeconds"] is not None and build["durationSeconds"] >= 0 and build["createdAt"]
    assert v2["running"] and not v1["running"]
    with roll.api("alice") as api:
        page = api.get("/api/spaces/alice/roll/builds", params={"limit": 2})
        assert len(page.json()) == 2 and 'rel="next"' in page.headers["link"]
        html = api.get("/spaces/alice/roll").text
    assert f'data-build="{v1["id"]}"' in html and "release v1" in html and "Roll back" in html


def test_bad_rollbacks_are_refused(roll, history, work):
    failed, running = history["broken"]["id"], history["v2"]["id"]
    assert rollback(roll, "alice/roll", {"build": failed}).status_code == 409
    assert rollback(roll, "alice/roll", {"build": running}).status_code == 409
    assert rollback(roll, "alice/roll", {"build": 999999}).status_code == 404
    assert rollback(roll, "alice/roll", {"build": "one"}).status_code == 400
    assert rollback(roll, "alice/roll", {"build": history["v1"]["id"]}, user="bob").status_code == 403
    # A read token is refused like on every write route: tests/security/test_web_roles.py.
    # Another Space's build: not one of this Space's.
    with roll.api("alice") as api:
        api.post("/api/repos/create", json={"type": "space", "name": "other", "organization": "alice", "sdk": "docker"})
    other = wait_build(roll, "alice/other", deploy(roll, work, "other", "o1"))
    assert rollback(roll, "alice/roll", {"build": other["id"]}).status_code == 404
    assert serves(roll, "alice/roll") == "v2"


def test_rollback_serves_v1_again_with_no_build_and_no_failed_request(roll, history):
    before = len(builds(roll, "alice/roll"))
    answers: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                resp = client.get(f"{roll.url}/apps/alice/roll/")
                answers.append(resp.text if resp.status_code == 200 else f"HTTP {resp.status_code}")

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        resp = rollback(roll, "alice/roll")  # no build named: the one before the build that serves
        assert resp.status_code == 200, resp.text
        assert resp.json()["build"] == history["v1"]["id"]
        wait_until(lambda: answers and answers[-1] == "v1", timeout=120, what="v1 to serve again")
    finally:
        stop.set()
        poller.join()
    assert set(answers) <= {"v1", "v2"}, [a for a in answers if a not in ("v1", "v2")][:5]
    assert answers.index("v1") > 0 and "v2" not in answers[answers.index("v1") :]
    assert len(builds(roll, "alice/roll")) == before  # nothing was built
    runtime = roll.wait_stage("alice/roll", {"RUNNING"}, user="alice")
    assert runtime["spaceyard"]["pinned"] is True and runtime["spaceyard"]["runningBuild"] == history["v1"]["id"]
    with roll.api("alice") as api:
        assert "pinned until the next push" in api.get("/spaces/alice/roll").text
        # A restart keeps the pinned build, not the newest successful one.
        assert api.post("/api/spaces/alice/roll/restart").status_code == 200
    wait_until(
        lambda: (
            roll.wait_stage("alice/roll", {"RUNNING"}, user="alice")["spaceyard"]["runningBuild"] == history["v1"]["id"]
            and serves(roll, "alice/roll") == "v1"
        ),
        timeout=120,
        what="the restart",
    )


def test_the_next_push_unpins_and_gc_keeps_the_last_k_images(roll, history, work):
    other_images = images(roll, "alice/other")
    assert other_images
    v3 = wait_build(roll, "alice/roll", deploy(roll, work, "roll", "v3"))
    wait_until(lambda: serves(roll, "alice/roll") == "v3", timeout=120, what="v3 to serve")
    runtime = roll.wait_stage("alice/roll", {"RUNNING"}, user="alice")
    assert runtime["spaceyard"]["pinned"] is False and runtime["spaceyard"]["runningBuild"] == v3["id"]
    # K = 2: v3 and v2 are the last two; v1's went only if no instance used it (its instance was still draining).
    assert {v3["image"], history["v2"]["image"]} <= images(roll, "alice/roll")
    # v1's instance drains, then goes; v4's deploy then finds no instance using v1's image.
    wait_until(lambda: len(containers("alice/roll", roll)) == 1, timeout=120, what="the old instance to be retired")
    v4 = wait_build(roll, "alice/roll", deploy(roll, work, "roll", "v4"))
    wait_until(lambda: serves(roll, "alice/roll") == "v4", timeout=120, what="v4 to serve")
    wait_until(lambda: len(images(roll, "alice/roll")) == KEPT, timeout=30, what=f"{KEPT} images")
    assert images(roll, "alice/roll") == {v3["image"], v4["image"]}
    assert images(roll, "alice/other") == other_images  # never another Space's image
    listed = {b["id"]: b for b in builds(roll, "alice/roll")}
    assert not listed[history["v1"]["id"]]["imageKept"] and listed[v3["id"]]["imageKept"]
    gone = rollback(roll, "alice/roll", {"build": history["v1"]["id"]})
    assert gone.status_code == 410 and "removed" in gone.json()["error"]


def test_the_dashboard_button_rolls_back(roll):
    listed = builds(roll, "alice/roll")
    running = next(b for b in listed if b["running"])
    earlier = next(b for b in listed if b["imageKept"] and not b["running"])
    headers = {"Authorization": f"Bearer {roll.user('alice')}"}
    with httpx.Client(base_url=roll.url, headers=headers, timeout=60) as browser:
        page = browser.get("/spaces/alice/roll").text
        assert f'name="build" value="{earlier["id"]}"' in page
        assert f'name="build" value="{running["id"]}"' not in page  # no button on the build that serves
        token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page).group(1)
        resp = browser.post("/spaces/alice/roll/builds/rollback", data={"csrf_token": token, "build": earlier["id"]})
        assert resp.status_code in (302, 303), resp.text
    version = earlier["message"].removeprefix("release ")
    wait_until(lambda: serves(roll, "alice/roll") == version, timeout=120, what="the rolled-back build")
