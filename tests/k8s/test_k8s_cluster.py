"""KubernetesBackend against a real cluster: create, GPU placement, pause/resume by scaling, delete.

Runs when KUBECONFIG points at a cluster whose nodes carry the pool labels of docs/kubernetes.md; each
run works in a namespace of its own and deletes it. SPACEYARD_K8S_TEST_IMAGE (and _PORT) name an image
that listens on a port as uid 1000; without them the tests stop short of "running".
"""

from __future__ import annotations

import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace

import httpx
import pytest

from controlplane.runtime.base import AppSpec, Instance
from controlplane.runtime.k8s_objects import (
    BUILD_LABEL,
    SPACE_LABEL,
    InstanceKey,
    make_deployment,
    object_name,
)
from controlplane.tiers import default_catalog

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run"),
]

IMAGE = os.environ.get("SPACEYARD_K8S_TEST_IMAGE")
PORT = int(os.environ.get("SPACEYARD_K8S_TEST_PORT", "8080"))
CATALOG = default_catalog()


@pytest.fixture(scope="module")
def backend() -> Iterator:
    from kubernetes import client

    from controlplane.runtime.k8s_objects import K8sOptions
    from controlplane.runtime.kubernetes_backend import KubernetesBackend

    namespace = f"spaceyard-test-{uuid.uuid4().hex[:8]}"
    # Small requests: a test node (2 CPUs) holds a Space's old and new build side by side.
    options = K8sOptions(namespace=namespace, apps_domain="apps.test", ingress=True, request_ratio=0.1)
    backend = KubernetesBackend(options, CATALOG)
    backend.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        yield backend
    finally:
        backend.close()
        backend.core.delete_namespace(namespace)


def spec(space: str, tier: str, build_id: int = 1) -> AppSpec:
    return AppSpec(
        space=space,
        build_id=build_id,
        image=IMAGE or "registry.k8s.io/pause:3.9",
        port=PORT,
        tier=CATALOG.tier(tier),
        env={"SPACE_ID": space, "SYSTEM": "spaces"},
        secret_env={"HF_TOKEN": "hf_test"},
        startup_timeout=120,
    )


def wait_for(check: Callable[[], Instance | None], what: str, timeout: float = 120) -> Instance | None:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last is not None:
            return last
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}")


def test_gpu_space_without_capacity_waits_with_the_scheduler_message(backend) -> None:
    # Two GPUs: more than any one node of the default pools is expected to have in a test cluster.
    instance = backend.start(spec("alice/big-model", "a10g-largex2"))
    assert instance.state == "pending"

    def scheduler_verdict() -> Instance | None:
        got = backend.get(instance.id)
        return got if got and got.state == "pending" and "nodes are available" in (got.message or "") else None

    pending = wait_for(scheduler_verdict, "FailedScheduling")
    assert "nvidia.com/gpu" in pending.message or "node affinity/selector" in pending.message
    backend.remove_space("alice/big-model")


def running(backend, instance_id: str) -> Callable[[], Instance | None]:
    return lambda: (i := backend.get(instance_id)) and i.state == "running" and i or None


def deployment(backend, instance_id: str):
    """The instance's Deployment as the API serves it, None when there is none."""
    selector = InstanceKey.parse(instance_id).selector
    (found,) = backend.apps.list_namespaced_deployment(backend.namespace, label_selector=selector).items or [None]
    return found


def test_create_pause_resume_and_delete(backend) -> None:
    space = "bob/Hello_World"
    instance = backend.start(spec(space, "cpu-basic"))
    name = instance.id.split(":")[0]
    assert deployment(backend, instance.id).spec.replicas == 1
    assert backend.core.read_namespaced_service(name, backend.namespace).spec.ports[0].port == 80
    assert backend.networking.read_namespaced_ingress(name, backend.namespace).spec.rules[0].host == (
        "bob-hello-world.apps.test"
    )
    assert [i.id for i in backend.list(space)] == [instance.id]

    # Starting the same build again (a restart) is a new instance beside the first, as on docker; the Secret,
    # Service and Ingress are the Space's and re-applying them changes nothing.
    service_version = backend.core.read_namespaced_service(name, backend.namespace).metadata.resource_version
    again = backend.start(spec(space, "cpu-basic"))
    assert again.id != instance.id and again.build_id == 1
    assert deployment(backend, again.id).spec.replicas == 1
    assert backend.core.read_namespaced_service(name, backend.namespace).metadata.resource_version == service_version
    backend.stop(again.id)
    assert deployment(backend, again.id) is None and deployment(backend, instance.id).spec.replicas == 1

    if IMAGE:
        wait_for(running(backend, instance.id), "running", 300)

    backend.stop(instance.id, remove=False)
    assert deployment(backend, instance.id).spec.replicas == 0
    paused = wait_for(lambda: (i := backend.get(instance.id)) and i.state == "exited" and i or None, "pause")
    assert paused.message in ("scaled to 0", "stopping")

    # At once, while the paused pod may still be terminating: a resume is on its way, never "exited".
    resumed = backend.resume(instance.id)
    assert resumed.id == instance.id and resumed.state in ("pending", "starting", "running"), resumed
    assert deployment(backend, instance.id).spec.replicas == 1
    if IMAGE:
        wait_for(running(backend, instance.id), "running after the resume", 300)

    # A new build is a Deployment of its own; stopping the old build leaves the new one alone.
    newer = backend.start(spec(space, "cpu-basic", build_id=2))
    assert deployment(backend, newer.id).spec.replicas == 1
    backend.stop(instance.id, remove=True)
    assert deployment(backend, newer.id).spec.replicas == 1
    assert deployment(backend, instance.id) is None

    backend.stop(newer.id, remove=True)
    backend.remove_space(space)
    wait_for(lambda: backend.list(space) == [] or None, "the Space's pods to go")


