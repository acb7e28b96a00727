"""The control plane's answer to the router's question "which app serves this URL?".

Spaces are cached in memory and dropped from the cache whenever their stage changes, so the hot path
(every proxied request) reads no database unless the Space is private.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane import sessions
from controlplane.access_cache import AccessCache
from controlplane.auth import identify
from controlplane.errors import Unauthenticated
from controlplane.models import Space, SpaceRedirect
from controlplane.router.headers import SPACE_ACCESS_COOKIE
from controlplane.router.resolver import Moved, NotFound, Resolution, Target, Unavailable, path_prefix, space_label
from controlplane.services import Services
from controlplane.sleep import Sleeper
from controlplane.stages import SERVING, SLEEPING, Stage, on_committed_change

NOT_SERVING = {
    Stage.NO_APP_FILE: (404, "This Space has no application file yet."),
    Stage.CONFIG_ERROR: (503, "This Space's configuration has an error."),
    Stage.BUILDING: (503, "This Space is building. It will be up shortly."),
    Stage.BUILD_ERROR: (503, "This Space's build failed."),
    Stage.APP_STARTING: (503, "This Space is starting. It will be up shortly."),
    Stage.RUNTIME_ERROR: (503, "This Space has a runtime error."),
    Stage.PAUSED: (503, "This Space has been paused by its owner. Only its owner can restart it."),
    Stage.STOPPED: (503, "This Space is stopped."),
    Stage.DELETING: (404, "This Space is being deleted."),
}


@dataclass(frozen=True)
class Entry:
    full_name: str
    private: bool
    owner: str
    stage: str
    detail: str | None
    endpoint: str | None
    strip_prefix: bool


# An unknown host label is looked up again (the label map reloaded) at most this often.
LABELS_TTL = 2.0
# How often a request held for a starting app looks at its stage again (the cache: a read only after a change).
HOLD_POLL = 0.1
# What a held request gets when the app is not up within the hold (`SPACEYARD_WAKE_TIMEOUT`): try again soon.
HOLD_RETRY_AFTER = 1


def from_browser(headers: Mapping[str, str]) -> bool:
    """A page load (not an API client, not a WebSocket): it gets a page that reloads itself instead of a wait."""
    return "text/html" in (headers.get("accept") or "") and not headers.get("upgrade")


class SpaceResolver:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.entries: dict[str, Entry | None] = {}
        # label -> "owner/name" of every Space (names only), so a host lookup never scans Spaces per request.
        self.labels: dict[str, str] = {}
        self._labels_until = 0.0  # monotonic time before which a label missing from the map is a miss
        # label -> (owner, name) of every former name of a moved Space (space_redirects), reloaded like `labels`.
        self.moved_labels: dict[str, tuple[str, str]] = {}
        self._moved_until = 0.0
        # Bumped by every announcement: an entry read before one (across an await) may be stale, so it is not kept.
        self._epoch = 0
        self.last_request: dict[str, float] = {}
        # Who may open which private Space, from memory (access_cache.py).
        self.access = AccessCache()
        stop_watching = self.access.watch_credentials()
        self._credential_cookies = (sessions.cookie_name(svc.settings), SPACE_ACCESS_COOKIE)
        # Both stopped by close() at shutdown (controlplane/wiring.py).
        self._stops = (stop_watching, on_committed_change(self.forget))

    def close(self) -> None:
        for stop in self._stops:
            stop()

    def forget(self, full_name: str) -> None:
        """A Space changed (called after commit, from any thread)."""
        self._epoch += 1
        self.entries.pop(full_name, None)
        self.access.forget_space(full_name)
        owner, _, name = full_name.partition("/")
        self.labels.setdefault(space_label(owner, name), full_name)

    def touched(self, space: str) -> None:
        # Wall-clock time: the sleeper compares it with last_request_at in the database.
        self.last_request[space] = time.time()

    def record(self, space: str, when: float) -> None:
        """A request the proxy served directly, at `when` (wall clock, from its access log)."""
        if when > self.last_request.get(space, 0.0):
            self.last_request[space] = when

    def _load(self, full_name: str) -> Entry | None:
        owner, name = full_name.split("/", 1)
        with self.svc.db.session() as s:
            space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
            if space is None:
                return None
            return Entry(
                space.full_name,
                space.private,
                space.owner,
                space.stage,
                space.detail,
                space.endpoint,
                space.strip_prefix,
            )

    def _load_labels(self) -> dict[str, str]:
        labels: dict[str, str] = {}
        with self.svc.db.session() as s:
            # Labels are lower-cased owner-name; several Spaces could share one, the first created wins.
            for owner, name in s.execute(select(Space.owner, Space.name).order_by(Space.id)):
                labels.setdefault(space_label(owner, name), f"{owner}/{name}")
        return labels

    async def _full_name(self, label: str) -> str | None:
        """From the label map; a label it lacks reloads it, at most once per LABELS_TTL (misses stay cheap)."""
        now = time.monotonic()
        if label not in self.labels and now >= self._labels_until:
            self._labels_until = now + LABELS_TTL
            self.labels = await asyncio.to_thread(self._load_labels)
        return self.labels.get(label)

    async def _entry(self, full_name: str | None, label: str | None) -> Entry | None:
        if full_name is None and label is not None:
            full_name = await self._full_name(label)
        if full_name is None:
            return None
        if full_name in self.entries:
            return self.entries[full_name]
        epoch = self._epoch
        entry = await asyncio.to_thread(self._load, full_name)
        if entry is not None and epoch == self._epoch:  # nothing changed while it was read
            self.entries[entry.full_name] = entry
        return entry

    def _may_see(self, entry: Entry, headers: Mapping[str, str]) -> bool:
        cookies = _cookies(headers)
        with self.svc.db.session() as s:
            try:
                user = identify(self.svc, s, headers, cookies).user
            except Unauthenticated:
                return False
            # On the app's own origin the browser holds no session cookie, but the grant the dashboard gave it.
            user = user or sessions.grant_holder(
                s, self.svc.secret_key, cookies.get(SPACE_ACCESS_COOKIE), entry.full_name
            )
            return user is not None and (user.name == entry.owner or user.is_admin)

    async def _allowed(self, entry: Entry, headers: Mapping[str, str]) -> bool:
        credentials = AccessCache.credentials(headers, self._credential_cookies)
        if credentials is None:
            return False  # nothing presented: no one
        allowed = self.access.get(entry.full_name, credentials)
        if allowed is None:
            generation = self.access.generation
            allowed = await asyncio.to_thread(self._may_see, entry, headers)
            self.access.put(entry.full_name, credentials, allowed, generation)
        return allowed

    async def resolve(
        self, *, label: str | None, owner: str | None, name: str | None, request_headers: Mapping[str, str]
    ) -> Resolution:
        entry = await self._entry(f"{owner}/{name}" if owner and name else None, label)
        if entry is None:
            return await self._moved(label, request_headers) if label is not None else NotFound()
        if entry.private and not await self._allowed(entry, request_headers):
            return NotFound()  # a private Space's existence is not disclosed
        sleeper = self.svc.sleeper
        if sleeper is not None and (entry.detail == SLEEPING or entry.full_name in sleeper.waking):
            return await self._wake(sleeper, entry.full_name, request_headers)
        if entry.stage == Stage.APP_STARTING and not from_browser(request_headers):
            return await self._hold(entry)
        return self._answer(entry)

    def _load_moved_labels(self) -> dict[str, tuple[str, str]]:
        with self.svc.db.session() as s:
            return {space_label(o, n): (o, n) for o, n in s.execute(select(SpaceRedirect.owner, SpaceRedirect.name))}

    async def _moved(self, label: str, headers: Mapping[str, str]) -> Moved | NotFound:
        """A host label no Space holds: a moved Space's former one redirects to its current host, for callers who
        may see it (the rule of its old path-based URLs, `api/redirects.py`): a moved private Space's old host
        stays a plain 404 to everyone else, disclosing neither its new name nor that it exists. The map of
        former names is reloaded at most once per LABELS_TTL for a label it lacks, so random hosts stay cheap."""
        now = time.monotonic()
        if label not in self.moved_labels and now >= self._moved_until:
            self._moved_until = now + LABELS_TTL
            self.moved_labels = await asyncio.to_thread(self._load_moved_labels)
        former = self.moved_labels.get(label)
        if former is None:
            return NotFound()
        return await asyncio.to_thread(self._moved_to, *former, headers)

    def _moved_to(self, owner: str, name: str, headers: Mapping[str, str]) -> Moved | NotFound:
        with self.svc.db.session() as s:
            moved = s.scalar(
                select(Space)
                .join(SpaceRedirect, SpaceRedirect.space_id == Space.id)
                .where(func.lower(SpaceRedirect.owner) == owner.lower(), func.lower(SpaceRedirect.name) == name.lower())
            )
            if moved is None:  # the old name was taken again (the row is gone) or the Space deleted
                return NotFound()
            if space_label(moved.owner, moved.name) == space_label(owner, name):
                return NotFound()  # a rename that keeps the label (case only): its own entry answers, or nothing
            if moved.private and not self._may_open_moved(s, moved, f"{owner}/{name}", headers):
                return NotFound()
            return Moved(moved.owner, moved.name)

    def _may_open_moved(self, s: Session, moved: Space, former: str, headers: Mapping[str, str]) -> bool:
        """Its owner or an admin, by token or dashboard session, or by the app-origin grant the dashboard gave
        for the old name (a browser on the old host holds no other credential)."""
        cookies = _cookies(headers)
        try:
            who = identify(self.svc, s, headers, cookies)
        except Unauthenticated:
            return False
        if who.can_read(moved):
            return True
        holder = sessions.grant_holder(s, self.svc.secret_key, cookies.get(SPACE_ACCESS_COOKIE), former)
        return holder is not None and (holder.name == moved.owner or holder.is_admin)

    def _answer(self, entry: Entry) -> Target | Unavailable:
        stage = Stage(entry.stage)
        if stage in SERVING and entry.endpoint:
            ow, nm = entry.full_name.split("/", 1)
            return Target(
                space=entry.full_name,
                upstream=entry.endpoint,
                prefix=path_prefix(ow, nm),
                strip_prefix=entry.strip_prefix,
            )
        status, message = NOT_SERVING.get(stage, (503, "This Space is not running."))
        # A paused Space stays paused until its owner acts: nothing to retry, so no Retry-After (or page reload).
        retry = status == 503 and stage != Stage.PAUSED
        return Unavailable(status=status, message=message, retry_after=5 if retry else None)

    async def _wake(self, sleeper: Sleeper, full_name: str, headers: Mapping[str, str]) -> Resolution:
        """Browsers get a page that reloads itself; API clients and WebSockets are held until the app answers,
        within the hold (`SPACEYARD_WAKE_TIMEOUT`); the wake goes on either way."""
        task = sleeper.wake(full_name)
        if from_browser(headers):
            return Unavailable(503, "This Space is waking up. This page reloads by itself.", retry_after=2)
        done, _ = await asyncio.wait([task], timeout=self.svc.settings.wake_timeout)
        if not done:
            message = "This Space is waking up and does not answer yet. Try again shortly."
            return Unavailable(503, message, HOLD_RETRY_AFTER)
        self.forget(full_name)  # an entry read while the wake committed could be stale: read it afresh
        entry = await self._entry(full_name, None)
        return self._answer(entry) if entry is not None else NotFound()

    async def _hold(self, entry: Entry) -> Resolution:
        """An API client's request to an app that is starting (after a build, a restart) waits for it, as during a
        wake: gradio_client waits out BUILDING itself but asks the app for its config as soon as it starts."""
        deadline = time.monotonic() + self.svc.settings.wake_timeout
        while entry.stage == Stage.APP_STARTING:
            if time.monotonic() >= deadline:
                message = "This Space is starting and does not answer yet. Try again shortly."
                return Unavailable(503, message, HOLD_RETRY_AFTER)
            await asyncio.sleep(HOLD_POLL)
            fresh = await self._entry(entry.full_name, None)
            if fresh is None:
                return NotFound()
            entry = fresh
        return self._answer(entry)


def _cookies(headers: Mapping[str, str]) -> dict[str, str]:
    """The request's Cookie header as a dict (the last of a repeated name wins)."""
    out = {}
    for part in (headers.get("cookie") or "").split(";"):
        key, _, value = part.strip().partition("=")
        out[key] = value
    return out
