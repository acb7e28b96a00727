"""Pure builders for the Kubernetes objects one Space runs as (after KubeSpawner's objects.py).

Each function maps (AppSpec, Pool, K8sOptions) to a plain manifest dict; nothing here talks to a cluster,
so tests read the output directly and the backend sends it with server-side apply.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from dataclasses import dataclass

from controlplane.router.resolver import space_label
from controlplane.runtime.base import AppSpec
from controlplane.tiers import Pool

SPACE_LABEL = "spaceyard.dev/space"
BUILD_LABEL = "spaceyard.dev/build"
START_LABEL = "spaceyard.dev/start"  # one start of a build (a restart starts the same build again)
TIER_LABEL = "spaceyard.dev/tier"
SPACE_ANNOTATION = "spaceyard.dev/space-id"  # the exact owner/name, which labels cannot hold
SECRET_CHECKSUM_ANNOTATION = "spaceyard.dev/secret-checksum"
MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_SELECTOR = f"{MANAGED_BY}=spaceyard"

CONTAINER = "app"
SERVICE_PORT = 80
STARTUP_PERIOD_SECONDS = 5
STOP_GRACE_SECONDS = 5

_MAX_LABEL = 63  # DNS-1123 label and label-value limit
_NAME_PREFIX = "space-"  # Service names must start with a letter (RFC 1035)


@dataclass(frozen=True)
class K8sOptions:
    """What an operator sets for the kubernetes runtime (wired from the control plane's settings)."""

    namespace: str = "spaceyard-spaces"  # the Helm chart's spaces.namespace
    apps_domain: str = "localhost"
    kubeconfig: str | None = None  # None: in-cluster config, else $KUBECONFIG or ~/.kube/config
    # Off by default: the Helm chart routes *.apps_domain to the Spaceyard router, which wakes sleeping
    # Spaces. A per-Space Ingress is more specific than that wildcard, so it would take the Space's host
    # straight to its Service and a sleeping Space (0 replicas) would answer the controller's 503.
    ingress: bool = False
    ingress_class: str | None = None  # None: the cluster's default IngressClass
    tls_secret: str | None = None  # e.g. a wildcard certificate for *.apps_domain
    image_pull_secret: str | None = None
    image_pull_policy: str = "IfNotPresent"
    # Where the builder pushed the images (SPACEYARD_REGISTRY): a build's image is pulled as {registry}/{image}.
    registry: str | None = None
    http_probe_path: str | None = None  # None: TCP probe, since Docker Spaces may answer 404 on "/"
    # requests = limits × ratio for cpu/memory; 1.0 gives Guaranteed QoS, but a tier sized exactly like
    # its nodes (t4-small on a 4 vCPU/16 GB node) only fits below 1.0 because of system reservations.
    request_ratio: float = 1.0


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def object_name(space: str) -> str:
    """DNS-1123 name shared by a Space's Deployment, Service, Ingress and Secret; also its label value.

    The hash suffix is always there: slugging is lossy ("a-b/c" and "a/b-c" both give "a-b-c").
    """
    digest = _digest(space)
    slug = _slug(space)[: _MAX_LABEL - len(_NAME_PREFIX) - len(digest) - 1].rstrip("-")
    return f"{_NAME_PREFIX}{slug}-{digest}" if slug else f"{_NAME_PREFIX}{digest}"


def space_host(space: str, apps_domain: str) -> str:
    """The public host the router answers for the Space: {space_label}.{apps_domain}."""
    owner, _, name = space.partition("/")
    return f"{space_label(owner, name)}.{apps_domain}"


@dataclass(frozen=True)
class InstanceKey:
    """An instance is one start of one build of a Space: its own Deployment, as on docker its own container.

    So a new build, or a restart of the same one, starts beside the instance serving, and one that never gets
    ready is deleted alone. `start` is empty for a Deployment made before starts had their own.
    """

    name: str  # object_name of the Space
    build: int
    start: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}:{self.build}" + (f":{self.start}" if self.start else "")

    @classmethod
    def parse(cls, value: str) -> InstanceKey:
        name, build, start = [*value.split(":"), ""][:3]
        if not name or not build.isdigit() or value.count(":") > 2:
            raise ValueError(f"not a kubernetes instance id: {value!r}")
        return cls(name, int(build), start)

    @classmethod
    def of(cls, obj: dict) -> InstanceKey:
        """The key in a Deployment's or pod's labels."""
        found = obj.get("metadata", {}).get("labels") or {}
        return cls(found.get(SPACE_LABEL, ""), int(found.get(BUILD_LABEL, "0")), found.get(START_LABEL, ""))

    @property
    def selector(self) -> str:
        start = f"{START_LABEL}={self.start}" if self.start else f"!{START_LABEL}"
        return f"{SPACE_LABEL}={self.name},{BUILD_LABEL}={self.build},{start}"

    def matches(self, obj: dict) -> bool:
        return InstanceKey.of(obj) == self


def deployment_name(space: str, build_id: int, start: str = "") -> str:
    # Deployment names may be 253 long (DNS-1123 subdomain); only labels and Service names are held to 63.
    return f"{object_name(space)}-b{build_id}" + (f"-{start}" if start else "")


