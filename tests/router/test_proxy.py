"""The kept proxy (HAProxy) in front of the Python router, as the platform runs it: running public Spaces are
served by HAProxy straight from the app; credentials, unknown hosts and everything else go to the router behind
it. Route changes reach HAProxy through its runtime API from the real pusher. Skips where HAProxy is not
installed."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from websockets.sync.client import connect

from controlplane.proxy.activity import ActivityReader
from controlplane.proxy.config import Layout, Route, Table, files, maps
from controlplane.proxy.pusher import Pusher, write_maps
from tests.router.conftest import APPS_DOMAIN, ServerThread, free_port

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")


def route(upstream: ServerThread, owner: str, name: str, strip: bool = True) -> Route:
    return Route(f"{owner}/{name}", f"{owner}-{name}", f"127.0.0.1:{upstream.port}", f"/apps/{owner}/{name}", strip)


@dataclass
class Proxy:
    url: str
    layout: Layout
    pusher: Pusher
    loop: asyncio.AbstractEventLoop
    routes: list[Route]
    proc: subprocess.Popen
    seen: dict[str, float]

    def host(self, label: str) -> dict[str, str]:
        return {"Host": f"{label}.{APPS_DOMAIN}:{self.url.rsplit(':', 1)[1]}"}

    def set_routes(self, routes: list[Route]) -> None:
        self.routes[:] = routes
        self.pusher.changed()

    def loaded(self) -> int | None:
        return asyncio.run_coroutine_threadsafe(self.pusher.loaded(), self.loop).result(5)

    def start_haproxy(self) -> None:
        """As the launcher does: from the map files on disk."""
        self.proc = subprocess.Popen(
            ["haproxy", "-db", "-f", self.layout.path("haproxy.cfg")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(lambda: httpx.get(self.url + "/", timeout=1).status_code != 502)


def _wait(check, timeout: float = 15) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if check():
                return time.monotonic() - start
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.002)
    raise AssertionError("timed out")


@pytest.fixture(scope="module")
def proxy(router: str, upstream: ServerThread, tmp_path_factory) -> Iterator[Proxy]:
    tmp = tmp_path_factory.mktemp("haproxy")
    layout = Layout(
        listen=f"127.0.0.1:{free_port()}",
        controlplane=router.removeprefix("http://"),
        folder=str(tmp),
        socket=str(tmp / "admin.sock"),
        apps_domain=APPS_DOMAIN,
        path_urls=True,
        activity=f"127.0.0.1:{free_port()}",
    )
    for name, text in files(Table(0, ()), layout).items():
        (tmp / name).write_text(text)
    routes = [route(upstream, "alice", "echo"), route(upstream, "alice", "rooted", strip=False)]
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    pusher = Pusher(layout, lambda: tuple(routes), check_interval=0.2)
    seen: dict[str, float] = {}
    reader = ActivityReader(lambda: pusher.table, seen.__setitem__)
    udp_port = int(layout.activity.rsplit(":", 1)[1])
    asyncio.run_coroutine_threadsafe(
        loop.create_datagram_endpoint(lambda: reader, local_addr=("127.0.0.1", udp_port)), loop
    ).result(5)
    p = Proxy(f"http://{layout.listen}", layout, pusher, loop, routes, None, seen)  # type: ignore[arg-type]
    p.start_haproxy()
    task = asyncio.run_coroutine_threadsafe(pusher.run(), loop)
    _wait(lambda: p.loaded() == pusher.table.version and pusher.table.routes)
    yield p
    task.cancel()
    p.proc.terminate()
    p.proc.wait(10)
    loop.call_soon_threadsafe(loop.stop)


def served_by_app(resp: httpx.Response) -> dict:
    assert resp.status_code == 200, resp.text
    return resp.json()


def test_host_based_goes_straight_to_the_app_with_host_and_forwarded_headers(proxy: Proxy) -> None:
    seen = served_by_app(
        httpx.get(
            f"{proxy.url}/x?q=1",
            headers={**proxy.host("alice-echo"), "X-Forwarded-Prefix": "/spoofed", "X-Forwarded-Host": "spoofed"},
        )
    )
    assert seen["raw_path"] == "/x" and seen["query"] == "q=1"
    assert seen["headers"]["host"] == proxy.host("alice-echo")["Host"]
    assert seen["headers"]["x-forwarded-host"] == proxy.host("alice-echo")["Host"]
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert "x-forwarded-prefix" not in seen["headers"]
    # An app's own absolute links on its host are served as path-based.
    seen = served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/y", headers=proxy.host("alice-echo")))
    assert seen["raw_path"] == "/y" and seen["headers"]["x-forwarded-prefix"] == "/apps/alice/echo"


def test_path_based_strips_per_sdk(proxy: Proxy) -> None:
    seen = served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/a/b?c=d"))
    assert (seen["raw_path"], seen["query"]) == ("/a/b", "c=d")
    assert seen["headers"]["x-forwarded-prefix"] == "/apps/alice/echo"
    seen = served_by_app(httpx.get(f"{proxy.url}/apps/alice/rooted/a"))
    assert seen["raw_path"] == "/apps/alice/rooted/a"
    seen = served_by_app(httpx.get(f"{proxy.url}/a", headers=proxy.host("alice-rooted")))
    assert seen["raw_path"] == "/apps/alice/rooted/a"


def test_the_rest_goes_to_the_control_plane(proxy: Proxy) -> None:
    assert httpx.get(f"{proxy.url}/").json() == {"control": "plane"}
    # The slash redirect, unknown labels and Spaces not in the table are the control plane's answers.
    redirect = httpx.get(f"{proxy.url}/apps/alice/echo?k=1")
    assert redirect.status_code == 307 and redirect.headers["location"] == "/apps/alice/echo/?k=1"
    assert httpx.get(f"{proxy.url}/", headers=proxy.host("nobody-here")).status_code == 404
    assert httpx.get(f"{proxy.url}/apps/alice/echo/x", headers=proxy.host("nobody-here")).status_code == 404
    assert httpx.get(f"{proxy.url}/apps/carol/paused/").status_code == 503


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer sy_platformtoken"},
        {"x-hf-authorization": "Bearer sy_platformtoken"},
        {"Cookie": "app=1; spaceyard_session=sy_platformtoken"},
        {"Cookie": "app=1; SPACEYARD_CSRF=sy_platformtoken"},
    ],
)
def test_platform_credentials_never_reach_the_app(proxy: Proxy, headers: dict[str, str]) -> None:
    for where, extra in (("/apps/alice/echo/p", {}), ("/p", proxy.host("alice-echo"))):
        seen = served_by_app(httpx.get(proxy.url + where, headers={**extra, **headers}))
        assert "sy_platformtoken" not in json.dumps(seen), (where, seen)
        assert "x-hf-authorization" not in seen["headers"]


def test_a_platform_cookie_in_a_second_cookie_header_is_caught_too(proxy: Proxy) -> None:
    headers = [("Cookie", "app=1"), ("Cookie", "spaceyard_session=sy_platformtoken")]
    seen = served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/p", headers=headers))
    assert "sy_platformtoken" not in json.dumps(seen), seen


def test_an_apps_own_authorization_and_cookies_reach_it(proxy: Proxy) -> None:
    seen = served_by_app(
        httpx.get(
            f"{proxy.url}/apps/alice/echo/",
            headers={"Authorization": "Bearer app-own", "Cookie": "app=1; not_spaceyard_session=2"},
        )
    )
    assert seen["headers"]["authorization"] == "Bearer app-own"
    assert seen["headers"]["cookie"] == "app=1; not_spaceyard_session=2"


def test_a_grant_in_the_query_is_the_control_planes(proxy: Proxy) -> None:
    resp = httpx.get(f"{proxy.url}/?__sign=abc&keep=1", headers=proxy.host("alice-echo"))
    assert resp.status_code == 307 and resp.headers["location"] == "/?keep=1"


def test_an_app_cannot_set_the_platforms_cookies(proxy: Proxy) -> None:
    for where, extra in (("/apps/alice/echo/platform-cookie", {}), ("/platform-cookie", proxy.host("alice-echo"))):
        resp = httpx.get(proxy.url + where, headers=extra)
        assert resp.status_code == 200
        assert [c.split(";")[0] for c in resp.headers.get_list("set-cookie")] == ["app_cookie=from-app"]


def test_sse_events_arrive_one_by_one(proxy: Proxy, gate) -> None:
    gate.release.clear()
    gate.finished.clear()
    with httpx.stream("GET", f"{proxy.url}/apps/alice/echo/sse", timeout=10) as resp:
        lines = resp.iter_lines()
        assert next(lines) == "data: first"  # before the app sends its second event
        gate.release.set()
        assert [line for line in lines if line] == ["data: second"]


def test_websocket_through_the_proxy(proxy: Proxy) -> None:
    ws = proxy.url.replace("http://", "ws://")
    with connect(f"{ws}/apps/alice/echo/ws", proxy=None, open_timeout=10) as conn:
        conn.send("hi")
        assert conn.recv(timeout=5) == "echo:hi"


def test_route_changes_propagate_and_requests_in_flight_survive(proxy: Proxy, upstream, gate) -> None:
    gate.release.clear()
    new = route(upstream, "dave", "new")
    assert httpx.get(f"{proxy.url}/apps/dave/new/").status_code == 404  # the control plane does not know it
    took = []
    with httpx.stream("GET", f"{proxy.url}/apps/alice/echo/sse", timeout=10) as stream, httpx.Client() as poll:
        lines = stream.iter_lines()
        assert next(lines) == "data: first"
        for i in range(5):
            start = time.monotonic()
            proxy.set_routes([*proxy.routes[:2], *([new] if i % 2 == 0 else [])])
            expect = 200 if i % 2 == 0 else 404
            _wait(lambda e=expect: poll.get(f"{proxy.url}/apps/dave/new/").status_code == e)
            took.append(time.monotonic() - start)
        gate.release.set()
        assert [line for line in lines if line] == ["data: second"]  # the stream lived through five changes
    # From the change to the first request served by the new table (including that request): milliseconds on
    # an idle machine; the bound is loose for the shared test machine (the goal, 100 ms, is measured here).
    print(f"route propagation: {[round(t * 1000, 1) for t in took]} ms")
    assert sorted(took)[2] < 1.0, took


def test_a_websocket_lives_through_another_spaces_route_changes(proxy: Proxy, upstream) -> None:
    ws = proxy.url.replace("http://", "ws://")
    with connect(f"{ws}/apps/alice/echo/ws", proxy=None, open_timeout=10) as conn:
        for i in range(3):
            proxy.set_routes([*proxy.routes[:2], *([route(upstream, "frank", f"w{i}")])])
            _wait(lambda i=i: httpx.get(f"{proxy.url}/apps/frank/w{i}/").status_code == 200)
            conn.send(f"after {i}")
            assert conn.recv(timeout=5) == f"echo:after {i}"
    proxy.set_routes(proxy.routes[:2])


def test_keep_alive_clients_see_no_error_while_routes_change(proxy: Proxy, upstream) -> None:
    """Route changes are map entries, not reloads: a client polling over keep-alive never sees its connection
    dropped."""
    errors, n = [], 0
    with httpx.Client(base_url=proxy.url) as client:
        for i in range(20):
            proxy.set_routes([*proxy.routes[:2], *([route(upstream, "erin", f"r{i}")])])
            deadline = time.monotonic() + 0.15
            while time.monotonic() < deadline:
                for path in ("/apps/alice/echo/x", "/"):
                    try:
                        client.get(path).raise_for_status()
                    except httpx.HTTPError as e:
                        errors.append(repr(e))
                    n += 1
    proxy.set_routes(proxy.routes[:2])
    assert not errors, f"{len(errors)} of {n}: {errors[:3]}"


def test_versions_only_grow_and_a_restarted_proxy_gets_the_table_again(proxy: Proxy) -> None:
    _wait(lambda: proxy.loaded() == proxy.pusher.table.version)
    before = proxy.pusher.table.version
    proxy.proc.kill()
    proxy.proc.wait()
    # It starts from the map files the pusher wrote: the apps answer at once.
    proxy.start_haproxy()
    assert (proxy.loaded() or 0) >= before
    assert served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/"))
    # A proxy that lost its table (started from older files) gets it back at the next check.
    write_maps(maps(Table(1, ()), proxy.layout), proxy.layout)
    proxy.proc.kill()
    proxy.proc.wait()
    proxy.start_haproxy()
    _wait(lambda: proxy.loaded() == proxy.pusher.table.version, timeout=5)
    assert proxy.pusher.table.version >= before  # the pusher's table again, not the older one of the files
    assert served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/"))
    # The next change is a newer version still (this test alone, or after the others: the same).
    kept = list(proxy.routes)
    proxy.set_routes(kept[:-1])
    _wait(lambda: proxy.loaded() == proxy.pusher.table.version > before, timeout=5)
    proxy.set_routes(kept)
    _wait(lambda: served_by_app(httpx.get(f"{proxy.url}/apps/alice/echo/")), timeout=5)


def test_served_requests_keep_their_space_awake(proxy: Proxy) -> None:
    proxy.seen.clear()
    before = time.time()
    httpx.get(f"{proxy.url}/apps/alice/echo/")
    httpx.get(f"{proxy.url}/", headers=proxy.host("alice-rooted"))
    _wait(lambda: {"alice/echo", "alice/rooted"} <= proxy.seen.keys(), timeout=5)
    assert proxy.seen["alice/echo"] >= before - 1
