"""The proxy on Kubernetes (the Helm chart's proxy StatefulSet, docs/router.md "On Kubernetes"): several HAProxy
replicas, each with the same files in FOLDER, its runtime API on its pod IP, found by the control plane through the
EndpointSlices of a headless Service and pushed to like the local proxy (pusher.Replica per pod).

A replica's pod starts from `python -m controlplane.proxy.kube DIR` (an init container in the control plane's
image): the static config and empty maps, so until the control plane sends it the table (at once when it appears
among the Service's addresses, or at the next version check) it hands every request to the control plane, which
serves running Spaces too, only slower; its readiness port answers 503 meanwhile, so the proxy Service sends it
nothing. The replicas are a StatefulSet's pods (stable names `<statefulset>-<ordinal>`): each config names the others
as HAProxy peers, which share the session pins (the `sessions` stick table), and as the relays of the sessions they
own (every request of a session is served by one replica).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.proxy import pusher
from controlplane.proxy.config import Layout, Peers, Relay, Route, Table, files
from controlplane.proxy.pusher import Pusher, write_file

log = logging.getLogger(__name__)

FOLDER = "/var/lib/spaceyard-proxy"  # an emptyDir in every proxy pod; the map paths every replica shares
DISCOVERY = "kubernetes:"  # proxy_targets = "kubernetes:NAMESPACE/SERVICE:PORT"
# A peer whose name does not resolve yet (its pod has no address) is written with an address nothing listens on:
# HAProxy needs one at start, and the config is never reloaded. That peer connects to this one when it starts (it
# resolves this pod's name then), and one connection carries updates both ways and a restarted side's full resync.
UNRESOLVED_PEER = "127.0.0.1:1"
PEER_WAIT = 30.0  # seconds a replica waits for a lower ordinal (see peers)


def layout(settings: Settings) -> Layout:
    """What the control plane's pusher needs to know of the replicas' files: their paths and the maps' keys."""
    return Layout(
        listen="",
        controlplane="",
        folder=FOLDER,
        socket="",
        apps_domain=settings.apps_domain.lower().strip("."),
        path_urls=settings.path_urls_enabled,
    )


def targets(value: str) -> list[str]:
    """A fixed list of runtime API addresses (empty for discovery)."""
    return [] if value.startswith(DISCOVERY) else [t.strip() for t in value.split(",") if t.strip()]


def resolving(load_routes: Callable[[], tuple[Route, ...]]) -> Callable[[], tuple[Route, ...]]:
    """Routes whose upstream is a name (a Space's Service, `name.ns.svc.cluster.local:port`) with its address
    instead: HAProxy's set-dst takes an IP. A Service's ClusterIP lasts as long as the Service, so a name is resolved
    once while it is routed (in the pusher's thread). The runtime's Service is one per instance (a start of a build),
    so a redeploy's old and new instances resolve to two addresses (docs/router.md, "On Kubernetes")."""
    known: dict[str, str] = {}

    def load() -> tuple[Route, ...]:
        routes = load_routes()
        names = {r.upstream.rsplit(":", 1)[0] for r in routes}
        for name in list(known):
            if name not in names:
                del known[name]
        out = []
        for r in routes:
            host, port = r.upstream.rsplit(":", 1)
            if host not in known:
                try:
                    known[host] = socket.gethostbyname(host)
                except OSError as e:  # not resolvable (yet): the control plane keeps serving it
                    log.warning("cannot resolve %s: %s", host, e)
                    continue
            out.append(replace(r, upstream=f"{known[host]}:{port}"))
        return tuple(out)

    return load


