"""Names that differ only in case are one name (as on the Hub), and no two Spaces share an image repository.

Before: `Alice/secretapp` could be created next to `alice/secretapp`; both built into the lowercased image
repository `.../alice/secretapp`, so deleting one untagged the other's images and its restart failed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from controlplane.core.config import Settings
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker


def cli(platform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", *args], env={**os.environ, **platform.env},
                          capture_output=True, text=True)


def test_case_variants_of_taken_names_are_refused(platform):
    create(platform, "namer", "secretapp", sdk="static")
    admin = cli(platform, "user", "add", "names-root", "--admin")
    assert admin.returncode == 0, admin.stderr
    platform.tokens["names-root"] = admin.stdout.strip()

    # The owner itself, and an admin who may create Spaces under any owner: both get the Hub's 409.
    for user, owner, name in (("namer", "namer", "SecretApp"), ("names-root", "Namer", "secretapp")):
        with platform.api(user) as api:
            resp = api.post("/api/repos/create", json={"type": "space", "name": name, "organization": owner,
                                                       "sdk": "static"})
        assert resp.status_code == 409, resp.text
        assert "namer/secretapp exists" in resp.json()["error"] and "regardless of case" in resp.json()["error"]
    with platform.api("names-root") as api:
        assert api.get("/api/spaces/Namer/secretapp").status_code == 404

    out = cli(platform, "user", "add", "NAMER")
    assert out.returncode != 0
    assert "user 'namer' exists" in out.stderr and "unique regardless of case" in out.stderr, out.stderr


def test_spaces_never_share_images_and_a_delete_leaves_the_other_running(platform, tmp_path):
    instance = Settings(data_dir=platform.data_dir).instance
    files = {"README.md": readme("static"), "index.html": "<h1>twin</h1>\n"}
    ids = {}
    for name in ("keeper", "goner"):
        with platform.api("imager") as api:
            resp = api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "static"})
        assert resp.status_code == 200, resp.text
        ids[name] = resp.json()["id"]  # "space-<id>"
        push(platform, "imager", name, files, tmp_path)
    images = {}
    for name in ("keeper", "goner"):
        assert platform.wait_stage(f"imager/{name}", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
        [container] = platform.containers(f"imager/{name}")
        images[name] = container.attrs["Config"]["Image"]
        # Keyed by the never-reused Space id; the labels still name the Space.
        assert images[name].startswith(f"spaceyard-{instance}/{ids[name]}:b"), images[name]
        assert container.image.labels["spaceyard.space"] == f"imager/{name}"

    [before] = platform.containers("imager/keeper")
    with platform.api("imager") as api:
        assert api.request("DELETE", "/api/repos/delete", json={"type": "space", "name": "goner"}).status_code == 200
        # A restart starts a fresh container from the kept image.
        assert api.post("/api/spaces/imager/keeper/restart").status_code == 200
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runtime = platform.wait_stage("imager/keeper", {"RUNNING", "RUNTIME_ERROR"})
        fresh = [c for c in platform.containers("imager/keeper") if c.id != before.id]
        if runtime["stage"] != "RUNNING" or fresh:
            break
        time.sleep(0.5)
    assert runtime["stage"] == "RUNNING" and fresh, (runtime.get("errorMessage"), platform.log_tail())
    assert fresh[0].attrs["Config"]["Image"] == images["keeper"]
