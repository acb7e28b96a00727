"""Pushing hostile Space repos (symlinks included) and reading what their builds left, for the builder's tests."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx

from tests.conftest import RunningPlatform, git
from tests.e2e.spaces import create

FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE", "APP_STARTING"}
DOCKER_README = "---\ntitle: T\nsdk: docker\napp_port: 7860\n---\n"
SERVE = 'CMD ["python3", "-m", "http.server", "7860"]\n'


def push_tree(platform: RunningPlatform, owner: str, name: str, files: dict[str, str], workdir: Path,
              links: dict[str, str] | None = None, private: bool = False) -> str:
    """Create the Space, commit `files` and symlinks (`links`: path -> target, committed as links) and push."""
    create(platform, owner, name, sdk="docker", private=private)
    token = platform.user(owner)
    repo = workdir / f"{owner}-{name}"
    url = platform.url.replace("http://", f"http://{owner}:{token}@") + f"/spaces/{owner}/{name}"
    git("clone", "-q", url, str(repo))
    for path, content in files.items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(content)
    for path, target in (links or {}).items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).unlink(missing_ok=True)  # the Space's initial README
        os.symlink(target, repo / path)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "hostile", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()


def settle(platform: RunningPlatform, space: str, user: str) -> dict:
    """The runtime once the build is over (success or not)."""
    return platform.wait_stage(space, FINAL, user=user)


def build_log(platform: RunningPlatform, space: str, user: str) -> str:
    token = platform.user(user)
    url = f"{platform.url}/api/spaces/{space}/logs/build?follow=false"
    with httpx.stream("GET", url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as resp:
        return "\n".join(json.loads(line[6:])["data"] for line in resp.iter_lines() if line.startswith("data: "))
