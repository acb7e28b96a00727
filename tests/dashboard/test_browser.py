"""The dashboard in a real browser (Debian's Chromium through Playwright) against the whole platform.

Sign in, create a Space through the form on a chosen tier, push with git, watch the build log arrive live,
see RUNNING and the Gradio app in the iframe, change the tier, read usage. Screenshots of the main pages go
to test-artifacts/dashboard/ for a human to look at.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import chromium
from tests.browser import sign_in as browser_sign_in
from tests.conftest import ROOT, RunningPlatform
from tests.e2e.spaces import GRADIO_APP, push, readme

pytestmark = pytest.mark.docker

SHOTS = ROOT / "test-artifacts" / "dashboard"
PASSWORD = "dashboard-test-pw"



def add_user(platform: RunningPlatform, name: str, *, admin: bool = False) -> None:
    """A user with a password (to sign in) and a token (for git), via the CLI as an operator would."""
    args = [sys.executable, "-m", "controlplane.cli", "user", "add", name, "--password", PASSWORD]
    out = subprocess.run(args + (["--admin"] if admin else []), env={**os.environ, **platform.env},
                         capture_output=True, text=True, check=True)
    platform.tokens[name] = out.stdout.strip()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def sign_in(browser, platform: RunningPlatform, name: str):
    return browser_sign_in(browser, platform.url, name, PASSWORD)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def stage_of(page) -> str:
    return page.locator("[data-stage]").first.get_attribute("data-stage")


def test_create_push_watch_run_change_tier_and_usage(platform: RunningPlatform, browser, tmp_path: Path) -> None:
    add_user(platform, "dana")
    page = sign_in(browser, platform, "dana")

    # New Space through the form, on cpu-upgrade.
    page.goto("/new")
    page.get_by_label("Space name").fill("web")
    page.get_by_label("Gradio").check()
    page.locator("input[name=hardware][value=cpu-upgrade]").check()
    shot(page, "new-space")
    page.get_by_role("button", name="Create Space").click()
    page.wait_for_url(f"{platform.url}/spaces/dana/web")
    assert stage_of(page) == "NO_APP_FILE"
    clone = page.locator("details.clone pre").inner_text()
    assert f"git clone {platform.url.replace('http://', 'http://dana@')}/spaces/dana/web" in clone
    assert platform.tokens["dana"] not in page.content()
    shot(page, "space-empty")

    # Push with git (clone of http://host/spaces/dana/web works beside the pages) while the page is open.
    # Builds from cached layers take about two seconds here, so the builder is held back until the page shows
    # BUILDING with an empty log: every line it then shows arrived over the open stream.
    platform.platform.stop_process("builder")
    try:
        push(platform, "dana", "web", {"app.py": GRADIO_APP, "README.md": readme("gradio", emoji="🛰️")}, tmp_path)
        page.wait_for_function("() => document.querySelector('[data-stage]').dataset.stage === 'BUILDING'")
        assert page.locator("#build-log").inner_text().strip() == ""
    finally:
        platform.platform.start_builder()
    page.wait_for_function("() => document.querySelector('#build-log').textContent.trim().length > 0",
                           timeout=120_000)
    shot(page, "space-building")

    page.wait_for_function("() => document.querySelector('[data-stage]').dataset.stage === 'RUNNING'",
                           timeout=300_000)
    runtime = platform.api("dana").get("/api/spaces/dana/web/runtime").json()
    assert runtime["stage"] == "RUNNING" and runtime["hardware"]["current"] == "cpu-upgrade", runtime
    # The iframe (src set by the page when RUNNING arrived) shows the Gradio app, rendered: its input box.
    frame = page.frame_locator("#app")
    frame.locator("gradio-app textarea").first.wait_for(timeout=60_000)
    assert "gradio" in frame.locator("html").inner_html().lower()
    page.wait_for_function("() => document.querySelector('.files').textContent.includes('app.py')")
    page.wait_for_function("() => document.querySelector('#run-log').textContent.trim().length > 0",
                           timeout=60_000)
    shot(page, "space-running")

    # A reload replays the whole build log once.
    lines_before = page.locator("#build-log").inner_text().strip().splitlines()
    page.reload()
    page.wait_for_function(f"() => document.querySelector('#build-log').textContent.trim().split('\\n').length"
                           f" >= {len(lines_before)}", timeout=30_000)
    assert page.locator("#build-log").inner_text().strip().splitlines() == lines_before
    page.frame_locator("#app").locator("gradio-app textarea").first.wait_for(timeout=60_000)

    # Change the tier from the settings page.
    page.goto("/spaces/dana/web/settings")
    shot(page, "settings")
    page.locator("#hardware input[name=hardware][value=cpu-basic]").check()
    page.get_by_role("button", name="Change hardware").click()
    page.wait_for_url(f"{platform.url}/spaces/dana/web/settings#hardware")
    assert "Requested: cpu-basic" in page.locator("#hardware").inner_text()
    runtime = platform.api("dana").get("/api/spaces/dana/web/runtime").json()
    assert runtime["hardware"]["requested"] == "cpu-basic"

    # Usage: the Space's time on cpu-upgrade is there, with a CSV export.
    page.goto("/usage")
    rows = page.locator("#usage-rows tbody").inner_text()
    assert "dana/web" in rows and "cpu-upgrade" in rows
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    csv = Path(download.value.path()).read_text()
    assert ",dana,dana/web,cpu-upgrade," in csv
    shot(page, "usage")

    page.goto("/?show=mine")
    assert "dana/web" in page.locator("table.list").inner_text()
    shot(page, "spaces-list")
    page.goto("/tokens")
    shot(page, "tokens")

    # The admin's view of pools and users.
    add_user(platform, "boss", admin=True)
    admin = sign_in(browser, platform, "boss")
    admin.goto("/admin")
    assert "dana" in admin.locator("main").inner_text()
    shot(admin, "admin")
    admin.goto("/login")  # signed in: straight back to the list
    assert admin.url == f"{platform.url}/"
    admin.context.clear_cookies()
    admin.goto("/login")
    shot(admin, "login")
