"""Build and runtime logs as Server-Sent Events, one event per line in the Hub's shape:
`data: {"data": "<line>\\n", "timestamp": "2026-01-01T00:00:00.123Z"}`.

The time must end in `Z`: huggingface_hub parses it with its own strict parser (`fetch_space_logs`,
`hf spaces logs`), which fails on `+00:00`. It is when the line was written (the builder's time, the engine's for
run logs), not when it is sent: without `follow` the client stops at the first line stamped after the answer's
`Date`. The line keeps its newline, as the Hub's does (the client's `print(line, end="")`). Every event has an
`id`: a client reconnecting with `Last-Event-ID` (or `?last_event_id=`) resumes after it (controlplane/log_resume.py).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import re
import threading
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from controlplane import log_resume
from controlplane.api.deps import Caller, caller, find_space, services
from controlplane.builds import events_key
from controlplane.models import Build
from controlplane.secrets_vars import log_masker
from controlplane.services import Services

router = APIRouter(prefix="/api/spaces", tags=["logs"])
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


# Nanoseconds (the engine's RFC 3339 times): Python reads at most microseconds.
_SUBMICRO = re.compile(r"(\.\d{6})\d+")


def hub_time(ts: str | None = None) -> str:
    """An ISO time (the builder's, the engine's; any offset) or now, as the Hub writes it: UTC, milliseconds, `Z`."""
    when = datetime.fromisoformat(_SUBMICRO.sub(r"\1", ts)) if ts else datetime.now(UTC)
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sse(line: str, ts: str | None = None) -> bytes:
    payload = {"data": line + "\n", "timestamp": hub_time(ts)}
    return f"data: {json.dumps(payload)}\n\n".encode()


@router.get("/{owner}/{name}/logs/build")
async def build_logs(
    owner: str,
    name: str,
    request: Request,
    follow: bool = True,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> StreamingResponse:
    def latest() -> tuple[int | None, str | None, str | None]:
        with svc.db.session() as s:
            space = find_space(s, who, owner, name)
            build = s.scalar(select(Build).where(Build.space_id == space.id).order_by(Build.id.desc()).limit(1))
            if build is None:
                return None, None, None
            # A stored log's lines carry no times: they were all written by the time the build ended.
            ended = build.finished_at or build.created_at
            return build.id, build.log, ended.isoformat() if ended else None

    build_id, stored, ended = await asyncio.to_thread(latest)
    redis = svc.redis

    async def stream() -> AsyncIterator[bytes]:
        if build_id is None:
            return
        key = events_key(svc.settings.instance, build_id)
        last = log_resume.last_event_id(request.headers, request.query_params)
        cursor, skip = log_resume.build_resume(last, build_id)
        if not await redis.exists(key):
            for n, line in list(enumerate((stored or "").splitlines()))[skip:]:
                yield log_resume.event(log_resume.build_event_id(build_id, f"line-{n}"), sse(line, ended))
            return
        while not await request.is_disconnected():
            replies = await redis.xread({key: cursor}, block=1000 if follow else None, count=500)
            if not replies:
                if not follow:
                    return
                yield b": keep-alive\n\n"
                continue
            for _key, entries in replies:
                for entry_id, fields in entries:
                    cursor = entry_id
                    if fields.get("type") == "log":
                        payload = sse(fields.get("line", ""), fields.get("ts"))
                        yield log_resume.event(log_resume.build_event_id(build_id, entry_id), payload)
                    elif fields.get("type") == "result":
                        return

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@router.get("/{owner}/{name}/logs/run")
async def run_logs(
    owner: str,
    name: str,
    request: Request,
    follow: bool = True,
    tail: int | None = None,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
) -> StreamingResponse:
    def current() -> tuple[str | None, Callable[[str], str]]:
        with svc.db.session() as s:
            space = find_space(s, who, owner, name)
            return space.container_id, log_masker(svc, s, space)

    instance, mask = await asyncio.to_thread(current)
    last = log_resume.last_event_id(request.headers, request.query_params)
    resume = log_resume.run_resume(last, instance) if instance else None
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1000)
    stop = threading.Event()

    def put(item: str | None) -> None:
        # Waits while the queue is full, but never for a client that has left.
        future = asyncio.run_coroutine_threadsafe(queue.put(item), loop)
        while not stop.is_set():
            try:
                future.result(timeout=1)
                return
            except concurrent.futures.TimeoutError:
                continue
        future.cancel()

    def pump() -> None:
        try:
            # Resuming reads from the start (the engines have no line cursor) and sends only what follows.
            lines = svc.runtime.logs(instance, follow=follow, tail=None if resume else tail, timestamps=True)
            for line in lines:
                if stop.is_set():
                    return
                put(line)
        finally:
            if not stop.is_set():
                put(None)

    async def stream() -> AsyncIterator[bytes]:
        if instance is None:
            return
        # Its own thread, not the loop's executor: a follow blocks until the app prints, and streams must never
        # starve the pool the API and router use. Once the client leaves it ends at the app's next line (or
        # when the instance stops): the engine's stream cannot be interrupted from here.
        threading.Thread(target=pump, daemon=True, name=f"run-logs-{instance[:12]}").start()
        position = None
        try:
            while True:
                try:
                    line = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    if await request.is_disconnected():
                        return
                    yield b": keep-alive\n\n"
                    continue
                if line is None:
                    return
                stamp, _, text = line.partition(" ")
                position = log_resume.run_position(stamp, position)
                if resume is None or position > resume:
                    yield log_resume.event(log_resume.run_event_id(instance, stamp, position), sse(mask(text), stamp))
        finally:
            stop.set()

    return StreamingResponse(stream(), media_type="text/event-stream", headers=SSE_HEADERS)
