"""Proxy replicas as HAProxy peers (the Helm chart's StatefulSet, docs/router.md "On Kubernetes"): a Gradio session
pinned through one replica is followed by the other, across a redeploy, and a replica restarted empty learns the
pins from its peer. Also the readiness port: 503 until the pusher has loaded a table. Two real HAProxy processes,
two app instances that say which they are, the real pusher. As on the cluster, the replica started first could not
resolve the other's name (an address nothing listens on): the pins travel over the connection the other one opens.
Skips where HAProxy is not installed."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.proxy import admin, kube
from controlplane.proxy.config import SESSIONS_TABLE, Layout, Peers, Route, Table, config, files, instance_key
from controlplane.proxy.pusher import Pusher
from tests.router.conftest import APPS_DOMAIN, ServerThread, free_port
from tests.router.test_proxy import _wait
from tests.router.test_proxy_sessions import instance, release

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")

HOST = {"Host": f"pin-gr.{APPS_DOMAIN}"}


@dataclass
class Replica:
    url: str
    admin: str
    ready: str
    cfg: Path
    proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(self.cfg)], stderr=subprocess.DEVNULL)
        _wait(lambda: httpx.get(self.url, timeout=1).status_code > 0)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)

    def join(self, session: str) -> str:
        body = {"data": [], "session_hash": session}
        return httpx.post(f"{self.url}gradio_api/queue/join", json=body, headers=HOST, timeout=5).json()["instance"]

    def data(self, session: str) -> str:
        url = f"{self.url}gradio_api/queue/data?session_hash={session}"
        with httpx.stream("GET", url, headers=HOST, timeout=5) as stream:
            return next(stream.iter_lines()).removeprefix("data: ")

    def pin(self, session: str) -> int | None:
        """The instance number the replica's sessions table holds for `session` on the Space (None: no entry)."""
        out = asyncio.run(admin.send(self.admin, f"show table {SESSIONS_TABLE} key {session}@/apps/pin/gr"))
        for field in out.split():
            if field.startswith("gpt0="):
                return int(field.removeprefix("gpt0="))
        return None

    def readiness(self) -> int:
        return httpx.get(f"http://{self.ready}/", timeout=5).status_code


def space(server: ServerThread) -> Route:
    return Route("pin/gr", "pin-gr", f"127.0.0.1:{server.port}", "/apps/pin/gr", True)


@dataclass
class Setup:
    a: Replica  # started first: the other's name did not resolve
    b: Replica
    pusher: Pusher
    routes: list[Route]
    loop: asyncio.AbstractEventLoop

    def set_routes(self, routes: list[Route]) -> None:
        self.routes[:] = routes
        self.pusher.changed()


@pytest.fixture(scope="module")
def instances() -> Iterator[tuple[ServerThread, ServerThread]]:
    release.set()  # a queue/data stream sends which instance it is and ends
    with ServerThread(instance("old")) as old, ServerThread(instance("new")) as new:
        yield old, new


@pytest.fixture
def setup(instances, tmp_path: Path) -> Iterator[Setup]:
    old, _ = instances
    with ServerThread(Starlette()) as nothing:  # the control plane: 404 for every app URL
        layout = Layout(
            listen="",
            controlplane=f"127.0.0.1:{nothing.port}",
            folder=str(tmp_path),
            socket="",
            apps_domain=APPS_DOMAIN,
            path_urls=False,
        )
        for name, text in files(Table(0, ()), layout).items():
            if name != "haproxy.cfg":
                (tmp_path / name).write_text(text)
        peer_a, peer_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        replicas = []
        for name, bind, others in (("a", peer_a, (("b", kube.UNRESOLVED_PEER),)), ("b", peer_b, (("a", peer_a),))):
            url, adm, ready = (f"127.0.0.1:{free_port()}" for _ in range(3))
            cfg = tmp_path / f"haproxy-{name}.cfg"
            peers = Peers(local=name, bind=bind, others=others)
            cfg.write_text(config(replace(layout, listen=url, socket=f"ipv4@{adm}", peers=peers, ready=ready)))
            replicas.append(Replica(f"http://{url}/", adm, ready, cfg))
            replicas[-1].start()
        a, b = replicas
        # Nothing pushed yet: not ready (the chart's probe keeps the proxy Service from sending it requests).
        assert a.readiness() == 503 and b.readiness() == 503
        routes = [space(old)]
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        pusher = Pusher(layout, lambda: tuple(routes), check_interval=0.2, targets=[a.admin, b.admin])
        task = asyncio.run_coroutine_threadsafe(pusher.run(), loop)
        try:
            yield Setup(a, b, pusher, routes, loop)
        finally:
            task.cancel()
            for r in replicas:
                r.stop()
            loop.call_soon_threadsafe(loop.stop)


def test_a_replica_is_ready_once_it_holds_a_table(setup: Setup) -> None:
    _wait(lambda: setup.a.readiness() == 200 and setup.b.readiness() == 200)
    assert setup.a.join("warm-up") == "old" and setup.b.join("warm-up") == "old"


def test_a_session_pinned_on_one_replica_is_followed_by_the_other_after_a_switch(setup: Setup, instances) -> None:
    old, new = instances
    a, b = setup.a, setup.b
    _wait(lambda: a.join("warm-up") == "old" and b.join("warm-up") == "old")
    assert a.join("s1") == "old"  # pinned through a, before the redeploy
    _wait(lambda: b.pin("s1") == instance_key(space(old).upstream))
    setup.pusher.drain(space(old).upstream)  # what the deployer does before the switch commits
    setup.set_routes([space(new)])
    _wait(lambda: a.join("s2") == "new" and b.join("s3") == "new")
    # The session's stream reaches b: it goes where the session's join went, the old instance.
    assert b.data("s1") == "old"
    # And the other way round: a session that joined through b after the switch is on the new instance for a.
    _wait(lambda: a.pin("s3") == instance_key(space(new).upstream))
    assert a.data("s3") == "new"


def test_a_replica_restarted_empty_learns_the_pins_from_its_peer(setup: Setup, instances) -> None:
    old, new = instances
    a, b = setup.a, setup.b
    _wait(lambda: a.join("warm-up") == "old")
    assert a.join("s1") == "old" and b.join("s2") == "old"
    _wait(lambda: b.pin("s1") is not None and a.pin("s2") is not None)
    for restarted, other in ((b, a), (a, b)):
        restarted.stop()
        restarted.start()  # an empty table; b reconnects to a, a is reached by b again
        _wait(lambda r=restarted: r.pin("s1") is not None and r.pin("s2") is not None, timeout=20)
        assert other.pin("s1") == restarted.pin("s1") == instance_key(space(old).upstream)
    # The restarted replicas route by what they learned: after a switch, the sessions' streams stay on the old one.
    _wait(lambda: a.readiness() == 200 and b.readiness() == 200)
    setup.pusher.drain(space(old).upstream)
    setup.set_routes([space(new)])
    _wait(lambda: a.join("s9") == "new" and b.join("s9") == "new")
    assert a.data("s2") == "old" and b.data("s1") == "old"
