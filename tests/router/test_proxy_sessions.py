"""Session pins in the real HAProxy, changed by the real pusher, with two app instances of one Space: after a
switch, Gradio's queue/join and queue/data of a session whose stream is open stay on the old instance, other
sessions and later joins go to the new one, a pin never crosses Spaces, and the proxy counts what is open on an
instance (what the deployer waits for before stopping it)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from controlplane.proxy.config import Route
from tests.router import test_proxy
from tests.router.conftest import ServerThread
from tests.router.test_proxy import Proxy, _wait

proxy = test_proxy.proxy  # the fixture: HAProxy with the real pusher

release = threading.Event()


def instance(name: str) -> Starlette:
    """An app instance that says which it is; its queue/data stream stays open until `release`."""

    async def anything(request: Request) -> Response:
        if request.url.path.endswith("/queue/data"):

            async def events():
                yield f"data: {name}\n\n".encode()
                while not release.is_set():
                    await asyncio.sleep(0.02)

            return StreamingResponse(events(), media_type="text/event-stream")
        return JSONResponse({"instance": name})

    return Starlette(routes=[StarletteRoute("/{path:path}", anything, methods=["GET", "POST"])])


@pytest.fixture(scope="module")
def instances() -> Iterator[tuple[ServerThread, ServerThread]]:
    with ServerThread(instance("old")) as old, ServerThread(instance("new")) as new:
        yield old, new


def space(server: ServerThread, name: str) -> Route:
    return Route(f"pin/{name}", f"pin-{name}", f"127.0.0.1:{server.port}", f"/apps/pin/{name}", True)


def join(proxy: Proxy, session: str, name: str = "gr") -> str:
    resp = httpx.post(f"{proxy.url}/apps/pin/{name}/gradio_api/queue/join", json={"data": [], "session_hash": session})
    return resp.json()["instance"]


def open_streams(proxy: Proxy, upstream: str) -> int:
    return asyncio.run_coroutine_threadsafe(proxy.pusher.open_streams(upstream), proxy.loop).result(5)


def test_a_session_with_an_open_stream_stays_on_its_instance_after_a_switch(proxy: Proxy, instances) -> None:
    old, new = instances
    release.clear()
    base = proxy.routes[:2]
    proxy.set_routes([*base, space(old, "gr")])
    _wait(lambda: join(proxy, "warm-up") == "old")
    assert join(proxy, "s1") == "old"
    data = f"{proxy.url}/apps/pin/gr/gradio_api/queue/data?session_hash=s1"
    with httpx.stream("GET", data, timeout=10) as stream:
        assert next(stream.iter_lines()) == "data: old"
        assert open_streams(proxy, space(old, "gr").upstream) >= 1
        proxy.pusher.drain(space(old, "gr").upstream)  # what the deployer does before the switch commits
        proxy.set_routes([*base, space(new, "gr"), space(new, "other")])
        _wait(lambda: join(proxy, "s2") == "new")
        assert join(proxy, "s1") == "old"  # its stream is open there: its result will come on it
        with httpx.stream("GET", data, timeout=10) as second:  # a second stream of the session
            assert next(second.iter_lines()) == "data: old"
        # The same session hash on another Space is that Space's business.
        assert join(proxy, "s1", "other") == "new"
        release.set()
    _wait(lambda: open_streams(proxy, space(old, "gr").upstream) == 0)
    # No stream open: the session's next call goes to the current instance, and so does its stream.
    assert join(proxy, "s1") == "new"
    release.clear()
    with httpx.stream("GET", data, timeout=10) as stream:
        assert next(stream.iter_lines()) == "data: new"
        release.set()
    # Retired: nothing reaches the old instance any more.
    proxy.pusher.retired(space(old, "gr").upstream)
    proxy.set_routes(base)
