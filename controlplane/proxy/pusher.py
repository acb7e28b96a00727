"""Keeps the proxy's routes equal to the database: one pusher per control plane, always sending the latest table.

Every committed stage change (and endpoint change) calls `changed()`; the pusher reads the running public Spaces
(`load_routes`: routes.RunningRoutes, which reads again only the rows of the Spaces announced) and changes the
proxy's maps through HAProxy's runtime API, entry by entry (a Space that starts is one `add map`), one push at a
time: changes that arrive during a push are folded into the next one, so an older table never follows a newer one.
Versions only grow. The map files are written first, so a proxy restarting at any moment starts from this table
(or a later one); every `check_interval` seconds the pusher reads the proxy's version back and replaces all its
maps when it differs (a proxy that lost or missed a change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.proxy import admin
from controlplane.proxy.config import INSTANCES_TABLE, VERSION_KEY, Layout, Route, Table, changes, map_text, maps

log = logging.getLogger(__name__)

# An entry of `show table` that something tracks now: "0x55d0c4a3b2a0: key=10.0.0.7:8080 use=2 exp=3599000".
_IN_USE = re.compile(r"^0x[0-9a-fA-F]+: key=(\S+) use=([1-9]\d*) ")


def tracked(dump: str) -> dict[str, int]:
    """The keys of a `show table` dump that something tracks now, with how many. Most entries are idle (an entry
    lasts an hour after its last use), so lines with `use=0` are passed over before any regex: 10,000 entries
    (540 KB) take 1-3 ms, against 5-14 ms for one regex over the whole dump (on the loaded test machine)."""
    out = {}
    for line in dump.splitlines():
        if " use=0 " not in line and (found := _IN_USE.match(line)) is not None:
            out[found.group(1)] = int(found.group(2))
    return out


def proxy_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "proxy"


def layout(settings: Settings) -> Layout:
    folder = proxy_dir(settings)
    return Layout(
        listen=f"{settings.host}:{settings.port}",
        controlplane=f"127.0.0.1:{settings.internal_port}",
        folder=str(folder),
        socket=str(folder / "admin.sock"),
        apps_domain=settings.apps_domain.lower().strip("."),
        path_urls=settings.path_urls_enabled,
        activity=f"127.0.0.1:{settings.activity_port}",
    )


def write_file(path: Path, text: str) -> None:
    """Atomically: a proxy starting meanwhile reads the old file or the new one, never half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


def write_maps(entries: dict[str, dict[str, str]], layout: Layout) -> None:
    for name, map_entries in entries.items():
        write_file(Path(layout.path(name)), map_text(map_entries))


