"""Keeps the proxy's routes equal to the database: one pusher per control plane, always sending the latest table.

Every committed stage change (and endpoint change) calls `changed()`; the pusher reads the running public Spaces
and changes the proxy's maps through HAProxy's runtime API, entry by entry (a Space that starts is one `add
map`), one push at a time: changes that arrive during a push are folded into the next one, so an older table
never follows a newer one. Versions only grow. The map files are written first, so a proxy restarting at any
moment starts from this table (or a later one); every `check_interval` seconds the pusher reads the proxy's
version back and replaces all its maps when it differs (a proxy that lost or missed a change).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select

from controlplane.core.config import Settings
from controlplane.core.db import Database
from controlplane.models import Space
from controlplane.proxy import admin
from controlplane.proxy.config import INSTANCES_TABLE, VERSION_KEY, Layout, Route, Table, changes, map_text, maps
from controlplane.router.resolver import path_prefix, space_label
from controlplane.stages import SERVING, SLEEPING

log = logging.getLogger(__name__)


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


def running_routes(db: Database) -> tuple[Route, ...]:
    """Running public Spaces with an endpoint; of two sharing a host label the first created wins, as in the
    control plane's resolver."""
    routes: dict[str, Route] = {}
    with db.session() as s:
        rows = s.execute(
            select(Space.owner, Space.name, Space.endpoint, Space.strip_prefix)
            .where(
                Space.stage.in_([st.value for st in SERVING]),
                Space.endpoint.is_not(None),
                Space.private.is_(False),
                (Space.detail.is_(None)) | (Space.detail != SLEEPING),
            )
            .order_by(Space.id)
        )
        for owner, name, endpoint, strip in rows:
            label = space_label(owner, name)
            routes.setdefault(label, Route(f"{owner}/{name}", label, endpoint, path_prefix(owner, name), strip))
    return tuple(routes.values())


class Pusher:
    def __init__(
        self, layout: Layout, load_routes: Callable[[], tuple[Route, ...]], check_interval: float = 1.0
    ) -> None:
        self.layout, self.load_routes = layout, load_routes
        self.check_interval = check_interval
        self.table = Table(0, ())
        self._entries = maps(self.table, layout)  # the table's map entries
        self.pushed: int | None = None  # the version the proxy holds, as far as this pusher knows
        self.draining: set[str] = set()  # upstreams a redeploy replaced, until they are stopped (deploy.py)
        self._wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def changed(self, _space: str | None = None) -> None:
        """A Space's routing may have changed (any thread: stage announcements come after commits in workers)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wanted.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wanted.set()  # push on start: the proxy may hold a table from before this process
        while True:
            force = False
            try:
                await asyncio.wait_for(self._wanted.wait(), self.check_interval)
            except TimeoutError:
                if await self.loaded() == self.table.version:
                    self.pushed = self.table.version
                    continue
                force = True  # the proxy restarted from older files, or missed a change
            self._wanted.clear()
            try:
                await self.push(force)
            except Exception as e:  # proxy down or restarting: the next check pushes again
                log.warning("pushing routes to the proxy failed: %s", e)

    def drain(self, upstream: str) -> None:
        """Keep `upstream` reachable for the sessions pinned to it (any thread; before the switch commits)."""
        self.draining.add(upstream)
        self.changed()

    def retired(self, upstream: str) -> None:
        self.draining.discard(upstream)
        self.changed()

    async def open_streams(self, upstream: str) -> int:
        """Requests, streams and WebSockets the proxy has open on `upstream` (none when it is not answering)."""
        try:
            return await admin.table_use(self.layout.socket, INSTANCES_TABLE, upstream)
        except (OSError, TimeoutError):
            return 0

    async def push(self, force: bool = False) -> Table:
        routes = await asyncio.to_thread(self.load_routes)
        draining = frozenset(self.draining)
        current = (self.table.routes, self.table.draining)
        if not force and self.pushed == self.table.version and (routes, draining) == current:
            return self.table
        # Only entry changes on top of a table the proxy is known to hold; else every map is replaced.
        previous = (self.table.version, self._entries) if not force and self.pushed == self.table.version else None
        # Nanoseconds since the epoch, and always above the last one: a restarted control plane keeps growing it.
        table = Table(max(time.time_ns(), self.table.version + 1), routes, draining)
        entries = maps(table, self.layout)
        self.table, self._entries, self.pushed = table, entries, None
        # The files a restarted proxy starts from, written meanwhile (a proxy restarting from the older ones is
        # caught by the version check).
        writing = asyncio.create_task(asyncio.to_thread(write_maps, entries, self.layout))
        try:
            if previous is not None and await self.loaded() == previous[0]:
                await admin.apply(self.layout.socket, changes(previous[1], entries, self.layout))
            else:
                await self._replace(entries)
        except admin.ProxyError as e:  # the proxy's maps were not what this pusher thought
            log.warning("the proxy refused a route change (%s): replacing its maps", e)
            await self._replace(entries)
        finally:
            await writing
        self.pushed = table.version
        return table

    async def _replace(self, entries: dict[str, dict[str, str]]) -> None:
        for name, map_entries in entries.items():
            await admin.replace_map(self.layout.socket, self.layout.path(name), map_entries)

    async def loaded(self) -> int | None:
        """The version the proxy holds (None: not answering)."""
        try:
            value = await admin.map_value(self.layout.socket, self.layout.path("version.map"), VERSION_KEY)
            return int(value) if value is not None else None
        except (OSError, TimeoutError, ValueError):
            return None
