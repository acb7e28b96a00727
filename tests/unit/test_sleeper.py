"""The Sleeper on the fake runtime: idle Spaces stop with their instance kept, and the next visit resumes it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from controlplane.models import utcnow
from tests.unit.plane import control_plane


async def test_idle_space_sleeps_and_keeps_its_instance(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("nap", sleep_time=60)
        await cp.deployer.deploy(space_id, build_id)
        instance = cp.space(space_id).container_id
        assert await cp.sleeper.once(now=utcnow() + timedelta(seconds=30)) == []
        assert await cp.sleeper.once(now=utcnow() + timedelta(seconds=61)) == ["alice/nap"]
        space = cp.space(space_id)
        assert (space.stage, space.detail, space.endpoint, space.hardware_current) == (
            "STOPPED",
            "sleeping",
            None,
            None,
        )
        assert space.error_message == "Sleeping: no request for 60 s. The next visit wakes it."
        kept = cp.runtime.get(instance)
        assert kept is not None and kept.state == "exited"  # stopped, not removed: a wake resumes it


async def test_a_recent_request_keeps_it_awake(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("busy", sleep_time=60)
        await cp.deployer.deploy(space_id, build_id)
        later = utcnow() + timedelta(seconds=61)
        cp.activity["alice/busy"] = (later - timedelta(seconds=5)).timestamp()
        assert await cp.sleeper.once(now=later) == []
        space = cp.space(space_id)
        assert space.stage == "RUNNING" and space.last_request_at is not None


async def test_wake_resumes_the_kept_instance_once_for_every_waiting_request(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("nap", sleep_time=60)
        await cp.deployer.deploy(space_id, build_id)
        instance = cp.space(space_id).container_id
        await cp.sleeper.once(now=utcnow() + timedelta(seconds=61))
        first, second = cp.sleeper.wake("alice/nap"), cp.sleeper.wake("alice/nap")
        assert first is second
        await asyncio.wait_for(first, 5)
        space = cp.space(space_id)
        assert (space.stage, space.detail, space.container_id) == ("RUNNING", None, instance)
        assert cp.runtime.get(instance).state == "running"
        assert len(cp.runtime.started) == 1  # resumed, not started anew
