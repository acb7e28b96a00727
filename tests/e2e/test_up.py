"""`spaceyard up`, the README's first command: starts everything, prints the URL and token, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psutil
import pytest

from controlplane.launcher import free_port
from tests.e2e.up import Up, alive, processes_of

pytestmark = pytest.mark.docker


def test_up_prints_url_and_token_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    env = {**os.environ, "SPACEYARD_DATA_DIR": str(tmp_path / "data"), "SPACEYARD_PORT": str(port)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "controlplane.cli", "up"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Press Ctrl-C" in line:
                break
        out = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in out, out
        token = next(line.split(": ")[-1].strip() for line in lines if "Admin token" in line)
        who = httpx.get(f"http://127.0.0.1:{port}/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
        assert who.json()["name"] == "admin"
        children = psutil.Process(proc.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        assert "redis-server" in names and "celery" in names and "serve" in names
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
    assert "Stopping" in proc.stdout.read()
    for child in children:
        assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, child.cmdline()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/api/health")


@pytest.mark.parametrize(
    ("sig", "shell"),
    [
        (signal.SIGTERM, "setsid nohup {up} > {out} 2>&1 &"),
        (signal.SIGHUP, "setsid nohup {up} > {out} 2>&1 &"),
        # A background job of a script starts with SIGINT ignored.
        (signal.SIGINT, "{up} > {out} 2>&1 &"),
    ],
    ids=["setsid-nohup-SIGTERM", "setsid-nohup-SIGHUP", "background-SIGINT"],
)
def test_up_in_the_background_stops_everything_on_a_signal(tmp_path, sig, shell):
    up = Up(tmp_path, shell=shell).start()
    parts = []
    try:
        up.wait_up()
        parts = up.descendants()
        names = " ".join(" ".join(p.cmdline()) for p in parts)
        assert "redis-server" in names and "celery" in names and "controlplane.cli serve" in names, names
        up.stop(sig)
        assert "Stopping" in up.output()
        assert alive(parts) == [] and processes_of(up.data_dir) == []
        assert not up.health()
    finally:
        for proc in alive(parts) + processes_of(up.data_dir):  # a failed stop must not leave the platform behind
            proc.kill()


def test_the_next_up_stops_what_an_up_killed_outright_left_running(tmp_path):
    first = Up(tmp_path).start().wait_up()
    parts = first.descendants()
    os.kill(first.pid, signal.SIGKILL)
    first.wait_exit(30)
    assert alive(parts)  # each part has a session of its own: nothing stops them with their supervisor
    second = Up(tmp_path, port=first.port).start()
    try:
        second.wait_up()  # on the same ports
        assert "left running by an earlier spaceyard up" in second.output()
        assert alive(parts) == []
        assert second.health()
    finally:
        second.stop()
        for proc in alive(parts):
            proc.kill()
