"""Deliveries of one build: a duplicate does nothing, a lapsed claim is taken over, a Redis restart fails nothing.

Real Redis, git and Docker; the task is called in-process (no worker), as a second delivery would run it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis

from builder.settings import BuilderSettings
from builder.tasks import BuildRequest, run_build

pytestmark = pytest.mark.docker

NO_APP_README = "---\ntitle: Demo\nsdk: gradio\n---\n# no app.py here\n"
SLOW_DOCKERFILE = 'FROM spaceyard/base:py3.11\nRUN sleep 12\nCMD ["python3", "-m", "http.server", "7860"]\n'


def request(repo: Any, commit: str, **kwargs: Any) -> BuildRequest:
    build_id = kwargs.pop("build_id", 1)
    return BuildRequest(
        build_id=build_id,
        space="alice/demo",
        repo_url=repo.url,
        commit=commit,
        image=f"spaceyard-test/{uuid.uuid4().hex[:8]}:b{build_id}",
        events=f"spaceyard:build:test-{uuid.uuid4().hex}",
        **kwargs,
    )


def kinds(client: redis.Redis, key: str) -> list[str]:
    return [fields["type"] for _id, fields in client.xrange(key)]


@pytest.fixture
def client(builder_env: None, redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


def test_a_delivery_of_a_build_another_worker_holds_does_nothing(client, space_repo) -> None:
    req = request(space_repo, space_repo.commit({"README.md": NO_APP_README}))
    client.set(f"{req.events}:claim", "another-worker", px=60_000)
    assert run_build(req, BuilderSettings(), "w2") is None
    assert kinds(client, req.events) == []


def test_a_delivery_after_the_result_does_nothing(client, space_repo) -> None:
    req = request(space_repo, space_repo.commit({"README.md": NO_APP_README}))
    first = run_build(req, BuilderSettings(), "w1")
    assert first is not None and first["error_kind"] == "NO_APP_FILE"
    assert client.get(f"{req.events}:claim") == "done"
    assert run_build(req, BuilderSettings(), "w2") is None  # the broker redelivered it, hours later
    events = kinds(client, req.events)
    assert events.count("started") == 1 and events.count("result") == 1


def test_a_lapsed_claim_is_taken_over(client, space_repo) -> None:
    """A worker killed mid-build stops renewing its claim: once the lease lapses, the next delivery builds."""
    req = request(space_repo, space_repo.commit({"README.md": NO_APP_README}))
    client.set(f"{req.events}:claim", "a-dead-worker", px=300)
    time.sleep(0.5)
    result = run_build(req, BuilderSettings(), "w2")
    assert result is not None and result["error_kind"] == "NO_APP_FILE"


@pytest.fixture
def restartable_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, builder_env: None) -> Iterator[Any]:
    """A redis-server of its own on a TCP port, restarted empty (no persistence) on demand."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from controlplane.launcher import free_port

    port = free_port()
    args = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(tmp_path),
    ]
    procs = [subprocess.Popen(args, stdout=subprocess.DEVNULL)]
    url = f"redis://127.0.0.1:{port}/0"

    def wait_up() -> None:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis.from_url(url).ping()
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)

    def restart() -> None:
        procs[-1].kill()  # a crash: everything in memory is gone
        procs[-1].wait()
        time.sleep(1)
        procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
        wait_up()

    wait_up()
    monkeypatch.setenv("SPACEYARD_REDIS_URL", url)
    yield url, restart
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_redis_crash_mid_build_does_not_fail_the_build(restartable_redis, space_repo, docker_api) -> None:
    url, restart = restartable_redis
    req = request(
        space_repo,
        space_repo.commit({"README.md": "---\nsdk: docker\n---\n", "Dockerfile": SLOW_DOCKERFILE}),
        sdk="docker",
    )
    client = redis.Redis.from_url(url, decode_responses=True)
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(run_build(req, BuilderSettings(), "w1")))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not any("sleep 12" in f.get("line", "") for _id, f in client.xrange(req.events)):
            assert time.monotonic() < deadline, "the build never reached its slow step"
            time.sleep(0.2)
        restart()
        worker.join(120)
        assert outcome and outcome[0] is not None, "the build raised or was dropped"
        assert outcome[0]["status"] == "success", outcome[0]["error_message"]
        # The stream lost its start with the crash; what came after it is there, the result last.
        after = kinds(client, req.events)
        assert after[-1] == "result" and "heartbeat" in after
        assert client.get(f"{req.events}:claim") == "done"
    finally:
        worker.join(120)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_api.remove_image(req.image, force=True)


def test_a_worker_whose_claim_was_taken_over_stops_without_a_result(client, space_repo, docker_api) -> None:
    """Frozen past its lease, a worker finds another delivery building: it stops, and never writes a result."""
    dockerfile = SLOW_DOCKERFILE.replace("sleep 12", f"sleep 4 && echo {uuid.uuid4().hex}")
    req = request(
        space_repo, space_repo.commit({"README.md": "---\nsdk: docker\n---\n", "Dockerfile": dockerfile}), sdk="docker"
    )
    outcome: list[Any] = []
    worker = threading.Thread(target=lambda: outcome.append(run_build(req, BuilderSettings(), "w1")))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while not any("sleep 4" in f.get("line", "") for _id, f in client.xrange(req.events)):
            assert time.monotonic() < deadline, "the build never reached its slow step"
            time.sleep(0.1)
        client.set(f"{req.events}:claim", "the-other-delivery", px=60_000)
        worker.join(60)
        assert outcome == [None]
        assert "result" not in kinds(client, req.events)
        assert client.get(f"{req.events}:claim") == "the-other-delivery"
    finally:
        worker.join(60)
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_api.remove_image(req.image, force=True)
