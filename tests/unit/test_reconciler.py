"""The Reconciler on the fake runtime: the engine is brought back in line with what the database wants."""

from __future__ import annotations

import pytest

from controlplane.runtime.base import AppSpec
from controlplane.runtime.fake import EngineError
from tests.unit.plane import control_plane


async def test_lost_instance_is_started_again(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("demo")
        await cp.deployer.deploy(space_id, build_id)
        lost = cp.space(space_id).container_id
        cp.runtime.lose(lost)
        await cp.reconciler.once()
        await cp.until(lambda: cp.space(space_id).container_id not in (None, lost), "a new instance serving")
        space = cp.space(space_id)
        assert space.stage == "RUNNING" and space.running_build_id == build_id
        assert [i.id for i in cp.runtime.list()] == [space.container_id]
        assert len(cp.runtime.started) == 2


async def test_orphan_instance_is_removed(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("demo")
        await cp.deployer.deploy(space_id, build_id)
        spec: AppSpec = cp.runtime.started[0]
        orphan = cp.runtime.start(spec)  # e.g. left by a control plane that crashed mid-deploy
        await cp.reconciler.once()
        assert [i.id for i in cp.runtime.list()] == [cp.space(space_id).container_id]
        assert orphan.id != cp.space(space_id).container_id


async def test_engine_errors_leave_the_database_as_it_was(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("demo")
        await cp.deployer.deploy(space_id, build_id)
        before = cp.space(space_id)
        cp.runtime.break_engine("engine unavailable")
        # The loop logs a failed pass and tries again; nothing is decided from a view it could not read.
        with pytest.raises(EngineError, match="engine unavailable"):
            await cp.reconciler.once()
        after = cp.space(space_id)
        assert (after.stage, after.container_id, after.endpoint) == ("RUNNING", before.container_id, before.endpoint)
        cp.runtime.repair_engine()
        await cp.reconciler.once()
        assert cp.space(space_id).container_id == before.container_id  # a healthy instance is left alone
        assert len(cp.runtime.started) == 1
