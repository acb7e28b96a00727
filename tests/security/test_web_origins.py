"""Apps never act on the dashboard's origin (issue 12, item 3): path-based app URLs can be turned off (and are,
once a real apps domain is set), the dashboard frames apps only from their own origin in a sandbox, and every
dashboard answer carries CSP, X-Frame-Options, Referrer-Policy and nosniff. (The browser's view of the same:
test_web_browser.py.)"""

from __future__ import annotations

import re

import pytest

from tests.security.web_app import Web, make_web, sign_in

APPS = "apps.example.com"


@pytest.fixture(scope="module")
def separate(tmp_path_factory) -> Web:
    """A platform with its own apps domain: path-based URLs are off by default."""
    return make_web(tmp_path_factory.mktemp("separate"), apps_domain=APPS)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory) -> Web:
    return make_web(tmp_path_factory.mktemp("quickstart"))


def test_path_urls_redirect_to_the_apps_own_origin_when_off(separate: Web) -> None:
    resp = separate.client().get("/apps/alice/demo/some/page?q=1", follow_redirects=False)
    assert resp.status_code == 307
    assert resp.headers["location"] == f"http://alice-demo.{APPS}:8000/some/page?q=1"
    # A private Space is redirected the same way without a lookup: nothing about it is disclosed.
    resp = separate.client().get("/apps/alice/secretapp/", follow_redirects=False)
    assert resp.headers["location"] == f"http://alice-secretapp.{APPS}:8000/"


def test_path_urls_stay_on_for_the_single_host_quickstart(quickstart: Web) -> None:
    # apps_domain localhost: /apps/o/n/ is served (here the Space is not running: the router's own 503).
    resp = quickstart.client().get("/apps/alice/demo/", follow_redirects=False)
    assert resp.status_code in (404, 503) and "location" not in resp.headers


def test_path_urls_setting_overrides_the_default(tmp_path) -> None:
    web = make_web(tmp_path, apps_domain=APPS, path_urls=True)
    assert web.client().get("/apps/alice/demo/", follow_redirects=False).status_code != 307
    info = web.client().get("/api/spaces/alice/demo").json()
    assert info["host"] == "http://127.0.0.1:8000/apps/alice/demo/"


def test_hub_api_host_is_the_apps_origin_when_path_urls_are_off(separate: Web) -> None:
    info = separate.client().get("/api/spaces/alice/demo").json()
    assert info["host"] == info["url"] == f"http://alice-demo.{APPS}:8000/"
    assert info["runtime"]["spaceyard"]["hostUrl"] == f"http://alice-demo.{APPS}:8000"


def test_https_public_url_gives_https_app_origins(tmp_path) -> None:
    web = make_web(tmp_path, apps_domain=APPS, public_url="https://spaceyard.example.com")
    info = web.client(base_url="https://spaceyard.example.com").get("/api/spaces/alice/demo").json()
    assert info["host"] == f"https://alice-demo.{APPS}/"


@pytest.mark.parametrize("path", ["/", "/login", "/spaces/alice/demo", "/api/spaces/alice/demo", "/static/style.css"])
def test_dashboard_answers_carry_the_security_headers(separate: Web, path: str) -> None:
    resp = separate.client().get(path)
    assert resp.status_code == 200, resp.text[:200]
    csp = resp.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert f"frame-src http://*.{APPS}:8000" in csp
    assert resp.headers["x-frame-options"] == "DENY"
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert resp.headers["referrer-policy"] == "same-origin"


def test_space_page_frames_the_apps_own_origin_in_a_sandbox(quickstart: Web) -> None:
    page = sign_in(quickstart, "alice").get("/spaces/alice/demo").text
    frame = re.search(r"<iframe[^>]*>", page, re.S).group(0)
    sandbox = re.search(r'sandbox="([^"]*)"', frame).group(1).split()
    assert {"allow-scripts", "allow-forms", "allow-popups", "allow-downloads"} <= set(sandbox)
    assert "allow-top-navigation" not in sandbox
    src = re.search(r'data-src="([^"]*)"', frame).group(1)
    # allow-same-origin is there only because the frame's origin is never the dashboard's.
    assert src == "http://alice-demo.localhost:8000/"
    assert not src.startswith("http://127.0.0.1:8000")


@pytest.mark.parametrize("path", ["/", "/login", "/new", "/tokens", "/usage", "/admin", "/spaces/alice/demo",
                                  "/spaces/alice/demo/settings"])
def test_no_page_has_inline_script_or_handlers(quickstart: Web, path: str) -> None:
    """What script-src 'self' would block: inline <script> bodies and on*= attributes."""
    user = "root" if path == "/admin" else "alice"
    html = sign_in(quickstart, user).get(path).text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
    assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), path
    assert not re.search(r"""\sstyle\s*=\s*["']""", html), path  # style-src 'self' too
