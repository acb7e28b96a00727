"""Admission decisions on a real database, without a runtime: quota naming the Spaces in use, waiting for a GPU."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.models import Space, User
from controlplane.scheduler import OVER_QUOTA, Scheduler
from controlplane.services import Services
from controlplane.stages import Stage, set_stage

A10G_HOST = Path(__file__).resolve().parent.parent / "metering" / "data" / "a10g-node.json"


def services(tmp_path: Path) -> Services:
    settings = Settings(data_dir=tmp_path, gpu_recording=A10G_HOST, secret_key="test")
    migrate(settings.sqlalchemy_url)
    return Services.create(settings)


def add_space(svc: Services, owner: str, name: str, stage: Stage, running: bool = False) -> int:
    with svc.db.session() as s:
        space = Space(owner=owner, name=name, hardware_requested="a10g-small", card_data={}, stage=stage.value,
                      container_id="c-" + name if running else None, hardware_current="a10g-small" if running else None)
        s.add(space)
        s.flush()
        return space.id


def test_quota_names_the_spaces_using_it(tmp_path):
    svc = services(tmp_path)
    with svc.db.session() as s:
        s.add(User(name="alice", max_gpus=1))
    add_space(svc, "alice", "x", Stage.RUNNING, running=True)
    second = add_space(svc, "alice", "y", Stage.APP_STARTING)

    async def scenario() -> None:
        assert await Scheduler(svc).admit(second, serving=False) is None

    asyncio.run(scenario())
    with svc.db.session() as s:
        y = s.get(Space, second)
        assert (y.stage, y.detail) == ("PAUSED", OVER_QUOTA)
        assert y.error_message.startswith("Not started. Your quota of 1 GPU is in use by alice/x.")


def test_full_gpu_waits_until_the_holder_pauses(tmp_path):
    svc = services(tmp_path)
    holder = add_space(svc, "alice", "x", Stage.RUNNING, running=True)
    waiter = add_space(svc, "bob", "z", Stage.APP_STARTING)

    async def scenario() -> None:
        scheduler = Scheduler(svc)
        admission = asyncio.create_task(scheduler.admit(waiter, serving=False))
        await asyncio.sleep(0.2)
        assert not admission.done() and scheduler.waiting(waiter)
        with svc.db.session() as s:
            z = s.get(Space, waiter)
            assert z.detail == "waiting for hardware"
            assert z.error_message == "Waiting for an a10g-small: you are next (1 of 1 in use in pool local-a10g)."
            set_stage(s, s.get(Space, holder), Stage.PAUSED, "Paused by its owner.")
        assert (await asyncio.wait_for(admission, 5)).serving is False
        assert not scheduler.waiting(waiter)

    asyncio.run(scenario())
