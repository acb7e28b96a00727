"""Redeploys keep sessions: gradio_client calls (2.x, and 1.x in its own venv) running through a code-only push
never fail, on the proxy's direct path (public Space) and the Python router's (private Space), and reach the new
version once it serves; a Streamlit WebSocket opened before the push keeps answering from the old instance until
it closes, or until SPACEYARD_DRAIN_TIMEOUT, and the old instance is stopped then."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import RunningPlatform, docker_ok, launch
from tests.e2e.spaces import create, push, readme
from tests.hub.old_clients import gradio_client_1x

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

DRAIN_TIMEOUT = 20

GRADIO_APP = """import time

import gradio as gr

VERSION = "v1"


def slow(text):
    time.sleep(1)
    return VERSION


demo = gr.Interface(fn=slow, inputs="text", outputs="text", api_name="slow", concurrency_limit=None)
demo.launch()
"""

# One caller: one Client, two overlapping calls at a time until the stop file appears (the second joins while the
# first's stream is open: a redeploy between the two must not send it to the new instance, which would answer on a
# stream the client does not read); a line per call (time, result or error). The pause after each pair: a submit
# made before the client's reader has seen its session's stream end is cancelled by gradio_client itself (it
# closes the stream the new event was registered on), which a machine loaded by builds makes likely.
CALLER = """
import os, sys, time
from gradio_client import Client
url, token, stop, out = sys.argv[1:5]
headers = {"Authorization": f"Bearer {token}"} if token else None
client = Client(url, headers=headers, verbose=False)
with open(out, "a") as f:
    while not os.path.exists(stop):
        try:
            first = client.submit("x", api_name="/slow")
            time.sleep(0.8)
            second = client.submit("x", api_name="/slow")
            for job in (first, second):
                f.write(f"{time.time()} ok {job.result(timeout=60)}\\n")
            time.sleep(1)
        except Exception as e:
            f.write(f"{time.time()} err {e!r}\\n".replace("\\n", " ") + "\\n")
        f.flush()
"""

STREAMLIT_APP = """import streamlit as st

