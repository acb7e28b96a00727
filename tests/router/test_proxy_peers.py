"""Proxy replicas as HAProxy peers (the Helm chart's StatefulSet, docs/router.md "On Kubernetes"): a Gradio session
pinned through one replica is followed by the other, across a redeploy, and a replica restarted empty learns the
pins from its peer. Also the readiness port: 503 until the pusher has loaded a table. With the relay (as the chart
runs them), every request of a session is served by its owner replica, so a join keeps to a stream opened through
the other replica, and a replica whose owner is down serves the session itself. Two real HAProxy processes, two app
instances that say which they are, the real pusher. As on the cluster, the replica started first could not resolve
the other's name (an address nothing listens on): the pins travel over the connection the other one opens. Skips
where HAProxy is not installed."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.proxy import admin, kube
from controlplane.proxy.config import (
    SESSIONS_TABLE,
    Peers,
    Relay,
    Route,
    config,
    instance_key,
)
from controlplane.proxy.pusher import Pusher
from tests.router import test_proxy_replicas
from tests.router.conftest import APPS_DOMAIN, ServerThread, free_port
from tests.router.test_proxy import _wait
from tests.router.test_proxy_sessions import instance, release

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")

HOST = {"Host": f"pin-gr.{APPS_DOMAIN}"}


@dataclass
class Replica(test_proxy_replicas.Replica):
    ready: str = ""  # host:port of its readiness frontend

    def join(self, session: str) -> str:
        """The instance that answered the join; "" while the replica holds no route (the control plane's 404)."""
        body = {"data": [], "session_hash": session}
        resp = httpx.post(f"{self.url}gradio_api/queue/join", json=body, headers=HOST, timeout=5)
        return resp.json()["instance"] if resp.status_code == 200 else ""

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

    def relays_up(self) -> bool:
        """Its relay servers (the other replicas) pass their health checks."""
        stats = asyncio.run(admin.send(self.admin, "show stat")).splitlines()
        owners = [line.split(",") for line in stats if line.startswith("relay-") and ",owner," in line]
        return bool(owners) and all(row[17] == "UP" for row in owners)

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
    yield from _setup(instances, tmp_path, relay=False)


@pytest.fixture
def relayed(instances, tmp_path: Path) -> Iterator[Setup]:
    yield from _setup(instances, tmp_path, relay=True)


def owner(session: str) -> int:
    """The replica that serves the session's requests (HAProxy's crc32 is zlib's)."""
    return zlib.crc32(f"{session}@/apps/pin/gr".encode()) % 2


def owned_by(ordinal: int) -> str:
    return next(s for s in (f"s{i}" for i in range(100)) if owner(s) == ordinal)


def _setup(instances, tmp_path: Path, relay: bool) -> Iterator[Setup]:
    old, _ = instances
    with ServerThread(Starlette()) as nothing:  # the control plane: 404 for every app URL
        layout = test_proxy_replicas.shared_layout(tmp_path, f"127.0.0.1:{nothing.port}")
        peer_a, peer_b = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        relays = (f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}")
        replicas = []
        for i, (name, bind, others) in enumerate(
            (("a", peer_a, (("b", kube.UNRESOLVED_PEER),)), ("b", peer_b, (("a", peer_a),)))
        ):
            url, adm, ready = (f"127.0.0.1:{free_port()}" for _ in range(3))
            cfg = tmp_path / f"haproxy-{name}.cfg"
            peers = Peers(local=name, bind=bind, others=others)
            lay = replace(layout, listen=url, socket=f"ipv4@{adm}", peers=peers, ready=ready)
            if relay:
                lay = replace(lay, relay=Relay(ordinal=i, bind=relays[i], replicas=relays))
            cfg.write_text(config(lay))
            replicas.append(Replica(f"http://{url}/", adm, cfg, ready=ready))
            replicas[-1].start()
        a, b = replicas
        # Nothing pushed yet: not ready (the chart's probe keeps the proxy Service from sending it requests).
        assert a.readiness() == 503 and b.readiness() == 503
        if relay:  # until then, a replica serves the other's sessions itself
            _wait(lambda: a.relays_up() and b.relays_up())
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


def test_with_the_relay_a_join_keeps_to_a_stream_opened_through_the_other_replica(relayed: Setup, instances) -> None:
    old, new = instances
    a, b = relayed.a, relayed.b
    _wait(lambda: a.join("warm-up") == "old" and b.join("warm-up") == "old")
    sessions = {owned_by(0): b, owned_by(1): a}  # each session's stream through the replica that does not own it
    for session, through in sessions.items():
        assert through.join(session) == "old"
    release.clear()
    client, streams = httpx.Client(timeout=10), []
    try:
        for session, through in sessions.items():
            url = f"{through.url}gradio_api/queue/data?session_hash={session}"
            streams.append(client.send(client.build_request("GET", url, headers=HOST), stream=True))
            assert next(streams[-1].iter_lines()) == "data: old"
        relayed.pusher.drain(space(old).upstream)
        relayed.set_routes([space(new)])
        _wait(lambda: a.join("x") == "new" and b.join("x") == "new")
        # A later call of each session, whichever replica its join reaches: to the instance its stream is open on.
        for session in sessions:
            assert a.join(session) == "old" and b.join(session) == "old"
    finally:
        release.set()
        for stream in streams:
            stream.close()
        client.close()
    # The streams ended: the sessions' next calls move to the new instance.
    _wait(lambda: all(a.join(s) == "new" and b.join(s) == "new" for s in sessions))


def test_with_the_relay_a_session_whose_owner_is_down_is_served_by_the_replica_reached(
    relayed: Setup, instances
) -> None:
    old, new = instances
    a, b = relayed.a, relayed.b
    _wait(lambda: a.join("warm-up") == "old" and b.join("warm-up") == "old")
    session = owned_by(1)
    assert a.join(session) == "old"  # pinned by b, its owner; a has it through the peers
    _wait(lambda: a.pin(session) == instance_key(space(old).upstream))
    b.stop()
    relayed.pusher.drain(space(old).upstream)
    relayed.set_routes([space(new)])
    _wait(lambda: a.join(owned_by(0)) == "new")
    started = time.monotonic()
    assert a.data(session) == "old"  # no error: a serves it, by the pin it learned from b
    assert time.monotonic() - started < 5
    assert a.join(session) == "new"  # no stream open: the next call moves