def service_endpoint(name: str, namespace: str) -> str:
    return f"{name}.{namespace}.svc.cluster.local:{SERVICE_PORT}"


def instance_service_name(key: InstanceKey) -> str:
    """The Service of one instance (a start of a build): its Deployment's name where that is a valid Service name
    (a DNS label, at most 63), else the Space's name cut short with a digest of the whole id.

    A Deployment made before each start had its own (no start label) has none: a Service cannot select "no start
    label", so such an instance keeps the Space's Service, as then."""
    if not key.start:
        return key.name
    tail = f"-b{key.build}-{key.start}"
    if len(key.name) + len(tail) <= _MAX_LABEL:
        return f"{key.name}{tail}"
    digest = _digest(key.id)
    head = key.name[: _MAX_LABEL - len(tail) - len(digest) - 1].rstrip("-")
    return f"{head}-{digest}{tail}"


def instance_endpoint(key: InstanceKey, namespace: str) -> str:
    """Where one instance answers: its own Service, so a redeploy's old and new instances are two addresses."""
    return service_endpoint(instance_service_name(key), namespace)


def labels(spec: AppSpec) -> dict[str, str]:
    name = object_name(spec.space)
    return {
        "app.kubernetes.io/name": "space",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "app",
        "app.kubernetes.io/part-of": "spaceyard",
        MANAGED_BY: "spaceyard",
        SPACE_LABEL: name,
        BUILD_LABEL: str(spec.build_id),
        TIER_LABEL: spec.tier.name,
    }


def selector(space: str) -> dict[str, str]:
    """The Space's Service's (for its Ingress): every ready pod of the Space, whichever build or start."""
    return {SPACE_LABEL: object_name(space)}


def _start_labels(spec: AppSpec, start: str) -> dict[str, str]:
    # A Deployment's selector is immutable: its build and start never change, its tier may (kept out of it).
    return {**selector(spec.space), BUILD_LABEL: str(spec.build_id)} | ({START_LABEL: start} if start else {})


def _metadata(spec: AppSpec, settings: K8sOptions) -> dict:
    return {
        "name": object_name(spec.space),
        "namespace": settings.namespace,
        "labels": labels(spec),
        "annotations": {SPACE_ANNOTATION: spec.space},
    }


def _cpu(vcpu: float) -> str:
    return f"{max(1, round(vcpu * 1000))}m"


def _memory(gb: float) -> str:
    return f"{max(1, round(gb * 1024))}Mi"


def _resources(spec: AppSpec, pool: Pool, settings: K8sOptions) -> dict:
    tier = spec.tier
    limits = {"cpu": _cpu(tier.vcpu), "memory": _memory(tier.memory_gb)}
    requests = {
        "cpu": _cpu(tier.vcpu * settings.request_ratio),
        "memory": _memory(tier.memory_gb * settings.request_ratio),
    }
    if tier.is_gpu:
        # Extended resources cannot be overcommitted: request and limit must be equal.
        limits[pool.gpu_resource] = requests[pool.gpu_resource] = str(tier.gpu_count)
    return {"requests": requests, "limits": limits}


def _env(spec: AppSpec) -> list[dict]:
    plain = {k: v for k, v in spec.env.items() if k not in spec.secret_env}
    if not spec.tier.is_gpu:
        # CUDA base images set NVIDIA_VISIBLE_DEVICES=all; on a GPU node the NVIDIA runtime would then
        # expose every GPU to a CPU-tier container. "void" exposes none.
        plain["NVIDIA_VISIBLE_DEVICES"] = "void"
    env = [{"name": k, "value": v} for k, v in plain.items()]
    name = object_name(spec.space)
    env += [{"name": k, "valueFrom": {"secretKeyRef": {"name": name, "key": k}}} for k in sorted(spec.secret_env)]
    return env


def _probe_handler(settings: K8sOptions) -> dict:
    if settings.http_probe_path:
        return {"httpGet": {"path": settings.http_probe_path, "port": "http"}}
    return {"tcpSocket": {"port": "http"}}


def _probes(spec: AppSpec, settings: K8sOptions) -> dict:
    return {
        # The startup probe alone carries the Space's startup_duration_timeout: the kubelet restarts the
        # container once failureThreshold × periodSeconds have passed without the port answering.
        "startupProbe": {
            **_probe_handler(settings),
            "periodSeconds": STARTUP_PERIOD_SECONDS,
            "timeoutSeconds": 2,
            "failureThreshold": max(1, math.ceil(spec.startup_timeout / STARTUP_PERIOD_SECONDS)),
        },
        "readinessProbe": {
            **_probe_handler(settings),
            "periodSeconds": 10,
            "timeoutSeconds": 2,
            "failureThreshold": 3,
        },
        # No livenessProbe: a single-threaded app busy with a long GPU inference would be killed mid-job.
    }


def secret_checksum(spec: AppSpec) -> str:
    items = "\n".join(f"{k}={v}" for k, v in sorted(spec.secret_env.items()))
    return hashlib.sha256(items.encode()).hexdigest()


