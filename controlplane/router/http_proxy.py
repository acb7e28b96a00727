"""Forward one HTTP request to an app and stream the answer back, chunk by chunk, both ways."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import anyio
import httpx

from controlplane.router.headers import Headers, header, response_headers
from controlplane.router.pages import send_error

log = logging.getLogger("spaceyard.router")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

NOT_ANSWERING = "The app is not answering. It may be starting or may have stopped; try again in a moment."


class ClientGone(Exception):
    """The client disconnected while its request body was being forwarded."""


def make_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        http1=True,
        http2=False,
        # Connecting is bounded; reading is not: an SSE stream or a long generation may be silent for minutes.
        timeout=httpx.Timeout(connect=10.0, read=None, write=None, pool=30.0),
        # Expire idle upstream connections before uvicorn's 5 s keep-alive does, so a reused connection is
        # rarely one the app is closing at that moment.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=256, keepalive_expiry=4.0),
        # Loopback app traffic must never go through HTTP(S)_PROXY from the environment.
        trust_env=False,
        follow_redirects=False,
        # One client serves every user: it must never keep one user's cookies and send them for another.
        cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
    )


def _has_body(scope: dict) -> bool:
    length = header(scope["headers"], b"content-length")
    return header(scope["headers"], b"transfer-encoding") is not None or (length not in (None, "0"))


async def proxy_http(
    client: httpx.AsyncClient, scope: dict, receive: Receive, send: Send, url: str, headers: Headers
) -> None:
    has_body = _has_body(scope)
    body_read = anyio.Event()

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone
                if chunk := message.get("body", b""):
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            body_read.set()

    if not has_body:
        body_read.set()
    # Built directly, not with client.build_request: that would add the client's default headers
    # (an Accept-Encoding the browser never sent) and cookies.
    request = httpx.Request(scope["method"], url, headers=headers, content=body() if has_body else None)
    try:
        response = await _send(client, request, retry=not has_body)
    except ClientGone:
        return
    except httpx.HTTPError as exc:
        log.warning("upstream %s: %s", url, exc.__class__.__name__)
        await send_error(scope, send, 502, NOT_ANSWERING)
        return
    try:
        await _stream_back(response, receive, send, body_read)
    except httpx.HTTPError as exc:
        # Mid-body: returning without completing makes the server drop the connection, so the client sees
        # a truncated response rather than one that looks complete.
        log.warning("upstream %s broke off: %s", url, exc.__class__.__name__)
    finally:
        await response.aclose()


async def _send(client: httpx.AsyncClient, request: httpx.Request, retry: bool) -> httpx.Response:
    try:
        return await client.send(request, stream=True)
    except (httpx.RemoteProtocolError, httpx.ReadError):
        # A pooled keep-alive connection the app closed just now; a body-less request is safe to resend.
        if not retry:
            raise
        return await client.send(request, stream=True)


async def _stream_back(response: httpx.Response, receive: Receive, send: Send, body_read: anyio.Event) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": response.status_code,
            "headers": response_headers(response.headers.raw),
        }
    )
    async with anyio.create_task_group() as tg:
        # A client leaving an endless stream (SSE) must close the upstream request too.
        tg.start_soon(_cancel_on_disconnect, receive, body_read, tg.cancel_scope)
        async for chunk in response.aiter_raw():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        tg.cancel_scope.cancel()


async def _cancel_on_disconnect(receive: Receive, body_read: anyio.Event, scope: anyio.CancelScope) -> None:
    await body_read.wait()
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()
