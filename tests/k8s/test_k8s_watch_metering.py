"""The kubernetes runtime's one watch as the source of pod state, and metering by it, on a real cluster.

Every API call the backend makes goes through an ApiClient that counts them: after the watches' first lists,
reading states (get, list, watch) asks the API server nothing; only the writes and the watches themselves go out.
Metering: a Space pod that runs for N seconds on the real node is billed N seconds (±2) by the reconciler's
metering step, from the container's own startedAt/finishedAt as the pod watch reports them, also when the control
plane (backend + reconciler) is stopped and made anew while the pod runs.
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.core.utc import as_utc
from controlplane.deploy import Deployer
from controlplane.models import Space, UsageInterval
from controlplane.reconciler import Reconciler
from controlplane.runtime.base import AppSpec, Instance
from controlplane.runtime.k8s_objects import InstanceKey, K8sOptions, make_deployment
from controlplane.services import Services
from controlplane.tiers import default_catalog

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run"),
]

PYTHON_IMAGE = os.environ.get("SPACEYARD_K8S_TEST_PYTHON_IMAGE")
PORT = 8080
CATALOG = default_catalog()


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    watch: bool


def counting_client():
    """An ApiClient (from $KUBECONFIG) that records every request it sends."""
    from kubernetes import client, config

    class Counting(client.ApiClient):
        calls: list[Call]

        def call_api(self, method, url, *args, **kwargs):
            parts = urlsplit(url)
            self.calls.append(Call(method, parts.path, parse_qs(parts.query).get("watch") == ["true"]))
            return super().call_api(method, url, *args, **kwargs)

    configuration = client.Configuration()
    config.load_kube_config(config_file=os.environ["KUBECONFIG"], client_configuration=configuration)
    api = Counting(configuration)
    api.calls = []
    return api


@pytest.fixture
def namespace() -> Iterator[str]:
    from kubernetes import client, config

    name = f"spaceyard-test-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        yield name
    finally:
        core.delete_namespace(name)


def make_backend(namespace: str):
    from controlplane.runtime.kubernetes_backend import KubernetesBackend

    options = K8sOptions(namespace=namespace, apps_domain="apps.test", request_ratio=0.1)
    return KubernetesBackend(options, CATALOG, api_client=counting_client())


def spec(space: str, build_id: int = 1) -> AppSpec:
    return AppSpec(
        space=space,
        build_id=build_id,
        image=PYTHON_IMAGE or "",
        port=PORT,
        tier=CATALOG.tier("cpu-basic"),
        env={"SPACE_ID": space},
        startup_timeout=120,
    )


def run_app(backend, space: str, script: str) -> str:
    """A Deployment as the backend makes them, its app a shell script (python3 of the base image serves the port);
    the instance id."""
    deployment = make_deployment(spec(space), CATALOG.pool_for("cpu-basic"), backend.options, "a1b2c3")
    app = deployment["spec"]["template"]["spec"]["containers"][0]
    app.update(command=["sh", "-c", script], env=[])
    backend.apps.create_namespaced_deployment(backend.namespace, deployment)
    return InstanceKey.of(deployment).id


def until(check: Callable[[], object], what: str, timeout: float = 120) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


def reads(calls: list[Call]) -> list[Call]:
    """The GETs that are not a watch: what polling the API server would look like."""
    return [c for c in calls if c.method == "GET" and not c.watch]


SERVE = f"python3 -m http.server {PORT}"


@pytest.mark.skipif(not PYTHON_IMAGE, reason="needs SPACEYARD_K8S_TEST_PYTHON_IMAGE (python3 on the node)")
def test_the_cache_sees_a_start_a_crash_and_a_delete_without_reading_the_api(namespace) -> None:
    backend = make_backend(namespace)
    seen: queue.Queue[Instance] = queue.Queue()
    threading.Thread(target=lambda: [seen.put(i) for i in backend.watch()], daemon=True).start()
    try:
        assert backend.list() == []  # the first read starts the watches: one list each
        assert sorted(c.path.rsplit("/", 1)[-1] for c in reads(backend.api.calls)) == [
            "deployments",
            "events",
            "pods",
        ]
        backend.api.calls.clear()

        # Serves, then the app exits with code 3 (a crash); the kubelet restarts it, as a Deployment wants.
        instance_id = run_app(backend, "carol/crashy", f"{SERVE} & sleep 6; exit 3")
        until(lambda: (i := backend.get(instance_id)) and i.state == "running", "the app to run")
        crashed = until(
            lambda: (i := backend.get(instance_id)) and i.state in ("exited", "failed") and i, "the crash", 90
        )
        assert "exit code 3" in crashed.message, crashed
        assert [i.id for i in backend.list("carol/crashy")] == [instance_id]

        backend.stop(instance_id)
        until(lambda: backend.get(instance_id) is None, "the instance to go")
        assert backend.list() == []

        states = []
        while not seen.empty():
            states.append(seen.get())
        mine = [i.state for i in states if i.id == instance_id]
        assert "running" in mine and {"exited", "failed"} & set(mine), mine
        assert mine[-1] == "exited", mine  # the pod's deletion ends it

        # Many polls later: the writes (the Deployment's create and delete) and the watches, no reads.
        assert reads(backend.api.calls) == [], reads(backend.api.calls)
        assert {c.method for c in backend.api.calls if not c.watch} == {"POST", "DELETE"}
        (run,) = [i for i in backend.ended() if i.id == instance_id]
        assert run.started_at and run.finished_at and run.started_at < run.finished_at
    finally:
        backend.close()


def test_close_ends_the_watches_at_once(namespace) -> None:
    backend = make_backend(namespace)
    before = set(threading.enumerate())
    watching = threading.Thread(target=lambda: list(backend.watch()), daemon=True)
    watching.start()
    backend.list()
    reflectors = [t for t in set(threading.enumerate()) - before if t.name.startswith("k8s-reflector-")]
    assert len(reflectors) == 3
    started = time.monotonic()
    backend.close()
    assert time.monotonic() - started < 5  # not the watch's 300 s timeout
    watching.join(5)
    assert not [t for t in [*reflectors, watching] if t.is_alive()]


# --- metering ------------------------------------------------------------------------------------------------


@pytest.fixture
def svc(tmp_path: Path) -> Iterator[Services]:
    settings = Settings(data_dir=tmp_path, secret_key="test")
    migrate(settings.sqlalchemy_url)
    services = Services.create(settings)
    try:
        yield services
    finally:
        services.db.engine.dispose()


def add_space(svc: Services, name: str) -> int:
    """A Space whose instance the control plane started but never recorded as billed (it crashed first)."""
    owner, _, short = name.partition("/")
    with svc.db.session() as s:
        space = Space(owner=owner, name=short, hardware_requested="cpu-basic", card_data={}, stage="RUNNING")
        s.add(space)
        s.flush()
        return space.id


def intervals(svc: Services, space_id: int) -> list[tuple[datetime, datetime | None]]:
    with svc.db.session() as s:
        rows = s.scalars(select(UsageInterval).where(UsageInterval.space_id == space_id).order_by(UsageInterval.id))
        return [(as_utc(r.started_at), r.ended_at and as_utc(r.ended_at)) for r in rows]


def control_plane(svc: Services, namespace: str) -> Reconciler:
    svc.runtime = make_backend(namespace)
    return Reconciler(svc, Deployer(svc))


def meter(reconciler: Reconciler) -> None:
    """The reconciler's metering step, with what it reads from the runtime."""
    reconciler.meter(reconciler.svc.runtime.list())


