"""The Scheduler on the fake runtime: admission to a capacity-1 pool, its waiting line, and GPU quotas."""

from __future__ import annotations

from controlplane.lifecycle import pause
from controlplane.models import User
from tests.unit.plane import control_plane

WAITING = "waiting for hardware"


async def test_capacity_one_pool_admits_one_and_lines_up_the_rest(tmp_path):
    async with control_plane(tmp_path, local_cpu_capacity=1) as cp:
        (a, a_build), (b, b_build), (c, c_build) = (cp.add_space(n) for n in ("a", "b", "c"))
        await cp.deployer.deploy(a, a_build)
        b_task = cp.deployer.deploy(b, b_build)
        await cp.until(lambda: cp.space(b).detail == WAITING, "b in line")
        c_task = cp.deployer.deploy(c, c_build)
        await cp.until(lambda: cp.space(c).detail == WAITING, "c in line")
        assert cp.space(b).error_message == "Waiting for a cpu-basic: you are next (1 of 1 in use in pool local-cpu)."
        assert cp.space(c).error_message == "Waiting for a cpu-basic: 1 ahead of you (1 of 1 in use in pool local-cpu)."
        assert cp.scheduler.line("local-cpu") == 2
        assert [spec.space for spec in cp.runtime.started] == ["alice/a"]  # nothing in line was started

        await pause(cp.svc, cp.deployer, a)  # frees the pool: the head of the line starts, the next moves up
        await b_task
        assert cp.space(b).stage == "RUNNING"
        await cp.until(lambda: "you are next" in (cp.space(c).error_message or ""), "c at the head of the line")
        assert cp.space(c).stage == "APP_STARTING" and not c_task.done()
        assert [spec.space for spec in cp.runtime.started] == ["alice/a", "alice/b"]


async def test_a_redeploy_does_not_wait_on_its_own_hardware(tmp_path):
    async with control_plane(tmp_path, local_cpu_capacity=1) as cp:
        space_id, build_id = cp.add_space("solo")
        await cp.deployer.deploy(space_id, build_id)
        first = cp.space(space_id).container_id
        cp.deployer.deploy(space_id, build_id)  # a restart: the new instance starts beside the serving one
        await cp.until(lambda: cp.space(space_id).container_id not in (None, first), "the new instance serving")
        assert cp.space(space_id).stage == "RUNNING" and len(cp.runtime.started) == 2


async def test_cancelled_while_in_line_leaves_the_line(tmp_path):
    async with control_plane(tmp_path, local_cpu_capacity=1) as cp:
        (a, a_build), (b, b_build) = cp.add_space("a"), cp.add_space("b")
        await cp.deployer.deploy(a, a_build)
        cp.deployer.deploy(b, b_build)
        await cp.until(lambda: cp.scheduler.waiting(b), "b in line")
        await pause(cp.svc, cp.deployer, b)
        await cp.until(lambda: not cp.scheduler.waiting(b), "b out of the line")
        assert cp.space(b).stage == "PAUSED" and cp.scheduler.line("local-cpu") == 0


async def test_gpu_quota_refuses_a_second_gpu_space(tmp_path):
    async with control_plane(tmp_path) as cp:
        with cp.svc.db.session() as s:
            s.add(User(name="alice", max_gpus=1))
        (x, x_build), (y, y_build) = (cp.add_space(n, tier="a10g-small") for n in ("x", "y"))
        await cp.deployer.deploy(x, x_build)
        assert cp.space(x).stage == "RUNNING"
        await cp.deployer.deploy(y, y_build)
        space = cp.space(y)
        assert (space.stage, space.detail) == ("PAUSED", "over quota")
        assert space.error_message == (
            "Not started. Your quota of 1 GPU is in use by alice/x. Pause one of them (or ask an admin to raise "
            "the quota), then restart this Space."
        )
        assert [spec.space for spec in cp.runtime.started] == ["alice/x"]
