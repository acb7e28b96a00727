"""Nothing in the data dir (repos, SQLite database and WAL, secret key, Redis dump, logs, git hooks) is
readable by another user of the host.

Before: the data dir was 755 and the database, Redis dump, logs and repos 644/755.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from tests.e2e.spaces import create, push, readme


def exposed(root: Path) -> list[str]:
    """Entries under root (and root itself) that group or other may read, write or enter."""
    entries = [root, *root.rglob("*")]
    return [f"{oct(stat.S_IMODE(p.lstat().st_mode))} {p}" for p in entries
            if not p.is_symlink() and p.lstat().st_mode & 0o077]


@pytest.mark.docker
def test_running_platform_keeps_its_files_private(platform, tmp_path):
    create(platform, "filer", "site", sdk="static")
    push(platform, "filer", "site", {"README.md": readme("static"), "index.html": "<p>hi</p>\n"}, tmp_path)
    assert platform.wait_stage("filer/site", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    redis.Redis.from_url(platform.env["SPACEYARD_REDIS_URL"]).save()  # the dump Redis writes every minute
    names = {p.name for p in platform.data_dir.rglob("*")}
    assert {"spaceyard.db", "secret.key", "dump.rdb", "controlplane.log", "site.git", "pre-receive"} <= names
    assert exposed(platform.data_dir) == []


def test_an_older_world_readable_database_is_closed_on_start(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    (data / "spaceyard.db").touch(mode=0o644)  # an empty file is an empty SQLite database
    os.chmod(data, 0o755)
    env = {**os.environ, "SPACEYARD_DATA_DIR": str(data)}
    subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", "old"], env=env, check=True,
                   capture_output=True)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "spaceyard.db").stat().st_mode) == 0o600
    assert [p for p in data.iterdir() if p.name.startswith("spaceyard.db") and p.stat().st_mode & 0o077] == []


def test_launcher_closes_an_older_data_dir(tmp_path):
    from controlplane.core.files import make_tree_private

    data = tmp_path / "data"
    (data / "repos" / "alice" / "app.git").mkdir(parents=True, mode=0o755)
    for name in ("secret.key", "dump.rdb", "repos/alice/app.git/config"):
        (data / name).write_text("x")
        (data / name).chmod(0o644)
    for folder in (data, data / "repos", data / "repos" / "alice", data / "repos" / "alice" / "app.git"):
        folder.chmod(0o755)
    make_tree_private(data)
    assert exposed(data) == []


@pytest.mark.docker
def test_serve_on_its_own_keeps_its_files_private(platform, tmp_path):
    """`spaceyard serve` without `up` (a container, a unit file) under a permissive umask: the repos it makes are
    private all the same."""
    import httpx

    from controlplane.launcher import free_port, wait_for

    data, port = tmp_path / "data", free_port()
    env = {**os.environ, "SPACEYARD_DATA_DIR": str(data), "SPACEYARD_PORT": str(port), "SPACEYARD_PROXY": "none",
           "SPACEYARD_REDIS_URL": platform.env["SPACEYARD_REDIS_URL"]}
    token = subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", "solo"], env=env, check=True,
                           capture_output=True, text=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "controlplane.cli", "serve"], env=env, umask=0o022,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{base}/api/health", timeout=2).status_code == 200, 60, "serve")
        resp = httpx.post(f"{base}/api/repos/create", headers={"Authorization": f"Bearer {token}"},
                          json={"type": "space", "name": "alone", "sdk": "static"}, timeout=30)
        assert resp.status_code == 200, resp.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert (data / "repos" / "solo" / "alone.git").is_dir()
    assert exposed(data) == []
