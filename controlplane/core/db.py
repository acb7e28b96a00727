"""Engine and sessions. Schema comes from Alembic migrations, applied by `migrate()` at start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import InstrumentedAttribute, Session, sessionmaker

from controlplane.core.config import Settings
from controlplane.core.files import make_private
from controlplane.core.utc import as_utc
from controlplane.models import utcnow

# How precisely last-used times are kept: finer would cost a write per request.
USE_RESOLUTION = timedelta(minutes=1)
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(settings: Settings) -> Engine:
    url = settings.sqlalchemy_url
    if url.startswith("sqlite"):
        make_private(settings.data_dir)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        path = Path(engine.url.database or "")

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # WAL: readers don't block the writer
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # Whoever created them (any umask, an older version): the database and its WAL are the operator's.
            for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
                if file.is_file():
                    file.chmod(0o600)

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(url: str) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "head")


class Database:
    def __init__(self, settings: Settings) -> None:
        self.engine = make_engine(settings)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self.sessionmaker() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def record_use(self, column: InstrumentedAttribute, row_id: int, last: datetime | None) -> None:
        """Set a last-used time (a token's, a session's) to now in its own short transaction, at most once a
        minute. Writing through the request's session instead would make it a writer late in the request; on
        SQLite (WAL) a read transaction that tries to write after other commits fails with "database is locked"."""
        now = utcnow()
        if last is not None and now - as_utc(last) < USE_RESOLUTION:
            return
        model = column.class_
        with self.session() as w:
            w.execute(update(model).where(model.id == row_id).values({column.key: now}))
