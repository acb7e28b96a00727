"""Secrets and variables reach the app as env vars; secrets never show in the API, logs, or image layers."""

from __future__ import annotations

import hashlib
import subprocess

import docker
import pytest
from huggingface_hub import HfApi

from tests.lifecycle.conftest import SECRET
from tests.lifecycle.helpers import app_json, container, containers, sse_lines, wait_until

pytestmark = pytest.mark.docker


def test_secret_and_variables_reach_the_app(life, env_space):
    body = app_json(life, env_space)
    assert body["secret_sha256"] == hashlib.sha256(SECRET.encode()).hexdigest()
    assert body["variable"] == "one"
    assert body["greeting"] == "built-with-arg"  # the variable was a build arg of the Docker build


def test_secret_is_write_only_and_never_logged(life, env_space):
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    secrets = api.get_space_secrets(env_space)
    assert set(secrets) == {"MY_SECRET"} and secrets["MY_SECRET"].description == "a test secret"
    with life.api("alice") as http:
        raw = http.get(f"/api/spaces/{env_space}/secrets").text
    assert SECRET not in raw and "value" not in raw
    assert {k: v.value for k, v in api.get_space_variables(env_space).items()} == {
        "MY_VAR": "one", "GREETING": "built-with-arg"}

    build_log = sse_lines(life, f"/api/spaces/{env_space}/logs/build?follow=false")
    assert build_log and not any(SECRET in line for line in build_log)
    run_log = sse_lines(life, f"/api/spaces/{env_space}/logs/run?follow=false")
    assert "MY_SECRET is ****" in run_log, run_log
    assert not any(SECRET in line for line in run_log)
    assert SECRET not in (life.data_dir / "spaceyard.db").read_bytes().decode("latin-1")  # encrypted at rest


def test_secret_is_in_no_image_layer(life, env_space):
    image = container(env_space, life).image
    history = docker.from_env().api.history(image.id)
    assert not any(SECRET in (layer.get("CreatedBy") or "") for layer in history)
    saved = subprocess.run(["docker", "save", image.id], capture_output=True, check=True).stdout
    assert SECRET.encode() not in saved
    assert b"built-with-arg" in saved  # the grep works: the build arg's value is in a layer, as it should be


def test_changing_a_variable_restarts_the_space(life, env_space):
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    before = container(env_space, life).id
    api.add_space_variable(env_space, "MY_VAR", "two")
    wait_until(lambda: app_json(life, env_space)["variable"] == "two", what="the restart with MY_VAR=two")
    wait_until(lambda: len(ids := [c.id for c in containers(env_space, life)]) == 1 and ids != [before],
               what="the old container to go")
    api.delete_space_secret(env_space, "MY_SECRET")
    wait_until(lambda: app_json(life, env_space)["secret_sha256"] is None, what="the restart without the secret")
    api.add_space_secret(env_space, "MY_SECRET", SECRET)
    wait_until(lambda: app_json(life, env_space)["secret_sha256"] is not None, what="the secret back")
