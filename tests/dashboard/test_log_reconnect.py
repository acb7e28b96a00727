"""A live log pane in a real browser (Chromium) survives a control-plane restart: it keeps its lines, shows none
twice and goes on with the new ones (the stream resumes after its last event instead of replaying the log)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from tests.browser import chromium, sign_in
from tests.conftest import RunningPlatform
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker
PASSWORD = "reconnect-test-pw"
TICKER_DOCKERFILE = """FROM spaceyard/base:py3.11
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""
TICKER_APP = """import http.server, threading, time
def tick():
    for i in range(1, 100000):
        print("tick", i, flush=True)
        time.sleep(0.5)
threading.Thread(target=tick, daemon=True).start()
http.server.test(http.server.SimpleHTTPRequestHandler, port=7860)
"""


def ticks(page) -> list[int]:
    return [int(n) for n in re.findall(r"^tick (\d+)$", page.locator("#run-log").inner_text(), re.M)]


def test_a_live_log_pane_resumes_after_a_control_plane_restart(platform: RunningPlatform, tmp_path):
    args = [sys.executable, "-m", "controlplane.cli", "user", "add", "rhea", "--password", PASSWORD]
    out = subprocess.run(args, env={**os.environ, **platform.env}, capture_output=True, text=True, check=True)
    platform.tokens["rhea"] = out.stdout.strip()
    create(platform, "rhea", "ticker", sdk="docker")
    push(platform, "rhea", "ticker", {"README.md": readme("docker"), "Dockerfile": TICKER_DOCKERFILE,
                                       "app.py": TICKER_APP}, tmp_path)
    assert platform.wait_stage("rhea/ticker", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    with chromium() as browser:
        page = sign_in(browser, platform.url, "rhea", PASSWORD)
        page.goto("/spaces/rhea/ticker")
        page.wait_for_function("() => /^tick 3$/m.test(document.querySelector('#run-log').textContent)",
                               timeout=60_000)
        # A mark only this page's DOM has: a pane that starts over (cleared, replayed) loses it.
        page.evaluate("document.querySelector('#run-log').prepend('MARK\\n')")
        before = ticks(page)[-1]
        platform.platform.stop_process("controlplane", signal.SIGKILL)
        platform.platform.start_controlplane()
        page.wait_for_function(
            f"() => [...document.querySelector('#run-log').textContent.matchAll(/^tick (\\d+)$/gm)]"
            f".some(m => Number(m[1]) >= {before + 6})",
            timeout=90_000,
        )
        seen = ticks(page)
        assert page.locator("#run-log").inner_text().startswith("MARK"), "the pane started over"
        assert seen == list(range(seen[0], seen[-1] + 1)), f"lines missing or shown twice: {seen}"
        assert seen[0] == 1
