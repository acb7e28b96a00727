"""Shared fixtures: a real Spaceyard platform (Redis, builder worker, control plane on Docker) per test session.

Tests talk to it the way users do: HTTP, `git`, `huggingface_hub`, `gradio_client`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from controlplane.launcher import Platform, docker_ok, free_port

ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items) -> None:
    have_docker = docker_ok()
    for item in items:
        if "docker" in item.keywords and not have_docker:
            item.add_marker(pytest.mark.skip(reason="no Docker engine reachable (./dev.sh test starts one)"))


@dataclass
class RunningPlatform:
    url: str
    data_dir: Path
    env: dict[str, str]
    platform: Platform
    tokens: dict[str, str] = field(default_factory=dict)

    def containers(self, space: str) -> list:
        """This platform's running containers of `space` (other installations share the engine)."""
        import docker

        from controlplane.core.config import Settings

        labels = [f"spaceyard.space={space}", f"spaceyard.instance={Settings(data_dir=self.data_dir).instance}"]
        return docker.from_env().containers.list(filters={"label": labels})

    def user(self, name: str) -> str:
        """A token for user `name`, creating the user on first use."""
        if name not in self.tokens:
            out = subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", name],
                                 env={**os.environ, **self.env}, capture_output=True, text=True, check=True)
            self.tokens[name] = out.stdout.strip()
        return self.tokens[name]

    def api(self, user: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.user(user)}"} if user else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def wait_stage(self, space: str, stages: set[str], user: str | None = None, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        last: dict = {}
        with self.api(user) as api:
            while time.monotonic() < deadline:
                last = api.get(f"/api/spaces/{space}/runtime").json()
                if last.get("stage") in stages:
                    return last
                time.sleep(0.5)
        raise AssertionError(f"{space} never reached {stages}; last runtime: {last}\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        out = []
        for name in ("controlplane", "builder"):
            path = self.data_dir / "logs" / f"{name}.log"
            if path.exists():
                out.append(f"--- {name}.log\n" + "\n".join(path.read_text(errors="replace").splitlines()[-n:]))
        return "\n".join(out)


def start_postgres() -> tuple[str, subprocess.Popen, Path]:
    """A private PostgreSQL cluster (Debian's binaries) on a free port; returns its URL, process and folder."""
    bindir = Path("/usr/lib/postgresql")
    versions = sorted(bindir.glob("*/bin/initdb"))
    if not versions:
        pytest.skip("PostgreSQL is not installed (scripts/setup.sh --test installs it)")
    bin_ = versions[-1].parent
    # Directly under /tmp: pytest's own folders are private to root, and the server runs as another user.
    tmp = Path(tempfile.mkdtemp(prefix="spaceyard-pg-"))
    data = tmp / "pgdata"
    data.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        shutil.chown(tmp, "postgres")
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, str(bin_ / "initdb"), "-D", str(data), "-U", "spaceyard", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([*run_as, str(bin_ / "postgres"), "-D", str(data), "-p", str(port), "-k", str(tmp),
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"postgresql+psycopg://spaceyard@127.0.0.1:{port}/postgres"
    import sqlalchemy

    deadline = time.monotonic() + 30
    while True:
        try:
            sqlalchemy.create_engine(url).connect().close()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
    return url, proc, tmp


def launch(tmp: Path, database_url: str | None = None, extra_env: dict[str, str] | None = None) -> RunningPlatform:
    data_dir = tmp / "data"
    port = free_port()
    env = {"SPACEYARD_DATA_DIR": str(data_dir), "SPACEYARD_PORT": str(port), "SPACEYARD_HOST": "127.0.0.1",
           "SPACEYARD_BUILD_HEARTBEAT_TIMEOUT": "30", "SPACEYARD_RECONCILE_INTERVAL": "5",
           # The shared platform holds 30 and more tiny Spaces by the end of a run (tests leave them running); at
           # the default 2 GiB each a 24 GiB host takes ten (memory is never over-committed: docs/tiers.md). A
           # Gradio hello world stays well under 512 MiB.
           "SPACEYARD_LOCAL_SPACE_MEMORY_GB": "0.5", **(extra_env or {})}
    if database_url:
        env["SPACEYARD_DATABASE_URL"] = database_url
    platform = Platform(env, data_dir)
    platform.start()
    env = {k: v for k, v in platform.env.items() if k.startswith("SPACEYARD_")}
    return RunningPlatform(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env, platform=platform)


@pytest.fixture(scope="session")
def platform(tmp_path_factory) -> Iterator[RunningPlatform]:
    """The whole platform on SQLite, shared by the session's end-to-end tests."""
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    running = launch(tmp_path_factory.mktemp("platform"))
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


@pytest.fixture(scope="session")
def pg_platform(tmp_path_factory) -> Iterator[RunningPlatform]:
    """The whole platform on PostgreSQL."""
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    url, proc, pg_dir = start_postgres()
    running = launch(tmp_path_factory.mktemp("pgplatform"), url)
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()
    proc.terminate()
    proc.wait(20)
    shutil.rmtree(pg_dir, ignore_errors=True)


def git(*args: str, cwd: Path | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "t@example.com"}
    proc = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc
