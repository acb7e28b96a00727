"""uvicorn's access log without the app traffic the router proxies (SPACEYARD_ACCESS_LOG turns that on).

A busy app is one log line per request, megabytes an hour, none of it about the platform. Requests the control
plane answers itself (API, dashboard, git) pass `MarkOwnRequests`, which sits inside the router; the filter keeps
only their lines. uvicorn writes the line from within the request's task, where the mark is visible.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

_own_request: ContextVar[bool] = ContextVar("spaceyard_own_request", default=False)
# uvicorn logs a WebSocket handshake on its error logger, in this shape; its other lines there are kept.
_WEBSOCKET_LINE = '%s - "WebSocket %s"'


class MarkOwnRequests:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            _own_request.set(True)
        await self.app(scope, receive, send)


class OwnRequestsOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.error" and not str(record.msg).startswith(_WEBSOCKET_LINE):
            return True
        return _own_request.get()


def drop_app_traffic() -> None:
    """Call after uvicorn configured its loggers."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(OwnRequestsOnly())