class ReplicasPusher(Pusher):
    """The replicas' pusher. A redeploy names the instance it replaces by its endpoint, the instance's Service
    (`name.ns.svc.cluster.local:port`), while the proxies know instances by address (the routes are resolved, the
    `instances` table counts per address, pins resolve through `instances.map`): the name is resolved once, when it
    starts draining, and kept until it is retired (its Service's ClusterIP lasts as long as the instance)."""

    def __init__(
        self,
        layout: Layout,
        load_routes: Callable[[], tuple[Route, ...]],
        targets: list[str],
        resolve: Callable[[str], str] = socket.gethostbyname,
    ) -> None:
        super().__init__(layout, resolving(load_routes), targets=targets)
        self._resolve = resolve
        self._addresses: dict[str, str] = {}

    def address(self, upstream: str) -> str:
        if upstream not in self._addresses:
            host, port = upstream.rsplit(":", 1)
            try:
                self._addresses[upstream] = f"{self._resolve(host)}:{port}"
            except OSError as e:  # its Service is gone: nothing can reach it anyway
                log.warning("cannot resolve %s: %s", host, e)
                return upstream
        return self._addresses[upstream]

    def drain(self, upstream: str) -> None:
        super().drain(self.address(upstream))

    def retired(self, upstream: str) -> None:
        super().retired(self.address(upstream))
        self._addresses.pop(upstream, None)

    async def open_streams(self, upstream: str) -> int:
        return await super().open_streams(self.address(upstream))


def make_pusher(settings: Settings, load_routes: Callable[[], tuple[Route, ...]]) -> Pusher:
    """The local proxy's pusher, or one for the replicas `proxy_targets` names (found by `follow`)."""
    if not settings.proxy_targets:
        return Pusher(pusher.layout(settings), load_routes)
    return ReplicasPusher(layout(settings), load_routes, targets(settings.proxy_targets))


def addresses(slices: list[dict], port: int) -> list[str]:
    """Every pod address of a Service's EndpointSlices, ready or not: a replica gets the table before it is ready
    (the Service's publishNotReadyAddresses); a terminating one is left alone."""
    out = set()
    for s in slices:
        for endpoint in s.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("terminating"):
                continue
            out.update(f"{a}:{port}" for a in endpoint.get("addresses") or [])
    return sorted(out)


def follow(routes: Pusher, value: str, loop: asyncio.AbstractEventLoop) -> Callable[[], None] | None:
    """Keep the pusher's replicas equal to the Service's addresses (a watch on its EndpointSlices; blocks until
    the first list); returns stop. None when `proxy_targets` names no Service."""
    if not value.startswith(DISCOVERY):
        return None
    from kubernetes import client

    from controlplane.runtime.k8s_watch import Reflector
    from controlplane.runtime.kubernetes_backend import load_api_client

    where, port = value.removeprefix(DISCOVERY).rsplit(":", 1)
    namespace, service = where.split("/", 1)
    api = client.DiscoveryV1Api(load_api_client())

    def changed(_kind: str, _obj: dict) -> None:
        loop.call_soon_threadsafe(routes.set_targets, addresses(reflector.objects(), int(port)))

    reflector = Reflector(
        api.list_namespaced_endpoint_slice,
        namespace,
        label_selector=f"kubernetes.io/service-name={service}",
        listener=changed,
        name="proxy replicas",
    )
    reflector.start()
    return reflector.stop


def pod_layout(controlplane: str, admin: str, activity: str | None, settings: Settings) -> Layout:
    return replace(
        layout(settings), listen="0.0.0.0:8080", controlplane=controlplane, socket=f"ipv4@{admin}", activity=activity
    )


