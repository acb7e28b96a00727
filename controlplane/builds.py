"""Where a build starts: a Build row, the Space's stage, and the `builder.build` task sent by name."""

from __future__ import annotations

import logging
from urllib.parse import quote, urlsplit, urlunsplit

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.models import Build, Space, SpaceVariable, utcnow
from controlplane.services import Services
from controlplane.stages import SERVING, Stage, set_stage

log = logging.getLogger(__name__)
ACTIVE = ("QUEUED", "RUNNING")


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
    stage = Stage.RUNNING_BUILDING if Stage(space.stage) in SERVING else Stage.BUILDING
    set_stage(s, space, stage, f"Building commit {commit[:7]}.", detail="waiting for a builder")
    s.flush()
    send(svc, s, space, build)
    return build


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
