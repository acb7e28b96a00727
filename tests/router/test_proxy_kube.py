"""A proxy replica as the Helm chart's pods run it: files written by `python -m controlplane.proxy.kube` (static
config, runtime API on a TCP address, empty maps, the other StatefulSet pods as peers), a real HAProxy started from
them, not ready until routes are pushed to it by a pusher that only knows its address, Space upstreams given as
names (a Space's Service) resolved to addresses, also the one a redeploy drains (sessions with an open stream stay on
it, its open streams are counted). The EndpointSlice discovery itself needs a cluster (not here). Skips where HAProxy
is not installed."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from controlplane.core.config import Settings
from controlplane.proxy import kube
from controlplane.proxy.config import Route
from controlplane.proxy.pusher import Pusher
from tests.router.conftest import APPS_DOMAIN, ServerThread, free_port
from tests.router.test_proxy_replicas import _wait
from tests.router.test_proxy_sessions import instance, release

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")


def test_a_replica_started_from_the_written_files_serves_what_the_pusher_sends(
    upstream: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SPACEYARD_APPS_DOMAIN", APPS_DOMAIN)
    admin, activity = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    ready, peer = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    with ServerThread(Starlette()) as controlplane:  # 404 for every app URL
        kube.main(
            [
                str(tmp_path),
                "--controlplane",
                f"localhost:{controlplane.port}",
                "--admin",
                admin,
                "--activity",
                activity,
                f"--ready={ready}",
                "--name=sy-proxy-0",
                "--replicas=2",
                "--peer-domain=sy-proxy-admin.invalid",  # sy-proxy-1 does not resolve (not started yet)
                f"--peer={peer}",
                f"--relay=127.0.0.1:{free_port()}",
            ]
        )
        cfg = (tmp_path / "haproxy.cfg").read_text()
        assert f"stats socket ipv4@{admin} " in cfg and "bind 0.0.0.0:8080" in cfg
        assert "localpeer sy-proxy-0\n" in cfg
        assert f"peer sy-proxy-0 {peer}\n    peer sy-proxy-1 {kube.UNRESOLVED_PEER}\n" in cfg
        # sy-proxy-1's sessions: passed on to it once its name resolves (never here), served here meanwhile.
        assert "server owner sy-proxy-1.sy-proxy-admin.invalid" in cfg and "resolvers cluster" in cfg
        # The chart's port, on the test machine another one.
        port = free_port()
        (tmp_path / "haproxy.cfg").write_text(cfg.replace("bind 0.0.0.0:8080", f"bind 127.0.0.1:{port}"))
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], stderr=subprocess.DEVNULL)
        try:
            url, host = f"http://127.0.0.1:{port}/x", {"Host": f"alice-echo.{APPS_DOMAIN}"}
            _wait(lambda: httpx.get(url, headers=host, timeout=5).status_code == 404)  # empty maps: the control plane
            assert httpx.get(f"http://{ready}/", timeout=5).status_code == 503  # the probe: not ready
            routes = (Route("alice/echo", "alice-echo", f"localhost:{upstream.port}", "/apps/alice/echo", True),)
            layout = replace(kube.layout(Settings()), folder=str(tmp_path))
            pusher = Pusher(layout, kube.resolving(lambda: routes), targets=kube.targets(admin))
            table = asyncio.run(pusher.push())
            assert table.routes[0].upstream == f"127.0.0.1:{upstream.port}"
            resp = httpx.get(url, headers=host, timeout=5)
            assert resp.status_code == 200 and resp.json()["raw_path"] == "/x"
            assert httpx.get(f"http://{ready}/", timeout=5).status_code == 200
        finally:
            proc.terminate()
            proc.wait(10)


def test_a_redeploy_naming_the_old_instance_by_its_service_keeps_its_sessions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployer drains, counts and retires the old instance by its endpoint, a name (its Service); the proxy
    knows it by address. Before the replicas' pusher resolved it, the old instance was missing from instances.map
    (pins to it were void) and its open streams counted 0 (so it was stopped under them)."""
    monkeypatch.setenv("SPACEYARD_APPS_DOMAIN", APPS_DOMAIN)
    admin = f"127.0.0.1:{free_port()}"
    with (
        ServerThread(Starlette()) as controlplane,
        ServerThread(instance("old")) as old,
        ServerThread(instance("new")) as new,
    ):
        kube.main([str(tmp_path), f"--controlplane=127.0.0.1:{controlplane.port}", f"--admin={admin}"])
        port = free_port()
        cfg = (tmp_path / "haproxy.cfg").read_text().replace("bind 0.0.0.0:8080", f"bind 127.0.0.1:{port}")
        (tmp_path / "haproxy.cfg").write_text(cfg)
        proc = subprocess.Popen(["haproxy", "-db", "-f", str(tmp_path / "haproxy.cfg")], stderr=subprocess.DEVNULL)
        loop = asyncio.new_event_loop()
        threading.Thread(target=loop.run_forever, daemon=True).start()
        host = {"Host": f"pin-gr.{APPS_DOMAIN}"}

        def join(session: str) -> str:
            body = {"data": [], "session_hash": session}
            url = f"http://127.0.0.1:{port}/gradio_api/queue/join"
            resp = httpx.post(url, json=body, headers=host, timeout=5)
            return resp.json()["instance"] if resp.status_code == 200 else ""  # 404: not routed yet

        def name(server: ServerThread) -> str:  # what the Space's endpoint is on Kubernetes: its Service's name
            return f"localhost:{server.port}"

        routes = [Route("pin/gr", "pin-gr", name(old), "/apps/pin/gr", True)]
        layout = replace(kube.layout(Settings()), folder=str(tmp_path))
        pusher = kube.ReplicasPusher(layout, lambda: tuple(routes), [admin])
        task = asyncio.run_coroutine_threadsafe(pusher.run(), loop)

        def open_streams(upstream: str) -> int:
            return asyncio.run_coroutine_threadsafe(pusher.open_streams(upstream), loop).result(10)

        client = httpx.Client(timeout=10)
        release.clear()
        try:
            _wait(lambda: join("s1") == "old")
            url = f"http://127.0.0.1:{port}/gradio_api/queue/data?session_hash=s1"
            stream = client.send(client.build_request("GET", url, headers=host), stream=True)
            assert next(stream.iter_lines()) == "data: old"
            assert open_streams(name(old)) == 1
            pusher.drain(name(old))  # as deploy.py does, with the old endpoint
            routes[:] = [Route("pin/gr", "pin-gr", name(new), "/apps/pin/gr", True)]
            pusher.changed()
            _wait(lambda: join("s2") == "new")
            assert f"127.0.0.1:{old.port}" in pusher.entries["instances.map"].values()
            assert join("s1") == "old"  # its stream is open there
            release.set()
            stream.close()
            _wait(lambda: open_streams(name(old)) == 0)
            assert join("s1") == "new"
            pusher.retired(name(old))
            _wait(lambda: f"127.0.0.1:{old.port}" not in pusher.entries["instances.map"].values())
        finally:
            release.set()
            client.close()
            task.cancel()
            loop.call_soon_threadsafe(loop.stop)
            proc.terminate()
            proc.wait(10)