def _listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def peers(
    name: str,
    replicas: int,
    domain: str,
    bind: str,
    resolve: Callable[[str], str] = socket.gethostbyname,
    listening: Callable[[str], bool] = _listening,
    wait: float = PEER_WAIT,
) -> Peers:
    """The peers of StatefulSet pod `name` (`<statefulset>-<ordinal>`): every ordinal below `replicas` but its own,
    found as `<pod>.<domain>` (the pods' headless Service, which publishes not-ready addresses).

    One connection between two peers is enough (either side's), so each pair relies on the higher ordinal: it
    waits (up to `wait` seconds) until a lower one resolves and listens, which that one does without waiting for
    anyone; pods started together then still find each other, and a stale address (a lower pod replaced at the same
    time) is not taken. A higher ordinal is taken as it resolves now: if it is not there, it connects here."""
    base, ordinal = name.rsplit("-", 1)
    port = bind.rsplit(":", 1)[1]
    deadline = time.monotonic() + wait
    others = []
    for i in range(replicas):
        peer = f"{base}-{i}"
        if peer == name:
            continue
        address = None
        while address is None:
            try:
                address = f"{resolve(f'{peer}.{domain}')}:{port}"
            except OSError:
                address = None
            if i > int(ordinal) or time.monotonic() > deadline:
                break
            if address is not None and not listening(address):
                address = None
            if address is None:
                time.sleep(0.5)
        if address is None:  # not created or no address yet: it will connect to this one
            log.warning("peer %s not found; it connects to this replica when it starts", peer)
        others.append((peer, address or UNRESOLVED_PEER))
    return Peers(local=name, bind=bind, others=tuple(others))


def search_domain(resolv_conf: str = "/etc/resolv.conf") -> str:
    """The pod's namespace domain (`<ns>.svc.cluster.local`, the first of its search list): HAProxy's resolvers ask
    for the names as they are written."""
    for line in Path(resolv_conf).read_text().splitlines():
        fields = line.split()
        if fields[:1] == ["search"] and len(fields) > 1:
            return fields[1]
    return ""


def relay(name: str, replicas: int, domain: str, bind: str, search: str) -> Relay:
    """Every replica's relay address by ordinal, as names (`<pod>.<domain>.<search>`) that HAProxy resolves at run
    time: a replica replaced gets a new address."""
    base, ordinal = name.rsplit("-", 1)
    port = bind.rsplit(":", 1)[1]
    suffix = f".{search}" if search else ""
    names = tuple(f"{base}-{i}.{domain}{suffix}:{port}" for i in range(replicas))
    return Relay(ordinal=int(ordinal), bind=bind, replicas=names, resolvers=True)


def main(argv: list[str] | None = None) -> None:
    """Write a replica's files (static config, empty maps) into DIR; apps domain and path URLs from the settings."""
    parser = argparse.ArgumentParser(prog="python -m controlplane.proxy.kube")
    parser.add_argument("folder", nargs="?", default=FOLDER)
    parser.add_argument("--controlplane", required=True, help="host:port of the control plane's internal port")
    parser.add_argument("--admin", required=True, help="ip:port the runtime API binds (the pod's IP)")
    parser.add_argument("--activity", help="host:port (UDP) of the control plane's activity listener")
    parser.add_argument("--ready", help="ip:port of the readiness check (200 once a route table is loaded)")
    parser.add_argument("--name", help="this pod's name, <statefulset>-<ordinal>: share session pins with peers")
    parser.add_argument("--replicas", type=int, default=1, help="the StatefulSet's replicas (with --name)")
    parser.add_argument("--peer-domain", help="the peers' headless Service: <pod>.<domain> resolves (with --name)")
    parser.add_argument("--peer", help="ip:port this replica's peer listener binds (with --name)")
    parser.add_argument("--relay", help="ip:port where the others pass on this replica's sessions (with --name)")
    args = parser.parse_args(argv)
    lay = replace(
        pod_layout(args.controlplane, args.admin, args.activity, Settings()), folder=args.folder, ready=args.ready
    )
    if args.name:
        if not (args.peer_domain and args.peer):
            parser.error("--name needs --peer-domain and --peer")
        lay = replace(lay, peers=peers(args.name, args.replicas, args.peer_domain, args.peer))
        if args.relay and args.replicas > 1:
            lay = replace(lay, relay=relay(args.name, args.replicas, args.peer_domain, args.relay, search_domain()))
    for name, text in files(Table(0, ()), lay).items():
        write_file(Path(args.folder) / name, text)


if __name__ == "__main__":
    main()
