"""ASGI middleware for what the control plane itself answers (never app traffic: the router sits outside these).

- SecurityHeaders: the dashboard's origin may frame only the apps' origin and is framed by no one.
- BodyLimit: a JSON body over the limit is a 413 before anything parses it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# FastAPI's own API explorer pages load their scripts inline and from a CDN; they show no user data.
_NO_CSP = ("/docs", "/redoc")


def content_security_policy(apps_origin: str) -> str:
    """The dashboard's scripts are its own files (no inline script or handler), and the only frame it shows is
    an app, on the apps' origin."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            "connect-src 'self'",
            f"frame-src {apps_origin}",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
            "object-src 'none'",
        ]
    )


class SecurityHeaders:
    def __init__(self, app: ASGIApp, apps_origin: str) -> None:
        self.app = app
        self.common = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            (b"referrer-policy", b"same-origin"),
            # A window the dashboard opens (or that opens it) gets no handle on it.
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        self.csp = (b"content-security-policy", content_security_policy(apps_origin).encode("latin-1"))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self.common if scope["path"].startswith(_NO_CSP) else [*self.common, self.csp]

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []), *((k, v) for k, v in extra if k not in names)]
            await send(message)

        await self.app(scope, receive, with_headers)


# The NDJSON commit streams and bounds its own body (max_commit_bytes), push webhooks theirs
# (webhook_max_body_bytes); git is not under /api.
_OWN_LIMITS = re.compile(r"^/api/(spaces/[^/]+/[^/]+/commit/|webhooks/)")
VALIDATE_YAML_PATH = "/api/validate-yaml"
# A README is sent whole to validate-yaml; front matter is a few hundred bytes, long READMEs some tens of KiB.
VALIDATE_YAML_MAX_BYTES = 256 * 1024


class BodyLimit:
    """Bounds the bodies of /api calls: over the limit (by Content-Length, or by counting a chunked body) is a
    413 naming the limit; under it, the body is handed on as received."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def limit_for(self, scope: Scope) -> int | None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return None
        path = scope["path"]
        if not path.startswith("/api/") or _OWN_LIMITS.match(path):
            return None
        return VALIDATE_YAML_MAX_BYTES if path == VALIDATE_YAML_PATH else self.max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.limit_for(scope)
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                await _too_large(send, limit)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)


async def _too_large(send: Send, limit: int) -> None:
    message = f"Request body too large: this call accepts at most {limit} bytes."
    body = json.dumps({"error": message}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-error-code", b"PayloadTooLarge"),
        (b"x-error-message", message.encode()),
        (b"connection", b"close"),
    ]
    await send({"type": "http.response.start", "status": 413, "headers": headers})
    await send({"type": "http.response.body", "body": body})
