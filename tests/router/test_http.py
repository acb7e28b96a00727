"""HTTP through the router, as a client sees it."""

from __future__ import annotations

import hashlib

import httpx
import pytest


@pytest.fixture
def client(router: str):
    with httpx.Client(base_url=router, timeout=10) as c:
        yield c


def test_control_plane_routes_pass_through(client: httpx.Client) -> None:
    assert client.get("/").json() == {"control": "plane"}
    # /apps/{owner} alone is not an app URL.
    assert client.get("/apps/alice").json() == {"owner": "alice"}


def test_path_based_get_strips_prefix_and_forwards(client: httpx.Client) -> None:
    r = client.get("/apps/alice/echo/some/path%20x?q=1&q=2", headers={"X-Custom": "yes"})
    assert r.status_code == 200
    seen = r.json()
    assert seen["raw_path"] == "/some/path%20x"
    assert seen["query"] == "q=1&q=2"
    assert seen["headers"]["x-custom"] == "yes"
    assert seen["headers"]["x-forwarded-prefix"] == "/apps/alice/echo"
    assert seen["headers"]["x-forwarded-proto"] == "http"
    assert seen["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert seen["headers"]["x-forwarded-host"] == client.base_url.netloc.decode()
    # The client's Host reaches the app (apps build absolute URLs from it).
    assert seen["headers"]["host"] == client.base_url.netloc.decode()


def test_path_based_without_strip_forwards_whole_path(client: httpx.Client) -> None:
    seen = client.get("/apps/alice/rooted/x/y").json()
    assert seen["path"] == "/apps/alice/rooted/x/y"


def test_hop_by_hop_and_spoofed_forwarded_headers_are_dropped(client: httpx.Client) -> None:
    headers = {
        "Connection": "keep-alive, X-Secret",
        "X-Secret": "hop",
        "Keep-Alive": "timeout=5",
        "X-Forwarded-Prefix": "/evil",
        "X-Forwarded-Host": "evil.example",
        "X-Forwarded-For": "10.0.0.1",
    }
    seen = client.get("/apps/alice/echo/", headers=headers).json()["headers"]
    assert "x-secret" not in seen and "keep-alive" not in seen
    assert seen["x-forwarded-prefix"] == "/apps/alice/echo"
    assert seen["x-forwarded-host"] != "evil.example"
    # The router's uvicorn trusts a loopback peer's X-Forwarded-For (its default), so the client is 10.0.0.1.
    assert seen["x-forwarded-for"] == "10.0.0.1"


def test_no_accept_encoding_is_invented(client: httpx.Client) -> None:
    seen = client.get("/apps/alice/echo/", headers={"Accept-Encoding": "identity"}).json()["headers"]
    assert seen["accept-encoding"] == "identity"


def test_post_body_both_ways(client: httpx.Client) -> None:
    r = client.post("/apps/alice/echo/submit", content=b"hello=world", headers={"Content-Type": "text/plain"})
    seen = r.json()
    assert (seen["method"], seen["body"], seen["headers"]["content-type"]) == ("POST", "hello=world", "text/plain")


def test_chunked_upload_streams_through(client: httpx.Client) -> None:
    chunks = [bytes([i]) * 100_000 for i in range(20)]
    r = client.put("/apps/alice/echo/upload", content=iter(chunks))
    assert r.json()["body"].encode("latin-1") == b"".join(chunks)


def test_large_download_is_intact(client: httpx.Client) -> None:
    r = client.get("/apps/alice/echo/big")
    assert r.headers["content-length"] == "5000000"
    assert hashlib.sha256(r.content).digest() == hashlib.sha256(b"x" * 5_000_000).digest()


def test_repeated_response_headers_survive(client: httpx.Client) -> None:
    r = client.get("/apps/alice/echo/cookies")
    assert sorted(v.split(";")[0] for v in r.headers.get_list("set-cookie")) == ["a=1", "b=2"]


def test_router_keeps_no_cookies_between_clients(client: httpx.Client, router: str) -> None:
    client.get("/apps/alice/echo/cookies")
    seen = httpx.get(f"{router}/apps/alice/echo/").json()["headers"]
    assert "cookie" not in seen


def test_sse_first_event_arrives_before_upstream_finishes(router: str, gate) -> None:
    gate.release.clear()
    gate.finished.clear()
    gate.closed.clear()
    with httpx.stream("GET", f"{router}/apps/alice/echo/sse", timeout=10) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "data: first"
        assert not gate.finished.is_set()
        gate.release.set()
        assert [line for line in lines if line] == ["data: second"]
    assert gate.finished.is_set()


def test_client_leaving_a_stream_closes_it_upstream(router: str, gate) -> None:
    gate.release.clear()
    gate.finished.clear()
    gate.closed.clear()
    with httpx.stream("GET", f"{router}/apps/alice/echo/sse", timeout=10) as r:
        assert next(r.iter_lines()) == "data: first"
    # The app's generator is cancelled (closed) without ever being released to finish.
    assert gate.closed.wait(5)
    assert not gate.finished.is_set()


def test_no_trailing_slash_redirects(client: httpx.Client) -> None:
    r = client.get("/apps/alice/echo?x=1")
    assert r.status_code == 307
    assert r.headers["location"] == "/apps/alice/echo/?x=1"


def test_host_based_forwards_without_prefix(client: httpx.Client, host_of) -> None:
    seen = client.get("/p?x=1", headers={"Host": host_of("my-org-my-app")}).json()
    assert (seen["path"], seen["query"]) == ("/p", "x=1")
    assert "x-forwarded-prefix" not in seen["headers"]
    assert seen["headers"]["host"] == host_of("my-org-my-app")


def test_host_based_is_case_insensitive(client: httpx.Client, host_of) -> None:
    assert client.get("/", headers={"Host": host_of("Alice-Echo").upper()}).json()["path"] == "/"


def test_host_based_with_prefix_path_is_treated_as_path_based(client: httpx.Client, host_of) -> None:
    seen = client.get("/apps/alice/echo/x", headers={"Host": host_of("alice-echo")}).json()
    assert seen["path"] == "/x"
    assert seen["headers"]["x-forwarded-prefix"] == "/apps/alice/echo"


def test_host_based_prepends_prefix_when_not_stripped(client: httpx.Client, host_of) -> None:
    assert client.get("/x", headers={"Host": host_of("alice-rooted")}).json()["path"] == "/apps/alice/rooted/x"
    # ... and does not double it when the app's own absolute links already carry it.
    seen = client.get("/apps/alice/rooted/x", headers={"Host": host_of("alice-rooted")}).json()
    assert seen["path"] == "/apps/alice/rooted/x"


def test_unknown_space_is_404_page_or_json(client: httpx.Client, host_of) -> None:
    r = client.get("/apps/nobody/nothing/")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    r = client.get("/", headers={"Host": host_of("nobody-nothing"), "Accept": "application/json"})
    assert r.status_code == 404 and r.json()["error"] == "No app here"


def test_unavailable_space_says_why(client: httpx.Client) -> None:
    r = client.get("/apps/carol/paused/", headers={"Accept": "application/json"})
    assert r.status_code == 503
    assert r.headers["retry-after"] == "30"
    assert r.json()["message"] == "This Space is paused by its owner."


def test_upstream_down_is_502_without_stack_trace(client: httpx.Client) -> None:
    r = client.get("/apps/bob/down/")
    assert r.status_code == 502
    assert "The app is not answering" in r.text and "Traceback" not in r.text
    r = client.post("/apps/bob/down/x", content=b"data", headers={"Accept": "application/json"})
    assert r.status_code == 502 and r.json()["error"] == "The app is not answering"


def test_every_proxied_request_touches_its_space(client: httpx.Client, resolver) -> None:
    before = resolver.touches.get("alice/echo", 0)
    client.get("/apps/alice/echo/")
    client.get("/apps/alice/echo/")
    assert resolver.touches["alice/echo"] == before + 2



def test_spaceyard_credentials_never_reach_the_app(client: httpx.Client) -> None:
    """The token or session cookie that opens a private Space stays with Spaceyard; the app's own pass."""
    platform = {"Authorization": "Bearer sy_secret-platform-token", "Cookie": "spaceyard_session=abc; app_pref=dark"}
    seen = client.get("/apps/alice/echo/", headers=platform).json()["headers"]
    assert "authorization" not in seen
    assert seen["cookie"] == "app_pref=dark"
    seen = client.get("/apps/alice/echo/", headers={"Authorization": "Bearer app-own-token"}).json()["headers"]
    assert seen["authorization"] == "Bearer app-own-token"


def test_a_grant_in_the_query_becomes_a_cookie_of_the_apps_origin(router: str, host_of) -> None:
    """`?__sign=` on a host-based URL: 307 to the same URL without it, the grant kept as a cookie there."""
    host = {"Host": host_of("alice-echo")}
    resp = httpx.get(f"{router}/page?a=1&__sign=abc.DEF-1_2&b=2", headers=host)
    assert resp.status_code == 307 and resp.headers["location"] == "/page?a=1&b=2"
    cookie = resp.headers["set-cookie"]
    assert cookie.startswith("spaceyard_space_access=abc.DEF-1_2; Path=/; HttpOnly;")
    assert "Secure; SameSite=None; Partitioned" in cookie  # *.localhost is a secure context


def test_a_grant_is_never_forwarded(client: httpx.Client) -> None:
    seen = client.get("/apps/alice/echo/?__sign=abc&x=1").json()
    assert seen["query"] == "x=1"


def test_path_urls_off_redirect_to_the_apps_origin_without_lookup() -> None:
    from starlette.testclient import TestClient

    from controlplane.router.proxy import RouterMiddleware
    from controlplane.router.resolver import StaticResolver

    async def never(scope, receive, send) -> None:
        raise AssertionError("reached the control plane")

    app = RouterMiddleware(never, StaticResolver(), "apps.example.com", path_urls=False,
                           host_url=lambda o, n: f"https://{o}-{n}.apps.example.com")
    resp = TestClient(app).get("/apps/alice/demo/x?y=1", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "https://alice-demo.apps.example.com/x?y=1"
