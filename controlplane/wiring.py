"""Start-up wiring: the listeners, callbacks and threads the control plane connects when it starts, each with the
stop that shutdown calls. Nothing is connected by importing a module: whether a stage write bills depends on
whether `Wiring.listen(meter(...))` ran, not on imports (docs/architecture.md, "Wiring")."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from controlplane.deploy import Deployer
from controlplane.metering.intervals import on_stage_change
from controlplane.models import Space
from controlplane.services import Services
from controlplane.stages import Listener, on_change, on_committed_change
from controlplane.tiers import Catalog

log = logging.getLogger(__name__)


@dataclass
class Wiring:
    """What start-up connected; `close` disconnects it, last connected first."""

    stops: list[Callable[[], object]] = field(default_factory=list)

    def listen(self, listener: Listener) -> None:
        """Run `listener` inside every stage write until shutdown."""
        self.stops.append(on_change(listener))

    def announce_to(self, callback: Callable[[str], None]) -> None:
        """Call `callback` after every committed change until shutdown."""
        self.stops.append(on_committed_change(callback))

    def on_close(self, stop: Callable[[], object]) -> None:
        self.stops.append(stop)

    def close(self) -> None:
        while self.stops:
            stop = self.stops.pop()
            try:
                stop()
            except Exception:  # one broken stop must not leave the others running
                log.exception("shutdown step %r failed", stop)


def meter(catalog: Catalog) -> Listener:
    """The metering listener: usage intervals open and close in the same transaction as the stage change that
    causes them, priced from `catalog` (loaded once, at start-up)."""

    def listener(session: Session, space: Space, old: str | None, new: str, now: datetime) -> None:
        on_stage_change(session, space, old, new, now=now, catalog=catalog)

    return listener


def watch_instances(svc: Services, deployer: Deployer, loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
    """One watch on the runtime for every Space's instances: a serving instance that ends is a RUNTIME_ERROR.
    Runs until `stop` is set (the runtime's close() ends a watch that is waiting for events)."""
    while not stop.is_set():
        try:
            for instance in svc.runtime.watch():
                if stop.is_set():
                    return
                if instance.state in ("exited", "failed"):
                    loop.call_soon_threadsafe(
                        asyncio.create_task, asyncio.to_thread(deployer.instance_died, instance.id)
                    )
        except Exception:
            log.exception("runtime watch broke; watching again")
        stop.wait(1)  # a watch that keeps breaking (engine down) must not spin


class InstanceWatch:
    """The instance-watch thread, started at once; `stop` ends it (and closes the runtime, whose close() ends a
    watch blocked waiting for events: the kubernetes watches now, not at their server timeout)."""

    def __init__(self, svc: Services, deployer: Deployer, loop: asyncio.AbstractEventLoop) -> None:
        self.svc = svc
        self._stop = threading.Event()
        self.thread = threading.Thread(
            target=watch_instances, args=(svc, deployer, loop, self._stop), daemon=True, name="instance-watch"
        )
        self.thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Stop the thread, waiting up to `wait` seconds for it to end (each runtime's close() ends a watch that is
        waiting for events)."""
        self._stop.set()
        self.svc.runtime.close()
        self.thread.join(timeout=wait)
