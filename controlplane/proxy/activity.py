"""Which Spaces the proxy served: its access log arrives as JSON datagrams on a loopback UDP port.

UDP because the proxy must never wait for the control plane (a log line to a dead or busy control plane is
simply lost: activity is a hint for the sleeper, not a record). Each line names the request's host and URI;
those of a Space in the current route table are recorded in memory, as the Python router's `touched()` does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable

from controlplane.proxy.config import Table

log = logging.getLogger(__name__)


class ActivityReader(asyncio.DatagramProtocol):
    def __init__(self, apps_domain: str, table: Callable[[], Table], record: Callable[[str, float], None]) -> None:
        self._suffix = "." + apps_domain.lower().strip(".")
        self._table, self._record = table, record
        self._version = -1
        self._labels: dict[str, str] = {}
        self._prefixes: dict[str, str] = {}

    def datagram_received(self, data: bytes, addr: object) -> None:
        for line in data.splitlines():
            try:
                entry = json.loads(line)
                request = entry["request"]
                space = self.space_of(str(request.get("host", "")), str(request.get("uri", "")))
                if space is not None:
                    self._record(space, float(entry["ts"]))
            except (ValueError, KeyError, TypeError):
                log.debug("unreadable access log line: %r", line[:200])

    def space_of(self, host: str, uri: str) -> str | None:
        table = self._table()
        if table.version != self._version:
            self._labels = {r.label: r.space for r in table.routes}
            self._prefixes = {r.prefix: r.space for r in table.routes}
            self._version = table.version
        hostname = host.rsplit(":", 1)[0].lower()
        if hostname.endswith(self._suffix):
            return self._labels.get(hostname[: -len(self._suffix)])
        parts = uri.split("/", 4)  # "", "apps", owner, name, rest
        if len(parts) >= 4 and parts[1] == "apps":
            return self._prefixes.get("/".join(parts[:4]))
        return None


async def listen(port: int, reader: ActivityReader) -> asyncio.DatagramTransport:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(lambda: reader, local_addr=("127.0.0.1", port))
    return transport
