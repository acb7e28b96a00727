"""Push to deploy on one host, as a user does it: create, git push, watch the build, call the app."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from gradio_client import Client
from huggingface_hub import HfApi

from tests.e2e.spaces import GRADIO_APP, STREAMLIT_APP, create, push, readme

pytestmark = pytest.mark.docker


def test_gradio_space_runs_and_answers_through_both_urls(platform, tmp_path):
    api = HfApi(endpoint=platform.url, token=platform.user("alice"))
    api.create_repo("alice/hello", repo_type="space", space_sdk="gradio")
    push(platform, "alice", "hello", {"app.py": GRADIO_APP, "README.md": readme("gradio", emoji="👋")}, tmp_path)
    runtime = platform.wait_stage("alice/hello", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR"})
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")

    info = api.get_space_runtime("alice/hello")
    assert info.stage == "RUNNING" and info.hardware == "cpu-basic" and info.requested_hardware == "cpu-basic"
    assert api.space_info("alice/hello").card_data.emoji == "👋"

    path_url = f"{platform.url}/apps/alice/hello/"
    assert Client(path_url, verbose=False).predict("World", api_name="/greet") == "Hello World!"
    # Host-based URL: *.localhost does not resolve through glibc here, so send the Host header explicitly.
    host = f"alice-hello.localhost:{platform.url.rsplit(':', 1)[1]}"
    page = httpx.get(f"{platform.url}/", headers={"Host": host}, timeout=30)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    client = Client(f"{platform.url}/", headers={"Host": host}, verbose=False)
    assert client.predict("Host", api_name="/greet") == "Hello Host!"

    # The build log streams over SSE and holds the builder's lines.
    with httpx.stream("GET", f"{platform.url}/api/spaces/alice/hello/logs/build", timeout=30) as resp:
        lines = [json.loads(line[6:])["data"] for line in resp.iter_lines() if line.startswith("data: ")]
    assert any("Step" in line or "COPY" in line for line in lines), lines[-20:]
    # The runtime log streams the app's output.
    with httpx.stream("GET", f"{platform.url}/api/spaces/alice/hello/logs/run?follow=false", timeout=30) as resp:
        run_lines = [json.loads(line[6:])["data"] for line in resp.iter_lines() if line.startswith("data: ")]
    assert run_lines, "the runtime log is empty"
    assert not [line for line in run_lines if "Error" in line], run_lines


def test_streamlit_space_websocket_through_router(platform, tmp_path):
    from websockets.sync.client import connect

    create(platform, "alice", "charts", sdk="streamlit")
    push(platform, "alice", "charts", {"app.py": STREAMLIT_APP, "README.md": readme("streamlit")}, tmp_path)
    runtime = platform.wait_stage("alice/charts", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert runtime["stage"] == "RUNNING", runtime
    page = httpx.get(f"{platform.url}/apps/alice/charts/", timeout=30)
    assert page.status_code == 200 and "streamlit" in page.text.lower()
    health = httpx.get(f"{platform.url}/apps/alice/charts/_stcore/health", timeout=30)
    assert health.status_code == 200 and health.text == "ok"
    ws_url = platform.url.replace("http://", "ws://") + "/apps/alice/charts/_stcore/stream"
    with connect(ws_url, subprotocols=["streamlit"], open_timeout=30) as ws:
        assert ws.subprotocol == "streamlit"
        ws.ping().wait(10)


def test_code_only_push_redeploys_without_a_failed_request(platform, tmp_path):
    create(platform, "alice", "swap")
    push(platform, "alice", "swap", {"app.py": GRADIO_APP.replace("Hello ", "Hi "), "README.md": readme("gradio")},
         tmp_path)
    assert platform.wait_stage("alice/swap", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"

    errors: list[str] = []
    answers: set[str] = set()
    stop = threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as client:
            while not stop.is_set():
                try:
                    resp = client.get(f"{platform.url}/apps/alice/swap/config")
                    if resp.status_code != 200:
                        errors.append(f"{resp.status_code}: {resp.text[:200]}")
                    else:
                        answers.add(resp.json().get("version", ""))
                except httpx.HTTPError as e:
                    errors.append(repr(e))
                time.sleep(0.05)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        push(platform, "alice", "swap", {"app.py": GRADIO_APP.replace("Hello ", "Howdy ")}, tmp_path)
        platform.wait_stage("alice/swap", {"RUNNING_BUILDING", "RUNNING_APP_STARTING"}, timeout=60)
        platform.wait_stage("alice/swap", {"RUNNING"})
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if Client(f"{platform.url}/apps/alice/swap/", verbose=False).predict("x", api_name="/greet") == "Howdy x!":
                break
            time.sleep(0.5)
        time.sleep(3)  # past the old instance's drain time
    finally:
        stop.set()
        poller.join()
    assert not errors, errors[:5]
    assert Client(f"{platform.url}/apps/alice/swap/", verbose=False).predict("x", api_name="/greet") == "Howdy x!"


def test_private_space_is_invisible_to_others(platform, tmp_path):
    create(platform, "carol", "secret", private=True)
    push(platform, "carol", "secret", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    assert platform.wait_stage("carol/secret", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"},
                               user="carol")["stage"] == "RUNNING"
    platform.user("mallory")
    with platform.api("mallory") as api:
        for path in ("/api/spaces/carol/secret", "/api/spaces/carol/secret/runtime"):
            resp = api.get(path)
            assert resp.status_code == 404 and resp.headers["X-Error-Code"] == "RepoNotFound"
        assert api.get("/apps/carol/secret/").status_code == 404
    with platform.api() as anonymous:
        assert anonymous.get("/apps/carol/secret/").status_code == 404
        assert anonymous.get("/api/spaces/carol/secret").status_code == 404
    with platform.api("carol") as owner:
        assert owner.get("/apps/carol/secret/").status_code == 200
        assert owner.get("/api/spaces/carol/secret").json()["private"] is True
    from tests.conftest import git

    token = platform.user("mallory")
    clone = git("clone", "-q", platform.url.replace("http://", f"http://m:{token}@") + "/spaces/carol/secret",
                str(tmp_path / "stolen"), check=False)
    assert clone.returncode != 0 and "not found" in clone.stderr.lower()


def test_push_to_someone_elses_space_is_refused(platform, tmp_path):
    create(platform, "dave", "mine")
    with pytest.raises(AssertionError, match="don't have write access to dave/mine"):
        push(platform, "dave", "mine", {"app.py": GRADIO_APP}, tmp_path, user="eve")


def space_tags(platform, space: str) -> list[str]:
    """This platform's image tags of `space` (the builder labels each image with its Space's name)."""
    import docker

    from controlplane.core.config import Settings

    prefix = f"spaceyard-{Settings(data_dir=platform.data_dir).instance}/"
    images = docker.from_env().images.list(filters={"label": f"spaceyard.space={space}"})
    return [t for i in images for t in i.tags if t.startswith(prefix)]


def test_delete_removes_container_image_and_repo(platform, tmp_path):
    import docker

    create(platform, "alice", "doomed")
    push(platform, "alice", "doomed", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    assert platform.wait_stage("alice/doomed", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    client = docker.from_env()
    assert client.containers.list(filters={"label": "spaceyard.space=alice/doomed"})
    HfApi(endpoint=platform.url, token=platform.user("alice")).delete_repo("alice/doomed", repo_type="space")
    assert not client.containers.list(all=True, filters={"label": "spaceyard.space=alice/doomed"})
    assert not space_tags(platform, "alice/doomed")
    assert not (platform.data_dir / "repos" / "alice" / "doomed.git").exists()
    with platform.api("alice") as api:
        assert api.get("/api/spaces/alice/doomed").status_code == 404


def test_deleting_a_space_leaves_an_identical_space_intact(platform, tmp_path):
    """Identical content builds one image id for both Spaces; deleting one must not take the other's image."""
    files = {"app.py": GRADIO_APP.replace("Hello ", "Twin "), "README.md": readme("gradio")}
    for name in ("twin-a", "twin-b"):
        create(platform, "alice", name)
        push(platform, "alice", name, files, tmp_path)
        assert platform.wait_stage(f"alice/{name}", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    with platform.api("alice") as api:
        assert api.request("DELETE", "/api/repos/delete", json={"type": "space", "name": "twin-a"}).status_code == 200
        assert api.post("/api/spaces/alice/twin-b/restart").status_code == 200
    assert platform.wait_stage("alice/twin-b", {"RUNNING", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    assert space_tags(platform, "alice/twin-b") and not space_tags(platform, "alice/twin-a")
