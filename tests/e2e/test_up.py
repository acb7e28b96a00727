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

pytestmark = pytest.mark.docker


def test_up_prints_url_and_token_and_ctrl_c_stops_everything(tmp_path):
    port = free_port()
    env = {**os.environ, "SPACEYARD_DATA_DIR": str(tmp_path / "data"), "SPACEYARD_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "controlplane.cli", "up"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
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
