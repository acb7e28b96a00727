"""Start-up wiring (controlplane/wiring.py) on the fake runtime: billing depends on whether the metering listener
was wired, not on which modules were imported; shutdown's stops end what start-up connected."""

from __future__ import annotations

import asyncio

from sqlalchemy import event, select
from sqlalchemy.orm import Session

import controlplane.app  # noqa: F401  # importing the app once registered the metering listener; it must not
from controlplane.models import Space, UsageInterval
from controlplane.routing import SpaceResolver
from controlplane.runtime.fake import Behaviour
from controlplane.stages import Stage, announce_after_commit, set_stage
from controlplane.wiring import InstanceWatch, Wiring, meter
from tests.unit.plane import control_plane


def intervals(cp) -> list[tuple[str, str, float, bool]]:
    with cp.svc.db.session() as s:
        rows = s.scalars(select(UsageInterval).order_by(UsageInterval.id))
        return [(r.space_name, r.tier, r.unit_cost, r.ended_at is None) for r in rows]


async def test_only_a_wired_metering_listener_bills(tmp_path):
    async with control_plane(tmp_path) as cp:
        unwired, build = cp.add_space("unwired", tier="cpu-upgrade")
        await cp.deployer.deploy(unwired, build)
        assert cp.space(unwired).stage == "RUNNING"
        assert intervals(cp) == []  # running, but nothing wired the listener: no bill

        wiring = Wiring()
        wiring.listen(meter(cp.svc.catalog))
        wired, build = cp.add_space("wired", tier="cpu-upgrade")
        await cp.deployer.deploy(wired, build)
        assert intervals(cp) == [("alice/wired", "cpu-upgrade", 0.03, True)]

        wiring.close()  # shutdown: the listener is gone, so stopping the Space no longer closes its interval
        with cp.svc.db.session() as s:
            set_stage(s, s.get(Space, wired), Stage.STOPPED)
        assert intervals(cp) == [("alice/wired", "cpu-upgrade", 0.03, True)]


async def test_shutdown_stops_the_instance_watch(tmp_path):
    async with control_plane(tmp_path) as cp:
        space_id, build_id = cp.add_space("flaky")
        cp.runtime.behave("alice/flaky", Behaviour(crash_after=0.3, exit_code=137))
        wiring = Wiring()
        watch = InstanceWatch(cp.svc, cp.deployer, asyncio.get_running_loop())
        wiring.on_close(lambda: watch.stop(wait=5))
        await cp.deployer.deploy(space_id, build_id)
        # The watch is live: it sees the crash and the Space shows it.
        await cp.stage_of(space_id, "RUNTIME_ERROR")
        assert watch.thread.is_alive()

        wiring.close()
        assert not watch.thread.is_alive()


async def test_closing_the_resolver_removes_its_hooks(tmp_path):
    async with control_plane(tmp_path) as cp:
        resolver = SpaceResolver(cp.svc)
        resolver.entries["alice/app"] = None  # a cached miss
        announce_after_commit_now(cp, "alice/app")
        assert "alice/app" not in resolver.entries  # the announcement reached it
        assert event.contains(Session, "after_commit", resolver.access._after_commit)

        resolver.close()
        resolver.entries["alice/app"] = None
        announce_after_commit_now(cp, "alice/app")
        assert "alice/app" in resolver.entries  # no longer told
        assert not event.contains(Session, "after_commit", resolver.access._after_commit)


def announce_after_commit_now(cp, name: str) -> None:
    with cp.svc.db.session() as s:
        announce_after_commit(s, name)
