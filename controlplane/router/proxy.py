"""ASGI middleware serving the public app URLs in front of the control plane's own app.

Host-based: http://{label}.{apps_domain}[:port]/...    Path-based: http://{host}[:port]/apps/{owner}/{name}/...
Everything else goes to the wrapped app untouched.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.datastructures import Headers as HeaderView

from controlplane.router.affinity import MAX_JOIN_BODY, Affinity, gradio_call, query_session
from controlplane.router.headers import (
    SPACE_ACCESS_COOKIE,
    SPACE_ACCESS_PARAM,
    header,
    upstream_request_headers,
)
from controlplane.router.http_proxy import make_client, proxy_http
from controlplane.router.pages import deny_websocket, redirect, send_error
from controlplane.router.resolver import Moved, NotFound, Resolver, Target, Unavailable, space_label
from controlplane.router.ws_proxy import proxy_websocket

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH_BASED = re.compile(rb"^/apps/([^/]+)/([^/]+)(/.*)?$", re.DOTALL)


@dataclass(frozen=True)
class _Address:
    """What a request's URL names. `rest` is the path after /apps/o/n (None: not a path-based URL yet)."""

    label: str | None
    owner: str | None
    name: str | None
    rest: bytes | None


class RouterMiddleware:
    """`path_urls` False: /apps/o/n/... is redirected to the app's own origin (`host_url(owner, name)`) instead of
    served on the dashboard's. `secrets`: service credentials (besides every sy_ token) kept from apps.
    `secure_cookies`: the public URLs are https even where this process sees http (TLS ends at a proxy)."""

    def __init__(
        self,
        app: ASGIApp,
        resolver: Resolver,
        apps_domain: str,
        *,
        path_urls: bool = True,
        host_url: Callable[[str, str], str] | None = None,
        secrets: frozenset[bytes] = frozenset(),
        secure_cookies: bool = False,
        affinity: Affinity | None = None,
    ) -> None:
        self.app = app
        self.affinity = affinity or Affinity()
        self.resolver = resolver
        self._host_suffix = "." + apps_domain.lower().strip(".")
        self._path_urls = path_urls
        self._host_url = host_url or (lambda owner, name: f"http://{space_label(owner, name)}{self._host_suffix}")
        self._secrets = secrets
        self._secure_cookies = secure_cookies
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        # Created on first use, inside the server's event loop.
        if self._client is None:
            self._client = make_client()
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, self._closing_on_shutdown(receive), send)
            return
        address = self._address(scope) if scope["type"] in ("http", "websocket") else None
        if address is None:
            await self.app(scope, receive, send)
            return
        await self._route(scope, receive, send, address)

    def _closing_on_shutdown(self, receive: Receive) -> Receive:
        async def wrapped() -> MutableMapping[str, Any]:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await self.aclose()
            return message

        return wrapped

    def _address(self, scope: Scope) -> _Address | None:
        host = (header(scope["headers"], b"host") or "").lower()
        hostname = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if hostname.endswith(self._host_suffix) and len(hostname) > len(self._host_suffix):
            return _Address(hostname[: -len(self._host_suffix)], None, None, None)
        match = PATH_BASED.match(_raw_path(scope))
        if match is None:
            return None
        owner, name = (unquote(m.decode("latin-1")) for m in match.group(1, 2))
        return _Address(None, owner, name, match.group(3) or b"")

    async def _route(self, scope: Scope, receive: Receive, send: Send, address: _Address) -> None:
        websocket = scope["type"] == "websocket"
        if address.label is None and not self._path_urls:
            await self._to_own_origin(scope, send, address)
            return
        if address.label is not None and not websocket and _ACCESS_PARAM.search(scope.get("query_string", b"")):
            await _keep_access_grant(scope, send, self._secure_cookies)
            return
        resolution = await self.resolver.resolve(
            label=address.label, owner=address.owner, name=address.name, request_headers=HeaderView(scope=scope)
        )
        if isinstance(resolution, Moved) and not websocket:
            await self._to_moved_space(scope, send, resolution)
            return
        if not isinstance(resolution, Target):
            status, message, retry_after = _refusal(resolution)
            deny = deny_websocket if websocket else send_error
            await deny(scope, send, status, message, retry_after)
            return
        raw_path = _raw_path(scope)
        rest = address.rest if address.rest is not None else _after_prefix(raw_path, resolution.prefix)
        if rest == b"" and not websocket:
            query = b"?" + scope["query_string"] if scope.get("query_string") else b""
            await redirect(send, (raw_path + b"/" + query).decode("latin-1"))
            return
        if rest == b"":  # a WebSocket cannot be redirected: open the app's root
            rest = b"/"
        path, forwarded_prefix = _upstream_path(raw_path, rest, resolution)
        if query := _without_grant(scope.get("query_string", b"")):
            path += b"?" + query
        self.resolver.touched(resolution.space)
        # A client session stays on its instance across a redeploy (affinity.py).
        call = None if websocket else gradio_call(scope["method"], raw_path)
        session = query_session(scope.get("query_string", b"")) if call == "data" else None
        if call == "join":
            receive, session = await _join_session(receive)
        session = f"{resolution.space}@{session}" if session else None  # a pin never crosses Spaces
        upstream = self.affinity.choose(resolution.upstream, session, call == "join")
        with self.affinity.opened(upstream, session, call):
            if websocket:
                touch = lambda: self.resolver.touched(resolution.space)  # noqa: E731
                await proxy_websocket(
                    scope, receive, send, upstream, path.decode("latin-1"), forwarded_prefix, touch, self._secrets
                )
            else:
                url = f"http://{upstream}{path.decode('latin-1')}"
                headers = upstream_request_headers(scope, forwarded_prefix, secrets=self._secrets)
                await proxy_http(self.client, scope, receive, send, url, headers)

    async def _to_moved_space(self, scope: Scope, send: Send, moved: Moved) -> None:
        """A moved Space's old host: the same path and query on its current host (307, as its old path-based and
        API URLs). The origin comes from the stored owner/name only, so no Host or path of the request can point
        the redirect elsewhere: the path is appended after the origin, and a path that does not start with '/'
        (an absolute-form request target) becomes '/'."""
        raw_path = _raw_path(scope)
        path = raw_path if raw_path.startswith(b"/") else b"/"
        query = b"?" + scope["query_string"] if scope.get("query_string") else b""
        await redirect(send, self._host_url(moved.owner, moved.name) + (path + query).decode("latin-1"))

    async def _to_own_origin(self, scope: Scope, send: Send, address: _Address) -> None:
        """Path-based URLs are off: the same place on the app's own origin. Nothing is looked up, so a private
        Space's existence is not disclosed."""
        target = self._host_url(address.owner or "", address.name or "")
        if scope["type"] == "websocket":
            message = f"Path-based app URLs are turned off here; the app is at {target}/."
            await deny_websocket(scope, send, 404, message)
            return
        query = b"?" + scope["query_string"] if scope.get("query_string") else b""
        await redirect(send, target + ((address.rest or b"/") + query).decode("latin-1"))


