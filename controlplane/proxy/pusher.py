"""Keeps the proxy's routes equal to the database: one pusher per control plane, always sending the latest table.

Every committed stage change (and endpoint change) calls `changed()`; the pusher reads the running public Spaces,
builds the whole config and loads it through Caddy's admin API, one push at a time (changes that arrive during a
push are folded into the next one, so an older table never follows a newer one). Versions only grow. The same
config is written to a file the launcher starts Caddy with, so a restarted proxy serves the last table at once;
and every `check_interval` seconds the pusher reads the loaded version back and pushes again if it differs
(a proxy restarted with an older file, or one that lost its config).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select

from controlplane.core.config import Settings
from controlplane.core.db import Database
from controlplane.models import Space
from controlplane.proxy.config import VERSION_ID, Layout, Route, Table, build, loaded_version
from controlplane.router.resolver import path_prefix, space_label
from controlplane.stages import SERVING, SLEEPING

log = logging.getLogger(__name__)


def proxy_dir(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "proxy"


def layout(settings: Settings) -> Layout:
    folder = proxy_dir(settings)
    return Layout(
        listen=f"127.0.0.1:{settings.proxy_routes_port}",
        edge=f"{settings.host}:{settings.port}",
        controlplane=f"127.0.0.1:{settings.internal_port}",
        admin_socket=str(folder / "admin.sock"),
        storage_dir=str(folder / "storage"),
        apps_domain=settings.apps_domain.lower().strip("."),
        path_urls=settings.path_urls_enabled,
        activity=f"127.0.0.1:{settings.activity_port}",
    )


def config_file(settings: Settings) -> Path:
    return proxy_dir(settings) / "caddy.json"


def edge_file(settings: Settings) -> Path:
    return proxy_dir(settings) / "edge.json"


def write_config(path: Path, config: dict) -> None:
    """Atomically: a proxy starting meanwhile reads the old file or the new one, never half of one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    tmp.replace(path)


def running_routes(db: Database) -> tuple[Route, ...]:
    """Running public Spaces with an endpoint; of two sharing a host label the first created wins, as in the
    control plane's resolver."""
    routes: dict[str, Route] = {}
    with db.session() as s:
        rows = s.execute(
            select(Space.owner, Space.name, Space.endpoint, Space.strip_prefix)
            .where(Space.stage.in_([st.value for st in SERVING]), Space.endpoint.is_not(None),
                   Space.private.is_(False), (Space.detail.is_(None)) | (Space.detail != SLEEPING))
            .order_by(Space.id)
        )
        for owner, name, endpoint, strip in rows:
            label = space_label(owner, name)
            routes.setdefault(label, Route(f"{owner}/{name}", label, endpoint, path_prefix(owner, name), strip))
    return tuple(routes.values())


class Pusher:
    def __init__(self, layout: Layout, load_routes: Callable[[], tuple[Route, ...]], path: Path,
                 check_interval: float = 1.0) -> None:
        self.layout, self.load_routes, self.path = layout, load_routes, path
        self.check_interval = check_interval
        self.table = Table(0, ())
        self.pushed: int | None = None  # the version Caddy last accepted from us
        self._wanted = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        transport = httpx.AsyncHTTPTransport(uds=layout.admin_socket)
        self._admin = httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=10.0)

    def changed(self, _space: str | None = None) -> None:
        """A Space's routing may have changed (any thread: stage announcements come after commits in workers)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._wanted.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._wanted.set()  # push on start: the proxy may hold a table from before this process
        try:
            while True:
                force = False
                try:
                    await asyncio.wait_for(self._wanted.wait(), self.check_interval)
                except TimeoutError:
                    if await self._loaded() == self.table.version:
                        continue
                    force = True  # the proxy restarted or lost its config
                self._wanted.clear()
                try:
                    await self.push(force)
                except Exception as e:  # proxy down or restarting: the next check pushes again
                    log.warning("pushing routes to the proxy failed: %s", e)
        finally:
            await self._admin.aclose()

    async def push(self, force: bool = False) -> Table:
        routes = await asyncio.to_thread(self.load_routes)
        # Every load closes the proxy's open WebSockets (Caddy 2.6): load only when the routes differ.
        if not force and self.pushed == self.table.version and routes == self.table.routes:
            return self.table
        # Nanoseconds since the epoch, and always above the last one: a restarted control plane keeps growing it.
        self.table = Table(max(time.time_ns(), self.table.version + 1), routes)
        config = build(self.table, self.layout)
        await asyncio.to_thread(write_config, self.path, config)
        resp = await self._admin.post("/load", content=json.dumps(config),
                                      headers={"Content-Type": "application/json"})
        resp.raise_for_status()
        self.pushed = self.table.version
        return self.table

    async def _loaded(self) -> int | None:
        try:
            resp = await self._admin.get(f"/id/{VERSION_ID}")
            return loaded_version(resp.json()) if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            return None