def answer(backend, space: str) -> str:
    """What the Space's Service answers, by ClusterIP (the host does not resolve cluster names)."""
    ip = backend.core.read_namespaced_service(object_name(space), backend.namespace).spec.cluster_ip
    deadline = time.monotonic() + 30
    while True:  # a Service or newly ready pod is programmed within about a second
        try:
            return httpx.get(f"http://{ip}/", timeout=3).text
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


@pytest.mark.skipif(not IMAGE, reason="needs SPACEYARD_K8S_TEST_IMAGE (an app that serves) to see who answers")
def test_a_failed_redeploy_keeps_the_old_pod_serving(backend) -> None:
    """The deployer's steps for a redeploy whose new build crashes: start it, see it fail, stop it."""
    space = "dave/rollback"
    old = backend.start(spec(space, "cpu-basic"))
    wait_for(running(backend, old.id), "the first build to run", 300)
    # The image says nothing about its user; the pod runs it as uid 1000 all the same (the hello app prints its uid).
    assert "uid=1000 space=dave/rollback" in answer(backend, space)
    (pod,) = backend.core.list_namespaced_pod(backend.namespace, label_selector=f"{BUILD_LABEL}=1,"
                                              f"{SPACE_LABEL}={object_name(space)}").items
    # As admitted by the API server: no ServiceAccount token volume, so the app holds no cluster credentials.
    assert not [v for v in pod.spec.volumes or [] if v.name.startswith("kube-api-access")]

    # The same app told to listen on a port that is no number: it exits at once, every time.
    crashing = replace(spec(space, "cpu-basic", build_id=2), env={"SPACE_ID": space, "PORT": "not-a-port"})
    new = backend.start(crashing)
    failed = wait_for(lambda: (i := backend.get(new.id)) and i.state == "failed" and i or None, "the crash", 180)
    assert "CrashLoopBackOff" in failed.message and "exit code 1" in failed.message
    assert backend.get(old.id).state == "running"
    assert "space=dave/rollback" in answer(backend, space)  # only ready pods take traffic

    backend.stop(new.id)  # what the deployer does with a new build that never got ready
    wait_for(lambda: backend.get(new.id) is None or None, "the failed build to go")
    assert backend.get(old.id).state == "running"
    assert deployment(backend, old.id).status.ready_replicas == 1
    assert "space=dave/rollback" in answer(backend, space)
    backend.remove_space(space)


PYTHON_IMAGE = os.environ.get("SPACEYARD_K8S_TEST_PYTHON_IMAGE")


@pytest.mark.skipif(not PYTHON_IMAGE, reason="needs SPACEYARD_K8S_TEST_PYTHON_IMAGE (python3 on the node)")
def test_a_stop_does_not_wait_out_the_grace_period(backend) -> None:
    """A bare `python3 -m http.server` installs no SIGTERM handler; as PID 1 it would ignore the signal."""
    from kubernetes import client

    template = make_deployment(spec("erin/plain", "cpu-basic"), CATALOG.pool_for("cpu-basic"), backend.options)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain-python", **template["spec"]["template"]
                                                           ["metadata"]}, "spec": template["spec"]["template"]["spec"]}
    app = pod["spec"]["containers"][0]
    app.update(image=PYTHON_IMAGE, command=["python3", "-m", "http.server", str(PORT)], env=[])
    pod["spec"]["terminationGracePeriodSeconds"] = 30  # so waiting it out would show
    backend.core.create_namespaced_pod(backend.namespace, pod)

    def ready() -> bool | None:
        statuses = backend.core.read_namespaced_pod("plain-python", backend.namespace).status.container_statuses
        return bool(statuses and statuses[0].ready) or None

    def gone() -> bool | None:
        try:
            backend.core.read_namespaced_pod("plain-python", backend.namespace)
        except client.ApiException as e:
            return e.status == 404 or None
        return None

    wait_for(ready, "the plain Python app to be ready")
    started = time.monotonic()
    backend.core.delete_namespaced_pod("plain-python", backend.namespace)
    wait_for(gone, "the pod to go", timeout=60)
    assert time.monotonic() - started < 10  # 30+ s when the app is PID 1


def test_watch_reports_a_new_pod(backend) -> None:
    events: queue.Queue[Instance] = queue.Queue()
    watcher = backend.watch()
    threading.Thread(target=lambda: [events.put(i) for i in watcher], daemon=True).start()
    instance = backend.start(spec("carol/watched", "cpu-basic"))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            seen = events.get(timeout=5)
        except queue.Empty:
            continue
        if seen.id == instance.id:
            assert seen.space == "carol/watched"
            break
    else:
        pytest.fail("the watch never reported the new pod")
    backend.remove_space("carol/watched")
