"""A control plane on the fake runtime: a real SQLite database (migrated), the real Scheduler, Deployer,
Reconciler and Sleeper; no Docker, no Redis."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.deploy import Deployer
from controlplane.models import Build, Space
from controlplane.pools import host_memory
from controlplane.reconciler import Reconciler
from controlplane.runtime.fake import FakeRuntime
from controlplane.scheduler import Scheduler
from controlplane.services import Services
from controlplane.sleep import Sleeper

# One NVIDIA A10G, recorded: the a10g-small tier is offered with a pool of one GPU.
A10G_HOST = Path(__file__).resolve().parent.parent / "metering" / "data" / "a10g-node.json"


@dataclass
class Plane:
    svc: Services
    runtime: FakeRuntime
    scheduler: Scheduler
    deployer: Deployer
    reconciler: Reconciler
    sleeper: Sleeper
    activity: dict[str, float]  # the router's memory of last requests ("owner/name" -> time.time())

    def add_space(
        self, name: str, owner: str = "alice", tier: str = "cpu-basic", sleep_time: int | None = None, **config
    ) -> tuple[int, int]:
        """A Space with one successful build, as the builder leaves it: (space id, build id). `config`: the
        build's README settings (startup_duration_timeout, ...)."""
        with self.svc.db.session() as s:
            space = Space(
                owner=owner, name=name, hardware_requested=tier, sleep_time=sleep_time, card_data={}, stage="BUILDING"
            )
            s.add(space)
            s.flush()
            build = Build(
                space_id=space.id,
                commit_sha="c0ffee" * 6 + "beef",
                status="SUCCESS",
                image=f"fake/{owner}-{name}:1",
                config={"sdk": "gradio", "app_port": 7860, **config},
            )
            s.add(build)
            s.flush()
            return space.id, build.id

    def space(self, space_id: int) -> Space:
        """The Space's row as committed now (detached)."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            s.expunge(space)
            return space

    async def until(self, check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
        await until(check, what, timeout)

    async def stage_of(self, space_id: int, *stages: str, timeout: float = 5.0) -> Space:
        await until(lambda: self.space(space_id).stage in stages, f"space {space_id} in {stages}", timeout)
        return self.space(space_id)


async def until(check: Callable[[], object], what: str, timeout: float = 5.0) -> None:
    """Wait for an observable condition (checked in a worker thread: it may read the database) instead of a
    fixed time."""
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(check):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


_TEMPLATE = tempfile.TemporaryDirectory(prefix="spaceyard-unit-")


@cache
def _migrated() -> Path:
    """A database migrated once per test session; each control plane starts from a copy of it."""
    template = Path(_TEMPLATE.name)
    migrate(Settings(data_dir=template).sqlalchemy_url)
    return template


@asynccontextmanager
async def control_plane(tmp_path: Path, **settings) -> AsyncIterator[Plane]:
    for file in _migrated().iterdir():
        shutil.copy(file, tmp_path / file.name)
    config = Settings(data_dir=tmp_path, secret_key="test", gpu_recording=A10G_HOST, health_interval=0.02, **settings)
    svc = Services.create(config)
    # A host of known size: admission's memory check must not depend on the machine the tests run on.
    svc.host_memory = host_memory(config, total_gb=64)
    runtime = FakeRuntime()
    svc.runtime = runtime
    scheduler = Scheduler(svc)
    svc.scheduler = scheduler
    deployer = Deployer(svc)
    activity: dict[str, float] = {}
    try:
        yield Plane(
            svc, runtime, scheduler, deployer, Reconciler(svc, deployer), Sleeper(svc, deployer, activity), activity
        )
    finally:
        scheduler.close()
        await deployer.close()
        runtime.close()
        svc.db.engine.dispose()
