"""The long-lived objects one control-plane process shares (settings, database, repos, runtime, queues)."""

from __future__ import annotations

from dataclasses import dataclass, field

from celery import Celery
from starlette.requests import Request

from controlplane.core.config import Settings
from controlplane.core.db import Database
from controlplane.core.security import SecretBox, service_token
from controlplane.repos import Repos
from controlplane.runtime.base import RuntimeBackend
from controlplane.tiers import Catalog, default_catalog, load_catalog


@dataclass
class Services:
    settings: Settings
    db: Database
    repos: Repos
    catalog: Catalog
    secret_key: str
    runtime: RuntimeBackend | None = None
    celery: Celery | None = None
    extras: dict = field(default_factory=dict)

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
