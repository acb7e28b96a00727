"""No platform credential reaches a Space, in any form, on any URL, over HTTP or WebSocket; and no app can set
the platform's cookies (issue 12, items 1 and 3).

The attacker is a public app: wendy/echo answers every request with the headers it received. The visitors are
signed-in users who call it with their Spaceyard token or browser session, the ways clients do it.
"""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import subprocess
import sys

import httpx
import pytest
from websockets.sync.client import connect

from tests.conftest import RunningPlatform
from tests.security.web_echo import OWNER, SPACE, echo_space, host_header

pytestmark = pytest.mark.docker

PASSWORD = "visitor-password-1"


@pytest.fixture(scope="module")
def visitor(platform: RunningPlatform) -> dict[str, str]:
    """A user's token, and a real dashboard session (signed in with a password) with its CSRF cookie."""
    token = platform.user("victor")
    subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "password", "victor", "--password", PASSWORD],
                   env={**os.environ, **platform.env}, check=True, capture_output=True)
    with httpx.Client(base_url=platform.url) as browser:
        csrf = re.search(r'name="csrf_token" value="([0-9a-f]+)"', browser.get("/login").text).group(1)
        browser.post("/login", data={"username": "victor", "password": PASSWORD, "csrf_token": csrf})
        assert browser.get("/api/whoami-v2").json()["name"] == "victor"
        cookies = dict(browser.cookies)
    return {"token": token, "session": cookies["spaceyard_session"], "csrf": cookies["spaceyard_csrf"]}


def credential_forms(v: dict[str, str]) -> dict[str, dict[str, str]]:
    basic = base64.b64encode(f"victor:{v['token']}".encode()).decode()
    basic_user = base64.b64encode(f"{v['token']}:x".encode()).decode()
    return {
        "bearer": {"Authorization": f"Bearer {v['token']}"},
        "bearer lower-case": {"authorization": f"bearer {v['token']}"},
        "basic (curl -u user:token)": {"Authorization": f"Basic {basic}"},
        "basic (token as user name)": {"Authorization": f"Basic {basic_user}"},
        "token scheme": {"Authorization": f"token {v['token']}"},
        "bare token": {"Authorization": v["token"]},
        "x-hf-authorization (gradio_client)": {"x-hf-authorization": f"Bearer {v['token']}"},
        "session and CSRF cookies": {"Cookie": f"spaceyard_session={v['session']}; spaceyard_csrf={v['csrf']}"},
    }


def leaked(seen: dict, v: dict[str, str]) -> list[str]:
    """Which of the visitor's secrets the app saw, anywhere in its request."""
    text = json.dumps(seen)
    return [name for name in ("token", "session", "csrf") if v[name] in text]