def pulled_image(image: str, settings: K8sOptions) -> str:
    """The name nodes pull a build's image by: the builder pushes it as {registry}/{image} (builder.tasks._push)."""
    return f"{settings.registry.rstrip('/')}/{image}" if settings.registry else image


def make_deployment(spec: AppSpec, pool: Pool, settings: K8sOptions, start: str = "", replicas: int = 1) -> dict:
    """The Deployment of one start of a build (InstanceKey); replicas=0 keeps it while paused or sleeping."""
    meta = _metadata(spec, settings)
    meta["name"] = deployment_name(spec.space, spec.build_id, start)
    meta["labels"] |= _start_labels(spec, start)
    if spec.tier.is_gpu:
        # Each start has a Deployment of its own, so none rolls; should one roll anyway (a kubectl edit), a surge
        # pod never fits on a full GPU pool: stop, then start.
        strategy: dict = {"type": "Recreate"}
    else:
        strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    container = {
        "name": CONTAINER,
        "image": pulled_image(spec.image, settings),
        "imagePullPolicy": settings.image_pull_policy,
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": _env(spec),
        "resources": _resources(spec, pool, settings),
        **_probes(spec, settings),
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    pod_spec: dict = {
        "containers": [container],
        # The pod's pause process becomes PID 1, as docker's init: a bare `python app.py` as PID 1 ignores
        # SIGTERM, so every stop (pause, sleep, a redeploy's old build) would wait out the grace period (33 s
        # measured on a real node, 1 s with this).
        "shareProcessNamespace": True,
        # As the docker runtime's stop timeout: an app that traps SIGTERM and keeps going is killed after this.
        "terminationGracePeriodSeconds": STOP_GRACE_SECONDS,
        "nodeSelector": dict(pool.node_selector),
        "tolerations": [dict(t) for t in pool.tolerations],
        "automountServiceAccountToken": False,
        # Service links would inject env vars for every Service in the namespace: one per Space.
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,  # the uid Hugging Face's Docker Spaces run as
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    if settings.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": settings.image_pull_secret}]
    template_annotations = {
        SPACE_ANNOTATION: spec.space,
        # Pods do not notice a changed Secret; a changed checksum rolls them.
        SECRET_CHECKSUM_ANNOTATION: secret_checksum(spec),
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta,
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 2,
            "selector": {"matchLabels": _start_labels(spec, start)},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": dict(meta["labels"]), "annotations": template_annotations},
                "spec": pod_spec,
            },
        },
    }


def make_instance_service(deployment: dict) -> dict:
    """The Service of one instance, made from its Deployment (as written, or as the API returns it): selecting only
    its pods (the Deployment's selector: the Space, build and start labels of its pod template), the instance's
    endpoint. Owned by the Deployment when it carries its uid (as the API returns it), so the cluster's garbage
    collector deletes it with the Deployment, whoever deletes that; a Deployment scaled to 0 keeps it."""
    meta = deployment["metadata"]
    key = InstanceKey.of(deployment)
    if not key.start:
        raise ValueError("only an instance with a start label has a Service of its own")
    service_meta: dict = {
        "name": instance_service_name(key),
        "namespace": meta["namespace"],
        "labels": dict(meta.get("labels") or {}),
        "annotations": {SPACE_ANNOTATION: (meta.get("annotations") or {}).get(SPACE_ANNOTATION, key.name)},
    }
    if meta.get("uid"):
        service_meta["ownerReferences"] = [
            {"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"], "uid": meta["uid"]}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": service_meta,
        "spec": {
            "type": "ClusterIP",
            "selector": dict(deployment["spec"]["selector"]["matchLabels"]),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def make_service(spec: AppSpec, settings: K8sOptions) -> dict:
    """The Space's Service, every pod of the Space: only the per-Space Ingress (K8sOptions.ingress) routes to it."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec, settings),
        "spec": {
            "type": "ClusterIP",
            "selector": selector(spec.space),
            "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def make_ingress(spec: AppSpec, settings: K8sOptions) -> dict:
    host = space_host(spec.space, settings.apps_domain)
    backend = {"name": object_name(spec.space), "port": {"number": SERVICE_PORT}}
    ingress_spec: dict = {
        "rules": [
            {
                "host": host,
                "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {"service": backend}}]},
            }
        ]
    }
    if settings.ingress_class:
        ingress_spec["ingressClassName"] = settings.ingress_class
    if settings.tls_secret:
        ingress_spec["tls"] = [{"hosts": [host], "secretName": settings.tls_secret}]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": _metadata(spec, settings),
        "spec": ingress_spec,
    }


_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def make_secret(spec: AppSpec, settings: K8sOptions) -> dict:
    """The Space's secrets as one Secret, read by the Deployment through secretKeyRef."""
    bad = [k for k in spec.secret_env if not _SECRET_KEY.match(k)]
    if bad:
        raise ValueError(f"secret names must be letters, digits, '-', '_' or '.': {', '.join(sorted(bad))}")
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _metadata(spec, settings),
        "type": "Opaque",
        # data rather than stringData: server-side apply does not prune keys dropped from stringData.
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(spec.secret_env.items())},
    }