def container_started(namespace: str, instance_id: str) -> datetime:
    """The app container's start as the node reports it, read past the backend."""
    from kubernetes import client, config

    core = client.CoreV1Api(config.new_client_from_config(config_file=os.environ["KUBECONFIG"]))
    selector = InstanceKey.parse(instance_id).selector
    (pod,) = core.list_namespaced_pod(namespace, label_selector=selector).items
    return as_utc(pod.status.container_statuses[0].state.running.started_at)


def billed_run(svc: Services, namespace: str, restart_midway: bool) -> None:
    """Run a Space pod ~N s and stop it; billed N ± 2 s, and a second metering pass changes nothing."""
    space_id = add_space(svc, "alice/metered")
    reconciler = control_plane(svc, namespace)
    instance_id = run_app(svc.runtime, "alice/metered", SERVE)
    until(lambda: (i := svc.runtime.get(instance_id)) and i.state == "running", "the app to run")
    started = container_started(namespace, instance_id)
    meter(reconciler)
    ((opened, end),) = intervals(svc, space_id)
    assert end is None and abs((opened - started).total_seconds()) <= 1  # from the real start, truncated

    if restart_midway:
        svc.runtime.close()  # the control plane goes away while the pod runs on
        time.sleep(3)
        reconciler = control_plane(svc, namespace)
        meter(reconciler)
        assert intervals(svc, space_id) == [(opened, None)]
    time.sleep(8)

    stopping = as_utc(datetime.now().astimezone())
    svc.runtime.stop(instance_id)
    until(lambda: svc.runtime.get(instance_id) is None, "the pod to go")
    gone = as_utc(datetime.now().astimezone())
    until(lambda: [i for i in svc.runtime.ended() if i.id == instance_id], "the watch to see the pod deleted")
    meter(reconciler)
    ((start, end),) = intervals(svc, space_id)
    assert end is not None, "the interval stays open after the pod stopped"
    billed = (end - start).total_seconds()
    low, high = (stopping - started).total_seconds(), (gone - started).total_seconds()
    assert low - 2 <= billed <= high + 2, (billed, low, high)
    print(f"billed {billed:.0f} s for a run of {low:.1f} to {high:.1f} s (delete sent, pod gone)")

    meter(reconciler)  # again: nothing changes
    assert intervals(svc, space_id) == [(start, end)]
    svc.runtime.close()


@pytest.mark.skipif(not PYTHON_IMAGE, reason="needs SPACEYARD_K8S_TEST_PYTHON_IMAGE (python3 on the node)")
def test_a_pod_running_n_seconds_is_billed_n_seconds(svc, namespace) -> None:
    billed_run(svc, namespace, restart_midway=False)


@pytest.mark.skipif(not PYTHON_IMAGE, reason="needs SPACEYARD_K8S_TEST_PYTHON_IMAGE (python3 on the node)")
def test_billing_follows_the_pod_across_a_control_plane_restart(svc, namespace) -> None:
    billed_run(svc, namespace, restart_midway=True)
