"""Bridge one client WebSocket (ASGI) to the app's WebSocket (the websockets library), message by message."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from controlplane.router.headers import WS_HANDSHAKE, header, response_headers, upstream_request_headers
from controlplane.router.http_proxy import NOT_ANSWERING
from controlplane.router.pages import deny_websocket

log = logging.getLogger("spaceyard.router")

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# An open WebSocket is activity: report it to idle tracking at most this often (seconds).
TOUCH_INTERVAL = 10.0
# Close codes that describe a closure but may not be sent in a close frame (RFC 6455 §7.4.1).
UNSENDABLE = {1005: 1000, 1006: 1011, 1015: 1011}


class _Connect(connect):
    def process_redirect(self, exc: Exception) -> Exception:
        # A redirect from the app is the client's business; following it here would hide it.
        return exc


def _sendable(code: int | None) -> int:
    if code is None:
        return 1011
    return UNSENDABLE.get(code, code)


async def proxy_websocket(
    scope: dict,
    receive: Receive,
    send: Send,
    upstream: str,
    path: str,
    prefix: str | None,
    touch: Callable[[], None],
    secrets: frozenset[bytes] = frozenset(),
) -> None:
    """`upstream` is "host:port", `path` the path and query to open there; `secrets` are the configured service
    credentials that, like every sy_ token, never reach the app."""
    if (await receive())["type"] != "websocket.connect":
        return
    app = await _open_upstream(scope, send, upstream, path, prefix, secrets)
    if app is None:
        return
    async with app:
        cookies = [(b"set-cookie", v.encode("latin-1")) for v in app.response.headers.get_all("Set-Cookie")]
        accept = {"type": "websocket.accept", "subprotocol": app.subprotocol, "headers": response_headers(cookies)}
        await send(accept)
        last_touch = time.monotonic()

        def active() -> None:
            nonlocal last_touch
            if (now := time.monotonic()) - last_touch >= TOUCH_INTERVAL:
                last_touch = now
                touch()

        async with anyio.create_task_group() as tg:

            async def client_to_app() -> None:
                while True:
                    message = await receive()
                    if message["type"] == "websocket.disconnect":
                        await app.close(_sendable(message.get("code", 1000)), message.get("reason") or "")
                        break
                    active()
                    text = message.get("text")
                    await app.send(text if text is not None else message.get("bytes") or b"")
                tg.cancel_scope.cancel()

            async def app_to_client() -> None:
                try:
                    async for data in app:
                        active()
                        kind = "text" if isinstance(data, str) else "bytes"
                        await send({"type": "websocket.send", kind: data})
                except ConnectionClosed:
                    pass  # the close code is read below either way
                close = {"type": "websocket.close", "code": _sendable(app.close_code), "reason": app.close_reason or ""}
                with contextlib.suppress(OSError):  # the client may be gone too
                    await send(close)
                tg.cancel_scope.cancel()

            tg.start_soon(client_to_app)
            tg.start_soon(app_to_client)
    touch()


async def _open_upstream(
    scope: dict, send: Send, upstream: str, path: str, prefix: str | None, secrets: frozenset[bytes]
) -> ClientConnection | None:
    """The app's WebSocket, or None after refusing the client's handshake."""
    host, _, port = upstream.rpartition(":")
    # The URI names the public host so the upstream handshake carries the client's Host header (apps such as
    # Streamlit compare Origin with Host); the TCP connection goes to the app's address via host=/port=.
    public_host = header(scope["headers"], b"host") or upstream
    try:
        return await _Connect(
            f"ws://{public_host}{path}",
            host=host,
            port=int(port),
            origin=header(scope["headers"], b"origin"),  # type: ignore[arg-type]
            subprotocols=scope.get("subprotocols") or None,
            additional_headers=[
                (k.decode("latin-1"), v.decode("latin-1"))
                for k, v in upstream_request_headers(scope, prefix, drop=WS_HANDSHAKE, secrets=secrets)
            ],
            user_agent_header=None,  # the client's own User-Agent is among the forwarded headers
            proxy=None,
            compression=None,  # loopback: compressing costs CPU and saves nothing
            ping_interval=None,  # a busy app (CPU-bound inference) must not be cut off for a late pong
            max_size=None,  # the server in front of the router already bounds client messages
            open_timeout=10,
        )
    except InvalidStatus as exc:
        # The app refused the handshake itself (403 for a bad Origin, 404...): pass its answer on.
        await deny_websocket(
            scope, send, exc.response.status_code, (exc.response.body or b"").decode("utf-8", "replace")
        )
    except InvalidURI:
        await deny_websocket(scope, send, 400, "Invalid Host header.")
    except (OSError, TimeoutError, InvalidHandshake) as exc:
        log.warning("upstream ws %s%s: %s", upstream, path, exc.__class__.__name__)
        await deny_websocket(scope, send, 502, NOT_ANSWERING)
    return None
