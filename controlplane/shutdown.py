"""A prompt stop of the control plane: open event streams end the moment shutdown begins.

uvicorn waits for every open response before it stops, and a log stream (or an app's event stream the router
proxies) stays open as long as its client does: a stop used to wait until the launcher gave up and killed the
process. Here every `text/event-stream` response is finished cleanly once shutdown begins (its client sees the
stream end, and reconnects to the next control plane) and the code producing it is told the client left. Other
requests (a git push, an API call) get uvicorn's graceful time to finish.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn

# What a request other than an event stream (a git push, an API call) gets to finish once a stop begins; the
# launcher kills a control plane that takes longer than 15 s.
GRACE_SECONDS = 8

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


class EndStreamsOnShutdown:
    """The outermost ASGI layer; `closing` is set when shutdown begins (`Server` does)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.closing = asyncio.Event()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        # Event streams are GETs; other requests keep their own receive (no extra task per body chunk).
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        stream = _Exchange(self.closing, receive, send)
        try:
            await self.app(scope, stream.receive, stream.send)
        finally:
            stream.close()


class _Exchange:
    def __init__(self, closing: asyncio.Event, receive: Receive, send: Send) -> None:
        self._closing = closing
        self._receive = receive
        self._send = send
        # One read of the client at a time, kept across calls: a caller that gives up waiting (Starlette's
        # is_disconnected cancels at once) must not lose the message that read brings.
        self._incoming: asyncio.Task | None = None
        self._events = False
        self._ended = False

    async def send(self, message: Message) -> None:
        if self._ended:
            return  # finished at shutdown: what the app still sends goes nowhere
        if message["type"] == "http.response.start":
            self._events = any(
                k.lower() == b"content-type" and v.startswith(b"text/event-stream") for k, v in message["headers"]
            )
        await self._send(message)

    async def receive(self) -> Message:
        if self._incoming is None:
            self._incoming = asyncio.ensure_future(self._receive())
        incoming = self._incoming
        waits = {incoming}
        while not incoming.done():
            if self._events and self._closing.is_set():
                self._ended = True
                await self._send({"type": "http.response.body", "body": b"", "more_body": False})
                return {"type": "http.disconnect"}
            stop = asyncio.ensure_future(self._closing.wait())
            try:
                await asyncio.wait(waits | {stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
            if not self._events:
                await asyncio.wait(waits)  # not an event stream: it runs to its end, shutdown or not
        self._incoming = None
        return incoming.result()

    def close(self) -> None:
        if self._incoming is not None:
            self._incoming.cancel()


class Server(uvicorn.Server):
    """uvicorn's server, telling `streams` when shutdown begins (before it waits for open responses)."""

    def __init__(self, config: uvicorn.Config, streams: EndStreamsOnShutdown) -> None:
        super().__init__(config)
        self._streams = streams

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self._streams.closing.set()
        await super().shutdown(sockets)
