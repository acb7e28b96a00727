"""The control-plane ASGI app: API, git server, router and dashboard on one port, with its background loops."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from functools import partial

import redis.asyncio as aioredis
from fastapi import FastAPI

from controlplane import dashboard
from controlplane.access_log import MarkOwnRequests
from controlplane.api import errors
from controlplane.api.middleware import BodyLimit, SecurityHeaders
from controlplane.api.redirects import MovedSpaces
from controlplane.api.routes import (
    admin,
    billing,
    builds,
    files,
    hardware,
    history,
    likes,
    logs,
    repos,
    secrets_vars,
    spaces,
    uploads,
    webhooks,
    whoami,
)
from controlplane.api.views import apps_origin_pattern, host_url
from controlplane.build_events import BuildEventsConsumer
from controlplane.builds import make_celery
from controlplane.core.config import Settings, get_settings
from controlplane.core.db import migrate
from controlplane.deploy import Deployer
from controlplane.gitserver import router as git_router
from controlplane.loops import forever
from controlplane.proxy import activity, kube
from controlplane.proxy.routes import RunningRoutes
from controlplane.reconciler import Reconciler
from controlplane.router.affinity import Affinity
from controlplane.router.proxy import RouterMiddleware
from controlplane.routing import SpaceResolver
from controlplane.runtime.base import RuntimeBackend
from controlplane.scheduler import Scheduler
from controlplane.services import Services
from controlplane.sleep import Sleeper
from controlplane.tiers import Catalog
from controlplane.wiring import InstanceWatch, Wiring, meter

log = logging.getLogger(__name__)


def make_runtime(settings: Settings, catalog: Catalog) -> RuntimeBackend:
    if settings.runtime == "kubernetes":
        from controlplane.runtime.kubernetes_backend import KubernetesBackend

        if not settings.registry:
            # Nodes pull Space images; an image only in the builder's engine cannot be pulled.
            raise RuntimeError("SPACEYARD_RUNTIME=kubernetes needs SPACEYARD_REGISTRY, the registry builds push to.")

        return KubernetesBackend.from_settings(settings, catalog)
    from controlplane.runtime.docker_backend import DockerBackend

    return DockerBackend(settings)


async def sweep_lfs_temp(svc: Services) -> None:
    removed = await asyncio.to_thread(svc.repos.lfs.sweep_temp)
    if removed:
        log.warning("Removed %d temp file(s) of LFS uploads cut off when their control plane was killed", removed)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    svc = Services.create(settings)
    resolver = SpaceResolver(svc)
    svc.affinity = affinity = Affinity()  # client sessions across redeploys, on the Python router's path

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # asyncio.to_thread's pool: bounded, and sized so that slow engine calls do not queue the router's reads.
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(settings.blocking_threads, thread_name_prefix="blocking"))
        await asyncio.to_thread(migrate, settings.sqlalchemy_url)
        if not settings.redis_url:
            raise RuntimeError(
                "SPACEYARD_REDIS_URL is not set: start Spaceyard with `spaceyard up`, "
                "which runs a private Redis, or point it at one."
            )
        # Wiring, in order: listeners, runtime, services, loops, the instance watch, the proxy's routes.
        wiring = Wiring()
        wiring.listen(meter(svc.catalog))
        wiring.on_close(resolver.close)
        svc.runtime = make_runtime(settings, svc.catalog)
        svc.scheduler = scheduler = Scheduler(svc)
        wiring.on_close(scheduler.close)
        svc.celery = make_celery(settings.redis_url)
        redis = aioredis.from_url(settings.redis_url, decode_responses=True)
        deployer = Deployer(svc)
        sleeper = Sleeper(svc, deployer, resolver.last_request)
        svc.redis, svc.deployer, svc.sleeper = redis, deployer, sleeper
        loop = asyncio.get_running_loop()
        for task in (
            # The consumer's pass blocks on Redis itself (XREAD), so it needs no pause of its own.
            asyncio.create_task(forever("build events", BuildEventsConsumer(svc, redis, deployer).step, 0),
                                name="build-events"),
            asyncio.create_task(forever("reconcile", Reconciler(svc, deployer).once, settings.reconcile_interval),
                                name="reconciler"),
            asyncio.create_task(forever("sleep", sleeper.once, settings.sleep_check_interval), name="sleeper"),
            # At start, then hourly: temp files of LFS uploads whose control plane was killed mid-body.
            asyncio.create_task(forever("lfs temp sweep", partial(sweep_lfs_temp, svc), 3600), name="lfs-sweep"),
        ):
            wiring.on_close(task.cancel)
        wiring.on_close(InstanceWatch(svc, deployer, loop).stop)  # its stop closes the runtime too
        if settings.proxy != "none":
            running = RunningRoutes(svc.db)
            routes = kube.make_pusher(settings, running)
            svc.proxy_routes = routes
            wiring.announce_to(running.changed)  # first: the pusher's read then finds the Space marked
            wiring.announce_to(routes.changed)
            wiring.on_close(asyncio.create_task(routes.run(), name="proxy-routes").cancel)
            # The Helm chart's proxy replicas: found through their headless Service, sending activity from afar.
            stop_following = await asyncio.to_thread(kube.follow, routes, settings.proxy_targets, loop)
            if stop_following is not None:
                wiring.on_close(stop_following)
            reader = activity.ActivityReader(lambda: routes.table, resolver.record)
            udp = await activity.listen(
                settings.activity_port, reader, settings.host if settings.proxy_targets else "127.0.0.1"
            )
            wiring.on_close(udp.close)
        try:
            yield
        finally:
            wiring.close()  # last wired first: the proxy's, the instance watch (and runtime), the loops, listeners
            await deployer.close()
            await redis.aclose()

    app = FastAPI(title="Spaceyard", version="0.1.0", lifespan=lifespan)
    app.state.services = svc
    app.add_middleware(MarkOwnRequests)  # innermost: app traffic never reaches it (the access log's filter)
    app.add_middleware(BodyLimit, max_bytes=settings.max_api_body_bytes)
    app.add_middleware(SecurityHeaders, apps_origin=apps_origin_pattern(settings))
    # The router sits in front of everything: app URLs never reach the API's routes (nor the headers above).
    service_secrets = {settings.gpu_agent_credential(), settings.metrics_token}
    app.add_middleware(
        RouterMiddleware,
        resolver=resolver,
        apps_domain=settings.apps_domain,
        path_urls=settings.path_urls_enabled,
        host_url=partial(host_url, settings),
        secrets=frozenset(s.encode("latin-1") for s in service_secrets if s),
        secure_cookies=settings.secure_cookies_enabled,
        affinity=affinity,
    )
    # Outside the router too: an old path-based app URL of a moved Space redirects like its API and git URLs.
    app.add_middleware(MovedSpaces, svc=svc)
    errors.install(app)
    # hardware before spaces: /api/spaces/hardware is a fixed path, never a Space.
    for module in (hardware, admin, repos, spaces, secrets_vars, likes, logs, whoami, billing, files, uploads, history):
        app.include_router(module.router)
    app.include_router(webhooks.router)
    app.include_router(builds.router)
    app.include_router(git_router)
    dashboard.install(app)

    @app.get("/api/health", tags=["meta"])
    def health() -> dict:
        return {"status": "ok"}

    return app
