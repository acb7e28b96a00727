"""Which Spaces the proxy served: HAProxy logs one line per request an app answered, as a datagram on a loopback
UDP port (raw syslog: the line is the Space's path prefix, "/apps/owner/name").

UDP because the proxy must never wait for the control plane (a line to a dead or busy control plane is simply
lost: activity is a hint for the sleeper, not a record). The Spaces of the current route table are recorded in
memory with the time the line arrived, as the Python router's `touched()` does.

HAProxy sends the line when the answer starts (the log format needs nothing from the request's end), so a WebSocket
or stream is one line when it opens and none while it stays open or when it closes: the sleeper asks the proxy
what is open before it puts a Space to sleep (`Pusher.in_use`, controlplane/sleep.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from controlplane.proxy.config import Table


class ActivityReader(asyncio.DatagramProtocol):
    def __init__(self, table: Callable[[], Table], record: Callable[[str, float], None]) -> None:
        self._table, self._record = table, record
        self._version = -1
        self._prefixes: dict[str, str] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        table = self._table()
        if table.version != self._version:
            self._prefixes = {r.prefix: r.space for r in table.routes}
            self._version = table.version
        now = time.time()
        for line in data.decode(errors="replace").splitlines():
            if (space := self._prefixes.get(line.strip())) is not None:
                self._record(space, now)


async def listen(port: int, reader: ActivityReader, host: str = "127.0.0.1") -> asyncio.DatagramTransport:
    """host: loopback for the local proxy; the pod's addresses for the Helm chart's proxy replicas."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: reader, local_addr=(host, port))
    return transport
