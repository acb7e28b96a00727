"""The docker runtime: one host, one container per app instance, published on loopback for the router.

Isolation (docs/security.md): Space containers sit on this installation's own bridge with inter-container
traffic off, so a Space reaches no other Space (nor a build, which runs on another bridge) and the router
reaches each through its loopback port; they run as uid 1000 with no capabilities, no privilege gain, a pids
limit, rotated logs, and the CPU and memory their tier gets on this host (pools.HostMemory).
"""

from __future__ import annotations

import logging
import secrets
import threading
from collections.abc import Iterator
from datetime import datetime

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import DeviceRequest, LogConfig

from controlplane.core.config import Settings
from controlplane.pools import host_memory
from controlplane.runtime.base import AppSpec, Instance, RuntimeBackend

log = logging.getLogger(__name__)
LABEL_SPACE, LABEL_BUILD, LABEL_TIER = "spaceyard.space", "spaceyard.build", "spaceyard.tier"
LABEL_INSTANCE = "spaceyard.instance"
LABEL_NETWORK = "spaceyard.network"  # "spaces" on the bridge Space containers run on
SPACE_UID = "1000:1000"  # the Hub runs every Space as uid 1000, whatever its image's USER says


def spaces_network(instance: str) -> str:
    return f"spaceyard-{instance}-spaces"


def container_name(space: str, build_id: int) -> str:
    owner, name = space.split("/", 1)
    return f"spaceyard-{owner}--{name}-b{build_id}-{secrets.token_hex(3)}".lower()


def _time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-01-01"):
        return None
    # Docker gives nanoseconds; datetime takes microseconds.
    head, _, frac = value.rstrip("Z").partition(".")
    return datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00")


