"""An in-memory runtime for fast tests of the control plane's loops (like JupyterHub's MockSpawner family).

Instances are records in a dict; what the real engines do over time (a slow start, a crash some seconds after
the start) follows from a per-Space `Behaviour` and the clock. Each running instance's endpoint is one real
loopback HTTP server that answers every GET, so the Deployer's readiness probe stays the real one.

Failure modes, as the docker and kubernetes runtimes show them to the control plane:
- slow start: the instance stays "starting" (no endpoint) for `Behaviour.start_delay` seconds;
- a pod waiting for a node: "pending" with the scheduler's reason for `Behaviour.pending` seconds;
- crash after start: "failed" with `Behaviour.exit_code` `Behaviour.crash_after` seconds after it runs, or at
  once with `crash()`;
- lost instance: `lose()` takes it out of the engine (the container removed behind the control plane's back);
- engine errors: after `break_engine()` every call raises `EngineError` until `repair_engine()`.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from controlplane.runtime.base import AppSpec, Instance, RuntimeBackend


class EngineError(RuntimeError):
    """What every call raises while the fake engine is broken (the Docker daemon or API server down)."""


@dataclass(frozen=True)
class Behaviour:
    """How the instances of one Space behave once started."""

    pending: float = 0.0  # seconds waiting for a node ("pending") before the container starts
    pending_message: str = "0/1 nodes are available: 1 Insufficient cpu."
    start_delay: float = 0.0  # seconds "starting" before it runs and answers HTTP
    crash_after: float | None = None  # seconds after it runs that it exits with `exit_code`; None: never
    exit_code: int = 1
    logs: tuple[str, ...] = ("app started",)


@dataclass
class _Record:
    spec: AppSpec
    behaviour: Behaviour
    created: float  # the fake's clock at the (re)start
    started_at: datetime
    ended: tuple[str, int, str | None, datetime] | None = None  # (state, exit code, message, when) once it ended
    logs: list[str] = field(default_factory=list)


class _Answer(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the name http.server calls)
        body = b"fake app\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (http.server's signature)
        pass


class FakeRuntime(RuntimeBackend):
    def __init__(self, clock: Callable[[], float] = time.monotonic, watch_poll: float = 0.05) -> None:
        self.clock, self.watch_poll = clock, watch_poll
        self.behaviours: dict[str, Behaviour] = {}  # "owner/name" -> how its instances behave
        self.started: list[AppSpec] = []  # every start, in order (resumes are not starts)
        self._records: dict[str, _Record] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._broken: str | None = None
        self._closed = threading.Event()
        self._server: ThreadingHTTPServer | None = None

    # --- what tests steer ------------------------------------------------------------------------

    def behave(self, space: str, behaviour: Behaviour) -> None:
        """How the Space's instances started from now on behave."""
        self.behaviours[space] = behaviour

    def crash(self, instance_id: str, exit_code: int = 1, message: str | None = None) -> None:
        with self._lock:
            self._end(self._records[instance_id], exit_code, message)

    def lose(self, instance_id: str) -> None:
        """The instance vanishes from the engine, as if someone removed the container by hand."""
        with self._lock:
            del self._records[instance_id]

    def break_engine(self, message: str = "Cannot connect to the engine") -> None:
        self._broken = message

    def repair_engine(self) -> None:
        self._broken = None

    def close(self) -> None:
        """End watches and stop the HTTP server."""
        self._closed.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # --- the RuntimeBackend interface ------------------------------------------------------------

    def start(self, spec: AppSpec) -> Instance:
        self._check()
        with self._lock:
            instance_id = f"fake-{next(self._ids)}"
            behaviour = self.behaviours.get(spec.space, Behaviour())
            self._records[instance_id] = _Record(
                spec, behaviour, self.clock(), datetime.now(UTC), logs=list(behaviour.logs)
            )
            self.started.append(spec)
            return self._instance(instance_id)

    def stop(self, instance_id: str, remove: bool = True) -> None:
        self._check()
        with self._lock:
            record = self._records.get(instance_id)
            if record is None:
                return
            if remove:
                del self._records[instance_id]
            elif record.ended is None:
                self._end(record, 0, None)

    def resume(self, instance_id: str) -> Instance:
        self._check()
        with self._lock:
            record = self._records.get(instance_id)
            if record is None:
                raise RuntimeError(f"instance {instance_id} is gone")
            record.created, record.started_at, record.ended = self.clock(), datetime.now(UTC), None
            return self._instance(instance_id)

    def get(self, instance_id: str) -> Instance | None:
        self._check()
        with self._lock:
            return self._instance(instance_id) if instance_id in self._records else None

    def list(self, space: str | None = None) -> list[Instance]:
        self._check()
        with self._lock:
            return [self._instance(i) for i, r in self._records.items() if space in (None, r.spec.space)]

    def logs(
        self, instance_id: str, follow: bool = False, tail: int | None = None, timestamps: bool = False
    ) -> Iterator[str]:
        self._check()
        with self._lock:
            record = self._records.get(instance_id)
            lines = list(record.logs) if record else []
        lines = lines[-tail:] if tail else lines
        # Recorded lines keep no times: they are stamped as read, in the engines' RFC 3339 form.
        stamp = datetime.now(UTC).isoformat().replace("+00:00", "Z") + " " if timestamps else ""
        yield from (stamp + line for line in lines)

    def watch(self) -> Iterator[Instance]:
        """Instances whose state changed, found by comparing the records every `watch_poll` seconds."""
        seen: dict[str, str] = {}
        while not self._closed.is_set():
            for instance in self.list():
                if seen.get(instance.id) != instance.state:
                    seen[instance.id] = instance.state
                    yield instance
            self._closed.wait(self.watch_poll)

    def remove_space(self, space: str) -> None:
        self._check()
        with self._lock:
            for instance_id in [i for i, r in self._records.items() if r.spec.space == space]:
                del self._records[instance_id]

    # --- inside ----------------------------------------------------------------------------------

    def _check(self) -> None:
        if self._broken is not None:
            raise EngineError(self._broken)

    def _end(self, record: _Record, exit_code: int, message: str | None, when: datetime | None = None) -> None:
        record.ended = ("failed" if exit_code else "exited", exit_code, message, when or datetime.now(UTC))
        record.logs.append(message or f"exited with code {exit_code}")

    def _instance(self, instance_id: str) -> Instance:
        """The instance as the engine would describe it now; a crash that is due is recorded on the way."""
        record = self._records[instance_id]
        b = record.behaviour
        age = self.clock() - record.created
        running_since = b.pending + b.start_delay
        if record.ended is None and b.crash_after is not None and age >= running_since + b.crash_after:
            self._end(record, b.exit_code, None, record.started_at + timedelta(seconds=running_since + b.crash_after))
        base = Instance(instance_id, record.spec.space, record.spec.build_id, record.spec.tier.name, "running")
        if record.ended is not None:
            state, code, message, finished = record.ended
            return replace(
                base, state=state, started_at=record.started_at, finished_at=finished, exit_code=code, message=message
            )
        if age < b.pending:
            return replace(base, state="pending", message=b.pending_message)
        if age < running_since:
            return replace(base, state="starting", started_at=record.started_at)
        return replace(base, endpoint=self._endpoint(), started_at=record.started_at)

    def _endpoint(self) -> str:
        if self._server is None:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
            self._server.daemon_threads = True
            # A short poll: close() waits for the server's loop to notice.
            serve = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True, name="fake-http")
            serve.start()
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"
