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

import pytest

from controlplane.runtime.base import AppSpec, Instance
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
    backend = KubernetesBackend(K8sOptions(namespace=namespace, apps_domain="apps.test", ingress=True), CATALOG)
    backend.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        yield backend
    finally:
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


def test_create_pause_resume_and_delete(backend) -> None:
    space = "bob/Hello_World"
    instance = backend.start(spec(space, "cpu-basic"))
    name = instance.id.split(":")[0]
    deployment = backend.apps.read_namespaced_deployment(name, backend.namespace)
    assert deployment.spec.replicas == 1
    assert backend.core.read_namespaced_service(name, backend.namespace).spec.ports[0].port == 80
    assert backend.networking.read_namespaced_ingress(name, backend.namespace).spec.rules[0].host == (
        "bob-hello-world.apps.test"
    )
    assert [i.id for i in backend.list(space)] == [instance.id]

    # Applying the same spec again is a no-op, not a conflict.
    backend.start(spec(space, "cpu-basic"))
    assert backend.apps.read_namespaced_deployment(name, backend.namespace).metadata.generation == 1

    if IMAGE:
        wait_for(lambda: (i := backend.get(instance.id)) and i.state == "running" and i or None, "running", 300)

    backend.stop(instance.id, remove=False)
    assert backend.apps.read_namespaced_deployment(name, backend.namespace).spec.replicas == 0
    paused = wait_for(lambda: (i := backend.get(instance.id)) and i.state == "exited" and i or None, "pause")
    assert paused.message in ("scaled to 0", "stopping")

    resumed = backend.resume(instance.id)
    assert resumed.id == instance.id and resumed.state in ("pending", "starting", "running")
    assert backend.apps.read_namespaced_deployment(name, backend.namespace).spec.replicas == 1

    # A stop for an older build leaves the newer one alone.
    newer = backend.start(spec(space, "cpu-basic", build_id=2))
    backend.stop(instance.id, remove=True)
    assert backend.apps.read_namespaced_deployment(name, backend.namespace).spec.replicas == 1

    backend.stop(newer.id, remove=True)
    backend.remove_space(space)
    wait_for(lambda: backend.list(space) == [] or None, "the Space's pods to go")


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
