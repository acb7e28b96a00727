"""The `builder.build` task against real git, Redis and Docker (called in-process, not via a worker)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

pytestmark = pytest.mark.docker

GRADIO_README = "---\ntitle: Demo\nsdk: gradio\nmy_own_key: kept\n---\n# Demo\n"
GRADIO_APP = """\
import gradio as gr
import spaces  # Hugging Face's ZeroGPU helper: Spaceyard's base image provides a stand-in

@spaces.GPU
def greet(name):
    return "Hello " + name + "!"

@spaces.GPU(duration=10)
def shout(name):
    return greet(name).upper()

gr.Interface(fn=greet, inputs="text", outputs="text").launch()
"""


def log_lines(events: list[dict[str, str]]) -> list[str]:
    return [e["line"] for e in events if e["type"] == "log"]


def config_of(result: dict[str, str]) -> dict[str, Any]:
    return json.loads(result["config"])


def http_get(url: str, deadline: float) -> tuple[int, str]:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except (urllib.error.URLError, ConnectionError) as exc:
            if isinstance(exc, urllib.error.HTTPError):
                return exc.code, ""
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def run_container(docker_api: Any, image: str, port: int, env: dict[str, str]) -> tuple[str, int]:
    container = docker_api.create_container(
        image,
        ports=[port],
        environment=env,
        host_config=docker_api.create_host_config(port_bindings={port: ("127.0.0.1", None)}),
    )["Id"]
    docker_api.start(container)
    host_port = int(docker_api.port(container, port)[0]["HostPort"])
    return container, host_port


def step_after(lines: list[str], prefix: str) -> str:
    """The line the engine prints right after a Dockerfile step (" ---> Using cache" when reused)."""
    index = next(i for i, line in enumerate(lines) if prefix in line)
    return lines[index + 1]


def test_gradio_space_builds_runs_and_reuses_its_dependency_layer(
    run_build: Any, space_repo: Any, docker_api: Any
) -> None:
    # Unique per run: another test (or an earlier run) building the same requirements on this engine would
    # make this "cold" build a cache hit, too quick for a heartbeat and with no pip output.
    requirements = f"six==1.16.0\n# {uuid.uuid4().hex}\n"
    commit = space_repo.commit({"README.md": GRADIO_README, "app.py": GRADIO_APP, "requirements.txt": requirements})
    started = time.monotonic()
    result, events = run_build(space_repo, commit, build_id=7)
    cold = time.monotonic() - started
    assert result["status"] == "success", result["error_message"]
    assert result["error_kind"] == "" and float(result["seconds"]) > 0
    assert all(e["ts"] for e in events)
    assert any(e["type"] == "heartbeat" for e in events)
    config = config_of(result)
    assert config["sdk"] == "gradio" and config["app_port"] == 7860 and config["python_version"] == "3.11"
    assert config["card_data"]["my_own_key"] == "kept"
    lines = log_lines(events)
    assert any("Successfully installed six-1.16.0" in line for line in lines)

    labels = docker_api.inspect_image(result["image"])["Config"]["Labels"]
    assert labels["spaceyard.space"] == "alice/demo" and labels["spaceyard.build"] == "7"
    assert labels["spaceyard.commit"] == commit and labels["spaceyard.sdk"] == "gradio"

    root = "/apps/alice/demo"
    # SPACE_ID makes Gradio call spaces.gradio_auto_wrap on every handler, as on the Hub.
    env = {"SPACEYARD_ROOT_PATH": root, "SPACE_ID": "alice/demo", "SYSTEM": "spaces"}
    container, port = run_container(docker_api, result["image"], 7860, env)
    try:
        deadline = time.monotonic() + 60
        status, body = http_get(f"http://127.0.0.1:{port}{root}/", deadline)
        assert status == 200 and "gradio" in body.lower()
        status, body = http_get(f"http://127.0.0.1:{port}{root}/config", deadline)
        assert status == 200 and json.loads(body)["root"].endswith(root)
        status, body = http_get(f"http://127.0.0.1:{port}{root}/gradio_api/info", deadline)
        assert status == 200 and "named_endpoints" in body  # handlers went through gradio_auto_wrap
        # The checkout's .git (whose FETCH_HEAD names the repo URL) never reaches the image.
        exec_id = docker_api.exec_create(container, ["ls", "-a", "/home/user/app"])["Id"]
        listing = docker_api.exec_start(exec_id).decode()
        assert ".git" not in listing.split() and ".spaceyard.Dockerfile" not in listing
    finally:
        docker_api.remove_container(container, force=True)

    # A code-only change: the dependency layer comes from the cache.
    commit2 = space_repo.commit({"app.py": GRADIO_APP.replace("Hello ", "Hi ")})
    started = time.monotonic()
    result2, events2 = run_build(space_repo, commit2, build_id=8)
    warm = time.monotonic() - started
    assert result2["status"] == "success", result2["error_message"]
    lines2 = log_lines(events2)
    assert "Using cache" in step_after(lines2, "RUN pip install -r /tmp/spaceyard-deps/requirements.txt")
    assert not any("Successfully installed" in line for line in lines2)
    assert "Using cache" not in step_after(lines2, "COPY --chown=1000:1000 . /home/user/app")
    print(f"gradio app build: cold {cold:.1f} s, code-only {warm:.1f} s")
    assert warm < cold


def test_failing_pip_install_is_a_build_error_with_pips_message(run_build: Any, space_repo: Any) -> None:
    commit = space_repo.commit(
        {
            "README.md": GRADIO_README,
            "app.py": GRADIO_APP,
            "requirements.txt": "spaceyard-no-such-package-xyz==1.0\n",
        }
    )
    result, events = run_build(space_repo, commit)
    assert result["status"] == "failed" and result["error_kind"] == "BUILD_ERROR"
    assert result["error_message"].startswith("pip could not install requirements.txt: ERROR: ")
    assert "spaceyard-no-such-package-xyz" in result["error_message"]
    assert any(line.startswith("ERROR: Could not find a version") for line in log_lines(events))
    assert result["image"] == ""


def test_missing_app_file_is_no_app_file(run_build: Any, space_repo: Any) -> None:
    commit = space_repo.commit({"README.md": GRADIO_README, "main.py": "print(1)\n"})
    result, _ = run_build(space_repo, commit)
    assert (result["status"], result["error_kind"]) == ("failed", "NO_APP_FILE")
    assert "app.py not found" in result["error_message"]
    assert config_of(result)["card_data"]["title"] == "Demo"  # still shown to the user


def test_invalid_config_is_a_config_error_naming_the_key(run_build: Any, space_repo: Any) -> None:
    commit = space_repo.commit({"README.md": "---\nsdk: flask\n---\n", "app.py": ""})
    result, _ = run_build(space_repo, commit)
    assert result["error_kind"] == "CONFIG_ERROR"
    assert "sdk: must be one of gradio, streamlit, docker, static (got 'flask')" in result["error_message"]


def test_malformed_yaml_is_a_config_error_with_its_line(run_build: Any, space_repo: Any) -> None:
    commit = space_repo.commit({"README.md": "---\nsdk: gradio\ntitle: [oops\n---\n", "app.py": ""})
    result, _ = run_build(space_repo, commit)
    assert result["error_kind"] == "CONFIG_ERROR"
    assert "not valid YAML" in result["error_message"] and "line " in result["error_message"]


def test_unavailable_python_version_is_a_config_error(run_build: Any, space_repo: Any) -> None:
    commit = space_repo.commit({"README.md": '---\nsdk: gradio\npython_version: "3.9"\n---\n', "app.py": ""})
    result, _ = run_build(space_repo, commit)
    assert result["error_kind"] == "CONFIG_ERROR"
    assert "python_version: 3.9 is not available" in result["error_message"]


def test_sdk_from_create_time_and_static_site_under_root_path(run_build: Any, space_repo: Any, docker_api: Any) -> None:
    commit = space_repo.commit({"index.html": "<h1>static space</h1>", "README.md": "# no front matter\n"})
    result, _ = run_build(space_repo, commit, sdk="static")
    assert result["status"] == "success", result["error_message"]
    assert config_of(result)["sdk"] == "static"
    container, port = run_container(docker_api, result["image"], 7860, {"SPACEYARD_ROOT_PATH": "/apps/a/b"})
    try:
        deadline = time.monotonic() + 30
        assert http_get(f"http://127.0.0.1:{port}/apps/a/b/", deadline) == (200, "<h1>static space</h1>")
        assert http_get(f"http://127.0.0.1:{port}/", deadline)[0] == 200
        assert http_get(f"http://127.0.0.1:{port}/apps/a/b/nope.html", deadline)[0] == 404
    finally:
        docker_api.remove_container(container, force=True)


def test_unknown_commit_is_a_build_error(run_build: Any, space_repo: Any) -> None:
    space_repo.commit({"README.md": GRADIO_README})
    result, _ = run_build(space_repo, "0" * 40)
    assert result["error_kind"] == "BUILD_ERROR"
    assert result["error_message"].startswith("could not fetch commit 0000000")


def test_docker_sdk_gets_variables_never_secrets(run_build: Any, space_repo: Any, docker_api: Any) -> None:
    dockerfile = (
        'FROM spaceyard/base:py3.11\nARG GREETING\nRUN echo "greeting=$GREETING" > /greeting\n'
        'CMD ["python3", "-m", "http.server", "8080"]\n'
    )
    commit = space_repo.commit({"README.md": "---\nsdk: docker\napp_port: 8080\n---\n", "Dockerfile": dockerfile})
    result, events = run_build(
        space_repo, commit, build_args={"GREETING": "hello"}, build_secrets={"HF_TOKEN": "hf_supersecret123"}
    )
    assert result["status"] == "success", result["error_message"]
    config = config_of(result)
    assert config["app_port"] == 8080
    history = json.dumps(docker_api.history(result["image"]))
    assert "GREETING=hello" in history and "hf_supersecret123" not in history
    assert not any("hf_supersecret123" in json.dumps(e) for e in events)


def test_docker_sdk_secret_mounts_are_refused(run_build: Any, space_repo: Any) -> None:
    dockerfile = "FROM spaceyard/base:py3.11\nRUN --mount=type=secret,id=HF_TOKEN cat /run/secrets/HF_TOKEN\n"
    commit = space_repo.commit({"README.md": "---\nsdk: docker\n---\n", "Dockerfile": dockerfile})
    result, _ = run_build(space_repo, commit, build_secrets={"HF_TOKEN": "hf_x"})
    assert result["error_kind"] == "BUILD_ERROR" and "RUN --mount=type=secret" in result["error_message"]


def test_streamlit_space_serves_under_its_root_path(run_build: Any, space_repo: Any, docker_api: Any) -> None:
    commit = space_repo.commit(
        {"README.md": "---\nsdk: streamlit\n---\n", "app.py": "import streamlit as st\nst.write('hi')\n"}
    )
    result, _ = run_build(space_repo, commit)
    assert result["status"] == "success", result["error_message"]
    assert config_of(result)["app_port"] == 8501
    root = "/apps/alice/demo"
    container, port = run_container(docker_api, result["image"], 8501, {"SPACEYARD_ROOT_PATH": root})
    try:
        deadline = time.monotonic() + 60
        assert http_get(f"http://127.0.0.1:{port}{root}/_stcore/health", deadline) == (200, "ok")
        assert http_get(f"http://127.0.0.1:{port}{root}/", deadline)[0] == 200
    finally:
        docker_api.remove_container(container, force=True)


def test_docker_sdk_context_is_assembled_by_the_builder(run_build: Any, space_repo: Any, docker_api: Any) -> None:
    """.dockerignore applies, the Dockerfile may live in a folder, and nothing the builder adds reaches the image."""
    dockerfile = "FROM spaceyard/base:py3.11\nCOPY . /app\nRUN ls -a /app /app/docker > /listing\n"
    commit = space_repo.commit(
        {
            "README.md": "---\nsdk: docker\napp_file: docker/Dockerfile\n---\n",
            "docker/Dockerfile": dockerfile,
            ".dockerignore": "private\n*.log\n",
            "private/key.txt": "k",
            "debug.log": "l",
            "app.py": "print(1)\n",
        }
    )
    result, _ = run_build(space_repo, commit)
    assert result["status"] == "success", result["error_message"]
    container = docker_api.create_container(result["image"], command=["cat", "/listing"])["Id"]
    try:
        docker_api.start(container)
        docker_api.wait(container, timeout=30)
        listing = docker_api.logs(container).decode().split()
    finally:
        docker_api.remove_container(container, force=True)
    assert "app.py" in listing and "Dockerfile" in listing
    for absent in ("private", "debug.log", ".dockerignore", ".spaceyard.Dockerfile", ".git"):
        assert absent not in listing, listing
