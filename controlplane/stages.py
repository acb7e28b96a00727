"""Where a Space's stage changes. `set_stage` is the only writer of Space.stage; listeners hear every change.

Listeners run inside the caller's transaction (metering writes its usage rows atomically with the stage);
announcements to in-process subscribers (router cache, dashboard streams) go out after commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from functools import partial

from sqlalchemy import event
from sqlalchemy.orm import Session

from controlplane.models import Space, utcnow

log = logging.getLogger(__name__)


class Stage(StrEnum):
    NO_APP_FILE = "NO_APP_FILE"
    CONFIG_ERROR = "CONFIG_ERROR"
    BUILDING = "BUILDING"
    BUILD_ERROR = "BUILD_ERROR"
    APP_STARTING = "APP_STARTING"
    RUNNING = "RUNNING"
    RUNNING_BUILDING = "RUNNING_BUILDING"
    RUNNING_APP_STARTING = "RUNNING_APP_STARTING"
    RUNTIME_ERROR = "RUNTIME_ERROR"
    PAUSED = "PAUSED"
    STOPPED = "STOPPED"
    DELETING = "DELETING"


# Spaceyard's detail for a sleeping Space: STOPPED to Hub clients, woken by its next request.
SLEEPING = "sleeping"
# Spaceyard's detail for a Space queued for hardware: it holds none yet (not billed, not counted as in use).
WAITING_FOR_HARDWARE = "waiting for hardware"

# Stages in which an older instance of the app still serves traffic.
SERVING = {Stage.RUNNING, Stage.RUNNING_BUILDING, Stage.RUNNING_APP_STARTING}
# Stages in which a new instance is being started (beside an older one that serves, or none).
STARTING = {Stage.APP_STARTING, Stage.RUNNING_APP_STARTING}
# Stages in which a Space holds its tier's hardware: the scheduler counts it as in use, metering bills it. In
# RUNNING_BUILDING and RUNNING_APP_STARTING the older instance keeps serving (and holding it) meanwhile.
HOLDING: frozenset[str] = frozenset(s.value for s in (*SERVING, Stage.APP_STARTING))


def holds_hardware(stage: str | None, in_line: bool, serving_instance: bool) -> bool:
    """Whether a Space holds its hardware: in a HOLDING stage, unless it is in line for hardware (admission
    has not let it start yet) with no older instance serving, which holds nothing yet."""
    return stage in HOLDING and (serving_instance or not in_line)


# (session, space, old, new, now) -> None, run inside the transaction.
Listener = Callable[[Session, Space, str | None, str, datetime], None]
_listeners: list[Listener] = []
# (space full name) -> None, run after commit.
_announce: list[Callable[[str], None]] = []


def on_change(listener: Listener) -> Callable[[], None]:
    """Run `listener` inside every stage write from now on; returns the call that stops it (start-up wiring,
    controlplane/wiring.py, registers listeners and calls these at shutdown)."""
    _listeners.append(listener)
    return partial(_remove, _listeners, listener)


def on_committed_change(callback: Callable[[str], None]) -> Callable[[], None]:
    """Call `callback` after every committed change; returns the call that stops it."""
    _announce.append(callback)
    return partial(_remove, _announce, callback)


def _remove(registry: list, entry: object) -> None:
    if entry in registry:  # stopping twice is harmless
        registry.remove(entry)


def set_stage(
    session: Session,
    space: Space,
    stage: Stage,
    message: str | None = None,
    *,
    detail: str | None = None,
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    old = space.stage
    space.stage = stage.value
    space.error_message = message
    space.detail = detail
    space.updated_at = now
    if old != stage.value:
        log.info("space %s: %s -> %s %s", space.full_name, old, stage.value, message or "")
    for listener in _listeners:
        listener(session, space, old, stage.value, now)
    announce_after_commit(session, space.full_name)


def announce_after_commit(session: Session, name: str) -> None:
    """Tell subscribers (router cache, proxy routes) about a change to the Space once `session` commits; for
    changes that are not stage changes (an endpoint the reconciler corrects)."""
    event.listen(session, "after_commit", lambda _s: _notify(name), once=True)


def _notify(name: str) -> None:
    for callback in _announce:
        try:
            callback(name)
        except Exception:  # a broken listener must not undo a committed stage change
            log.exception("stage announcement failed for %s", name)
