"""Added latency of the router: the same requests sent straight to an app and through RouterMiddleware.

    .venv/bin/python bench/router_latency.py [--requests 300] [--rounds 5]

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

    app = upstream_app() if role == "upstream" else router_app(upstream_port)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(role: str, port: int, upstream_port: int = 0) -> subprocess.Popen:
    args = [sys.executable, __file__, "--serve", role, "--port", str(port), "--upstream-port", str(upstream_port)]
    process = subprocess.Popen(args, cwd=ROOT, env=os.environ | {"PYTHONPATH": str(ROOT)})
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per case per round (max 5000)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--serve", choices=["upstream", "router"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream-port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.upstream_port)
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
