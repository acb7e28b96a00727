"""The dashboard and a hostile app in a real browser (Debian's Chromium through Playwright), issue 12 item 3:
the Space page frames the app from the app's own origin in a sandbox, the page's own scripts run under its CSP,
and an app's Set-Cookie for the platform's cookie does not touch the dashboard session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.browser import chromium, sign_in
from tests.conftest import RunningPlatform
from tests.security.web_echo import OWNER, SPACE, echo_space

pytestmark = pytest.mark.docker

PASSWORD = "browser-test-pw"


@pytest.fixture(scope="module")
def page(platform: RunningPlatform, echo) -> Iterator[object]:
    subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "password", OWNER, "--password", PASSWORD],
                   env={**os.environ, **platform.env}, check=True, capture_output=True)

    def watch_csp(page) -> None:
        page.csp_violations = []
        page.on("console", lambda m: "Content Security Policy" in m.text and page.csp_violations.append(m.text))

    with chromium() as browser:
        yield sign_in(browser, platform.url, OWNER, PASSWORD, watch=watch_csp)


def session_cookies(page) -> dict[str, str]:
    return {c["name"]: c["value"] for c in page.context.cookies() if c["name"].startswith("spaceyard")}


def test_space_page_frames_the_app_sandboxed_on_its_own_origin(platform, page) -> None:
    resp = page.goto(f"/spaces/{SPACE}")
    assert "frame-ancestors 'none'" in resp.headers["content-security-policy"]
    frame_el = page.locator("#app")
    sandbox = frame_el.get_attribute("sandbox").split()
    assert "allow-scripts" in sandbox and "allow-top-navigation" not in sandbox
    src = frame_el.get_attribute("src")
    assert urlsplit(src).netloc != urlsplit(platform.url).netloc  # never the dashboard's origin
    # The app renders in the frame (Chromium resolves *.localhost itself) ...
    page.frame_locator("#app").locator("body").filter(has_text='"headers"').wait_for()
    frame = next(f for f in page.frames if f.url.startswith(src))
    # ... and its scripts cannot reach into the dashboard, nor read its cookies.
    reach = frame.evaluate("() => { try { return parent.document.cookie } catch (e) { return 'blocked' } }")
    assert reach == "blocked"
    # The dashboard's own script ran under its CSP: it filled the stage badge and the run log panel.
    page.wait_for_function("() => document.querySelector('#run-log').textContent.trim().length > 0")
    assert page.csp_violations == []


def test_an_apps_set_cookie_does_not_touch_the_dashboard_session(platform, page) -> None:
    before = session_cookies(page)
    assert "spaceyard_session" in before
    # The hostile app on the path-based URL: the dashboard's own origin, Set-Cookie for the session and CSRF.
    page.goto(f"/apps/{SPACE}/set-cookie")
    after = session_cookies(page)
    assert after == before
    assert any(c["name"] == "app_cookie" for c in page.context.cookies())  # the app's own cookie did arrive
    page.goto("/tokens")
    assert page.url == f"{platform.url}/tokens"  # still signed in
    assert OWNER in page.locator("header").inner_text()


def test_private_app_shows_in_the_frame_for_its_owner(platform, page, tmp_path_factory) -> None:
    """The frame is on the app's origin, where the browser has no session cookie: the dashboard's grant
    (`__sign`, then a partitioned cookie of the app's origin) opens it, and the app sees neither."""
    space = echo_space(platform, tmp_path_factory.mktemp("private"), name="private-echo", private=True)
    page.goto(f"/spaces/{space}")
    body = page.frame_locator("#app").locator("body")
    body.filter(has_text='"headers"').wait_for()
    seen = body.inner_text()
    assert "__sign" not in seen and "spaceyard_space_access" not in seen and "spaceyard_session" not in seen
