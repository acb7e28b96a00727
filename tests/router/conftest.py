"""Real servers for the router tests: a Starlette upstream, real Gradio and Streamlit apps, and the router
itself, each on its own free loopback port."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from controlplane.router.apps import root_path_env
from controlplane.router.proxy import RouterMiddleware
from controlplane.router.resolver import StaticResolver, Target, Unavailable, path_prefix

APPS_DOMAIN = "apps.localhost"
HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerThread:
    """uvicorn in a thread with its own event loop; stops on exit."""

    def __init__(self, app, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="auto")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@dataclass
class SseGate:
    """Lets a test hold the upstream SSE stream open after its first event."""

    release: threading.Event
    finished: threading.Event
    closed: threading.Event  # the upstream stream ended, completed or cancelled


def upstream_app(gate: SseGate) -> Starlette:
    async def echo(request: Request) -> Response:
        body = await request.body()
        return JSONResponse(
            {
                "method": request.method,
                "path": request.url.path,
                "raw_path": request.scope["raw_path"].decode(),
                "query": request.url.query,
                "headers": dict(request.headers),
                "header_list": [[k, v] for k, v in request.headers.items()],
                "body": body.decode("latin-1"),
            }
        )

    async def sse(request: Request) -> Response:
        async def events():
            try:
                yield b"data: first\n\n"
                while not gate.release.is_set():
                    await asyncio.sleep(0.02)
                yield b"data: second\n\n"
                gate.finished.set()
            finally:
                gate.closed.set()

        return StreamingResponse(events(), media_type="text/event-stream")

    async def cookies(request: Request) -> Response:
        response = PlainTextResponse("ok")
        response.set_cookie("a", "1")
        response.set_cookie("b", "2")
        return response

    async def platform_cookie(request: Request) -> Response:
        # A hostile app: it tries to set the platform's session cookie beside its own.
        response = PlainTextResponse("ok")
        response.set_cookie("spaceyard_session", "from-app")
        response.set_cookie("app_cookie", "from-app")
        return response

    async def big(request: Request) -> Response:
        return Response(b"x" * 5_000_000, media_type="application/octet-stream")

    async def ws_echo(websocket: WebSocket) -> None:
        protocols = websocket.scope.get("subprotocols") or []
        await websocket.accept(subprotocol=protocols[0] if protocols else None)
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close-me":
                await websocket.close(4001, "asked to")
                return
            if message.get("text") is not None:
                await websocket.send_text("echo:" + message["text"])
            else:
                await websocket.send_bytes(message["bytes"][::-1])

    async def ws_headers(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_json({"path": websocket.url.path, "headers": dict(websocket.headers)})
        await websocket.close()

    routes = [
        Route("/sse", sse),
        Route("/cookies", cookies),
        Route("/platform-cookie", platform_cookie),
        Route("/big", big),
        WebSocketRoute("/ws", ws_echo),
        WebSocketRoute("/apps/alice/rooted/ws", ws_echo),
        WebSocketRoute("/ws-headers", ws_headers),
        Route("/{path:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
    ]
    return Starlette(routes=routes)


@pytest.fixture(scope="session")
def gate() -> SseGate:
    return SseGate(threading.Event(), threading.Event(), threading.Event())


@pytest.fixture(scope="session")
def upstream(gate: SseGate) -> Iterator[ServerThread]:
    with ServerThread(upstream_app(gate)) as server:
        yield server


def control_plane() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    def home() -> dict:
        return {"control": "plane"}

    @app.get("/apps/{owner}")
    def owner_page(owner: str) -> dict:
        return {"owner": owner}

    return app


@pytest.fixture(scope="session")
def resolver(upstream: ServerThread) -> StaticResolver:
    here = f"127.0.0.1:{upstream.port}"
    return StaticResolver(
        {
            "alice/echo": Target("alice/echo", here, path_prefix("alice", "echo"), strip_prefix=True),
            "alice/rooted": Target("alice/rooted", here, path_prefix("alice", "rooted"), strip_prefix=False),
            "my-org/my-app": Target("my-org/my-app", here, path_prefix("my-org", "my-app"), strip_prefix=True),
            "bob/down": Target("bob/down", f"127.0.0.1:{free_port()}", path_prefix("bob", "down"), True),
            "carol/paused": Unavailable(503, "This Space is paused by its owner.", retry_after=30),
        }
    )


@pytest.fixture(scope="session")
def router(resolver: StaticResolver) -> Iterator[str]:
    """Base URL of a real uvicorn serving RouterMiddleware around a trivial control plane."""
    with ServerThread(RouterMiddleware(control_plane(), resolver, APPS_DOMAIN)) as server:
        yield f"http://127.0.0.1:{server.port}"


@pytest.fixture(scope="session")
def host_of(router: str):
    """The Host header of a Space's host-based URL on the router's port."""
    port = router.rsplit(":", 1)[1]
    return lambda label: f"{label}.{APPS_DOMAIN}:{port}"


@pytest.fixture
def resolve_apps_domain(monkeypatch: pytest.MonkeyPatch) -> None:
    """*.localhost does not resolve through glibc here: point *.apps.localhost (and *.test, a public-looking
    control-plane host) at loopback for clients (gradio_client, websockets) that only take a URL."""
    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if isinstance(host, str) and host.endswith(("." + APPS_DOMAIN, ".test")):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@dataclass
class SdkApp:
    space: str
    port: int
    process: subprocess.Popen
    log: Path


def _start_sdk_app(sdk: str, space: str, tmp: Path) -> SdkApp:
    pytest.importorskip(sdk)
    owner, name = space.split("/")
    env_vars, _ = root_path_env(sdk, path_prefix(owner, name))
    port = free_port()
    env = os.environ | env_vars | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    bin_dir = Path(sys.executable).parent
    if sdk == "gradio":
        env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
        command = [sys.executable, str(HERE / "sdk_apps" / "gradio_app.py")]
    else:
        # What the builder's Streamlit CMD runs: --server.baseUrlPath $SPACEYARD_ROOT_PATH.
        command = [
            str(bin_dir / "streamlit"), "run", str(HERE / "sdk_apps" / "streamlit_app.py"),
            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--server.baseUrlPath", env_vars["SPACEYARD_ROOT_PATH"], "--browser.gatherUsageStats", "false",
        ]  # fmt: skip
    log = tmp / f"{sdk}.log"
    process = subprocess.Popen(command, env=env, cwd=tmp, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    return SdkApp(space, port, process, log)


def _wait_ready(app: SdkApp, path: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"{app.space} exited:\n{app.log.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{app.port}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{app.space} did not answer {path} within {timeout}s:\n{app.log.read_text()}")


@pytest.fixture(scope="session")
def sdk_apps(resolver: StaticResolver, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, SdkApp]]:
    """A real Gradio app and a real Streamlit app, started together (each takes seconds), registered with
    the resolver with the strip rule from root_path_env."""
    tmp = tmp_path_factory.mktemp("sdk_apps")
    apps: dict[str, SdkApp] = {}
    try:
        apps["gradio"] = _start_sdk_app("gradio", "gr/hello", tmp)
        apps["streamlit"] = _start_sdk_app("streamlit", "st/hello", tmp)
        _wait_ready(apps["gradio"], "/gradio_api/info")
        _wait_ready(apps["streamlit"], "/apps/st/hello/_stcore/health")
        for sdk, app in apps.items():
            owner, name = app.space.split("/")
            prefix = path_prefix(owner, name)
            _, strip = root_path_env(sdk, prefix)
            resolver.set(app.space, Target(app.space, f"127.0.0.1:{app.port}", prefix, strip))
        yield apps
    finally:
        for app in apps.values():
            app.process.terminate()
            try:
                app.process.wait(10)
            except subprocess.TimeoutExpired:
                app.process.kill()
