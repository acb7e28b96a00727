"""HAProxy's runtime API on its unix socket (or a TCP address): map changes and reads, one connection per request
(HAProxy's management guide, "Unix Socket commands")."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Iterator

# The whole request must fit in HAProxy's buffer (tune.bufsize, 16 KiB by default).
_MAX_REQUEST = 12_000


class ProxyError(Exception):
    """HAProxy refused a command (an unknown map, a missing entry)."""


def _connect(target: str):
    """`target`: a unix socket's path, or a `host:port` HAProxy binds its runtime API on (a replica's pod IP)."""
    if target.startswith("/") or ":" not in target:
        return asyncio.open_unix_connection(target)
    host, port = target.rsplit(":", 1)
    return asyncio.open_connection(host.strip("[]"), int(port))


async def send(socket: str, request: str, timeout: float = 10.0) -> str:
    reader, writer = await asyncio.wait_for(_connect(socket), timeout)
    try:
        writer.write(request.encode() + b"\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.read(), timeout)).decode()  # HAProxy closes when done
    finally:
        writer.close()


def _batches(items: Iterable[str], sep: str) -> Iterator[str]:
    batch: list[str] = []
    size = 0
    for item in items:
        if batch and size + len(item) > _MAX_REQUEST:
            yield sep.join(batch)
            batch, size = [], 0
        batch.append(item)
        size += len(item) + len(sep)
    if batch:
        yield sep.join(batch)


async def apply(socket: str, commands: Iterable[str]) -> None:
    """Commands that answer nothing when they work (add/set/del/commit map), several per connection."""
    for request in _batches(commands, "; "):
        if out := (await send(socket, request)).strip():
            raise ProxyError(out)


async def replace_map(socket: str, path: str, entries: dict[str, str]) -> None:
    """All of a map's entries at once: filled as a new version, then committed atomically (a request sees the old
    entries or the new ones, never a half-filled map)."""
    out = await send(socket, f"prepare map {path}")
    if (found := re.search(r"New version created: (\d+)", out)) is None:
        raise ProxyError(out.strip())
    version = found.group(1)
    for payload in _batches((f"{k} {v}" for k, v in entries.items()), "\n"):
        # A payload ends with an empty line.
        if out := (await send(socket, f"add map @{version} {path} <<\n{payload}\n")).strip():
            raise ProxyError(out)
    await apply(socket, [f"commit map @{version} {path}"])


async def map_value(socket: str, path: str, key: str) -> str | None:
    out = await send(socket, f"get map {path} {key}")
    found = re.search(r'found=yes.*value="([^"]*)"', out)
    return found.group(1) if found else None


async def table_use(socket: str, table: str, key: str) -> int:
    """How many requests (streams, WebSockets) are tracking `key` in a stick table now."""
    found = re.search(r"\buse=(\d+)", await send(socket, f"show table {table} key {key}"))
    return int(found.group(1)) if found else 0
