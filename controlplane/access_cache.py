"""Private Spaces' access decisions from memory: (Space, the caller's credentials) -> allowed or not.

The router asks on every request to a private Space; the answer needed database reads (the token or session, the
grant's session). Decisions are kept and dropped when they may have changed:
- a Space's, when it is announced (visibility, owner, deletion: `SpaceResolver.forget`);
- all of them, when a token, login session or user row is changed or deleted in this process (a revocation, a
  logout, a disabled account, an admin flag; not the last-used times), seen through SQLAlchemy's events, at the
  flush and again at the commit; a decision read while such a change commits is not kept;
- each after TTL seconds at most (a change made by another process, a session reaching its maximum age).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping

from sqlalchemy import event
from sqlalchemy.orm import ORMExecuteState, Session

from controlplane.models import LoginSession, Token, User

TTL = 10.0
MAX_DECISIONS = 100_000
_CREDENTIAL_MODELS = (Token, LoginSession, User)
# Written on use (Database.record_use); they decide nothing.
_USE_COLUMNS = {"last_used_at", "last_seen_at"}


class AccessCache:
    def __init__(self) -> None:
        # Space -> credentials digest -> (allowed, expiry on the monotonic clock)
        self._decisions: dict[str, dict[str, tuple[bool, float]]] = {}
        self._count = 0
        self.generation = 0  # bumped by every invalidation: a decision read across one is not kept

    @staticmethod
    def credentials(headers: Mapping[str, str], cookie_names: tuple[str, ...]) -> str | None:
        """A digest of what the request presents to prove who it is (None: nothing, so no one)."""
        cookies = {}
        for part in (headers.get("cookie") or "").split(";"):
            key, _, value = part.strip().partition("=")
            cookies[key] = value
        parts = [headers.get("authorization") or "", headers.get("x-hf-authorization") or ""]
        parts += [cookies.get(name, "") for name in cookie_names]
        if not any(parts):
            return None
        return hashlib.sha256("\0".join(parts).encode()).hexdigest()

    def get(self, space: str, credentials: str) -> bool | None:
        found = self._decisions.get(space, {}).get(credentials)
        if found is None or found[1] < time.monotonic():
            return None
        return found[0]

    def put(self, space: str, credentials: str, allowed: bool, generation: int) -> None:
        if generation != self.generation:
            return
        if self._count >= MAX_DECISIONS:
            self._decisions.clear()
            self._count = 0
        self._decisions.setdefault(space, {})[credentials] = (allowed, time.monotonic() + TTL)
        self._count += 1

    def forget_space(self, space: str) -> None:
        self.generation += 1
        self._decisions.pop(space, None)

    def clear(self) -> None:
        self.generation += 1
        self._decisions.clear()
        self._count = 0

    def watch_credentials(self) -> Callable[[], None]:
        """Clear on every change to tokens, sessions and users in this process (any thread, any session);
        returns the call that stops watching (shutdown: every Session class hook is removed again)."""
        hooks = (
            ("after_flush", self._after_flush),
            ("do_orm_execute", self._on_execute),
            ("after_commit", self._after_commit),
        )
        for name, hook in hooks:
            event.listen(Session, name, hook)

        def stop() -> None:
            for name, hook in hooks:
                if event.contains(Session, name, hook):
                    event.remove(Session, name, hook)

        return stop

    def _changed(self, session: Session) -> None:
        session.info["credentials_changed"] = True
        self.clear()

    def _after_flush(self, session: Session, _context) -> None:
        if any(isinstance(o, _CREDENTIAL_MODELS) for o in (*session.dirty, *session.deleted)):
            self._changed(session)

    def _on_execute(self, state: ORMExecuteState) -> None:
        if not (state.is_update or state.is_delete) or state.bind_mapper is None:
            return
        if not issubclass(state.bind_mapper.class_, _CREDENTIAL_MODELS):
            return
        values = {getattr(k, "key", k) for k in getattr(state.statement, "_values", None) or {}}
        if state.is_delete or not values or not values <= _USE_COLUMNS:
            self._changed(state.session)

    def _after_commit(self, session: Session) -> None:
        if session.info.pop("credentials_changed", False):
            self.clear()
