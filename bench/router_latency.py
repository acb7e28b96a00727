"""Added latency of the router: the same requests sent straight to an app and through RouterMiddleware.

    .venv/bin/python bench/router_latency.py [--requests 300] [--rounds 5]
    .venv/bin/python bench/router_latency.py --throughput [--duration 5] [--runs 3]

`--throughput`: wrk (Debian's) at 1, 8 and 32 connections against the same app three ways: direct, through
HAProxy as the platform configures it (controlplane/proxy/config.py: the Space's map entries, its log to a UDP
port), and through the Python router (the control plane's path); req/s with the ratio to direct, p50 and p99;
the median of `--runs` runs of each cell. Then an unknown host (HAProxy to the control plane's 404), and route
changes through the real pusher: replacing every map (`--spaces` entries) and adding one Space, each timed to the
first request the new table serves.

Loopback only. The app and the router each run as their own uvicorn process (as in production, where the
app is another container); the client sends requests one at a time over a kept-alive connection, alternating
direct and routed rounds so drift on the machine hits both alike. Prints the median over rounds of each
round's median and p95, in milliseconds.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
SPACE = "bench/echo"
PREFIX = "/apps/bench/echo"


def upstream_app():
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket

    async def ping(request: Request) -> Response:
        return Response(b"pong")

    async def echo(request: Request) -> Response:
        return Response(await request.body())

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        while (message := await websocket.receive()).get("text") is not None:
            await websocket.send_text(message["text"])

    return Starlette(routes=[Route("/ping", ping), Route("/echo", echo, methods=["POST"]), WebSocketRoute("/ws", ws)])


def router_app(upstream_port: int):
    from fastapi import FastAPI

    from controlplane.router.proxy import RouterMiddleware
    from controlplane.router.resolver import StaticResolver, Target

    resolver = StaticResolver({SPACE: Target(SPACE, f"127.0.0.1:{upstream_port}", PREFIX, strip_prefix=True)})
    return RouterMiddleware(FastAPI(), resolver, "localhost")


def serve(role: str, port: int, upstream_port: int) -> None:
    import uvicorn

    if role == "gradio":  # the app the issue measured: a Gradio hello world, GET /gradio_api/info
        import gradio as gr

        gr.Interface(lambda name: f"Hello {name}", "text", "text").launch(server_name="127.0.0.1", server_port=port)
        return
    app = upstream_app() if role == "upstream" else router_app(upstream_port)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(role: str, port: int, upstream_port: int = 0) -> subprocess.Popen:
    args = [sys.executable, __file__, "--serve", role, "--port", str(port), "--upstream-port", str(upstream_port)]
    env = os.environ | {"PYTHONPATH": str(ROOT), "GRADIO_ANALYTICS_ENABLED": "False"}
    process = subprocess.Popen(args, cwd=ROOT, env=env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return process
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"{role} did not start")


def timed(fn: Callable[[], object], n: int) -> list[float]:
    for _ in range(min(20, n)):  # warm up connections and code paths
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def _log_sink() -> int:
    """The access log goes somewhere, as on the platform: a UDP socket read and dropped here."""
    import threading

    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    threading.Thread(target=lambda: [sink.recv(65536) for _ in iter(int, 1)], daemon=True).start()
    return sink.getsockname()[1]


def _others(spaces: int) -> tuple:
    """Other Spaces in the table (their containers need not exist: only the lookup is measured)."""
    from controlplane.proxy.config import Route

    return tuple(
        Route(f"u{i}/s{i}", f"u{i}-s{i}", f"127.0.0.1:{1 + i % 60000}", f"/apps/u{i}/s{i}", i % 2 == 0)
        for i in range(spaces - 1)
    )


def _wait_ok(url: str, processes: list[subprocess.Popen], what: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    for process in processes:
        process.kill()
    raise RuntimeError(f"{what} did not start")


def start_haproxy(
    folder: Path, port: int, upstream_port: int, router_port: int, path: str, spaces: int
) -> list[subprocess.Popen]:
    from controlplane.proxy.config import Layout, Route, Table, files

    sink = _log_sink()
    layout = Layout(
        listen=f"127.0.0.1:{port}",
        controlplane=f"127.0.0.1:{router_port}",
        folder=str(folder),
        socket=str(folder / "admin.sock"),
        apps_domain="localhost",
        path_urls=True,
        activity=f"127.0.0.1:{sink}",
    )
    table = Table(1, (*_others(spaces), Route(SPACE, "bench-echo", f"127.0.0.1:{upstream_port}", PREFIX, True)))
    folder.mkdir(exist_ok=True)
    for name, text in files(table, layout).items():
        (folder / name).write_text(text)
    process = subprocess.Popen(
        ["haproxy", "-db", "-f", str(folder / "haproxy.cfg")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_ok(f"http://127.0.0.1:{port}{PREFIX}{path}", [process], "haproxy")
    return [process]


def route_changes(
    folder: Path, port: int, upstream_port: int, router_port: int, path: str, spaces: int
) -> dict[str, float]:
    """Through the real pusher (controlplane/proxy/pusher.py) on the proxy started above."""
    import asyncio

    from controlplane.proxy.config import Layout, Route, Table
    from controlplane.proxy.pusher import Pusher

    layout = Layout(
        listen=f"127.0.0.1:{port}",
        controlplane=f"127.0.0.1:{router_port}",
        folder=str(folder),
        socket=str(folder / "admin.sock"),
        apps_domain="localhost",
        path_urls=True,
    )
    base = (*_others(spaces), Route(SPACE, "bench-echo", f"127.0.0.1:{upstream_port}", PREFIX, True))
    extra = Route("bench/new", "bench-new", f"127.0.0.1:{upstream_port}", "/apps/bench/new", True)
    routes = list(base)
    pusher = Pusher(layout, lambda: tuple(routes))
    pusher.table = Table(1, base)

    async def timed(client: httpx.AsyncClient, force: bool, expect: int) -> float:
        start = time.perf_counter()
        await pusher.push(force)
        while (await client.get(f"http://127.0.0.1:{port}/apps/bench/new{path}")).status_code != expect:
            pass
        return (time.perf_counter() - start) * 1000

    async def measure() -> dict[str, float]:
        out: dict[str, list[float]] = {"replace": [], "add": [], "remove": []}
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}{PREFIX}{path}")  # a kept-alive connection to poll on
            for _ in range(5):
                routes[:] = [*base, extra]
                out["replace"].append(await timed(client, True, 200))
                routes[:] = base
                out["remove"].append(await timed(client, False, 404))
                routes[:] = [*base, extra]
                out["add"].append(await timed(client, False, 200))
                routes[:] = base
                await pusher.push()
        return {k: statistics.median(v) for k, v in out.items()}

    return asyncio.run(measure())


_UNIT = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, duration: int, host: str | None = None) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) of one wrk run."""
    import re

    extra = ["-H", f"Host: {host}"] if host else []
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout

    def percentile(p: int) -> float:
        value, unit = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * _UNIT[unit]

    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), percentile(50), percentile(99)


