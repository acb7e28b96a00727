"""Route propagation: from the commit of a stage change to every proxy replica serving the new table.

    .venv/bin/python bench/route_propagation.py [--spaces 1 10000] [--runs 9]

The parts are the real ones: a SQLite database made by the migrations with N running public Spaces, the control
plane's pusher (controlplane/proxy/pusher.py) reading them through `RunningRoutes` and told by the stage
announcement after each commit (`stages.on_committed_change`, as the control plane wires it), and two HAProxy
processes with TCP runtime APIs, as the Helm chart's replicas are. Each run commits one Space RUNNING (`set_stage`
with its endpoint) and times the moment both replicas have applied it through their runtime API (which applies a
change before it answers); then one request to each replica checks that it serves the Space (a 200 from the app;
before, the control plane behind the replicas answers 404). The same for committing it STOPPED (404 after). The
baselines, in the same run: one Space in the table, and every row read again on each change (as the pusher did
before `RunningRoutes`). The issue's goal: within 100 ms.
Prints median and max over runs, in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import http.server
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controlplane.core.config import Settings  # noqa: E402
from controlplane.core.db import Database, migrate  # noqa: E402
from controlplane.models import Space  # noqa: E402
from controlplane.proxy.config import Layout, Table, config, files  # noqa: E402
from controlplane.proxy.pusher import Pusher  # noqa: E402
from controlplane.proxy.routes import RunningRoutes  # noqa: E402
from controlplane.stages import Stage, on_committed_change, set_stage  # noqa: E402

DOMAIN = "localhost"
GOAL_MS = 100.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(address: str) -> None:
    host, port = address.rsplit(":", 1)
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def http_server(status: int) -> int:
    """A loopback HTTP server answering `status` to every GET, on a thread; returns its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def seed(db: Database, n: int, app_port: int) -> None:
    with db.session() as s:
        s.add_all(
            Space(owner="bench", name=f"s{i:05d}", sdk="docker", private=False, stage="RUNNING",
                  endpoint=f"127.0.0.1:{app_port}", hardware_requested="cpu-basic")
            for i in range(n)
        )
        s.add(Space(owner="bench", name="new", sdk="docker", private=False, stage="STOPPED",
                    hardware_requested="cpu-basic"))


def commit_stage(db: Database, stage: Stage, endpoint: str | None) -> None:
    with db.session() as s:
        space = s.query(Space).filter_by(owner="bench", name="new").one()
        space.endpoint = endpoint
        set_stage(s, space, stage)


def until_held(pusher: Pusher, present: bool, started: float) -> float:
    """Milliseconds until every replica has applied a table with (or without) the Space. The runtime API applies
    a change before it answers, so a replica serves it from then on. Polled gently, so that the poll does not take
    the GIL from the pusher's threads (in production the clients are other processes)."""
    while True:
        table = pusher.table
        if (any(r.space == "bench/new" for r in table.routes) == present
                and all(r.pushed == table.version for r in list(pusher.replicas.values()))):
            return (time.perf_counter() - started) * 1000
        time.sleep(0.0005)


def serves(client: httpx.Client, status: int) -> None:
    answer = client.get("/", headers={"Host": f"bench-new.{DOMAIN}"}).status_code
    if answer != status:
        raise SystemExit(f"a replica answered {answer}, not {status}, after the pusher said it held the change")


def measure(spaces: int, runs: int, read_all: bool) -> dict[str, list[float]]:
    app_port, cp_port = http_server(200), http_server(404)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        settings = Settings(data_dir=folder / "data", secret_key="bench")
        settings.data_dir.mkdir()
        migrate(settings.sqlalchemy_url)
        db = Database(settings)
        seed(db, spaces, app_port)
        layout = Layout(listen="", controlplane=f"127.0.0.1:{cp_port}", folder=str(folder), socket="",
                        apps_domain=DOMAIN, path_urls=True)
        for name, text in files(Table(0, ()), layout).items():
            if name != "haproxy.cfg":
                (folder / name).write_text(text)
        procs, clients, admins = [], [], []
        for i in range(2):
            listen, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
            cfg = folder / f"haproxy-{i}.cfg"
            cfg.write_text(config(replace(layout, listen=listen, socket=f"ipv4@{admin}")))
            procs.append(subprocess.Popen(["haproxy", "-db", "-f", str(cfg)], stderr=subprocess.DEVNULL))
            listening(admin)
            clients.append(httpx.Client(base_url=f"http://{listen}", timeout=5))
            admins.append(admin)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        running = RunningRoutes(db)

        def every_row() -> tuple:
            running.changed()  # as if no change named its Space: how every change was read before RunningRoutes
            return running()

        pusher = Pusher(layout, every_row if read_all else running, targets=admins)
        task = asyncio.run_coroutine_threadsafe(pusher.run(), loop)
        stops = [on_committed_change(running.changed), on_committed_change(pusher.changed)]  # as app.py wires them
        out: dict[str, list[float]] = {"add": [], "remove": []}
        try:
            deadline = time.monotonic() + 60
            while asyncio.run_coroutine_threadsafe(pusher.loaded(), loop).result(10) != pusher.table.version or (
                not pusher.table.version
            ):
                if time.monotonic() > deadline:
                    raise SystemExit("the replicas never loaded the first table")
                time.sleep(0.05)
            for _ in range(runs):
                for kind, stage, endpoint, status in (
                    ("add", Stage.RUNNING, f"127.0.0.1:{app_port}", 200),
                    ("remove", Stage.STOPPED, None, 404),
                ):
                    started = time.perf_counter()
                    commit_stage(db, stage, endpoint)
                    out[kind].append(until_held(pusher, kind == "add", started))
                    for c in clients:
                        serves(c, status)
                    time.sleep(0.2)
        finally:
            for stop in stops:
                stop()
            task.cancel()
            loop.call_soon_threadsafe(loop.stop)
            for c in clients:
                c.close()
            for p in procs:
                p.terminate()
                p.wait(10)
            db.engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", type=int, nargs="+", default=[1, 10_000])
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    if shutil.which("haproxy") is None:
        raise SystemExit("HAProxy is not installed (scripts/setup.sh installs it)")
    print(f"commit -> both of 2 HAProxy replicas serving it, ms (median / max of {args.runs}; goal {GOAL_MS:.0f})\n")
    print(f"{'Spaces in table':>16} {'rows read':>14} {'add median':>11} {'add max':>8} {'remove median':>14} "
          f"{'remove max':>11}")
    for n in args.spaces:
        for read_all in (False, True):
            times = measure(n, args.runs, read_all)
            add, remove = times["add"], times["remove"]
            print(f"{n:>16} {'all' if read_all else 'the announced':>14} {statistics.median(add):>11.1f} "
                  f"{max(add):>8.1f} {statistics.median(remove):>14.1f} {max(remove):>11.1f}")


if __name__ == "__main__":
    main()
