"""Which Space uses which GPU: pure functions from what the runtime reports to {gpu_uuid: "owner/name"}.

Docker: containers labelled `spaceyard.space`, their device requests (`--gpus`) or, under the legacy `nvidia`
runtime, their NVIDIA_VISIBLE_DEVICES. Kubernetes: the kubelet pod-resources API's List response, which
names the exact devices the NVIDIA device plugin gave each container (pod specs never do: the plugin injects
NVIDIA_VISIBLE_DEVICES at allocation time, invisible to the API server).

A GPU claimed by more than one Space (time-slicing, `--gpus all` on a shared host) is left out of the mapping:
its samples are then unattributed rather than charged to an arbitrary one of them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import docker

from controlplane.gpu_agent.nvml import GpuReading

log = logging.getLogger(__name__)

SPACE_LABEL = "spaceyard.space"
GPU_RESOURCE = "nvidia.com/gpu"
ALL = "all"


def resolve_devices(tokens: Iterable[str], gpus: Sequence[GpuReading]) -> set[str]:
    """GPU UUIDs for device names as runtimes write them: NVML indices ("0"), UUIDs ("GPU-…"), or "all".

    MIG devices ("MIG-…") and names not on this node resolve to nothing: samples are per physical GPU."""
    by_index = {str(g.index): g.uuid for g in gpus}
    by_uuid = {g.uuid.lower(): g.uuid for g in gpus}
    found: set[str] = set()
    for raw in tokens:
        token = raw.strip()
        if token == ALL:
            return {g.uuid for g in gpus}
        uuid = by_index.get(token) or by_uuid.get(token.lower())
        if uuid:
            found.add(uuid)
    return found


def _split(value: str) -> list[str]:
    return [t for t in (p.strip() for p in value.split(",")) if t]


def docker_visible_devices(container: Mapping[str, Any]) -> list[str]:
    """The device names a container can see, from its `docker inspect` document; [] for none."""
    host = container.get("HostConfig") or {}
    for req in host.get("DeviceRequests") or []:
        if not _is_gpu_request(req):
            continue
        # Mirrors dockerd's nvidia driver: DeviceIDs as given, Count -1 = all, Count N = indices 0..N-1.
        ids = [t for i in req.get("DeviceIDs") or [] for t in _split(i)]
        count = req.get("Count") or 0
        if ids:
            return ids
        if count < 0:
            return [ALL]
        return [str(i) for i in range(count)]
    # Without a device request only the legacy nvidia runtime reads NVIDIA_VISIBLE_DEVICES; under runc the
    # variable (set by every nvidia/cuda base image) gives the container no GPU at all.
    if host.get("Runtime") == "nvidia":
        for entry in (container.get("Config") or {}).get("Env") or []:
            key, _, value = entry.partition("=")
            if key == "NVIDIA_VISIBLE_DEVICES":
                return [] if value in ("", "none", "void") else _split(value)
    return []


def _is_gpu_request(req: Mapping[str, Any]) -> bool:
    caps = req.get("Capabilities") or []
    return req.get("Driver") == "nvidia" or any("gpu" in group for group in caps)


def map_docker(containers: Iterable[Mapping[str, Any]], gpus: Sequence[GpuReading]) -> dict[str, str]:
    """{gpu_uuid: space} from `docker inspect` documents of this host's containers."""
    claims: list[tuple[str, set[str]]] = []
    for c in containers:
        space = ((c.get("Config") or {}).get("Labels") or {}).get(SPACE_LABEL)
        if not space or not (c.get("State") or {}).get("Running"):
            continue
        claims.append((space, resolve_devices(docker_visible_devices(c), gpus)))
    return _unambiguous(claims)


def map_kubernetes(
    pod_resources: Mapping[str, Any],
    pod_spaces: Mapping[tuple[str, str], str],
    gpus: Sequence[GpuReading],
    resource_name: str = GPU_RESOURCE,
) -> dict[str, str]:
    """{gpu_uuid: space} from a kubelet pod-resources v1 List response (protobuf JSON, snake_case or camelCase)
    and {(namespace, pod name): space} for this node's Spaceyard pods."""
    claims: list[tuple[str, set[str]]] = []
    for pod in _field(pod_resources, "pod_resources", "podResources"):
        space = pod_spaces.get((pod.get("namespace", ""), pod.get("name", "")))
        if not space:
            continue
        tokens = [
            # Time-sliced replicas are announced as "<uuid>::<n>"; the GPU is the part before "::".
            device_id.split("::", 1)[0]
            for container in pod.get("containers") or []
            for dev in _field(container, "devices", "devices")
            if _field(dev, "resource_name", "resourceName", default="") == resource_name
            for device_id in _field(dev, "device_ids", "deviceIds")
        ]
        claims.append((space, resolve_devices(tokens, gpus)))
    return _unambiguous(claims)


def _field(obj: Mapping[str, Any], snake: str, camel: str, default: Any = ()) -> Any:
    value = obj.get(snake, obj.get(camel))
    return default if value is None else value


def _unambiguous(claims: Iterable[tuple[str, set[str]]]) -> dict[str, str]:
    owners: dict[str, set[str]] = {}
    for space, uuids in claims:
        for uuid in uuids:
            owners.setdefault(uuid, set()).add(space)
    shared = {u: s for u, s in owners.items() if len(s) > 1}
    for uuid, spaces in sorted(shared.items()):
        log.warning(
            "GPU %s is used by several Spaces (%s): its samples stay unattributed", uuid, ", ".join(sorted(spaces))
        )
    return {u: next(iter(s)) for u, s in owners.items() if len(s) == 1}


def docker_containers() -> list[dict[str, Any]]:
    """`docker inspect` documents of this host's Spaceyard containers, from the local Docker engine."""
    client = docker.from_env()
    try:
        return [c.attrs for c in client.containers.list(filters={"label": SPACE_LABEL})]
    finally:
        client.close()
