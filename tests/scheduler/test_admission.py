"""Admission decisions on a real database, without a runtime: quota naming the Spaces in use, waiting for a GPU,
waiting for the host's memory (docker runtime)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.models import Space, User
from controlplane.pools import host_memory
from controlplane.scheduler import OVER_QUOTA, Scheduler
from controlplane.services import Services
from controlplane.stages import WAITING_FOR_HARDWARE, Stage, set_stage
from tests.unit.plane import until

A10G_HOST = Path(__file__).resolve().parent.parent / "metering" / "data" / "a10g-node.json"


def services(tmp_path: Path, host_gb: float = 64) -> Services:
    settings = Settings(data_dir=tmp_path, gpu_recording=A10G_HOST, secret_key="test")
    migrate(settings.sqlalchemy_url)
    svc = Services.create(settings)
    # A host of known size: the memory check must not depend on the machine the tests run on.
    svc.host_memory = host_memory(settings, total_gb=host_gb)
    return svc


def add_space(svc: Services, owner: str, name: str, stage: Stage, running: bool = False,
              tier: str = "a10g-small") -> int:
    with svc.db.session() as s:
        space = Space(owner=owner, name=name, hardware_requested=tier, card_data={}, stage=stage.value,
                      container_id="c-" + name if running else None, hardware_current=tier if running else None)
        s.add(space)
        s.flush()
        return space.id


def in_line(svc: Services, space_id: int) -> bool:
    with svc.db.session() as s:
        return s.get(Space, space_id).detail == WAITING_FOR_HARDWARE


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
        await until(lambda: in_line(svc, waiter), "the Space in line")
        assert not admission.done() and scheduler.waiting(waiter)
        with svc.db.session() as s:
            z = s.get(Space, waiter)
            assert z.detail == "waiting for hardware"
            assert z.error_message == "Waiting for an a10g-small: you are next (1 of 1 in use in pool local-a10g)."
            set_stage(s, s.get(Space, holder), Stage.PAUSED, "Paused by its owner.")
        assert (await asyncio.wait_for(admission, 5)).serving is False
        assert not scheduler.waiting(waiter)

    asyncio.run(scenario())


def test_cpu_space_waits_for_the_hosts_memory_not_only_for_a_slot(tmp_path):
    # 6 GiB host, 2 kept for the platform: two cpu-basic Spaces (2 GiB each here) fill it, though the
    # local-cpu pool has slots for 50.
    svc = services(tmp_path, host_gb=6)
    first = add_space(svc, "alice", "a", Stage.RUNNING, running=True, tier="cpu-basic")
    add_space(svc, "alice", "b", Stage.RUNNING, running=True, tier="cpu-basic")
    waiter = add_space(svc, "bob", "c", Stage.APP_STARTING, tier="cpu-basic")

    async def scenario() -> None:
        scheduler = Scheduler(svc)
        admission = asyncio.create_task(scheduler.admit(waiter, serving=False))
        await until(lambda: in_line(svc, waiter), "the Space in line")
        assert not admission.done()
        with svc.db.session() as s:
            c = s.get(Space, waiter)
            assert c.detail == "waiting for hardware"
            assert c.error_message == (
                "Waiting for a cpu-basic: you are next (2 of 50 in use in pool local-cpu). The host's memory for "
                "Spaces is taken: 4.0 of 4.0 GiB reserved, this Space needs 2.0 GiB."
            )
            set_stage(s, s.get(Space, first), Stage.PAUSED, "Paused by its owner.")
        assert (await asyncio.wait_for(admission, 5)).serving is False

    asyncio.run(scenario())
