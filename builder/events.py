"""The build's event stream (docs/build-contract.md): started, log lines, heartbeats, one result."""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

# Enough for any real build log; XADD trims the oldest lines beyond it, never the result (it is last).
MAX_STREAM_LEN = 100_000
MAX_LINE_CHARS = 8_000
MASK = "****"


class BuildEvents:
    """Writes one build's events. Thread-safe (the heartbeat thread writes beside the build)."""

    def __init__(self, client: redis.Redis, key: str, ttl: int, redact: Iterable[str] = ()) -> None:
        self.client = client
        self.key = key
        self.ttl = ttl
        # Longest first, so a secret containing another secret is masked whole.
        self.redact = sorted((s for s in redact if len(s) >= 4), key=len, reverse=True)
        self.tail: deque[str] = deque(maxlen=200)
        self._result: dict[str, str] | None = None

    def _add(self, type_: str, **fields: str) -> dict[str, str]:
        entry = {"type": type_, "ts": datetime.now(UTC).isoformat(), **fields}
        self.client.xadd(self.key, entry, maxlen=MAX_STREAM_LEN, approximate=True)
        return entry

    def scrub(self, text: str) -> str:
        for secret in self.redact:
            text = text.replace(secret, MASK)
        return text

    def started(self, worker: str) -> None:
        self._add("started", worker=worker)

    def log(self, line: str) -> None:
        line = self.scrub(line.rstrip("\r\n"))[:MAX_LINE_CHARS]
        self.tail.append(line)
        self._add("log", line=line)

    def heartbeat(self) -> None:
        self._add("heartbeat")

    def result(
        self,
        *,
        status: str,
        image: str,
        error_kind: str,
        error_message: str,
        config: dict[str, Any] | None,
        seconds: float,
    ) -> dict[str, str]:
        """Write the result (once; a second call is a bug) and start the stream's expiry clock."""
        if self._result is not None:
            raise RuntimeError("a build has exactly one result")
        self._result = self._add(
            "result",
            status=status,
            image=image,
            error_kind=error_kind,
            error_message=self.scrub(error_message),
            # default=str: YAML dates in the front matter become ISO strings.
            config=json.dumps(config or {}, default=str),
            seconds=f"{seconds:.1f}",
        )
        self.client.expire(self.key, self.ttl)
        return self._result

    @contextlib.contextmanager
    def heartbeats(self, interval: float) -> Iterator[None]:
        """Send a heartbeat every `interval` seconds from a thread while the block runs."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(redis.RedisError):  # a blip must not kill the beat
                    self.heartbeat()

        thread = threading.Thread(target=beat, name=f"heartbeat {self.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
