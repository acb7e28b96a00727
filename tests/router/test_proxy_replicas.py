"""Several proxy replicas (the Helm chart's proxy StatefulSet), one pusher: each replica's runtime API is a TCP
address, each is brought to the latest table on its own. Two real HAProxy processes; the control plane behind
them answers 404 to everything, so a 200 means the replica itself held the route. Skips where HAProxy is not
installed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.proxy.config import Layout, Route, Table, config, files
from controlplane.proxy.pusher import Pusher
from tests.router.conftest import APPS_DOMAIN, ServerThread, free_port
from tests.router.test_proxy import _wait

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")


@dataclass
class Replica:
    url: str
    admin: str  # host:port of its runtime API
    cfg: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stderr=subprocess.DEVNULL)
        _wait(lambda: httpx.get(self.url, timeout=1).status_code > 0)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def serves(self, label: str) -> bool:
        return httpx.get(self.url, headers={"Host": f"{label}.{APPS_DOMAIN}"}, timeout=5).status_code == 200


def route(upstream: ServerThread, name: str) -> Route:
    return Route(f"alice/{name}", f"alice-{name}", f"127.0.0.1:{upstream.port}", f"/apps/alice/{name}", True)


@dataclass
class Setup:
    replicas: list[Replica]
    pusher: Pusher
    routes: list[Route]
    loop: asyncio.AbstractEventLoop

    def call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def set_routes(self, routes: list[Route]) -> None:
        self.routes[:] = routes
        self.pusher.changed()


@pytest.fixture
def setup(upstream: ServerThread, tmp_path: Path) -> Iterator[Setup]:
    with ServerThread(Starlette()) as nothing:  # the control plane: 404 for every app URL
        yield from _setup(upstream, tmp_path, f"127.0.0.1:{nothing.port}")


def shared_layout(tmp_path: Path, controlplane: str) -> Layout:
    """One layout for the map paths (every replica has the same files, as the chart's pods do), those files written;
    each replica gets its own listen port and runtime API port from it."""
    layout = Layout(
        listen="",
        controlplane=controlplane,
        folder=str(tmp_path),
        socket="",
        apps_domain=APPS_DOMAIN,
        path_urls=False,
    )
    for name, text in files(Table(0, ()), layout).items():
        if name != "haproxy.cfg":
            (tmp_path / name).write_text(text)
    return layout


def _setup(upstream: ServerThread, tmp_path: Path, controlplane: str) -> Iterator[Setup]:
    layout = shared_layout(tmp_path, controlplane)
    replicas = []
    for i in range(2):
        url, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        cfg = tmp_path / f"haproxy-{i}.cfg"
        cfg.write_text(config(replace(layout, listen=url, socket=f"ipv4@{admin}")))
        replicas.append(Replica(f"http://{url}/", admin, cfg))
        replicas[-1].start()
    routes = [route(upstream, "one")]
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    pusher = Pusher(layout, lambda: tuple(routes), check_interval=0.2, targets=[r.admin for r in replicas])
    task = asyncio.run_coroutine_threadsafe(pusher.run(), loop)
    yield Setup(replicas, pusher, routes, loop)
    task.cancel()
    for r in replicas:
        if r.proc is not None and r.proc.poll() is None:
            os.kill(r.proc.pid, signal.SIGCONT)
        r.stop()
    loop.call_soon_threadsafe(loop.stop)


def test_every_replica_serves_the_routes_and_follows_changes(setup: Setup, upstream: ServerThread) -> None:
    a, b = setup.replicas
    _wait(lambda: a.serves("alice-one") and b.serves("alice-one"))
    setup.set_routes([route(upstream, "two")])
    _wait(lambda: a.serves("alice-two") and b.serves("alice-two"))
    assert not a.serves("alice-one") and not b.serves("alice-one")
    assert setup.call(setup.pusher.loaded()) == setup.pusher.table.version


def test_a_hung_replica_does_not_hold_back_the_other(setup: Setup, upstream: ServerThread) -> None:
    a, b = setup.replicas
    _wait(lambda: a.serves("alice-one") and b.serves("alice-one"))
    os.kill(a.proc.pid, signal.SIGSTOP)  # accepts connections (the kernel does), answers nothing
    try:
        setup.set_routes([route(upstream, "one"), route(upstream, "two")])
        _wait(lambda: b.serves("alice-two"))
        # Still hung: the change reached b while a's push was waiting on a.
        assert setup.call(setup.pusher.replicas[b.admin].loaded(setup.pusher.layout)) == setup.pusher.table.version
    finally:
        os.kill(a.proc.pid, signal.SIGCONT)
    _wait(lambda: a.serves("alice-two"), timeout=30)  # after its timed-out push, the next check replaces its maps


def test_a_restarted_replica_gets_the_whole_table_and_the_other_is_not_rolled_back(
    setup: Setup, upstream: ServerThread
) -> None:
    a, b = setup.replicas
    setup.set_routes([route(upstream, "one"), route(upstream, "two")])
    _wait(lambda: a.serves("alice-two") and b.serves("alice-two"))
    held_by_b = setup.call(setup.pusher.replicas[b.admin].loaded(setup.pusher.layout))
    a.stop()
    a.start()  # from the empty maps it was first started from (the pusher writes files only for a local proxy)
    _wait(lambda: a.serves("alice-one") and a.serves("alice-two"))
    assert setup.call(setup.pusher.replicas[b.admin].loaded(setup.pusher.layout)) == held_by_b
    assert b.serves("alice-one") and b.serves("alice-two")


def test_a_replica_that_appears_starts_empty_and_is_sent_the_table(setup: Setup, upstream: ServerThread) -> None:
    a, b = setup.replicas
    _wait(lambda: a.serves("alice-one") and b.serves("alice-one"))
    # A new pod: empty maps (as the chart's init container writes them; same paths as every replica's), found by
    # discovery. The running replicas read their files only when they start.
    layout = setup.pusher.layout
    for name, text in files(Table(0, ()), layout).items():
        if name.endswith(".map"):
            Path(layout.path(name)).write_text(text)
    url, admin = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    cfg = Path(layout.folder) / "haproxy-new.cfg"
    cfg.write_text(config(replace(layout, listen=url, socket=f"ipv4@{admin}")))
    c = Replica(f"http://{url}/", admin, cfg)
    c.start()
    setup.replicas.append(c)
    assert not c.serves("alice-one")
    setup.loop.call_soon_threadsafe(setup.pusher.set_targets, [a.admin, b.admin, c.admin])
    _wait(lambda: c.serves("alice-one"))
    # Gone from discovery: no longer pushed to (its version stays while the others move on).
    setup.loop.call_soon_threadsafe(setup.pusher.set_targets, [a.admin, b.admin])
    _wait(lambda: c.admin not in setup.pusher.replicas)
    setup.set_routes([route(upstream, "two")])
    _wait(lambda: a.serves("alice-two") and b.serves("alice-two"))
    assert c.serves("alice-one") and not c.serves("alice-two")
