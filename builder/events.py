"""The build's event stream (docs/build-contract.md): started, log lines, heartbeats, one result; and the
build's claim, so one build id runs on one worker at a time and not again once it has a result."""

from __future__ import annotations

import contextlib
import json
import threading
import uuid
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import redis

# Enough for any real build log; XADD trims the oldest lines beyond it, never the result (it is last).
MAX_STREAM_LEN = 100_000
MAX_LINE_CHARS = 8_000
MASK = "****"
DONE = "done"
# Take (or renew) the claim unless another delivery holds it or the build is done. One script: atomic.
_CLAIM = """
local held = redis.call('GET', KEYS[1])
if held == false or held == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class ClaimLost(Exception):
    """Another delivery of this build took its claim (this worker was silent past the lease): stop, no result."""


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
        self.claim_key = f"{key}:claim"
        self.token = uuid.uuid4().hex  # this delivery's, so a renewal never takes over another's claim
        self.lost = threading.Event()

    def claim(self, lease: float) -> bool:
        """Claim the build for `lease` seconds (renewed by each heartbeat); False when another live delivery
        holds it or the build already has its result: this delivery must then do nothing."""
        return bool(self.client.eval(_CLAIM, 1, self.claim_key, self.token, int(lease * 1000)))

    @staticmethod
    def _entry(type_: str, **fields: str) -> dict[str, str]:
        return {"type": type_, "ts": datetime.now(UTC).isoformat(), **fields}

    def _add(self, type_: str, **fields: str) -> dict[str, str]:
        entry = self._entry(type_, **fields)
        self.client.xadd(self.key, entry, maxlen=MAX_STREAM_LEN, approximate=True)
        return entry

    def scrub(self, text: str) -> str:
        for secret in self.redact:
            text = text.replace(secret, MASK)
        return text

    def started(self, worker: str) -> None:
        self._add("started", worker=worker)

    def log(self, line: str) -> None:
        if self.lost.is_set():
            raise ClaimLost(self.key)
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
        """Write the result (once; a second call is a bug), mark the build done and start the expiry clocks."""
        if self._result is not None:
            raise RuntimeError("a build has exactly one result")
        if self.lost.is_set():
            raise ClaimLost(self.key)
        entry = self._entry(
            "result",
            status=status,
            image=image,
            error_kind=error_kind,
            error_message=self.scrub(error_message),
            # default=str: YAML dates in the front matter become ISO strings.
            config=json.dumps(config or {}, default=str),
            seconds=f"{seconds:.1f}",
        )
        # One transaction: a later delivery of this build finds it done exactly when its result is there.
        with self.client.pipeline(transaction=True) as pipe:
            pipe.xadd(self.key, entry, maxlen=MAX_STREAM_LEN, approximate=True)
            pipe.expire(self.key, self.ttl)
            pipe.set(self.claim_key, DONE, ex=self.ttl)
            pipe.execute()
        self._result = entry
        return entry

    @contextlib.contextmanager
    def heartbeats(self, interval: float, lease: float) -> Iterator[None]:
        """Every `interval` seconds, from a thread while the block runs: renew the claim for `lease` seconds
        and send a heartbeat. A claim taken over meanwhile sets `lost`: the build stops at its next line."""
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                with contextlib.suppress(redis.RedisError):  # a blip must not kill the beat
                    if not self.claim(lease):
                        self.lost.set()
                        return
                    self.heartbeat()

        thread = threading.Thread(target=beat, name=f"heartbeat {self.key}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