def throughput(duration: int, runs: int, app: str, spaces: int) -> None:
    import tempfile

    upstream_port, router_port, haproxy_port = free_port(), free_port(), free_port()
    path = "/gradio_api/info" if app == "gradio" else "/ping"
    processes = [start("gradio" if app == "gradio" else "upstream", upstream_port)]
    with tempfile.TemporaryDirectory() as tmp:
        try:
            processes.append(start("router", router_port, upstream_port))
            processes += start_haproxy(Path(tmp) / "haproxy", haproxy_port, upstream_port, router_port, path, spaces)
            urls = {
                "direct": f"http://127.0.0.1:{upstream_port}{path}",
                "haproxy": f"http://127.0.0.1:{haproxy_port}{PREFIX}{path}",
                "python router": f"http://127.0.0.1:{router_port}{PREFIX}{path}",
            }
            cells: dict[tuple[str, int], list[tuple[float, float, float]]] = {}
            for _ in range(runs):
                for connections in (1, 8, 32):
                    for way, url in urls.items():  # alternating, so drift on the machine hits all alike
                        cells.setdefault((way, connections), []).append(wrk(url, connections, duration))
                # A host that is no Space: the proxy hands it to the control plane's router, which answers 404.
                cells.setdefault(("unknown host", 1), []).append(
                    wrk(f"http://127.0.0.1:{haproxy_port}/", 1, duration, host="nobody-here.localhost")
                )
            changes = route_changes(Path(tmp) / "haproxy", haproxy_port, upstream_port, router_port, path, spaces)
        finally:
            for process in reversed(processes):
                process.terminate()
                process.wait(10)
    print(
        f"wrk -t1 -d{duration}s, GET {path} ({app}), loopback, {spaces} Spaces in the route table; "
        f"median of {runs} runs"
    )
    print(f"{'connections':<12}{'way':<15}{'req/s':>9}{'x direct':>10}{'p50 ms':>9}{'p99 ms':>9}")
    for connections in (1, 8, 32):
        direct = statistics.median(r[0] for r in cells[("direct", connections)])
        for way in urls:
            rps, p50, p99 = (statistics.median(col) for col in zip(*cells[(way, connections)], strict=True))
            print(f"{connections:<12}{way:<15}{rps:>9.0f}{rps / direct:>10.2f}{p50:>9.2f}{p99:>9.2f}")
    rps, p50, p99 = (statistics.median(col) for col in zip(*cells[("unknown host", 1)], strict=True))
    print(f"unknown host through haproxy, 1 connection: {rps:.0f} req/s, p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    print(
        f"route changes, change to first request served (ms, median of 5): every map replaced "
        f"({spaces} Spaces) {changes['replace']:.1f}; one Space added {changes['add']:.1f}, removed "
        f"{changes['remove']:.1f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per case per round (max 5000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=["upstream", "router", "gradio"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--throughput", action="store_true", help="the wrk table (direct, HAProxy, Python router)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--runs", type=int, default=3, help="wrk runs per cell")
    parser.add_argument("--spaces", type=int, default=1, help="--throughput: Spaces in the proxy's route table")
    parser.add_argument(
        "--app",
        choices=["gradio", "starlette"],
        default="gradio",
        help="--throughput's app: Gradio's /gradio_api/info, or a bare Starlette /ping",
    )
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream_port)
        return
    if args.throughput:
        throughput(args.duration, args.runs, args.app, max(1, args.spaces))
        return
    n = max(20, min(args.requests, 5000))
    upstream_port, router_port = free_port(), free_port()
    processes = [start("upstream", upstream_port)]
    try:
        processes.append(start("router", router_port, upstream_port))
        bases = {"direct": f"127.0.0.1:{upstream_port}", "router": f"127.0.0.1:{router_port}{PREFIX}"}
        body = os.urandom(64 * 1024)
        results: dict[tuple[str, str], list[tuple[float, float]]] = {}
        with httpx.Client(trust_env=False) as client:
            for _ in range(args.rounds):
                for way, base in bases.items():
                    cases = {
                        "GET small": lambda b=base: client.get(f"http://{b}/ping").raise_for_status(),
                        "POST 64 KiB": lambda b=base: client.post(f"http://{b}/echo", content=body).raise_for_status(),
                    }
                    with connect(f"ws://{base}/ws", proxy=None, compression=None) as ws:

                        def roundtrip(ws=ws) -> None:
                            ws.send("x")
                            ws.recv()

                        cases["WebSocket echo"] = roundtrip
                        for case, fn in cases.items():
                            samples = timed(fn, n)
                            results.setdefault((case, way), []).append((statistics.median(samples), p95(samples)))
    finally:
        for process in processes:
            process.terminate()
            process.wait(10)
    print(f"{n} requests x {args.rounds} rounds, sequential, loopback; ms (median over rounds)")
    print(f"{'case':<16}{'direct p50':>12}{'router p50':>12}{'added':>9}{'direct p95':>12}{'router p95':>12}")
    for case in ("GET small", "POST 64 KiB", "WebSocket echo"):
        d50, d95 = (statistics.median(col) for col in zip(*results[(case, "direct")], strict=True))
        r50, r95 = (statistics.median(col) for col in zip(*results[(case, "router")], strict=True))
        print(f"{case:<16}{d50:>12.3f}{r50:>12.3f}{r50 - d50:>9.3f}{d95:>12.3f}{r95:>12.3f}")


if __name__ == "__main__":
    main()
