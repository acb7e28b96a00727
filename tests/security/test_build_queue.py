"""Builds are handed to the builders owner by owner: one owner's burst of pushes cannot starve another's push.

Before: every push sent its task to the broker at once, and the builders took them first come, first served:
an owner pushing many Spaces kept everyone else's build waiting behind all of them.
"""

from __future__ import annotations

import re
import sqlite3
import time

import pytest
import redis

from tests.conftest import git, launch
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker

SITE = {"README.md": readme("static"), "index.html": "<p>queued</p>\n"}


@pytest.fixture(scope="module")
def one_builder(tmp_path_factory):
    # A short heartbeat timeout: it is also how long a handed-out build may take to start (builders beat every 5 s).
    env = {"SPACEYARD_BUILDS_IN_FLIGHT": "1", "SPACEYARD_BUILD_HEARTBEAT_TIMEOUT": "12"}
    running = launch(tmp_path_factory.mktemp("queue"), extra_env=env)
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def started(platform) -> dict[str, str]:
    """Space -> when its latest build started, read from the platform's database (read-only)."""
    db = sqlite3.connect(f"file:{platform.data_dir / 'spaceyard.db'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT spaces.owner || '/' || spaces.name, builds.started_at FROM builds "
                          "JOIN spaces ON spaces.id = builds.space_id ORDER BY builds.id").fetchall()
    finally:
        db.close()
    return {space: at for space, at in rows if at}


def test_a_burst_of_one_owner_does_not_starve_another(one_builder, tmp_path):
    spaces = [("hog", "a1"), ("hog", "a2"), ("hog", "a3"), ("meek", "b1")]
    for owner, name in spaces:
        create(one_builder, owner, name, sdk="static")
        token = one_builder.user(owner)
        url = one_builder.url.replace("http://", f"http://{owner}:{token}@") + f"/spaces/{owner}/{name}"
        git("clone", "-q", url, str(tmp_path / f"{owner}-{name}"))  # cloned ahead: the pushes follow quickly
    for owner, name in spaces:
        push(one_builder, owner, name, SITE, tmp_path)

    # The last in line says where it stands while it waits.
    with one_builder.api("hog") as api:
        detail = api.get("/api/spaces/hog/a3/runtime").json()["spaceyard"]["detail"]
    assert detail and re.fullmatch(r"waiting for a builder \(\d+ ahead\)", detail), detail

    for owner, name in spaces:
        runtime = one_builder.wait_stage(f"{owner}/{name}", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
        assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")
    times = started(one_builder)
    assert times["meek/b1"] < times["hog/a3"], times
    assert times["hog/a1"] < times["hog/a2"] < times["hog/a3"], times


def test_builds_waiting_in_line_survive_a_control_plane_restart(one_builder, tmp_path):
    platform = one_builder.platform
    platform.stop_process("builder")  # no builder: the first build waits at the broker, the second in our line
    try:
        for name in ("first", "second"):
            create(one_builder, "patient", name, sdk="static")
            push(one_builder, "patient", name, SITE, tmp_path)
        with one_builder.api("patient") as api:
            waiting = api.get("/api/spaces/patient/second/runtime").json()["spaceyard"]["detail"]
        assert waiting == "waiting for a builder (0 ahead)"
        platform.stop_process("controlplane")
        platform.start_controlplane()
    finally:
        platform.start_builder()
    for name in ("first", "second"):
        runtime = one_builder.wait_stage(f"patient/{name}", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, timeout=120)
        assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")


def test_a_handed_out_build_lost_before_it_starts_does_not_hold_the_line(one_builder, tmp_path):
    platform = one_builder.platform
    broker = redis.Redis.from_url(one_builder.env["SPACEYARD_REDIS_URL"])
    platform.stop_process("builder")
    try:
        create(one_builder, "lossy", "lost", sdk="static")
        push(one_builder, "lossy", "lost", SITE, tmp_path)
        deadline = time.monotonic() + 15
        while broker.llen("builds") == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert broker.delete("builds") == 1  # the task goes down with the worker that had taken it
    finally:
        platform.start_builder()
    create(one_builder, "lossy", "next", sdk="static")
    push(one_builder, "lossy", "next", SITE, tmp_path)
    runtime = one_builder.wait_stage("lossy/next", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, timeout=90)
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")