class Replica:
    """One proxy's runtime API (a unix socket or `host:port`) and the table this pusher knows it holds. Each
    replica is brought to the latest table on its own, so a slow or restarted one never holds back the others."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.pushed: int | None = None  # the version it holds, as far as this pusher knows
        self.entries: dict[str, dict[str, str]] = {}  # that version's map entries
        self.task: asyncio.Task | None = None

    async def loaded(self, layout: Layout) -> int | None:
        """The version the proxy holds (None: not answering)."""
        try:
            value = await admin.map_value(self.address, layout.path("version.map"), VERSION_KEY)
            return int(value) if value is not None else None
        except (OSError, TimeoutError, ValueError):
            return None

    async def sync(self, pusher: Pusher) -> None:
        """Until it holds the pusher's latest table: entry changes on top of the table it is known to hold, else
        (a proxy restarted from older files or started empty, a refused command) every map replaced."""
        while (table := pusher.table).version != self.pushed:
            entries, layout = pusher.entries, pusher.layout
            held = await self.loaded(layout)
            if held != table.version:
                known, self.pushed = (self.pushed, self.entries), None
                try:
                    if held is not None and held == known[0]:
                        await admin.apply(self.address, changes(known[1], entries, layout))
                    else:
                        await self._replace(entries, layout)
                except admin.ProxyError as e:  # its maps were not what this pusher thought
                    log.warning("the proxy %s refused a route change (%s): replacing its maps", self.address, e)
                    await self._replace(entries, layout)
            self.pushed, self.entries = table.version, entries

    async def _replace(self, entries: dict[str, dict[str, str]], layout: Layout) -> None:
        for name, map_entries in entries.items():
            await admin.replace_map(self.address, layout.path(name), map_entries)

    def kick(self, pusher: Pusher, check: bool = False) -> asyncio.Task:
        """Start bringing it up to date unless that is under way (the running sync reaches the latest table);
        check: first read its version back (it may have restarted, or missed a change)."""
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._sync_logged(pusher, check), name=f"proxy-routes {self.address}")
        return self.task

    async def _sync_logged(self, pusher: Pusher, check: bool) -> None:
        try:
            if check and await self.loaded(pusher.layout) != pusher.table.version:
                self.pushed = None
            await self.sync(pusher)
        except Exception as e:  # down or restarting: the next check pushes again
            log.warning("pushing routes to the proxy %s failed: %s", self.address, e)


class Pusher:
    def __init__(
        self,
        layout: Layout,
        load_routes: Callable[[], tuple[Route, ...]],
        check_interval: float = 1.0,
        targets: Iterable[str] | None = None,
    ) -> None:
        self.layout, self.load_routes = layout, load_routes
        self.check_interval = check_interval
        self.table = Table(0, ())
        self.entries = maps(self.table, layout)  # the table's map entries
        self.draining: set[str] = set()  # upstreams a redeploy replaced, until they are stopped (deploy.py)
        # The proxies' runtime APIs: the local HAProxy's socket, or several replicas (set_targets follows them).
        self.replicas = {a: Replica(a) for a in (targets if targets is not None else [layout.socket])}
        # The local proxy restarts from the map files; remote replicas start empty and are sent the whole table.
        self.local_files = targets is None
        self._wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self, _space: str | None = None) -> None:
        """A Space's routing may have changed (any thread: stage announcements come after commits in workers)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wanted.set)

    def set_targets(self, addresses: Iterable[str]) -> None:
        """The replicas now running (on the loop). A new one is sent the whole table at once."""
        addresses = set(addresses)
        for gone in self.replicas.keys() - addresses:
            if (task := self.replicas.pop(gone).task) is not None:
                task.cancel()
        for address in addresses - self.replicas.keys():
            self.replicas[address] = Replica(address)
            if self.table.version:
                self.replicas[address].kick(self)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wanted.set()  # push on start: the proxies may hold a table from before this process
        while True:
            try:
                await asyncio.wait_for(self._wanted.wait(), self.check_interval)
            except TimeoutError:
                for replica in list(self.replicas.values()):
                    replica.kick(self, check=True)
                continue
            self._wanted.clear()
            try:
                await self._compute(False)
            except Exception as e:  # the database is not answering: the next change or check tries again
                log.warning("reading the routes failed: %s", e)
                continue
            for replica in list(self.replicas.values()):
                replica.kick(self)

    def drain(self, upstream: str) -> None:
        """Keep `upstream` reachable for the sessions pinned to it (any thread; before the switch commits)."""
        self.draining.add(upstream)
        self.changed()

    def retired(self, upstream: str) -> None:
        self.draining.discard(upstream)
        self.changed()

    async def open_streams(self, upstream: str) -> int:
        """Requests, streams and WebSockets the proxies have open on `upstream` (none where one is not answering)."""
        total = 0
        for address in list(self.replicas):
            with contextlib.suppress(OSError, TimeoutError):
                total += await admin.table_use(address, INSTANCES_TABLE, upstream)
        return total

    async def open_by_instance(self, timeout: float = 5.0) -> Counter[str]:
        """What every replica has open now, per instance (upstream): one `show table` of the whole `instances`
        table per replica, all replicas at once, so the cost does not grow with the Spaces asked about. A replica
        not answering within `timeout` counts nothing (as in `open_streams`)."""
        addresses = list(self.replicas)
        found = await asyncio.gather(
            *(admin.send(a, f"show table {INSTANCES_TABLE}", timeout) for a in addresses), return_exceptions=True
        )
        total: Counter[str] = Counter()
        for address, out in zip(addresses, found, strict=True):
            if isinstance(out, (OSError, TimeoutError)):
                log.warning("the proxy %s did not say what is open on it: %s", address, out)
            elif isinstance(out, BaseException):
                raise out
            else:
                total.update(tracked(out))
        return total

    async def in_use(self, spaces: Iterable[str]) -> set[str]:
        """Those of `spaces` that a proxy has a request, stream or WebSocket open on now, on their current instance
        (Gradio's heartbeat is not counted: the `instances` table leaves it out). Spaces the proxy does not serve
        (private, not routed) are not asked about: the Python router records their activity itself."""
        wanted = set(spaces)
        current = {r.upstream: r.space for r in self.table.routes if r.space in wanted}
        if not current:
            return set()
        open_now = await self.open_by_instance()
        return {space for upstream, space in current.items() if open_now[upstream] > 0}

    async def _compute(self, force: bool) -> Table:
        routes = await asyncio.to_thread(self.load_routes)
        draining = frozenset(self.draining)
        if not force and self.table.version and (routes, draining) == (self.table.routes, self.table.draining):
            return self.table
        # Nanoseconds since the epoch, and always above the last one: a restarted control plane keeps growing it.
        table = Table(max(time.time_ns(), self.table.version + 1), routes, draining)
        entries = maps(table, self.layout)
        # The files a restarted local proxy starts from, written first (one restarting from older ones is caught
        # by the version check).
        if self.local_files:
            await asyncio.to_thread(write_maps, entries, self.layout)
        self.table, self.entries = table, entries
        if force:
            for replica in self.replicas.values():
                replica.pushed = None
        return table

    async def push(self, force: bool = False) -> Table:
        """The latest table to every replica now, waiting for them (force: every map replaced)."""
        table = await self._compute(force)
        await asyncio.gather(*(r.kick(self) for r in list(self.replicas.values())))
        return table

    async def loaded(self) -> int | None:
        """The version every proxy holds: the lowest (None: one is not answering)."""
        held = [await r.loaded(self.layout) for r in list(self.replicas.values())]
        return None if None in held or not held else min(held)
