"""The `spaceyard` CLI against a running platform: create, logs (build and run), hardware, usage."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest

from tests.e2e.spaces import push, readme

pytestmark = pytest.mark.docker


def cli(platform, user: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **platform.env, "SPACEYARD_TOKEN": platform.user(user)}
    return subprocess.run([sys.executable, "-m", "controlplane.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_cli_creates_a_static_space_and_reads_its_logs(platform, tmp_path):
    out = cli(platform, "hank", "create", "hank/site", "--sdk", "static")
    assert out.returncode == 0, out.stderr
    assert f"git clone {platform.url}/spaces/hank/site" in out.stdout
    html = "<!doctype html><title>Hank</title><h1>Hello from a static Space</h1>"
    push(platform, "hank", "site", {"index.html": html, "README.md": readme("static")}, tmp_path)
    assert platform.wait_stage("hank/site", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    page = httpx.get(f"{platform.url}/apps/hank/site/", timeout=30)
    assert page.status_code == 200 and "Hello from a static Space" in page.text

    build = cli(platform, "hank", "logs", "hank/site", "--build")
    assert build.returncode == 0 and ("index.html" in build.stdout or "COPY" in build.stdout), build.stdout[-2000:]
    dupe = cli(platform, "hank", "create", "hank/site", "--sdk", "static")
    assert dupe.returncode != 0 and "already created" in dupe.stderr
    bad = cli(platform, "hank", "hardware", "hank/site", "h200-imaginary")
    assert bad.returncode != 0 and "Unknown hardware" in bad.stderr
    usage = cli(platform, "hank", "usage")
    assert usage.returncode == 0 and "total" in usage.stdout
