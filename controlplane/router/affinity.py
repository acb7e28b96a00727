"""Client sessions stay on the instance they started on across a redeploy (the Python router's half; HAProxy does
the same with stick tables, controlplane/proxy/config.py).

Gradio's client calls `POST .../queue/join` (`session_hash` in the JSON body), then reads the results from the
stream `GET .../queue/data?session_hash=...`; both must reach the same instance. A join goes to the instance its
session's stream is open on, else to the current one (so a session's later calls move to the new version); a
stream goes where its session's last join went, while that instance lives. The deployer marks the instance it
replaces as draining and stops it once nothing is open on it (deploy.py).
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs

# A join's body is read before it is forwarded, up to this size (larger ones are not pinned: inputs are files).
MAX_JOIN_BODY = 1 << 20
# Sessions remembered, oldest forgotten first.
MAX_SESSIONS = 100_000


def gradio_call(method: str, path: bytes) -> str | None:
    """Which of Gradio's session requests this is, "join", "data" or "heartbeat" (any root path, `/gradio_api` or
    older), or None."""
    if method == "POST" and path.endswith(b"/queue/join"):
        return "join"
    if path.endswith(b"/queue/data"):
        return "data"
    if b"/heartbeat/" in path:
        return "heartbeat"
    return None


def query_session(query: bytes) -> str | None:
    values = parse_qs(query.decode("latin-1")).get("session_hash")
    return values[0] if values else None


class Affinity:
    def __init__(self) -> None:
        self.draining: set[str] = set()  # upstreams replaced by a redeploy, still serving their sessions
        self._sessions: OrderedDict[str, str] = OrderedDict()  # session -> upstream of its last join
        self._streams: Counter[str] = Counter()  # session -> its open queue/data streams
        self._open: Counter[str] = Counter()  # upstream -> requests and WebSockets open on it

    def drain(self, upstream: str) -> None:
        self.draining.add(upstream)

    def retired(self, upstream: str) -> None:
        self.draining.discard(upstream)

    async def open_streams(self, upstream: str) -> int:
        return self._open[upstream]

    def choose(self, current: str, session: str | None, join: bool) -> str:
        """The upstream for a session request whose Space is served by `current` now."""
        if session is None:
            return current
        pinned = self._sessions.get(session)
        alive = pinned == current or pinned in self.draining
        upstream = pinned if pinned is not None and alive and (not join or self._streams[session]) else current
        if join:
            self._sessions[session] = upstream
            self._sessions.move_to_end(session)
            if len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return upstream

    @contextmanager
    def opened(self, upstream: str, session: str | None, call: str | None) -> Iterator[None]:
        """Counts a request for the drain (not Gradio's heartbeat, which lasts as long as the client)."""
        counted = call != "heartbeat"
        stream = session if call == "data" else None
        self._open[upstream] += counted
        if stream:
            self._streams[stream] += 1
        try:
            yield
        finally:
            self._open[upstream] -= counted
            if not self._open[upstream]:
                del self._open[upstream]
            if stream:
                self._streams[stream] -= 1
                if not self._streams[stream]:
                    del self._streams[stream]
