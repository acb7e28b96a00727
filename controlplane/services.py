"""The long-lived objects one control-plane process shares (settings, database, repos, runtime, queues)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from celery import Celery
from starlette.requests import Request

from controlplane.core.config import Settings
from controlplane.core.db import Database
from controlplane.core.security import SecretBox, service_token
from controlplane.repos import Repos
from controlplane.runtime.base import RuntimeBackend
from controlplane.tiers import Catalog, default_catalog, load_catalog

if TYPE_CHECKING:  # types only: these modules build on Services
    from redis.asyncio import Redis

    from controlplane.commits import ApiCommits
    from controlplane.deploy import Deployer
    from controlplane.pools import HostMemory, PoolCapacity
    from controlplane.proxy.pusher import Pusher
    from controlplane.router.affinity import Affinity
    from controlplane.scheduler import Scheduler
    from controlplane.sleep import Sleeper


@dataclass
class Services:
    settings: Settings
    db: Database
    repos: Repos
    catalog: Catalog
    secret_key: str
    runtime: RuntimeBackend | None = None
    celery: Celery | None = None
    # Built by the app's start-up (controlplane/app.py's lifespan); None in a process that has not (a test, the
    # CLI, an app whose lifespan did not run).
    scheduler: Scheduler | None = None
    deployer: Deployer | None = None
    sleeper: Sleeper | None = None
    redis: Redis | None = None
    affinity: Affinity | None = None  # the Python router's client sessions (set by create_app)
    proxy_routes: Pusher | None = None  # when a proxy serves app traffic (SPACEYARD_PROXY)
    # Computed at the first question: pools_of, host_memory_of (docker only), api_commits.
    pools: list[PoolCapacity] | None = None
    host_memory: HostMemory | None = None
    api_commits: ApiCommits | None = None
    build_turns: dict[str, int] = field(default_factory=dict)  # builds.dispatch: owner -> when it last got a build

    @classmethod
    def create(cls, settings: Settings) -> Services:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        catalog = load_catalog(settings.tiers_file) if settings.tiers_file else default_catalog()
        return cls(
            settings=settings,
            db=Database(settings),
            repos=Repos(settings.repos_dir),
            catalog=catalog,
            secret_key=settings.secret_key_value(),
        )

    @property
    def builder_token(self) -> str:
        return service_token(self.secret_key, "builder")

    @property
    def secret_box(self) -> SecretBox:
        return SecretBox(self.secret_key)


def services(request: Request) -> Services:
    """The app's services, as a FastAPI dependency (`Depends(services)`) of every surface: set on app.state at
    start-up."""
    return request.app.state.services