def test_discovered_addresses_are_every_pod_of_the_service_but_terminating_ones() -> None:
    slices = [
        {
            "endpoints": [
                {"addresses": ["10.0.0.5"], "conditions": {"ready": True}},
                {"addresses": ["10.0.0.6"], "conditions": {"ready": False}},  # starting: gets the table before ready
                {"addresses": ["10.0.0.7"], "conditions": {"ready": False, "terminating": True}},
            ]
        },
        {"endpoints": None},
    ]
    assert kube.addresses(slices, 9999) == ["10.0.0.5:9999", "10.0.0.6:9999"]
    assert kube.targets("kubernetes:ns/svc:9999") == []
    assert kube.targets("10.0.0.1:9999, /run/x.sock") == ["10.0.0.1:9999", "/run/x.sock"]


def test_a_higher_ordinal_waits_for_a_lower_one_to_resolve_and_listen() -> None:
    """Pods started together: each pair's higher ordinal waits until the lower one resolves and its peers port
    listens (so one of the two always connects); the lower one takes the higher as it finds it, without waiting."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        calls = []

        def resolve(name: str) -> str:
            calls.append(name)
            if name.startswith("sy-proxy-0.") and len(calls) < 4:
                raise OSError("no record yet")
            return "127.0.0.1"

        started = time.monotonic()
        listening = []

        def check(address: str) -> bool:
            listening.append(address)
            if len(listening) == 2:
                listener.listen()  # its HAProxy starts
            return kube._listening(address)

        peers = kube.peers("sy-proxy-1", 3, "sy", f"127.0.0.1:{port}", resolve, check, wait=20)
        assert peers.others == (("sy-proxy-0", f"127.0.0.1:{port}"), ("sy-proxy-2", f"127.0.0.1:{port}"))
        assert calls.count("sy-proxy-0.sy") == 5 and calls.count("sy-proxy-2.sy") == 1
        assert time.monotonic() - started < 10

        # No lower ordinal: nothing to wait for; an unresolved higher one gets the placeholder at once.
        def unresolvable(name: str) -> str:
            raise OSError(f"no record for {name}")

        none = kube.peers("sy-proxy-0", 2, "sy", "127.0.0.1:1", unresolvable, check)
        assert none.others == (("sy-proxy-1", kube.UNRESOLVED_PEER),)