st.write("version-one")
"""


@pytest.fixture(scope="module")
def platform(tmp_path_factory) -> Iterator[RunningPlatform]:
    """Its own platform: a short drain bound, so that a WebSocket left open is seen cut."""
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    running = launch(tmp_path_factory.mktemp("sessions"), extra_env={"SPACEYARD_DRAIN_TIMEOUT": str(DRAIN_TIMEOUT)})
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def deploy(platform: RunningPlatform, space: str, files: dict[str, str], tmp_path: Path) -> None:
    owner, name = space.split("/")
    push(platform, owner, name, files, tmp_path)
    platform.wait_stage(space, {"RUNNING_BUILDING", "RUNNING_APP_STARTING", "BUILDING"}, owner, timeout=60)
    assert platform.wait_stage(space, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, owner)["stage"] == "RUNNING"


def one_instance_left(platform: RunningPlatform, space: str, within: float) -> bool:
    deadline = time.monotonic() + within
    while len(platform.containers(space)) > 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def results(path: Path) -> list[tuple[float, str, str]]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [(float(t), kind, rest) for t, kind, rest in (line.split(" ", 2) for line in lines)]


def test_gradio_calls_run_through_a_redeploy(platform: RunningPlatform, tmp_path: Path) -> None:
    spaces = {"sess/gr": False, "sess/grp": True}  # public: HAProxy's direct path; private: the Python router
    for space, private in spaces.items():
        create(platform, *space.split("/"), private=private)
    for space in spaces:
        push(platform, *space.split("/"), {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    for space in spaces:
        assert platform.wait_stage(space, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, "sess")["stage"] == "RUNNING"

    token = platform.user("sess")
    pythons = {"2.x": Path(sys.executable)}
    if (old := gradio_client_1x()) is not None:
        pythons["1.x"] = old
    stop = tmp_path / "stop"
    callers, outputs = [], {}
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")}
    env |= {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    for space, private in spaces.items():
        for version, python in pythons.items():
            for i in range(2 if version == "2.x" and not private else 1):
                out = tmp_path / f"{space.replace('/', '-')}-{version}-{i}.log"
                url = f"{platform.url}/apps/{space}/"
                args = [str(python), "-c", CALLER, url, token if private else "", str(stop), str(out)]
                with open(out.with_suffix(".err"), "w") as err:
                    callers.append(subprocess.Popen(args, env=env, stderr=err))
                outputs[out.name] = out
    try:
        deadline = time.monotonic() + 120
        while not all(results(o) for o in outputs.values()):
            assert time.monotonic() < deadline, {n: results(o) for n, o in outputs.items()}
            time.sleep(0.5)
        switched_at = {}
        for space in spaces:
            deploy(platform, space, {"app.py": GRADIO_APP.replace('"v1"', '"v2"')}, tmp_path)
            switched_at[space] = time.time()  # RUNNING seen: the switch was before
        switched = time.time()
        deadline = time.monotonic() + 60
        while not all(any(r[2] == "v2" for r in results(o)) for o in outputs.values()):
            assert time.monotonic() < deadline, "a caller never reached the new version"
            time.sleep(0.5)
        time.sleep(2)
    finally:
        stop.touch()
        for proc in callers:
            proc.wait(60)
    seen = {name: results(o) for name, o in outputs.items()}
    errors = {name: [r for r in got if r[1] != "ok"] for name, got in seen.items()}
    stderr = {name: o.with_suffix(".err").read_text()[-3000:] for name, o in outputs.items()}
    assert not any(errors.values()), (errors, switched_at, seen, stderr)
    for name, got in seen.items():
        versions = [r[2] for r in got]
        # Every caller went from the old version to the new one and stayed there.
        assert versions[0] == "v1" and versions[-1] == "v2", (name, versions)
        assert "v1" not in versions[versions.index("v2") :], (name, versions)
    # Calls were in flight at the switch and finished on the old instance.
    assert any(r[2] == "v1" and r[0] > switched - 60 for got in seen.values() for r in got)
    for space in spaces:
        assert one_instance_left(platform, space, DRAIN_TIMEOUT + 30), f"the old instance of {space} still runs"


def run_script(ws: ClientConnection) -> bytes:
    """Ask Streamlit for a run, as its page does; the raw messages until the script finished."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    rerun = BackMsg()
    rerun.rerun_script.query_string = ""
    ws.send(rerun.SerializeToString())
    raw = b""
    while True:
        data = ws.recv(timeout=20)
        raw += data
        message = ForwardMsg()
        message.ParseFromString(data)
        if message.WhichOneof("type") == "script_finished":
            return raw


@pytest.mark.parametrize("private", [False, True], ids=["proxy", "python-router"])
def test_streamlit_websocket_lives_through_a_redeploy_until_drained(
    platform: RunningPlatform, tmp_path: Path, private: bool
) -> None:
    name = "stp" if private else "st"
    space = f"sess/{name}"
    create(platform, "sess", name, sdk="streamlit", private=private)
    deploy(platform, space, {"app.py": STREAMLIT_APP, "README.md": readme("streamlit")}, tmp_path)
    url = platform.url.replace("http://", "ws://") + f"/apps/{space}/_stcore/stream"
    headers = {"Authorization": f"Bearer {platform.user('sess')}"} if private else None

    def session() -> ClientConnection:
        return connect(
            url,
            subprotocols=["streamlit"],
            origin=platform.url,
            additional_headers=headers,
            proxy=None,
            open_timeout=30,
        )

    first, second = session(), session()
    try:
        assert b"version-one" in run_script(first) and b"version-one" in run_script(second)
        deploy(platform, space, {"app.py": STREAMLIT_APP.replace("version-one", "version-two")}, tmp_path)
        with session() as fresh:
            assert b"version-two" in run_script(fresh)
        # Both sessions stay on the old instance: it answers them as before.
        assert b"version-one" in run_script(first) and b"version-one" in run_script(second)
        first.close()
        time.sleep(4)  # past the quiet time: an instance with nothing open would be stopped now
        assert b"version-one" in run_script(second)
        assert len(platform.containers(space)) == 2
        # The drain bound: the old instance goes, and the session still open on it is closed.
        with pytest.raises(ConnectionClosed):
            deadline = time.monotonic() + DRAIN_TIMEOUT + 30
            while time.monotonic() < deadline:
                run_script(second)
                time.sleep(1)
        assert one_instance_left(platform, space, 30)  # stopping takes a moment after the session is closed
    finally:
        first.close()
        second.close()