class DockerBackend(RuntimeBackend):
    def __init__(self, settings: Settings, bind_host: str = "127.0.0.1") -> None:
        # Only this installation's containers are ours to list, stop and remove.
        self.client = docker.from_env()
        self.settings, self.instance, self.bind_host = settings, settings.instance, bind_host
        self.memory = host_memory(settings)
        # No Space gets every CPU: the platform (router, control plane) keeps the reserve even under a busy app.
        host_cpus = float(self.client.info()["NCPU"])
        self.max_cpus = max(host_cpus - settings.local_reserved_cpus, host_cpus / 4)
        self._noted: set[str] = set()  # tiers whose local size was logged
        self._events: list = []  # open event streams, closed by close() to end their watch
        self._events_lock = threading.Lock()
        self._closed = False
        self.network = spaces_network(self.instance)
        self._remove_unused_networks()
        self._ensure_network()

    # --- the Spaces' bridge ----------------------------------------------------------------------

    def _ensure_network(self) -> None:
        """This installation's bridge for Space containers, created once (idempotent across processes)."""
        if self.client.networks.list(names=[self.network]):
            return
        try:
            self.client.networks.create(
                self.network,
                driver="bridge",
                check_duplicate=True,
                labels={LABEL_INSTANCE: self.instance, LABEL_NETWORK: "spaces"},
                options={
                    # Containers on the bridge cannot reach each other; the router goes through loopback ports.
                    "com.docker.network.bridge.enable_icc": "false",
                    # A stable interface name (at most 15 characters) operators can write host firewall rules for.
                    "com.docker.network.bridge.name": f"sy-{self.instance}"[:15],
                },
            )
        except APIError as e:
            if e.status_code != 409:  # 409: another process of this installation created it meanwhile
                raise

    def _remove_unused_networks(self) -> None:
        """Remove Space bridges of installations that have no container left (throwaway test platforms).

        Docker removes a network even while stopped containers still name it, so only an installation with
        no container at all, running or not, loses its bridge; it creates it again at its next start."""
        for net in self.client.api.networks(filters={"label": f"{LABEL_NETWORK}=spaces"}):
            owner = (net.get("Labels") or {}).get(LABEL_INSTANCE)
            if owner in (None, self.instance):
                continue
            if self.client.api.containers(all=True, filters={"label": f"{LABEL_INSTANCE}={owner}"}):
                continue
            try:
                self.client.api.remove_network(net["Id"])
            except (APIError, NotFound) as e:
                log.info("left network %s in place: %s", net["Name"], e)

    # --- instances -------------------------------------------------------------------------------

    def start(self, spec: AppSpec) -> Instance:
        try:
            return self._run(spec)
        except NotFound as e:
            if isinstance(e, ImageNotFound) or "network" not in str(e):
                raise
            # Another installation found ours without containers and removed the bridge: make it again.
            self._ensure_network()
            return self._run(spec)

    def _run(self, spec: AppSpec) -> Instance:
        tier = spec.tier
        cpus = min(tier.vcpu, self.max_cpus)
        memory_gb = self.memory.size(tier)
        if (cpus, memory_gb) != (tier.vcpu, tier.memory_gb) and tier.name not in self._noted:
            self._noted.add(tier.name)
            log.info("%s runs with %g CPUs and %g GiB on this host (catalog: %g vCPU, %g GB; docs/tiers.md)",
                     tier.name, cpus, memory_gb, tier.vcpu, tier.memory_gb)
        logs = self.settings
        log_options = {"max-size": logs.docker_log_max_size, "max-file": str(logs.docker_log_max_file)}
        kwargs: dict = {
            "image": spec.image,
            "name": container_name(spec.space, spec.build_id),
            "detach": True,
            # An init as PID 1 passes SIGTERM on: a bare `python app.py` as PID 1 ignores it, and every stop
            # (pause, sleep, the end of a redeploy's drain) would wait out the kill timeout.
            "init": True,
            # What the app is really given here, which on one host may be less than the tier's catalog size.
            "environment": {**spec.env, "CPU_CORES": f"{cpus:g}", "MEMORY": f"{memory_gb:g}Gi", **spec.secret_env},
            "labels": {
                LABEL_SPACE: spec.space,
                LABEL_BUILD: str(spec.build_id),
                LABEL_TIER: tier.name,
                LABEL_INSTANCE: self.instance,
            },
            "ports": {f"{spec.port}/tcp": (self.bind_host, None)},
            "network": self.network,
            # CPU is shared, not reserved (docs/tiers.md): a cap per container, and under contention each
            # Space gets CPU time in proportion to its tier's vCPUs.
            "nano_cpus": int(cpus * 1e9),
            "cpu_shares": max(2, int(tier.vcpu * 1024)),
            # Memory is reserved: admission keeps the sum of these limits within the host (pools.HostMemory).
            "mem_limit": f"{int(memory_gb * 1024)}m",
            "memswap_limit": f"{int(memory_gb * 1024)}m",
            "pids_limit": self.settings.docker_pids_limit,
            # None added back: uid 1000 may bind any port (Docker sets ip_unprivileged_port_start=0); tini needs none.
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "log_config": LogConfig(type=LogConfig.types.JSON, config=log_options),
        }
        if not self.settings.docker_sdk_allow_root:
            kwargs["user"] = SPACE_UID
        if tier.gpu_count:
            kwargs["device_requests"] = [DeviceRequest(count=tier.gpu_count, capabilities=[["gpu"]])]
        else:
            # CUDA base images default to every GPU; a CPU tier must see none.
            kwargs["environment"]["NVIDIA_VISIBLE_DEVICES"] = "void"
        try:
            container = self.client.containers.run(**kwargs)
        except ImageNotFound as e:
            raise RuntimeError(f"image {spec.image} is missing; rebuild the Space") from e
        container.reload()
        return self._instance(container.attrs)

    def stop(self, instance_id: str, remove: bool = True) -> None:
        try:
            container = self.client.containers.get(instance_id)
            container.stop(timeout=5)
            if remove:
                container.remove(force=True)
        except NotFound:
            pass
        except APIError as e:
            # 409 "removal already in progress": another caller (the reconciler, a pause) got there first.
            if e.status_code != 409:
                raise

    def resume(self, instance_id: str) -> Instance:
        # `docker start` of the kept container: no create, no image unpacking; the host port may change.
        try:
            container = self.client.containers.get(instance_id)
            container.start()
        except NotFound as e:
            raise RuntimeError(f"container {instance_id[:12]} is gone") from e
        container.reload()
        return self._instance(container.attrs)

    def get(self, instance_id: str) -> Instance | None:
        try:
            return self._instance(self.client.api.inspect_container(instance_id))
        except NotFound:
            return None

    def list(self, space: str | None = None) -> list[Instance]:
        labels = [f"{LABEL_INSTANCE}={self.instance}"] + ([f"{LABEL_SPACE}={space}"] if space else [])
        out = []
        for c in self.client.api.containers(all=True, filters={"label": labels}):
            inst = self.get(c["Id"])
            if inst:
                out.append(inst)
        return out

    def logs(
        self, instance_id: str, follow: bool = False, tail: int | None = None, timestamps: bool = False
    ) -> Iterator[str]:
        try:
            stream = self.client.api.logs(
                instance_id, stream=True, follow=follow, tail=tail if tail else "all", timestamps=timestamps
            )
        except (NotFound, APIError):  # gone, or being removed: no logs to read
            return
        buf = b""
        for chunk in stream:
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield line.decode(errors="replace").rstrip("\r")
        if buf:
            yield buf.decode(errors="replace")

    def remove_space(self, space: str) -> None:
        for inst in self.list(space):
            self.stop(inst.id, remove=True)
        # The builder labels each image with the Space's exact name; the tag prefix keeps it to this installation.
        for image in self.client.api.images(filters={"label": f"{LABEL_SPACE}={space}"}):
            # Untag, never remove by id: an image id can carry other tags (another installation's identical
            # build), and removing the id would take them with it.
            for tag in image.get("RepoTags") or []:
                if tag.startswith(f"spaceyard-{self.instance}/"):
                    try:
                        self.client.api.remove_image(tag)
                    except (APIError, NotFound) as e:
                        log.warning("could not remove image %s of %s: %s", tag, space, e)

    def remove_image(self, image: str) -> bool:
        # Only this installation's tags, and untag without force: the engine refuses while a container uses it.
        if not image.startswith(f"spaceyard-{self.instance}/"):
            return False
        try:
            self.client.api.remove_image(image)
        except NotFound:
            return True
        except APIError as e:
            log.warning("image %s stays: %s", image, e)
            return False
        return True

    def _instance(self, attrs: dict) -> Instance:
        labels = attrs["Config"]["Labels"] or {}
        state = attrs["State"]
        endpoint = None
        for bindings in (attrs["NetworkSettings"].get("Ports") or {}).values():
            if bindings:
                endpoint = f"{self.bind_host}:{bindings[0]['HostPort']}"
                break
        status = state["Status"]
        message = state.get("Error") or None
        if state.get("OOMKilled"):
            limit = attrs["HostConfig"].get("Memory") or 0
            message = f"The app ran out of memory: it used all {limit / 2**30:g} GiB its hardware allows here."
        if status in ("created", "restarting"):
            kind = "starting"
        elif status == "running":
            kind = "running"
        else:
            kind = "exited" if state.get("ExitCode", 0) == 0 else "failed"
        return Instance(
            id=attrs["Id"],
            space=labels.get(LABEL_SPACE, ""),
            build_id=int(labels.get(LABEL_BUILD, 0)),
            tier=labels.get(LABEL_TIER, ""),
            state=kind,
            endpoint=endpoint if kind == "running" else None,
            started_at=_time(state.get("StartedAt")),
            # A restarted container keeps its previous run's FinishedAt while it runs again.
            finished_at=_time(state.get("FinishedAt")) if kind in ("exited", "failed") else None,
            exit_code=state.get("ExitCode") if kind in ("exited", "failed") else None,
            message=message,
        )

    def watch(self) -> Iterator[Instance]:
        events = self.client.events(
            decode=True,
            filters={"type": "container", "label": f"{LABEL_INSTANCE}={self.instance}", "event": ["die", "start"]},
        )
        with self._events_lock:
            if self._closed:
                events.close()
                return
            self._events.append(events)
        try:
            for event in events:
                instance = self.get(event["id"])
                if instance is not None:
                    yield instance
        finally:
            with self._events_lock:
                self._events.remove(events)
            events.close()

    def close(self) -> None:
        # Closing the stream's socket ends a watch blocked waiting for the next event (another thread's).
        with self._events_lock:
            self._closed = True
            streams = list(self._events)
        for events in streams:
            events.close()
