"""Which Space a pod on this node runs, from the Kubernetes API, and the GPU mapper built on it.

The kubelet's pod-resources answer names pods only; a pod's Space (the exact "owner/name", which labels cannot
hold) is in its `spaceyard.dev/space-id` annotation. The agent lists its node's Space pods through the API server
(a Role in the Spaces namespace grants get/list on pods) and keeps the answer until a pod it does not know shows up.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from kubernetes import client

from controlplane.gpu_agent.mapping import map_kubernetes
from controlplane.gpu_agent.nvml import GpuReading
from controlplane.runtime.k8s_objects import SPACE_ANNOTATION, SPACE_LABEL
from controlplane.runtime.kubernetes_backend import load_api_client

log = logging.getLogger(__name__)

PodKey = tuple[str, str]  # (namespace, pod name), as the kubelet names pods
SPACE_ID = re.compile(r"^[^/\s]+/[^/\s]+$")  # the shape the samples route accepts; anything else fails the post


class PodSpaces(Protocol):
    def __call__(self, namespace: str) -> dict[PodKey, str]: ...


def space_of(pod: Mapping[str, Any]) -> str | None:
    """The Space of one pod, from its JSON as the API server returns it; None for pods that are not a Space's."""
    meta = pod.get("metadata") or {}
    space = (meta.get("annotations") or {}).get(SPACE_ANNOTATION)
    if space is None or (meta.get("labels") or {}).get(SPACE_LABEL) is None:
        return None
    if not SPACE_ID.match(space):
        log.warning(
            "pod %s/%s: %s=%r is not owner/name", meta.get("namespace"), meta.get("name"), SPACE_ANNOTATION, space
        )
        return None
    return space


def pod_spaces_from_list(pod_list: Mapping[str, Any]) -> dict[PodKey, str]:
    """{(namespace, pod): space} from a PodList document."""
    found = {}
    for pod in pod_list.get("items") or []:
        if space := space_of(pod):
            meta = pod["metadata"]
            found[(meta["namespace"], meta["name"])] = space
    return found


class KubernetesPodSpaces:
    """The real PodSpaces: this node's Space pods in a namespace, read from the API server."""

    def __init__(self, node: str, api_client: client.ApiClient | None = None, timeout: float = 10.0) -> None:
        self._api = client.CoreV1Api(api_client or load_api_client())
        self._node, self._timeout = node, timeout

    def __call__(self, namespace: str) -> dict[PodKey, str]:
        response = self._api.list_namespaced_pod(
            namespace,
            label_selector=SPACE_LABEL,
            field_selector=f"spec.nodeName={self._node}",
            resource_version="0",  # served from the API server's cache: every GPU node asks, every few seconds
            _preload_content=False,  # the raw JSON, read by the same code the tests feed recorded pods to
            _request_timeout=self._timeout,
        )
        return pod_spaces_from_list(json.loads(response.data))


class CachedPodSpaces:
    """Answers from the last listing until asked about a pod it has not checked yet, then lists again.

    No expiry is needed for what it knows: a pod's annotation never changes and a pod name is never reused by
    another Space (it carries the Space's object name), so only a new pod can make the cache wrong. A pod checked
    and found to be no Space's is checked again only every `recheck` seconds: an unrelated pod must not cause a
    listing per cycle, and a pod the API server's cache did not show yet must not stay unattributed for good.
    """

    def __init__(
        self,
        pod_spaces: PodSpaces,
        namespace: str,
        recheck: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pod_spaces, self._namespace = pod_spaces, namespace
        self._recheck, self._clock = recheck, clock
        self._spaces: dict[PodKey, str] = {}
        self._checked: set[PodKey] = set()
        self._listed_at = -math.inf

    def __call__(self, pods: Iterable[PodKey]) -> dict[PodKey, str]:
        wanted = {p for p in pods if p[0] == self._namespace}
        unknown = wanted - self._spaces.keys()
        if unknown - self._checked or (unknown and self._clock() - self._listed_at >= self._recheck):
            self._spaces = self._pod_spaces(self._namespace)
            self._checked = wanted | self._spaces.keys()
            self._listed_at = self._clock()
        return {p: self._spaces[p] for p in wanted if p in self._spaces}


def kubernetes_mapper(
    list_pod_resources: Callable[[], Mapping[str, Any]], spaces: CachedPodSpaces
) -> Callable[[Sequence[GpuReading]], dict[str, str]]:
    """The agent's mapper on a Kubernetes node: kubelet pod-resources for devices, the API for Spaces."""

    def mapper(gpus: Sequence[GpuReading]) -> dict[str, str]:
        resources = list_pod_resources()
        pods = [(p.get("namespace", ""), p.get("name", "")) for p in resources.get("pod_resources") or []]
        return map_kubernetes(resources, spaces(pods), gpus)

    return mapper
