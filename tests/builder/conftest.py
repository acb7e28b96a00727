"""Real things for builder tests: a private redis-server, the Docker engine, bare git repos on disk."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import redis

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    sock = tmp_path_factory.mktemp("redis") / "redis.sock"
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--unixsocket", str(sock), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    url = f"unix://{sock}"
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis.from_url(url).ping()
            break
        except (redis.ConnectionError, FileNotFoundError):
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("redis-server did not start")
            time.sleep(0.05)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="session")
def docker_api() -> Any:
    try:
        client = docker.from_env(version="auto")
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.skip(f"Docker engine not reachable ({exc}); the builder's integration tests need one")
    return client.api


@pytest.fixture
def builder_env(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> None:
    """Builder settings for tests: our Redis, fast heartbeats, the host CA bundle (TLS proxy here)."""
    monkeypatch.setenv("SPACEYARD_REDIS_URL", redis_url)
    monkeypatch.setenv("SPACEYARD_HEARTBEAT_INTERVAL", "0.5")
    if HOST_CA_BUNDLE.is_file() and "SPACEYARD_BUILD_CA_BUNDLE" not in os.environ:
        monkeypatch.setenv("SPACEYARD_BUILD_CA_BUNDLE", str(HOST_CA_BUNDLE))


class SpaceRepo:
    """A bare git repo plus a work tree to commit files into; fetched by the builder over file://."""

    def __init__(self, root: Path) -> None:
        self.bare = root / "space.git"
        self.work = root / "work"
        self._git("init", "-q", "--bare", str(self.bare))
        # The control plane serves repos the same way: the builder fetches exactly one commit by id.
        self._git("-C", str(self.bare), "config", "uploadpack.allowAnySHA1InWant", "true")
        self._git("init", "-q", str(self.work))

    @staticmethod
    def _git(*args: str) -> str:
        env = {
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        return subprocess.run(["git", *args], check=True, capture_output=True, text=True, env=env).stdout

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, files: dict[str, str | None]) -> str:
        """Write (or delete, value None) files, commit, push; returns the commit id."""
        for name, content in files.items():
            path = self.work / name
            if content is None:
                path.unlink()
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        self._git("-C", str(self.work), "add", "-A")
        self._git("-C", str(self.work), "commit", "-q", "--allow-empty", "-m", "change")
        self._git("-C", str(self.work), "push", "-q", str(self.bare), "HEAD:refs/heads/main")
        return self._git("-C", str(self.work), "rev-parse", "HEAD").strip()


@pytest.fixture
def space_repo(tmp_path: Path) -> SpaceRepo:
    return SpaceRepo(tmp_path)


@pytest.fixture
def run_build(builder_env: None, redis_url: str, docker_api: Any) -> Iterator[Any]:
    """Call the `builder.build` task in-process (no worker); returns (result, events). Removes its images."""
    from builder.tasks import build

    images: list[str] = []

    def run(repo: SpaceRepo, commit: str, **kwargs: Any) -> tuple[dict[str, str], list[dict[str, str]]]:
        build_id = kwargs.pop("build_id", 1)
        image = kwargs.pop("image", f"spaceyard-test/{uuid.uuid4().hex[:8]}:b{build_id}")
        images.append(image)
        key = f"spaceyard:build:test-{uuid.uuid4().hex}"
        result = build(
            build_id=build_id,
            space="alice/demo",
            repo_url=repo.url,
            commit=commit,
            image=image,
            events=key,
            **kwargs,
        )
        client = redis.Redis.from_url(redis_url, decode_responses=True)
        events = [fields for _id, fields in client.xrange(key)]
        assert [e for e in events if e["type"] == "result"] == [result]
        assert events[0]["type"] == "started" and events[-1] == result
        return result, events

    yield run
    for image in images:
        with contextlib.suppress(docker.errors.ImageNotFound):  # failed builds made none
            docker_api.remove_image(image, force=True)
