"""Pause (traffic does not wake it), factory rebuild (no layer cache), duplicate, and a wrong secret key."""

from __future__ import annotations

import sqlite3
import time

import httpx
import pytest
from huggingface_hub import HfApi

from controlplane.core.security import SecretBox
from tests.lifecycle.helpers import app_json, sse_lines

pytestmark = pytest.mark.docker


def test_paused_space_is_not_woken_by_traffic(life, env_space):
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    api.pause_space(env_space)
    for accept in ("text/html", "application/json"):
        resp = httpx.get(f"{life.url}/apps/{env_space}/", headers={"Accept": accept}, timeout=30)
        assert resp.status_code == 503 and "paused by its owner" in resp.text
        assert "retry-after" not in resp.headers and "refresh" not in resp.text
    time.sleep(2)
    assert api.get_space_runtime(env_space).stage == "PAUSED"
    api.restart_space(env_space)
    life.wait_stage(env_space, {"RUNNING"}, user="alice", timeout=60)
    assert app_json(life, env_space)["variable"]


def test_factory_rebuild_uses_no_cache(life, env_space):
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    api.restart_space(env_space, factory_reboot=True)
    runtime = life.wait_stage(env_space, {"RUNNING_BUILDING", "BUILDING"}, user="alice", timeout=30)
    assert runtime["stage"] in ("RUNNING_BUILDING", "BUILDING")
    runtime = life.wait_stage(env_space, {"RUNNING", "BUILD_ERROR"}, user="alice")
    assert runtime["stage"] == "RUNNING", runtime
    log = sse_lines(life, f"/api/spaces/{env_space}/logs/build?follow=false")
    assert any("RUN echo" in line for line in log), log[-20:]
    assert not any("Using cache" in line for line in log), [line for line in log if "cache" in line.lower()]
    assert app_json(life, env_space)["greeting"] == "built-with-arg"


def test_duplicate_copies_history_and_variables_not_secrets(life, env_space):
    alice = HfApi(endpoint=life.url, token=life.user("alice"))
    bob = HfApi(endpoint=life.url, token=life.user("bob"))
    url = bob.duplicate_repo(env_space, to_id="bob/copy", repo_type="space")
    assert url == f"{life.url}/spaces/bob/copy"
    runtime = life.wait_stage("bob/copy", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, user="bob")
    assert runtime["stage"] == "RUNNING", runtime
    assert bob.space_info("bob/copy").sha == alice.space_info(env_space).sha  # the same commits
    body = app_json(life, "bob/copy")
    assert body["secret_sha256"] is None and body["greeting"] == "built-with-arg"
    assert set(bob.get_space_variables("bob/copy")) == {"MY_VAR", "GREETING"}
    assert bob.get_space_secrets("bob/copy") == {}


def test_secret_under_another_key_is_a_runtime_error(life, env_space):
    """A secret written with another SPACEYARD_SECRET_KEY cannot be decrypted: RUNTIME_ERROR saying so."""
    bob = HfApi(endpoint=life.url, token=life.user("bob"))
    bob.add_space_secret("bob/copy", "OTHER", "written-under-another-key")
    life.wait_stage("bob/copy", {"RUNNING"}, user="bob")
    db = sqlite3.connect(life.data_dir / "spaceyard.db")
    with db:
        db.execute("UPDATE space_secrets SET value_encrypted = ? WHERE key = 'OTHER'",
                   (SecretBox("another-key").encrypt("x"),))
    db.close()
    bob.pause_space("bob/copy")
    bob.restart_space("bob/copy")
    runtime = life.wait_stage("bob/copy", {"RUNTIME_ERROR", "RUNNING"}, user="bob", timeout=60)
    assert runtime["stage"] == "RUNTIME_ERROR" and "SPACEYARD_SECRET_KEY" in runtime["errorMessage"], runtime
