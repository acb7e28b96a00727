"""Old URLs of moved Spaces redirect to the new ones, as on the Hub: API paths (`/api/spaces/o/n/...`), git remotes
and downloads (`/spaces/o/n[.git]/...`), the dashboard page and the path-based app URL (`/apps/o/n/...`).

Only a request that would fail is looked at: a 404 (or git's 401 asking an anonymous caller for credentials) under
a former name becomes a 307 (method and body kept: a push or an API commit to the old name goes through) to the
same path under the Space's current name. A Space that now holds the name always wins; the redirect row is gone
then (`spaces.release_redirect`). A private Space redirects only callers who may see it: to anyone else its old
name stays a 404, so a move discloses neither the new name nor that the Space still exists."""

from __future__ import annotations

import asyncio
import re
from collections.abc import MutableMapping
from typing import Any

from sqlalchemy import func, select
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from controlplane.auth import identify
from controlplane.errors import Unauthenticated
from controlplane.models import Space, SpaceRedirect
from controlplane.services import Services

SPACE_PATH = re.compile(r"^/(api/spaces|spaces|apps)/([^/]+)/([^/]+?)(\.git)?(/.*)?$", re.DOTALL)
REDIRECTED = {401, 404}


class MovedSpaces:
    def __init__(self, app: ASGIApp, svc: Services) -> None:
        self.app, self.svc = app, svc
        self.apps_suffix = "." + svc.settings.apps_domain.lower().strip(".")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        raw = scope.get("raw_path") or scope.get("path", "").encode()
        match = SPACE_PATH.match(raw.decode("latin-1")) if scope["type"] == "http" else None
        if match is None or self.on_app_host(scope):
            await self.app(scope, receive, send)
            return
        redirected = False

        async def send_or_redirect(message: MutableMapping[str, Any]) -> None:
            nonlocal redirected
            if message["type"] == "http.response.start" and message["status"] in REDIRECTED:
                location = await asyncio.to_thread(self.location, scope, match)
                if location is not None:
                    redirected = True
                    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0")]
                    await send({"type": "http.response.start", "status": 307, "headers": headers})
                    await send({"type": "http.response.body", "body": b""})
                    return
            if not redirected:
                await send(message)

        await self.app(scope, receive, send_or_redirect)

    def on_app_host(self, scope: Scope) -> bool:
        """An app's own origin: its paths (and its 404s) are the app's, never the platform's."""
        host = HTTPConnection(scope).headers.get("host", "").lower().rsplit(":", 1)[0]
        return host.endswith(self.apps_suffix)

    def location(self, scope: Scope, match: re.Match) -> str | None:
        kind, owner, name, git, rest = match.groups()
        with self.svc.db.session() as s:
            moved = s.scalar(
                select(Space)
                .join(SpaceRedirect, SpaceRedirect.space_id == Space.id)
                .where(func.lower(SpaceRedirect.owner) == owner.lower(), func.lower(SpaceRedirect.name) == name.lower())
            )
            if moved is None or (moved.owner, moved.name) == (owner, name):
                return None  # not moved, or a case-only rename whose current name 404s for its own reasons
            conn = HTTPConnection(scope)
            try:
                who = identify(self.svc, s, conn.headers, conn.cookies)
            except Unauthenticated:  # a bad token: its own answer stands
                return None
            if not who.can_read(moved):
                return None
            query = scope.get("query_string", b"").decode("latin-1")
            return f"/{kind}/{moved.owner}/{moved.name}{git or ''}{rest or ''}" + (f"?{query}" if query else "")
