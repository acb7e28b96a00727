"""The builder's Celery app. Start a worker with: celery -A builder.celery_app worker -Q builds"""

from __future__ import annotations

from celery import Celery

from builder.settings import BuilderSettings

settings = BuilderSettings()


def broker_url(redis_url: str) -> str:
    """Kombu spells a Redis unix socket redis+socket://; redis-py (events) spells it unix://."""
    return "redis+socket://" + redis_url.removeprefix("unix://") if redis_url.startswith("unix://") else redis_url


app = Celery("builder", broker=broker_url(settings.redis_url), include=["builder.tasks"])
app.conf.update(
    # Acknowledged when it starts: the control plane's database, not the broker, knows which builds are pending,
    # and it sends again a build whose worker (or Redis) died (docs/build-contract.md). A late ack would add
    # nothing but stale redeliveries, and an unacknowledged task makes a worker whose Redis restarts exit
    # (kombu cannot restore it over the lost connection).
    task_acks_late=False,
    # A worker holds only the builds it is running, so queued builds go to idle workers (an acknowledged task no
    # longer counts against the prefetch limit: without this a busy worker would reserve more).
    worker_prefetch_multiplier=1,
    worker_disable_prefetch=True,
    worker_concurrency=settings.builder_concurrency,
    task_routes={"builder.build": {"queue": "builds"}},
    task_default_queue="builds",
    # Results travel on the event stream, not a Celery backend.
    task_ignore_result=True,
    # Redis redelivers a task received but never started (its worker died) after this long; the control plane
    # has sent it again long before, and the build's claim makes the late copy do nothing.
    broker_transport_options={"visibility_timeout": 3 * 3600},
    broker_connection_retry_on_startup=True,
)