# `__sign=<grant>` in a host-based URL's query (the dashboard's frame and "Open app" of a private Space).
_ACCESS_PARAM = re.compile(rb"(?:^|&)" + re.escape(SPACE_ACCESS_PARAM) + rb"=([A-Za-z0-9_.\-]*)(?:&|$)")


async def _keep_access_grant(scope: Scope, send: Send, secure_cookies: bool) -> None:
    """Store the grant as a cookie of the app's own origin and send the browser to the same URL without it, so
    neither the app nor its later requests see the parameter. The router does not judge the grant: the
    resolver checks the cookie on every request to a private Space (signature, Space, live session).

    The frame is cross-site to the dashboard: its cookie must be SameSite=None, which browsers take only when
    Secure, and Partitioned keeps it to this embedding where third-party cookies are blocked. Secure cookies are
    accepted over https and on *.localhost (a secure context); elsewhere over http it is Lax: "Open app" in its
    own tab works, a private app in the frame does not (docs/security.md)."""
    query = scope["query_string"]
    grant = _ACCESS_PARAM.search(query).group(1)
    rest = _without_grant(query)
    host = (header(scope["headers"], b"host") or "").rsplit(":", 1)[0].lower()
    secure = secure_cookies or scope.get("scheme") == "https" or host == "localhost" or host.endswith(".localhost")
    attributes = b"Secure; SameSite=None; Partitioned" if secure else b"SameSite=Lax"
    cookie = SPACE_ACCESS_COOKIE.encode() + b"=" + grant + b"; Path=/; HttpOnly; " + attributes
    location = _raw_path(scope) + (b"?" + rest if rest else b"")
    await redirect(send, location.decode("latin-1"), [(b"set-cookie", cookie), (b"cache-control", b"no-store")])


async def _join_session(receive: Receive) -> tuple[Receive, str | None]:
    """Gradio's `session_hash` from a queue/join body (read up to MAX_JOIN_BODY), and a `receive` that gives the
    body again from its start."""
    messages: list[MutableMapping[str, Any]] = []
    size, complete = 0, False
    while size <= MAX_JOIN_BODY:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body", False):
            complete = message["type"] == "http.request"
            break
    session = None
    if complete:
        with contextlib.suppress(ValueError, AttributeError):
            session = json.loads(b"".join(m.get("body", b"") for m in messages)).get("session_hash")
    pending = iter(messages)

    async def replay() -> MutableMapping[str, Any]:
        return next(pending, None) or await receive()

    return replay, session if isinstance(session, str) else None


def _without_grant(query: bytes) -> bytes:
    """The query minus any `__sign` parameter: a grant is for the router, never for the app (a WebSocket or a
    path-based URL carrying one is forwarded without it)."""
    return b"&".join(p for p in query.split(b"&") if p and not p.startswith(SPACE_ACCESS_PARAM + b"="))


def _raw_path(scope: Scope) -> bytes:
    raw = scope.get("raw_path")
    return raw if raw else scope["path"].encode("utf-8")


def _after_prefix(raw_path: bytes, prefix: str) -> bytes | None:
    """For host-based requests: apps that link with their root path send /apps/o/n/... to their own host too."""
    encoded = prefix.encode("latin-1")
    if raw_path == encoded or raw_path.startswith(encoded + b"/"):
        return raw_path[len(encoded) :]
    return None


def _upstream_path(raw_path: bytes, rest: bytes | None, target: Target) -> tuple[bytes, str | None]:
    """(path to request from the app, X-Forwarded-Prefix). `rest` is None for a host-based URL without the
    prefix; the prefix is added back for apps that serve under it (strip_prefix false)."""
    prefix = target.prefix.encode("latin-1")
    if rest is None:
        return (raw_path if target.strip_prefix else prefix + raw_path), None
    return (rest if target.strip_prefix else prefix + rest), target.prefix


def _refusal(resolution: NotFound | Unavailable | Moved) -> tuple[int, str, int | None]:
    if isinstance(resolution, Unavailable):
        return resolution.status, resolution.message, resolution.retry_after
    if isinstance(resolution, Moved):  # a WebSocket cannot follow a redirect
        return 404, f"This Space moved to {resolution.owner}/{resolution.name}; connect to its new address.", None
    return 404, "No Space answers at this address. Check the owner and name in the URL.", None
