"""Fixtures for metering tests: a SQLite file migrated with the real Alembic migrations, sessions, Spaces."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from controlplane.core.config import Settings
from controlplane.core.db import make_engine, migrate
from controlplane.models import Space


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path / 'metering.db'}"
    migrate(url)  # the real schema, as the control plane creates it
    eng = make_engine(Settings(database_url=url, data_dir=tmp_path))  # the app's engine: WAL, foreign keys
    yield eng
    eng.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    with session_factory() as s:
        yield s


@pytest.fixture
def make_space(session: Session) -> Callable[..., Space]:
    def make(name: str = "chat", owner: str = "alice", tier: str = "a10g-small", stage: str = "NO_APP_FILE") -> Space:
        space = Space(owner=owner, name=name, hardware_requested=tier, stage=stage)
        session.add(space)
        session.flush()
        return space

    return make