@pytest.fixture
def apps_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    """*.localhost does not resolve through glibc here (browsers resolve it themselves): point it at loopback."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        return real("127.0.0.1" if isinstance(host, str) and host.endswith(".localhost") else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def urls(platform: RunningPlatform) -> dict[str, tuple[str, dict[str, str]]]:
    """Base URL and extra headers of the path-based and the host-based URL of the echo Space."""
    return {"path": (f"{platform.url}/apps/{SPACE}", {}), "host": (platform.url, {"Host": host_header(platform)})}


@pytest.mark.parametrize("where", ["path", "host"])
def test_no_credential_form_reaches_the_app_over_http(platform, echo, visitor, where) -> None:
    base, extra = urls(platform)[where]
    for form, headers in credential_forms(visitor).items():
        cookie = "; ".join(c for c in ("app=1", headers.get("Cookie")) if c)
        resp = httpx.get(f"{base}/probe", headers={**extra, **headers, "Cookie": cookie})
        assert resp.status_code == 200, (form, resp.text)
        seen = resp.json()
        assert not leaked(seen, visitor), f"{where} URL, {form}: the app saw {leaked(seen, visitor)}: {seen}"
        assert "x-hf-authorization" not in seen["headers"]
        assert seen["cookie"] == "app=1"  # the app's own cookie still arrives


@pytest.mark.parametrize("where", ["path", "host"])
def test_an_apps_own_authorization_still_reaches_it(platform, echo, where) -> None:
    base, extra = urls(platform)[where]
    own = base64.b64encode(b"app-user:app-password").decode()
    for value in ("Bearer app-own-token", f"Basic {own}"):
        seen = httpx.get(f"{base}/", headers={**extra, "Authorization": value}).json()
        assert seen["headers"]["authorization"] == value


@pytest.mark.parametrize("where", ["path", "host"])
def test_no_credential_form_reaches_the_app_over_websocket(platform, echo, visitor, apps_resolve, where) -> None:
    ws = platform.url.replace("http://", "ws://")
    url = f"{ws}/apps/{SPACE}/ws" if where == "path" else f"ws://{host_header(platform)}/ws"
    for form, headers in credential_forms(visitor).items():
        with connect(url, additional_headers=headers, proxy=None, open_timeout=20) as conn:
            seen = json.loads(conn.recv(timeout=10))
            set_cookies = conn.response.headers.get_all("Set-Cookie")
        assert not leaked(seen, visitor), f"{where} WebSocket, {form}: the app saw {leaked(seen, visitor)}: {seen}"
        # The handshake answer carries the app's own cookie, never one named like the platform's.
        assert set_cookies == ["app_cookie=from-app; Path=/"], set_cookies


@pytest.mark.parametrize("where", ["path", "host"])
def test_app_cannot_set_the_platforms_cookies(platform, echo, where) -> None:
    base, extra = urls(platform)[where]
    resp = httpx.get(f"{base}/set-cookie", headers=extra)
    assert resp.status_code == 200
    assert resp.headers.get_list("set-cookie") == ["app_cookie=from-app; Path=/"]


def test_private_space_by_x_hf_authorization_and_nothing_reaches_the_app(platform, visitor, tmp_path) -> None:
    """x-hf-authorization opens a private Space as Authorization does (owner yes, stranger and anonymous no),
    and is dropped before the app."""
    space = echo_space(platform, tmp_path, name="private-echo", private=True)
    owner = platform.user(OWNER)
    for headers in ({"x-hf-authorization": f"Bearer {owner}"}, {"Authorization": f"Bearer {owner}"}):
        resp = httpx.get(f"{platform.url}/apps/{space}/", headers=headers)
        assert resp.status_code == 200, resp.text
        assert owner not in resp.text
    stranger = {"x-hf-authorization": f"Bearer {visitor['token']}"}
    assert httpx.get(f"{platform.url}/apps/{space}/", headers=stranger).status_code == 404
    assert httpx.get(f"{platform.url}/apps/{space}/").status_code == 404


def test_private_app_on_its_own_origin_opens_with_the_dashboards_grant(platform, visitor, tmp_path) -> None:
    """The owner's session cookie stays on the dashboard's origin; the Space page hands the app's origin a grant
    (`?__sign=`), which the router keeps as a cookie there. It opens that Space only, dies with the session, and
    the app sees neither."""
    space = echo_space(platform, tmp_path, name="private-echo", private=True)
    subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "password", OWNER, "--password", PASSWORD],
                   env={**os.environ, **platform.env}, check=True, capture_output=True)
    owner = httpx.Client(base_url=platform.url)
    token = re.search(r'name="csrf_token" value="([0-9a-f]+)"', owner.get("/login").text).group(1)
    owner.post("/login", data={"username": OWNER, "password": PASSWORD, "csrf_token": token})
    frame = re.search(r'data-src="([^"]+)"', owner.get(f"/spaces/{space}").text).group(1).replace("&amp;", "&")
    grant = frame.split("?__sign=")[1]
    host = {"Host": host_header(platform, OWNER, "private-echo")}

    first = httpx.get(f"{platform.url}/?__sign={grant}&keep=1", headers=host)
    assert first.status_code == 307 and first.headers["location"] == "/?keep=1"
    cookie = first.headers["set-cookie"]
    assert cookie.startswith(f"spaceyard_space_access={grant};") and "HttpOnly" in cookie
    app = httpx.get(f"{platform.url}/?keep=1", headers={**host, "Cookie": f"spaceyard_space_access={grant}"})
    assert app.status_code == 200, app.text
    assert grant not in app.text and "__sign" not in app.text
    # The grant names this Space: it opens no other private Space of the same owner.
    echo_space(platform, tmp_path, name="private-echo2", private=True)
    other = {"Host": host_header(platform, OWNER, "private-echo2")}
    assert httpx.get(f"{platform.url}/", headers={**other, "Cookie": f"spaceyard_space_access={grant}"}
                     ).status_code == 404
    # Without it, or after the owner signs out, the private app does not exist.
    assert httpx.get(f"{platform.url}/", headers=host).status_code == 404
    owner.post("/logout", data={"csrf_token": re.search(r'name="csrf_token" value="([0-9a-f]+)"',
                                                         owner.get("/tokens").text).group(1)})
    assert httpx.get(f"{platform.url}/", headers={**host, "Cookie": f"spaceyard_space_access={grant}"}
                     ).status_code == 404
