"""From a built image to a serving app: place it, start it, wait until it answers, move traffic, retire the old one."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import coldstart, images
from controlplane.core.security import SecretBoxError
from controlplane.metering.intervals import on_tier_change
from controlplane.models import Build, Space, SpaceSecret, SpaceVariable, utcnow
from controlplane.router.apps import root_path_env
from controlplane.router.resolver import path_prefix, space_label
from controlplane.runtime.base import AppSpec, Instance
from controlplane.services import Services
from controlplane.spending import blocks_start
from controlplane.stages import SERVING, Stage, set_stage

log = logging.getLogger(__name__)
# A replaced instance is stopped once nothing was open on it for this long (a Gradio client's queue/join has
# answered but its queue/data stream may not have arrived yet), or after SPACEYARD_DRAIN_TIMEOUT.
QUIET_SECONDS = 2.0
# How often the draining instance's open requests are counted.
DRAIN_POLL = 0.5


class Drain(Protocol):
    """What routes to app instances (the proxy's pusher, the Python router's affinity): keeps a replaced instance
    reachable for the sessions pinned to it, and counts what is open on it."""

    def drain(self, upstream: str) -> None: ...

    def retired(self, upstream: str) -> None: ...

    async def open_streams(self, upstream: str) -> int: ...


def app_env(svc: Services, s: Session, space: Space, config: dict) -> tuple[dict[str, str], dict[str, str]]:
    """The environment a Space expects (as on the Hub), plus its variables; secrets returned apart."""
    tier = svc.catalog.tier(space.hardware_requested)
    port = int(config.get("app_port") or 7860)
    prefix = path_prefix(space.owner, space.name)
    env = {
        "SPACE_ID": space.full_name,
        "SPACE_HOST": f"{space_label(space.owner, space.name)}.{svc.settings.apps_domain}",
        "SPACE_AUTHOR_NAME": space.owner,
        "SPACE_REPO_NAME": space.name,
        "SPACE_TITLE": str(config.get("title") or space.name),
        "SYSTEM": "spaces",
        "PORT": str(port),
        "GRADIO_SERVER_NAME": "0.0.0.0",
        "GRADIO_SERVER_PORT": str(port),
        "ACCELERATOR": (tier.gpu_model or "none").lower() if tier.gpu_count else "none",
        "CPU_CORES": str(int(tier.vcpu)),
        "MEMORY": f"{int(tier.memory_gb)}Gi",
    }
    env.update(root_path_env(space.sdk, prefix)[0])
    for var in s.scalars(select(SpaceVariable).where(SpaceVariable.space_id == space.id)):
        env[var.key] = var.value
    box = svc.secret_box
    secrets = {
        sec.key: box.decrypt(sec.value_encrypted)
        for sec in s.scalars(select(SpaceSecret).where(SpaceSecret.space_id == space.id))
    }
    return env, secrets


class Deployer:
    """Owns the start-up of app instances; one in-flight start per Space (a newer one cancels it)."""

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.starting: dict[int, asyncio.Task] = {}
        self.retiring: dict[str, asyncio.Task] = {}  # replaced instance id -> its drain, then stop
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(3.0))

    async def close(self) -> None:
        for task in [*self.starting.values(), *self.retiring.values()]:
            task.cancel()
        await self.http.aclose()

    def deploy(self, space_id: int, build_id: int, resume: str | None = None) -> asyncio.Task:
        """Start `build_id`; `resume` names a stopped instance of it to start again (a sleeping Space)."""
        previous = self.starting.pop(space_id, None)
        if previous:
            previous.cancel()
        task = asyncio.create_task(self._deploy(space_id, build_id, resume), name=f"deploy-{space_id}-{build_id}")
        self.starting[space_id] = task
        task.add_done_callback(lambda t: self._forget(space_id, t))
        return task

    def _forget(self, space_id: int, task: asyncio.Task) -> None:
        if self.starting.get(space_id) is task:
            del self.starting[space_id]

    async def _deploy(self, space_id: int, build_id: int, resume: str | None) -> None:
        svc = self.svc
        requested = asyncio.get_running_loop().time()
        kind = await asyncio.to_thread(coldstart.kind_of, svc, space_id, build_id)
        # Database and engine calls run in worker threads: the loop serves the API and router meanwhile.
        plan = await asyncio.to_thread(self._plan, space_id, build_id)
        if plan is None:
            return
        spec, serving, strip, probe_path = plan
        # Hardware first: wait for room in the tier's pool; None when refused (quota), the stage says why.
        admission = await svc.scheduler.admit(space_id, serving)
        if admission is None:
            return
        serving = admission.serving
        try:
            inst = await asyncio.to_thread(self._start, spec, resume)
        except Exception as e:  # the engine refused: tell the user, don't leave APP_STARTING hanging
            log.exception("starting %s failed", spec.space)
            await asyncio.to_thread(self._fail, space_id, serving, f"The app could not be started: {e}")
            return
        try:
            ready = await self._wait_ready(inst, probe_path, spec.startup_timeout)
        except asyncio.CancelledError:
            await asyncio.to_thread(svc.runtime.stop, inst.id)
            raise
        if isinstance(ready, str):
            await asyncio.to_thread(svc.runtime.stop, inst.id)
            await asyncio.to_thread(self._fail, space_id, serving, ready)
            return
        found, old, old_endpoint = await asyncio.to_thread(self._serve, space_id, build_id, spec, strip, ready)
        if not found:
            await asyncio.to_thread(svc.runtime.stop, inst.id)
            return
        seconds = asyncio.get_running_loop().time() - requested
        await asyncio.to_thread(coldstart.record, svc, space_id, kind, seconds)
        if old and old != ready.id:
            # Its own task: a newer deploy cancelling this one must not leave the old instance running.
            task = asyncio.create_task(self._retire(old, old_endpoint), name=f"retire-{old[:12]}")
            self.retiring[old] = task
            task.add_done_callback(lambda _: self.retiring.pop(old, None))
        await asyncio.to_thread(images.collect, svc, space_id)

    def _drains(self) -> list[Drain]:
        return [d for d in (self.svc.affinity, self.svc.proxy_routes) if d is not None]

    async def _retire(self, instance_id: str, upstream: str | None) -> None:
        """Stop a replaced instance once nothing was open on it (the sessions pinned to it have ended) for
        QUIET_SECONDS, or after SPACEYARD_DRAIN_TIMEOUT."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + self.svc.settings.drain_timeout
        quiet_since, open_ = start, []
        try:
            while loop.time() < deadline:
                await asyncio.sleep(DRAIN_POLL)
                open_ = [await d.open_streams(upstream) for d in self._drains()] if upstream else []
                if any(open_):
                    quiet_since = loop.time()
                elif loop.time() - quiet_since >= QUIET_SECONDS:
                    break
        finally:
            for d in self._drains() if upstream else ():
                d.retired(upstream)
        log.info("stopping replaced instance %s (%s) after %.1f s; open on it: %s", instance_id[:12], upstream,
                 loop.time() - start, open_)
        await asyncio.to_thread(self.svc.runtime.stop, instance_id)

    def _plan(self, space_id: int, build_id: int) -> tuple[AppSpec, bool, bool, str] | None:
        """(what to start, whether an older instance serves meanwhile, strip_prefix, readiness probe path), or
        None when there is nothing to start (the stage says why)."""
        svc = self.svc
        with svc.db.session() as s:
            space, build = s.get(Space, space_id), s.get(Build, build_id)
            if space is None or build is None or build.status != "SUCCESS":
                return None
            config = build.config or {}
            serving = Stage(space.stage) in SERVING and space.container_id is not None
            refusal = blocks_start(svc, s, space)
            if refusal:
                set_stage(s, space, Stage.PAUSED, refusal)
                return None
            try:
                env, secrets = app_env(svc, s, space, config)
            except SecretBoxError as e:
                # A changed SPACEYARD_SECRET_KEY: the owner must set the secrets again; say so, don't crash.
                self._failed(s, space, serving, f"The app could not be started: {e}. Set its secrets again.")
                return None
            set_stage(
                s,
                space,
                Stage.RUNNING_APP_STARTING if serving else Stage.APP_STARTING,
                f"Starting commit {build.commit_sha[:7]}.",
            )
            spec = AppSpec(
                space=space.full_name,
                build_id=build.id,
                image=build.image or "",
                port=int(config.get("app_port") or 7860),
                tier=svc.catalog.tier(space.hardware_requested),
                env=env,
                secret_env=secrets,
                startup_timeout=float(config.get("startup_duration_timeout") or svc.settings.default_startup_timeout),
            )
            strip = root_path_env(space.sdk, path_prefix(space.owner, space.name))[1]
            probe_path = "/" if strip else path_prefix(space.owner, space.name) + "/"
        return spec, serving, strip, probe_path

    def _serve(self, space_id: int, build_id: int, spec: AppSpec, strip: bool,
               ready: Instance) -> tuple[bool, str | None, str | None]:
        """Move traffic to `ready`: (the Space still exists, the instance it replaces, that one's address)."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            if space is None:
                return False, None, None
            old, old_endpoint = space.container_id, space.endpoint
            if old and old_endpoint and old != ready.id:
                for d in self._drains():  # before the switch commits: sessions on it keep reaching it
                    d.drain(old_endpoint)
            space.container_id, space.endpoint = ready.id, ready.endpoint
            space.running_build_id, space.image, space.strip_prefix = build_id, spec.image, strip
            if space.pinned_build_id != build_id:  # a newer build deployed: the rollback's pin ends
                space.pinned_build_id = None
            if space.hardware_current and space.hardware_current != space.hardware_requested:
                on_tier_change(s, space, space.hardware_requested, now=utcnow(), catalog=self.svc.catalog)
            space.hardware_current = space.hardware_requested
            set_stage(s, space, Stage.RUNNING, None)
        return True, old, old_endpoint

    def _start(self, spec: AppSpec, resume: str | None) -> Instance:
        if resume:
            try:
                return self.svc.runtime.resume(resume)
            except Exception as e:  # gone, or a backend that cannot resume: a fresh start serves as well
                log.info("resuming %s of %s failed (%s); starting a new instance", resume[:12], spec.space, e)
        return self.svc.runtime.start(spec)

    async def _wait_ready(self, inst: Instance, probe_path: str, timeout: float) -> Instance | str:
        """The running instance once it answers HTTP, or a human message saying why it never will."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            current = await asyncio.to_thread(self.svc.runtime.get, inst.id)
            if current is None or current.state in ("exited", "failed"):
                code = current.exit_code if current else "unknown"
                lines = await asyncio.to_thread(self.last_lines, inst.id)
                return f"The app exited (code {code}) before it answered.\n{lines}"
            if current.state == "pending":
                # Waiting for a node is not the app's start-up time: its clock starts once a node takes it.
                deadline = loop.time() + timeout
                self.svc.scheduler.note_pending(inst.space, current.message)
            elif current.endpoint:
                try:
                    await self.http.get(f"http://{current.endpoint}{probe_path}")
                    return current
                except httpx.HTTPError:
                    pass
            await asyncio.sleep(self.svc.settings.health_interval)
        lines = await asyncio.to_thread(self.last_lines, inst.id)
        return f"The app did not answer on its port within {int(timeout)} s (startup_duration_timeout).\n{lines}"

    def last_lines(self, instance_id: str, n: int = 20) -> str:
        lines = list(self.svc.runtime.logs(instance_id, tail=n))
        return "Last log lines:\n" + "\n".join(lines) if lines else "The app printed nothing."

    def _fail(self, space_id: int, serving: bool, message: str) -> None:
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            if space is not None:
                self._failed(s, space, serving, message)

    @staticmethod
    def _failed(s: Session, space: Space, serving: bool, message: str) -> None:
        if serving:
            # The previous version keeps serving; the failure is reported, not inflicted on visitors.
            set_stage(
                s, space, Stage.RUNNING, f"The new version failed to start; the previous one still runs. {message}"
            )
        else:
            set_stage(s, space, Stage.RUNTIME_ERROR, message)

    def instance_died(self, container_id: str) -> None:
        """The engine says a container stopped: if it was the one serving, the Space is in RUNTIME_ERROR."""
        with self.svc.db.session() as s:
            space = s.scalar(select(Space).where(Space.container_id == container_id))
            if space is None or Stage(space.stage) not in (*SERVING, Stage.APP_STARTING):
                return
            inst = self.svc.runtime.get(container_id)
            if inst is not None and inst.state in ("pending", "starting", "running"):
                return  # a late "die" of a sleep's stop, read after a wake already started the container again
            code = inst.exit_code if inst else "unknown"
            # The runtime's own reason when it has one (the docker runtime's out-of-memory kill).
            reason = (inst.message if inst else None) or f"The app stopped (exit code {code})."
            space.endpoint = None
            set_stage(s, space, Stage.RUNTIME_ERROR, f"{reason}\n{self.last_lines(container_id)}")
