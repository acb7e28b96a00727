"""What the proxy has open on each instance, read the way the sleeper reads it before putting Spaces to sleep
(`Pusher.open_by_instance`: one `show table` per replica; `Pusher.in_use`: the Spaces of the current table with
something open), from a real HAProxy fed by the real pusher: a WebSocket or a stream counts while it is open and
stops counting when it closes, Gradio's heartbeat never counts, replicas add up, and a replica that is missing or
does not answer counts nothing within the timeout. And the sleeper itself (on the fake runtime, with a clock of
its own) reading that HAProxy: a Space with a WebSocket open does not sleep, and its sleep time runs from the
close, which HAProxy logs nowhere (it logs a request once, when its answer starts)."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket
from websockets.sync.client import connect

from controlplane.models import utcnow
from controlplane.proxy.config import Route
from controlplane.proxy.pusher import Pusher
from tests.router import test_proxy
from tests.router.conftest import ServerThread
from tests.router.test_proxy import Proxy, _wait
from tests.unit.plane import control_plane

proxy = test_proxy.proxy  # the fixture: HAProxy with the real pusher

release = threading.Event()


def held_app() -> Starlette:
    """Streams (any /heartbeat/ path, as Gradio's, and /stream) and a WebSocket that stay open until `release`."""

    async def stream(request: Request) -> Response:
        async def chunks():
            yield b"data: open\n\n"
            while not release.is_set():
                await asyncio.sleep(0.02)

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text("open")
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass

    async def plain(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[
            StarletteRoute("/gradio_api/heartbeat/{session}", stream),
            StarletteRoute("/stream", stream),
            WebSocketRoute("/ws", ws),
            StarletteRoute("/{path:path}", plain),
        ]
    )


@pytest.fixture(scope="module")
def apps() -> Iterator[tuple[ServerThread, ServerThread]]:
    with ServerThread(held_app()) as one, ServerThread(held_app()) as two:
        yield one, two


def space(server: ServerThread, name: str) -> Route:
    return Route(f"open/{name}", f"open-{name}", f"127.0.0.1:{server.port}", f"/apps/open/{name}", True)


def on_loop(proxy: Proxy, coro):
    return asyncio.run_coroutine_threadsafe(coro, proxy.loop).result(10)


@pytest.fixture
def routed(proxy: Proxy, apps) -> Iterator[tuple[Route, Route]]:
    base = proxy.routes[:2]
    a, b = space(apps[0], "a"), space(apps[1], "b")
    proxy.set_routes([*base, a, b])
    _wait(lambda: all(httpx.get(f"{proxy.url}{r.prefix}/").text == "ok" for r in (a, b)))
    release.clear()
    yield a, b
    release.set()
    proxy.set_routes(base)


def test_what_is_open_counts_until_it_closes_and_a_heartbeat_never(proxy: Proxy, routed) -> None:
    a, b = routed
    asked = {"open/a", "open/b", "alice/echo", "nobody/unrouted"}
    assert on_loop(proxy, proxy.pusher.in_use(asked)) == set()
    heartbeat = f"{proxy.url}{b.prefix}/gradio_api/heartbeat/s1"
    with httpx.stream("GET", heartbeat, timeout=10) as hb:
        assert next(hb.iter_lines()) == "data: open"  # served by the app, straight from HAProxy
        assert on_loop(proxy, proxy.pusher.in_use(asked)) == set()  # an endless heartbeat is not use
        ws_url = proxy.url.replace("http://", "ws://") + f"{a.prefix}/ws"
        with connect(ws_url, open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "open"
            assert on_loop(proxy, proxy.pusher.in_use(asked)) == {"open/a"}
            with httpx.stream("GET", f"{proxy.url}/stream", headers=proxy.host(b.label), timeout=10) as stream:
                assert next(stream.iter_lines()) == "data: open"
                assert on_loop(proxy, proxy.pusher.in_use(asked)) == {"open/a", "open/b"}
                counts = on_loop(proxy, proxy.pusher.open_by_instance())
                assert (counts[a.upstream], counts[b.upstream]) == (1, 1)
                # Only Spaces asked about, and only on their current instance.
                assert on_loop(proxy, proxy.pusher.in_use({"open/b"})) == {"open/b"}
                release.set()
        # Closed: the WebSocket by the client, the stream by the app; the heartbeat is still open.
        _wait(lambda: on_loop(proxy, proxy.pusher.in_use(asked)) == set())
    _wait(lambda: not on_loop(proxy, proxy.pusher.open_by_instance()))


def test_replicas_add_up_and_one_not_answering_counts_nothing(proxy: Proxy, routed) -> None:
    a, _ = routed
    # Three "replicas": the proxy's socket under two names, and one that is gone. And one that accepts the
    # connection and never answers (a hung replica): it costs the timeout, not the pass.
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen()
    same = os.path.join(proxy.layout.folder, ".", "admin.sock")
    targets = [proxy.layout.socket, same, os.path.join(proxy.layout.folder, "gone.sock")]
    replicas = Pusher(proxy.layout, tuple, targets=targets)
    slow = Pusher(proxy.layout, tuple, targets=[proxy.layout.socket, f"127.0.0.1:{hung.getsockname()[1]}"])
    ws_url = proxy.url.replace("http://", "ws://") + f"{a.prefix}/ws"
    try:
        with connect(ws_url, open_timeout=10) as ws:
            assert ws.recv(timeout=10) == "open"
            assert asyncio.run(replicas.open_by_instance())[a.upstream] == 2
            started = time.monotonic()
            assert asyncio.run(slow.open_by_instance(timeout=0.5))[a.upstream] == 1
            assert time.monotonic() - started < 3
    finally:
        hung.close()


def test_the_sleeper_keeps_a_space_with_an_open_websocket_awake_and_counts_from_its_close(
    proxy: Proxy, apps, tmp_path
) -> None:
    nap = Route("alice/nap", "alice-nap", f"127.0.0.1:{apps[0].port}", "/apps/alice/nap", True)
    base = proxy.routes[:2]
    proxy.set_routes([*base, nap])
    _wait(lambda: httpx.get(f"{proxy.url}{nap.prefix}/").text == "ok")
    ws_url = proxy.url.replace("http://", "ws://") + f"{nap.prefix}/ws"
    opened, close = threading.Event(), threading.Event()

    def hold() -> None:
        with connect(ws_url, open_timeout=10, close_timeout=1) as ws:
            assert ws.recv(timeout=10) == "open"
            opened.set()
            close.wait(30)

    holder = threading.Thread(target=hold, daemon=True)

    async def scenario() -> None:
        async with control_plane(tmp_path) as cp:
            cp.svc.proxy_routes = proxy.pusher
            space_id, build_id = cp.add_space("nap", sleep_time=60)
            await cp.deployer.deploy(space_id, build_id)
            t = utcnow()
            holder.start()
            assert await asyncio.to_thread(opened.wait, 10)
            # Idle by the clock, but the WebSocket is open: in use now; and still, a sleep time later.
            assert await cp.sleeper.once(now=t + timedelta(seconds=61)) == []
            assert cp.activity["alice/nap"] == (t + timedelta(seconds=61)).timestamp()
            assert await cp.sleeper.once(now=t + timedelta(seconds=125)) == []
            close.set()
            await asyncio.to_thread(holder.join, 10)
            while (await proxy.pusher.open_by_instance())[nap.upstream]:
                await asyncio.sleep(0.01)
            # The next pass sees it closed: that is its last activity (not the look at 125).
            assert await cp.sleeper.once(now=t + timedelta(seconds=130)) == []
            assert await cp.sleeper.once(now=t + timedelta(seconds=189)) == []
            assert await cp.sleeper.once(now=t + timedelta(seconds=191)) == ["alice/nap"]
            assert cp.space(space_id).detail == "sleeping"

    try:
        asyncio.run(scenario())
    finally:
        close.set()
        proxy.set_routes(base)
