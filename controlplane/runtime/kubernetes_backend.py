"""The kubernetes runtime: a Deployment and a Service per start, a Secret (and Ingress) per Space, on the tier's pool.

Objects are built by k8s_objects and sent with server-side apply, so a re-apply is idempotent and a
field left out (say the GPU limit after a move to a CPU tier) is removed rather than kept.
An instance is one start of a build, a Deployment of its own (id "<name>:<build>:<start>"), as on docker a
container: a redeploy or restart starts beside the instance serving and one that never gets ready is deleted alone;
states come from k8s_status. Its Service selects only its own pods and is its endpoint, so while a redeploy drains
the old instance, what is sent to the old endpoint reaches the old pod, not whichever pod kube-proxy picks (a
Service per Space did that); owned by its Deployment, it goes with it. The Space's own Service is made only for
its Ingress (K8sOptions.ingress).

Pod, Deployment and pod Event state comes from one list + watch each (k8s_watch.Reflector), so `get`, `list` and
`watch` read a cache instead of asking the API server per poll; a write waits until the cache shows it. The watch
also keeps the real end (the container's finishedAt) of every pod it saw deleted, for metering (`ended`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime

from kubernetes import client, config, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from controlplane.core.config import Settings
from controlplane.runtime.base import AppSpec, Instance, RuntimeBackend
from controlplane.runtime.k8s_objects import (
    CONTAINER,
    MANAGED_SELECTOR,
    SPACE_LABEL,
    InstanceKey,
    K8sOptions,
    instance_service_name,
    make_deployment,
    make_ingress,
    make_instance_service,
    make_secret,
    make_service,
    object_name,
)
from controlplane.runtime.k8s_status import container_run, instance_for, instance_from_pod, reported_pod
from controlplane.runtime.k8s_watch import Reflector, version_of
from controlplane.tiers import Catalog, default_catalog, load_catalog

log = logging.getLogger(__name__)

FIELD_MANAGER = "spaceyard"
APPLY = "application/apply-patch+yaml"
WRITE_SHOWS_SECONDS = 10  # how long a write waits for the watch to bring it into the cache (normally milliseconds)
# How long the real end of a deleted pod is kept for metering: the reconciler passes far more often than this.
ENDED_KEPT_SECONDS = 3600


def load_api_client(kubeconfig: str | None = None) -> ApiClient:
    """An explicit kubeconfig wins; else in-cluster (the control plane's own pod); else $KUBECONFIG."""
    if kubeconfig:
        return config.new_client_from_config(config_file=kubeconfig)
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
        return ApiClient(configuration)
    # Read $KUBECONFIG now: the client's own default is fixed when the module is imported.
    return config.new_client_from_config(config_file=os.environ.get("KUBECONFIG") or None)


def _missing(e: ApiException) -> bool:
    return e.status == 404


def _changed(seen: dict[str, Instance], pod: dict, deleted: bool) -> Iterator[Instance]:
    uid = pod["metadata"]["uid"]
    instance = instance_from_pod(pod, deleted=deleted)
    last = seen.pop(uid, None)
    if not deleted:
        seen[uid] = instance
    if last != instance:
        yield instance


class KubernetesBackend(RuntimeBackend):
    def __init__(
        self, options: K8sOptions, catalog: Catalog | None = None, api_client: ApiClient | None = None
    ) -> None:
        self.options = options
        self.catalog = catalog or default_catalog()
        self.api = api_client or load_api_client(options.kubeconfig)
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.networking = client.NetworkingV1Api(self.api)
        ns = options.namespace
        self._pods = Reflector(
            self.core.list_namespaced_pod, ns, label_selector=MANAGED_SELECTOR, listener=self._pod_event, name="pods"
        )
        self._deployments = Reflector(
            self.apps.list_namespaced_deployment, ns, label_selector=MANAGED_SELECTOR, name="deployments"
        )
        # Scheduler, image pull and probe messages of Space pods.
        self._events = Reflector(
            self.core.list_namespaced_event, ns, field_selector="involvedObject.kind=Pod", name="pod events"
        )
        self._lock = threading.Lock()
        self._starting = threading.Lock()
        self._started = False
        self._closed = threading.Event()
        self._subscribers: list[queue.Queue[tuple[str, dict]]] = []  # one per watch()
        self._first_start: dict[str, datetime] = {}  # pod uid -> its app container's first start seen
        self._ended: dict[str, tuple[float, Instance]] = {}  # pod uid -> (when seen deleted, its real run)

    @classmethod
    def from_settings(cls, settings: Settings, catalog: Catalog | None = None) -> KubernetesBackend:
        options = K8sOptions(
            namespace=settings.spaces_namespace,
            apps_domain=settings.apps_domain,
            kubeconfig=settings.kubeconfig,
            ingress=settings.space_ingress,
            ingress_class=settings.ingress_class,
            tls_secret=settings.apps_tls_secret,
            image_pull_secret=settings.image_pull_secret,
            registry=settings.registry,
            request_ratio=settings.k8s_request_ratio,
        )
        # The control plane passes the catalog it loaded at start-up (Services.catalog): loaded once.
        if catalog is None:
            catalog = load_catalog(settings.tiers_file) if settings.tiers_file else default_catalog()
        return cls(options, catalog)

    @property
    def namespace(self) -> str:
        return self.options.namespace

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self, spec: AppSpec) -> Instance:
        """Apply the Space's objects and a new Deployment for this start (a new build, a restart, a fresh wake-up)."""
        pool = self.catalog.pool_for(spec.tier.name)
        if pool is None:
            raise ValueError(f"tier {spec.tier.name!r} has no node pool in the catalog")
        # The Secret first: a pod whose secretKeyRef is missing fails with CreateContainerConfigError.
        self._apply(make_secret(spec, self.options))
        key = InstanceKey(object_name(spec.space), spec.build_id, secrets.token_hex(3))
        deployment = self._apply(make_deployment(spec, pool, self.options, key.start))
        self._shows(deployment)
        self._apply(make_instance_service(deployment))
        if self.options.ingress:
            self._apply(make_service(spec, self.options))
            self._apply(make_ingress(spec, self.options))
        return Instance(
            id=key.id,
            space=spec.space,
            build_id=spec.build_id,
            tier=spec.tier.name,
            state="pending",
            message="waiting to be scheduled",
        )

    def stop(self, instance_id: str, remove: bool = True) -> None:
        """Delete the instance's Deployment (remove) or scale it to 0 (pause, sleep); other instances stay."""
        self._scale(instance_id, None if remove else 0)

    def resume(self, instance_id: str) -> Instance:
        """Scale a sleeping instance's Deployment back to 1: same objects, same build, a fresh pod."""
        instance = self.get(instance_id) if self._scale(instance_id, 1) else None
        if instance is None:
            raise RuntimeError(f"{instance_id} is gone")
        return instance

    def _scale(self, instance_id: str, replicas: int | None) -> bool:
        """Scale (or, with replicas None, delete) the instance's Deployment; False if it is gone."""
        dep = self._deployment(InstanceKey.parse(instance_id))
        if dep is None:
            return False
        name = dep["metadata"]["name"]
        try:
            if replicas is None:
                self._raw(self.apps.delete_namespaced_deployment, name, self.namespace, propagation_policy="Background")
                self._delete_services([InstanceKey.of(dep)])
                self._gone([dep["metadata"]["uid"]])
            else:
                self._shows(
                    self._raw(
                        self.apps.patch_namespaced_deployment,
                        name,
                        self.namespace,
                        {"spec": {"replicas": replicas}},
                        field_manager=FIELD_MANAGER,
                        _content_type="application/merge-patch+json",
                    )
                )
        except ApiException as e:
            if _missing(e):
                return False
            raise
        return True

    def remove_space(self, space: str) -> None:
        """Delete every object of the Space, each build's Deployment too. Images stay; kubelets collect them."""
        name = object_name(space)
        deployments = [d for d in self._synced(self._deployments) if _space_of(d) == name]
        deletes: list[tuple[Callable[..., object], str]] = [
            *((self.apps.delete_namespaced_deployment, d["metadata"]["name"]) for d in deployments),
            (self.networking.delete_namespaced_ingress, name),
            (self.core.delete_namespaced_service, name),
            (self.core.delete_namespaced_secret, name),
        ]
        for delete, obj in deletes:
            try:
                self._raw(delete, obj, self.namespace, propagation_policy="Background")
            except ApiException as e:
                if not _missing(e):
                    raise
        self._delete_services([InstanceKey.of(d) for d in deployments])
        self._gone([d["metadata"]["uid"] for d in deployments])

    def _delete_services(self, keys: list[InstanceKey]) -> None:
        """Delete instances' Services now: their Deployment owns them, but the garbage collector takes its time, and
        an instance removed should not be reachable a moment longer. (One without a start label has none.)"""
        for key in keys:
            if not key.start:
                continue
            try:
                self._raw(self.core.delete_namespaced_service, instance_service_name(key), self.namespace)
            except ApiException as e:
                if not _missing(e):
                    raise

    # --- state -----------------------------------------------------------------------------------

    def get(self, instance_id: str) -> Instance | None:
        key = InstanceKey.parse(instance_id)
        pods = [p for p in self._synced(self._pods) if key.matches(p)]
        pod = reported_pod(pods, key)
        # Events only for the pod being reported: scheduler, image pull and probe messages.
        events = self._pod_events(pod["metadata"]["name"]) if pod else []
        return instance_for(self._deployment(key), pods, key, events)

    def list(self, space: str | None = None) -> list[Instance]:
        """Every instance that has a Deployment, plus those whose pods are still going away."""
        name = object_name(space) if space else None
        deployments = [d for d in self._synced(self._deployments) if name in (None, _space_of(d))]
        pods = [p for p in self._synced(self._pods) if name in (None, _space_of(p))]
        by_key = {InstanceKey.of(d): d for d in deployments}
        keys = by_key.keys() | {InstanceKey.of(p) for p in pods}
        found = []
        for key in sorted(keys, key=lambda k: k.id):
            instance = instance_for(by_key.get(key), pods, key)
            if instance is not None:
                found.append(instance)
        return found

    def logs(
        self, instance_id: str, follow: bool = False, tail: int | None = None, timestamps: bool = False
    ) -> Iterator[str]:
        key = InstanceKey.parse(instance_id)
        pod = reported_pod(self._synced(self._pods), key)
        return self._pod_logs(pod, follow, tail, timestamps) if pod else iter(())

    def _pod_logs(self, pod: dict, follow: bool, tail: int | None, timestamps: bool) -> Iterator[str]:
        statuses = pod.get("status", {}).get("containerStatuses") or []
        app = next((c for c in statuses if c.get("name") == CONTAINER), {})
        # A crash-looping app's current container has no output yet; the one before says why it died.
        previous = bool(app.get("restartCount")) and "running" not in (app.get("state") or {})
        kwargs = {"container": CONTAINER, "tail_lines": tail, "previous": previous, "timestamps": timestamps}
        name = pod["metadata"]["name"]
        try:
            if follow and not previous:
                yield from watch.Watch().stream(
                    self.core.read_namespaced_pod_log, name=name, namespace=self.namespace, **kwargs
                )
            else:
                yield from self.core.read_namespaced_pod_log(name, self.namespace, **kwargs).splitlines()
        except ApiException as e:
            # 400 while the container is still being created: no logs yet, which is not an error.
            if e.status not in (400, 404):
                raise

    def watch(self) -> Iterator[Instance]:
        """Instances whose state or message changed, for every Space's pods, from the one pod watch.

        The first values are every pod's current Instance; a pod deleted while the watch was away (a 410 and a
        new list) is reported deleted. Ends when the backend is closed.
        """
        if self._closed.is_set():
            return
        self._synced(self._pods)
        changes: queue.Queue[tuple[str, dict]] = queue.Queue()
        with self._lock:
            self._subscribers.append(changes)
        seen: dict[str, Instance] = {}  # pod uid -> what was last yielded for it
        try:
            for pod in self._pods.objects():
                yield from _changed(seen, pod, deleted=False)
            while not self._closed.is_set():
                try:
                    kind, pod = changes.get(timeout=1)
                except queue.Empty:
                    continue
                yield from _changed(seen, pod, deleted=kind == "DELETED")
        finally:
            with self._lock:
                self._subscribers.remove(changes)

    def ended(self) -> list[Instance]:
        """The runs of pods seen deleted in the last ENDED_KEPT_SECONDS, with their container's real start and
        finish: a deleted pod leaves the API, but metering closes usage at the moment it really stopped."""
        cutoff = time.monotonic() - ENDED_KEPT_SECONDS
        with self._lock:
            for uid in [uid for uid, (seen, _) in self._ended.items() if seen < cutoff]:
                del self._ended[uid]
            return [instance for _, instance in self._ended.values()]

    def close(self) -> None:
        """Stop the watches (their connections are shut down at once) and end every watch() generator."""
        self._closed.set()
        for reflector in (self._pods, self._deployments, self._events):
            reflector.stop()

    def _pod_event(self, kind: str, pod: dict) -> None:
        """Every pod event, on the pod reflector's thread: note the run for metering, pass it to watch()."""
        uid = pod["metadata"]["uid"]
        started, finished = container_run(pod)
        with self._lock:
            if started and (uid not in self._first_start or started < self._first_start[uid]):
                self._first_start[uid] = started  # a restarted container reports only its latest start
            first = self._first_start.pop(uid, None) if kind == "DELETED" else None
            if first is not None:  # deleted, after its app ran (one that never started held nothing to bill)
                # No terminated state in its last status (its node went away): it ended when we heard of it.
                run = replace(instance_from_pod(pod, deleted=True), started_at=first, finished_at=finished or _now())
                self._ended[uid] = (time.monotonic(), run)
            subscribers = list(self._subscribers)
        for changes in subscribers:
            changes.put((kind, pod))

    # --- API plumbing ----------------------------------------------------------------------------

    def _apply(self, obj: dict) -> dict:
        patch = {
            "Deployment": self.apps.patch_namespaced_deployment,
            "Service": self.core.patch_namespaced_service,
            "Ingress": self.networking.patch_namespaced_ingress,
            "Secret": self.core.patch_namespaced_secret,
        }[obj["kind"]]
        # force: Spaceyard is the one owner of these objects; take fields back from a stray kubectl edit.
        return self._raw(
            patch,
            obj["metadata"]["name"],
            self.namespace,
            obj,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
        )

    def _raw(self, call: Callable[..., object], *args: object, **kwargs: object) -> dict:
        """The API's JSON, which k8s_status reads. Skipping the client's models also spares us its
        validation of fields newer than the client (and of partial objects we never read back)."""
        response = call(*args, _preload_content=False, **kwargs)
        try:
            return json.loads(response.data)  # type: ignore[attr-defined]
        finally:
            response.release_conn()  # type: ignore[attr-defined]

    def _synced(self, reflector: Reflector) -> list[dict]:
        """The reflector's objects; the first call starts all three watches and waits for their lists."""
        with self._starting:  # not self._lock: the first list calls _pod_event, which takes that
            if not self._started:
                for r in (self._pods, self._deployments, self._events):
                    r.start()
                self._started = True
                self._add_missing_services(self._deployments.objects())
        return reflector.objects()

    def _add_missing_services(self, deployments: list[dict]) -> None:
        """Give each instance started before instances had a Service of their own that Service: its endpoint names
        it now. One list of Services, then an apply per missing one; a failure is logged (those instances do not
        answer until their next start), never a reason to refuse to start."""
        wanted = {instance_service_name(InstanceKey.of(d)): d for d in deployments if InstanceKey.of(d).start}
        if not wanted:
            return
        try:
            found = self._raw(self.core.list_namespaced_service, self.namespace, label_selector=MANAGED_SELECTOR)
            have = {s["metadata"]["name"] for s in found.get("items") or []}
            for name in sorted(wanted.keys() - have):
                log.info("adding the Service %s of an instance started before each had its own", name)
                self._apply(make_instance_service(wanted[name]))
        except ApiException as e:
            log.warning("could not add the missing instance Services: %s", e)

    def _shows(self, written: dict) -> None:
        """Wait until the Deployment cache holds a write (its resourceVersion), so the next read sees it."""
        self._synced(self._deployments)
        if not self._deployments.wait_version(version_of(written), WRITE_SHOWS_SECONDS):
            log.warning("the Deployment watch has not shown %s yet", written["metadata"]["name"])

    def _gone(self, uids: list[str]) -> None:
        """Wait until deleted Deployments have left the cache."""
        if uids and not self._deployments.wait(
            lambda objs: not {o["metadata"]["uid"] for o in objs} & set(uids), WRITE_SHOWS_SECONDS
        ):
            log.warning("the Deployment watch still shows %d deleted Deployment(s)", len(uids))

    def _deployment(self, key: InstanceKey) -> dict | None:
        # By labels, not by name: a Deployment made before each start had its own carries no start label.
        return next((d for d in self._synced(self._deployments) if key.matches(d)), None)

    def _pod_events(self, pod_name: str) -> list[dict]:
        return [e for e in self._synced(self._events) if e.get("involvedObject", {}).get("name") == pod_name]


def _space_of(obj: dict) -> str | None:
    return (obj.get("metadata", {}).get("labels") or {}).get(SPACE_LABEL)


def _now() -> datetime:
    return datetime.now(UTC)
