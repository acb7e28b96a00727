"""WebSockets through the router."""

from __future__ import annotations

import json

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect


def ws_url(router: str, path: str) -> str:
    return router.replace("http://", "ws://") + path


def test_echo_text_and_bytes_path_based(router: str, resolver) -> None:
    before = resolver.touches.get("alice/echo", 0)
    with connect(ws_url(router, "/apps/alice/echo/ws"), proxy=None) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "echo:hi"
        ws.send(b"\x01\x02\x03")
        assert ws.recv(timeout=5) == b"\x03\x02\x01"
    assert resolver.touches["alice/echo"] > before


def test_subprotocol_is_negotiated_with_the_app(router: str) -> None:
    with connect(ws_url(router, "/apps/alice/echo/ws"), subprotocols=["chat", "other"], proxy=None) as ws:
        assert ws.subprotocol == "chat"


def test_app_close_code_reaches_client(router: str) -> None:
    with connect(ws_url(router, "/apps/alice/echo/ws"), proxy=None) as ws:
        ws.send("close-me")
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=5)
        assert (ws.close_code, ws.close_reason) == (4001, "asked to")


def test_handshake_headers_reach_the_app(router: str) -> None:
    headers = {"Cookie": "session=abc", "X-Forwarded-Prefix": "/evil"}
    url = ws_url(router, "/apps/alice/echo/ws-headers?x=1")
    with connect(url, additional_headers=headers, origin="http://example.test", proxy=None) as ws:
        seen = json.loads(ws.recv(timeout=5))
    assert seen["path"] == "/ws-headers"
    h = seen["headers"]
    assert h["cookie"] == "session=abc"
    assert h["origin"] == "http://example.test"
    assert h["host"] == router.removeprefix("http://")
    assert h["x-forwarded-prefix"] == "/apps/alice/echo"
    assert h["x-forwarded-proto"] == "http"


def test_host_based_websocket_with_prefix_prepended(host_of, resolve_apps_domain) -> None:
    with connect(f"ws://{host_of('alice-rooted')}/ws", proxy=None) as ws:
        ws.send("x")
        assert ws.recv(timeout=5) == "echo:x"


def test_unknown_space_refuses_handshake_with_404(router: str) -> None:
    with pytest.raises(InvalidStatus) as e:
        connect(ws_url(router, "/apps/nobody/nothing/ws"), proxy=None)
    assert e.value.response.status_code == 404


def test_upstream_down_refuses_handshake_with_502(router: str) -> None:
    with pytest.raises(InvalidStatus) as e:
        connect(ws_url(router, "/apps/bob/down/ws"), proxy=None)
    assert e.value.response.status_code == 502


def test_app_refusal_is_passed_on(router: str) -> None:
    # The echo app has no WebSocket route here: Starlette refuses the handshake with 403.
    with pytest.raises(InvalidStatus) as e:
        connect(ws_url(router, "/apps/alice/echo/nope"), proxy=None)
    assert e.value.response.status_code == 403
