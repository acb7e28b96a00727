"""The proxy's routes (running public Spaces), kept current from the stage announcements.

Reading every running Space again on each change cost ~60-100 ms at 10,000 Spaces on a 2-core machine (the rows,
their host labels, the Route objects): most of the 100 ms a change has to reach the proxies. An announcement names
the Space, so only that Space's row is read again; everything is read again at start, when a change names no
Space, and every `full_every` seconds, which bounds what a change made without an announcement (another process)
leaves stale.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from controlplane.core.db import Database
from controlplane.models import Space
from controlplane.proxy.config import Route
from controlplane.router.resolver import path_prefix, space_label
from controlplane.stages import SERVING, SLEEPING

_COLUMNS = (Space.id, Space.owner, Space.name, Space.endpoint, Space.strip_prefix)


def _routable():
    return (
        Space.stage.in_([st.value for st in SERVING]),
        Space.endpoint.is_not(None),
        Space.private.is_(False),
        (Space.detail.is_(None)) | (Space.detail != SLEEPING),
    )


class RunningRoutes:
    """A callable for the pusher (`load_routes`, called in a worker thread): the routes of running public Spaces in
    creation order; of two sharing a host label the first created wins, as in the control plane's resolver."""

    def __init__(self, db: Database, full_every: float = 30.0) -> None:
        self.db = db
        self.full_every = full_every
        self._lock = threading.Lock()
        self._dirty: set[str] = set()
        self._everything = True
        self._last_full = 0.0
        self._by_id: dict[int, Route] = {}  # every routable Space, label clashes included
        self._id_of: dict[str, int] = {}  # "owner/name" -> id, for the Spaces in _by_id
        self._routes: tuple[Route, ...] = ()

    def changed(self, name: str | None = None) -> None:
        """A Space's routing may have changed (any thread); None: any Space's."""
        with self._lock:
            if name is None:
                self._everything = True
            else:
                self._dirty.add(name)

    def __call__(self) -> tuple[Route, ...]:
        with self._lock:
            dirty, everything = self._dirty, self._everything
            self._dirty, self._everything = set(), False
        if everything or time.monotonic() - self._last_full >= self.full_every:
            self._read_all()
        elif dirty:
            self._read(dirty)
        else:
            return self._routes
        chosen: dict[str, Route] = {}
        for _id, route in sorted(self._by_id.items()):
            chosen.setdefault(route.label, route)
        self._routes = tuple(chosen.values())
        return self._routes

    def _read_all(self) -> None:
        started = time.monotonic()
        with self.db.session() as s:
            rows = s.execute(select(*_COLUMNS).where(*_routable())).all()
        self._by_id = {row.id: _route(row) for row in rows}
        self._id_of = {r.space: i for i, r in self._by_id.items()}
        self._last_full = started

    def _read(self, names: set[str]) -> None:
        pairs = [tuple(n.split("/", 1)) for n in names if "/" in n]
        with self.db.session() as s:
            rows = {
                f"{row.owner}/{row.name}": row
                for owner, name in pairs
                for row in s.execute(select(*_COLUMNS).where(Space.owner == owner, Space.name == name, *_routable()))
            }
        for name in names:
            if (old := self._id_of.pop(name, None)) is not None:
                self._by_id.pop(old, None)
            if (row := rows.get(name)) is not None:
                if (renamed := self._by_id.get(row.id)) is not None:  # moved: its old name goes
                    self._id_of.pop(renamed.space, None)
                self._by_id[row.id] = _route(row)
                self._id_of[name] = row.id


def _route(row) -> Route:
    label = space_label(row.owner, row.name)
    return Route(f"{row.owner}/{row.name}", label, row.endpoint, path_prefix(row.owner, row.name), row.strip_prefix)
