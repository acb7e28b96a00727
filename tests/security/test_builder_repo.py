"""The builder never follows a symlink of a pushed repo to the host, for reading or writing.

Before: a `.spaceyard.Dockerfile` symlink made the builder overwrite its host target, a `.dockerignore`
symlink made it append to one (pointed at the platform's database: destroyed), and a README.md symlink
to a host file was read and published as the Space's cardData to anonymous visitors.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from builder.repofiles import UnsafeFile, is_regular_file, read_text
from builder.spaceconfig import ConfigError, parse
from tests.security.builder_spaces import DOCKER_README, SERVE, build_log, push_tree, settle

STATIC_README = "---\ntitle: T\nsdk: static\n---\n"
HOST_SECRET = "host-only-secret-9f3e"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    (host / "secret.txt").write_text(f"---\nsdk: static\ntitle: {HOST_SECRET}\n---\n")
    (host / "index.html").write_text("<p>host</p>")
    root = tmp_path / "repo"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "app.py").write_text("print(1)\n")
    (root / "README.md").symlink_to(host / "secret.txt")
    (root / "linkdir").symlink_to(host)
    (root / "relative.txt").symlink_to("../host/secret.txt")
    (root / "inside.txt").symlink_to("sub/app.py")  # even a link inside the checkout: never followed
    os.mkfifo(root / "fifo")
    return root


@pytest.mark.parametrize(
    "name", ["README.md", "relative.txt", "inside.txt", "linkdir/secret.txt", "linkdir/index.html"]
)
def test_links_and_linked_folders_are_unsafe(checkout: Path, name: str) -> None:
    with pytest.raises(UnsafeFile, match="symbolic link"):
        read_text(checkout, name, 1024)
    with pytest.raises(UnsafeFile, match="symbolic link"):
        is_regular_file(checkout, name)


@pytest.mark.parametrize(
    "name", ["../host/secret.txt", "/etc/passwd", "sub/../sub/app.py", "./sub/app.py", "sub//app.py"]
)
def test_paths_outside_or_odd_are_refused(checkout: Path, name: str) -> None:
    with pytest.raises(UnsafeFile, match="relative path"):
        read_text(checkout, name, 1024)


def test_regular_files_missing_files_and_oddities(checkout: Path) -> None:
    assert read_text(checkout, "sub/app.py", 1024) == "print(1)\n"
    assert is_regular_file(checkout, "sub/app.py")
    assert read_text(checkout, "missing.txt", 1024) is None
    assert read_text(checkout, "sub/app.py/x", 1024) is None  # a file where a folder should be
    assert not is_regular_file(checkout, "sub")
    assert read_text(checkout, "fifo", 1024) is None  # opened without blocking, not read
    with pytest.raises(UnsafeFile, match="larger than"):
        read_text(checkout, "sub/app.py", 4)
    assert read_text(checkout, "sub/app.py", 4, truncate=True) == "prin"


@pytest.mark.parametrize("app_file", ["../secret.txt", "/etc/passwd", "a/../../b"])
def test_app_file_cannot_leave_the_checkout(app_file: str) -> None:
    with pytest.raises(ConfigError, match="app_file"):
        parse({"sdk": "docker", "app_file": app_file})


def test_dockerignore_patterns_cannot_stall_the_builder(tmp_path: Path) -> None:
    """docker-py's regex matching took minutes for this pattern and one long name; the builder's is linear."""
    (tmp_path / ("a" * 250)).write_text("x")
    (tmp_path / "d" / ("a/" * 60)).mkdir(parents=True)
    ignore = "*a" * 12 + "*b\n" + "**a" * 12 + "**b\n"
    code = f"from builder.dockerignore import included; print(len(included({str(tmp_path)!r}, {ignore!r})))"
    # In a child process with a deadline, so a regression fails instead of hanging the test run.
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 60


# --- end to end: hostile pushes to a real platform -------------------------------------------------------------


@pytest.mark.docker
def test_symlinks_never_reach_host_files(platform, tmp_path) -> None:
    host = tmp_path / "host"
    host.mkdir()
    canary = {name: host / name for name in ("dockerfile-target", "ignore-target", "readme-target", "reqs-target")}
    for path in canary.values():
        path.write_text(f"---\nsdk: static\ntitle: {HOST_SECRET}\n---\n")
    (host / "index.html").write_text(f"<p>{HOST_SECRET}</p>")
    before = {name: path.read_text() for name, path in canary.items()}
    work = tmp_path / "work"
    static = {"README.md": STATIC_README, "index.html": "<p>hi</p>"}
    cases = {
        # Build succeeds: a repo file with the generated Dockerfile's name is not the builder's business.
        "gendockerfile": (static, {".spaceyard.Dockerfile": str(canary["dockerfile-target"])}),
        "ignore": (static, {".dockerignore": str(canary["ignore-target"])}),
        "readme": ({"index.html": "<p>hi</p>"}, {"README.md": str(canary["readme-target"])}),
        "reqs": (static, {"requirements.txt": str(canary["reqs-target"])}),
        "appdir": ({"README.md": "---\nsdk: static\napp_file: web/index.html\n---\n"}, {"web": str(host)}),
        "dockerfile": ({"README.md": DOCKER_README}, {"Dockerfile": str(canary["dockerfile-target"])}),
    }
    for name, (files, links) in cases.items():
        push_tree(platform, "linker", name, files, work, links=links)
    expected = {".dockerignore": "ignore", "README.md": "readme", "requirements.txt": "reqs", "web": "appdir",
                "Dockerfile": "dockerfile"}
    for link, name in expected.items():
        runtime = settle(platform, f"linker/{name}", "linker")
        assert runtime["stage"] == "CONFIG_ERROR", (name, runtime)
        assert runtime["errorMessage"].startswith(f"{link}: is a symbolic link"), runtime
        assert HOST_SECRET not in runtime["errorMessage"] + build_log(platform, f"linker/{name}", "linker")
    runtime = settle(platform, "linker/gendockerfile", "linker")
    assert runtime["stage"] in {"APP_STARTING", "RUNNING"}, runtime
    assert {name: path.read_text() for name, path in canary.items()} == before  # nothing written through links
    with httpx.Client(base_url=platform.url) as anonymous:
        for name in cases:
            assert HOST_SECRET not in anonymous.get(f"/api/spaces/linker/{name}").text


@pytest.mark.docker
def test_other_links_stay_links_resolved_inside_the_build(platform, tmp_path) -> None:
    """Symlinks the builder does not read go to the engine as links, resolved inside the build, not on the host."""
    secret = tmp_path / "host-secret.txt"
    secret.write_text(HOST_SECRET)
    dockerfile = "FROM spaceyard/base:py3.11\nCOPY . /app\nRUN cat /app/link 2>&1 || echo LINK-DANGLES\n" + SERVE
    push_tree(platform, "linker", "dangling", {"README.md": DOCKER_README, "Dockerfile": dockerfile}, tmp_path,
              links={"link": str(secret)})
    runtime = settle(platform, "linker/dangling", "linker")
    assert runtime["stage"] in {"APP_STARTING", "RUNNING"}, runtime
    log = build_log(platform, "linker/dangling", "linker")
    assert "LINK-DANGLES" in log and HOST_SECRET not in log
