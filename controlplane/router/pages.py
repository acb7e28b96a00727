"""The router's own answers (404, 502, 503, redirects): a short page, or JSON for API clients."""

from __future__ import annotations

import html
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from controlplane.router.headers import header

Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

TITLES = {404: "No app here", 502: "The app is not answering", 503: "The app is not available"}


def wants_json(scope: dict) -> bool:
    accept = (header(scope["headers"], b"accept") or "").lower()
    return "application/json" in accept and "text/html" not in accept


def render(scope: dict, status: int, message: str, retry_after: int | None = None) -> tuple[bytes, bytes]:
    """(content type, body) for an error answer. A page with a Retry-After reloads itself after that long
    (a Space building, starting or waking up comes up without the visitor pressing reload)."""
    title = TITLES.get(status, "Error")
    if wants_json(scope):
        return b"application/json", json.dumps({"error": title, "message": message}).encode()
    refresh = f"<meta http-equiv=refresh content={retry_after}>" if retry_after is not None else ""
    page = (
        f"<!doctype html><html><head><meta charset=utf-8>{refresh}"
        f"<title>{html.escape(title)}</title></head><body style='font-family:sans-serif;margin:3em'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(message)}</p></body></html>"
    )
    return b"text/html; charset=utf-8", page.encode()


def _response_headers(content_type: bytes, body: bytes, retry_after: int | None) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
    ]
    if retry_after is not None:
        headers.append((b"retry-after", str(retry_after).encode()))
    return headers


async def send_error(scope: dict, send: Send, status: int, message: str, retry_after: int | None = None) -> None:
    content_type, body = render(scope, status, message, retry_after)
    headers = _response_headers(content_type, body, retry_after)
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def deny_websocket(scope: dict, send: Send, status: int, message: str, retry_after: int | None = None) -> None:
    """Refuse a WebSocket handshake with an HTTP status where the server supports it (uvicorn does), else
    close with 4000+status, the usual mapping of HTTP statuses onto application close codes."""
    if "websocket.http.response" in scope.get("extensions", {}):
        content_type, body = render(scope, status, message)
        headers = _response_headers(content_type, body, retry_after)
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 4000 + status, "reason": message[:120]})


async def redirect(send: Send, location: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
    # 307 keeps the method and body (a POST to /apps/o/n stays a POST).
    headers = [(b"location", location.encode("latin-1")), (b"content-length", b"0"), *(extra or [])]
    await send({"type": "http.response.start", "status": 307, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
