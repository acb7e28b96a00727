"""Where a build starts: a Build row, the Space's stage, and, when its turn comes, the `builder.build` task
sent by name.

Builds wait in Spaceyard's own queue, not the broker's: at most `builds_in_flight` are handed to the builders
at once, and the next one goes to the owner who least recently got one, so one owner's burst of pushes
cannot starve everyone else (a FIFO in Redis would). A build is "dispatched" once `last_event_at` is set:
its first sign of life is the hand-over, then the builder's events.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections import defaultdict
from datetime import datetime, timedelta
from urllib.parse import quote, urlsplit, urlunsplit

from celery import Celery
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from controlplane.core.utc import as_utc
from controlplane.models import Build, Space, SpaceVariable, utcnow
from controlplane.services import Services
from controlplane.stages import SERVING, Stage, set_stage

log = logging.getLogger(__name__)
ACTIVE = ("QUEUED", "RUNNING")
WAITING = "waiting for a builder"
# One dispatcher at a time per process: two would both see a free slot and overfill it.
_dispatching = threading.Lock()
_turn = itertools.count()


def make_celery(redis_url: str) -> Celery:
    # The control plane only sends tasks by name; it never imports the builder.
    app = Celery("spaceyard-controlplane", broker=redis_url)
    app.conf.broker_connection_retry_on_startup = True
    return app


def events_key(instance: str, build_id: int) -> str:
    # The installation's id keeps two installations that share one Redis apart.
    return f"spaceyard:{instance}:build:{build_id}"


def image_repo(instance: str, space_id: int) -> str:
    # Keyed by the Space's never-reused id, not its name: image names are lowercase, so names that differ
    # only in case (or a deleted Space's name taken again) would share, and delete, each other's tags.
    # The image's labels name the Space for people.
    return f"spaceyard-{instance}/space-{space_id}"


def image_tag(svc: Services, space: Space, build_id: int) -> str:
    return f"{image_repo(svc.settings.instance, space.id)}:b{build_id}"


def repo_url(svc: Services, space: Space) -> str:
    parts = urlsplit(svc.settings.base_url)
    netloc = f"builder:{quote(svc.builder_token)}@{parts.netloc}"
    return urlunsplit((parts.scheme, netloc, f"{parts.path}/spaces/{space.owner}/{space.name}.git", "", ""))


def start_build(svc: Services, s: Session, space: Space, commit: str, *, no_cache: bool = False) -> Build:
    """Queue a build of `commit`; older queued/running builds of the Space are superseded."""
    for old in s.scalars(select(Build).where(Build.space_id == space.id, Build.status.in_(ACTIVE))):
        old.status, old.finished_at = "CANCELLED", utcnow()
        old.error_message = f"Superseded by a newer commit ({commit[:7]})."
    build = Build(space_id=space.id, commit_sha=commit, no_cache=no_cache)
    s.add(build)
    s.flush()
    build.image = image_tag(svc, space, build.id)
    space.head_sha = commit
    show_building(s, space, commit, WAITING)
    s.flush()
    # Once committed, the build takes its turn; a dispatcher running earlier would not see it yet.
    event.listen(s, "after_commit", lambda _s: dispatch_safely(svc), once=True)
    return build


def show_building(s: Session, space: Space, commit: str, detail: str) -> None:
    """The stage of a Space whose `commit` is to be built: RUNNING_BUILDING while an instance serves, else BUILDING."""
    stage = Stage.RUNNING_BUILDING if Stage(space.stage) in SERVING else Stage.BUILDING
    set_stage(s, space, stage, f"Building commit {commit[:7]}.", detail=detail)


def dispatch_safely(svc: Services) -> None:
    """dispatch() for callers that must not fail (a commit already made); the build-events loop retries."""
    try:
        dispatch(svc)
    except Exception:
        log.exception("dispatching builds failed; retrying on the next pass")


def dispatch(svc: Services) -> None:
    """Hand waiting builds to the builders while fewer than `builds_in_flight` are out, owners taking turns;
    the rest learn their place in the line (the Space's detail)."""
    turns = svc.build_turns  # owner -> when it last got a build
    with _dispatching, svc.db.session() as s:
        active = select(Build, Space).join(Space, Space.id == Build.space_id).where(Build.status.in_(ACTIVE))
        rows = s.execute(active.order_by(Build.id)).all()
        now = utcnow()
        grace = timedelta(seconds=svc.settings.build_heartbeat_timeout)
        out = sum(1 for build, _space in rows if holds_slot(build, now, grace))
        line = fair_order([(b, sp) for b, sp in rows if b.last_event_at is None], turns)
        free = max(0, svc.settings.builds_in_flight - out)
        for build, space in line[:free]:
            # Sent before the commit: if the commit failed, a second send of the same build is harmless
            # (its first result settles it), whereas a build marked sent but never sent would hold a slot.
            send(svc, s, space, build)
            build.last_event_at = now
            turns[space.owner] = next(_turn)
            _show(s, space, WAITING)
        for ahead, (_build, space) in enumerate(line[free:]):
            _show(s, space, f"{WAITING} ({ahead} ahead)")


def holds_slot(build: Build, now: datetime, grace: timedelta) -> bool:
    """A running build holds a builder; a handed-out one that has not started holds it for `grace` only: a
    task lost with its worker (redelivered by the broker hours later) must not stall the whole line."""
    if build.status == "RUNNING":
        return True
    sent = build.last_event_at
    if sent is None:
        return False
    return now - as_utc(sent) < grace


def fair_order(waiting: list[tuple[Build, Space]], turns: dict[str, int]) -> list[tuple[Build, Space]]:
    """Round-robin over owners, oldest build first within each; the owner served least recently (or never)
    goes first. `waiting` is in id order."""
    by_owner: dict[str, list[tuple[Build, Space]]] = defaultdict(list)
    for row in waiting:
        by_owner[row[1].owner].append(row)
    owners = sorted(by_owner, key=lambda o: (turns.get(o, -1), by_owner[o][0][0].id))
    rounds = itertools.zip_longest(*(by_owner[o] for o in owners))
    return [row for round_ in rounds for row in round_ if row is not None]


def _show(s: Session, space: Space, detail: str) -> None:
    if space.detail != detail and space.stage in (Stage.BUILDING, Stage.RUNNING_BUILDING):
        set_stage(s, space, Stage(space.stage), space.error_message, detail=detail)


def send(svc: Services, s: Session, space: Space, build: Build) -> None:
    variables = {v.key: v.value for v in s.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id))}
    kwargs = {
        "build_id": build.id,
        "space": space.full_name,
        "sdk": space.sdk,
        "repo_url": repo_url(svc, space),
        "commit": build.commit_sha,
        "image": build.image,
        "no_cache": build.no_cache,
        "build_args": variables,
        "build_secrets": {},
        "events": events_key(svc.settings.instance, build.id),
    }
    assert svc.celery is not None
    svc.celery.send_task("builder.build", kwargs=kwargs, queue="builds")
    log.info("build %s of %s queued (attempt %s)", build.id, space.full_name, build.attempt)
