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
    instance_service_name,
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
    # the Space's Service (for its Ingress) and Ingress are the Space's and re-applying them changes nothing.
    service_version = backend.core.read_namespaced_service(name, backend.namespace).metadata.resource_version
    again = backend.start(spec(space, "cpu-basic"))
    assert again.id != instance.id and again.build_id == 1
    assert deployment(backend, again.id).spec.replicas == 1
    assert backend.core.read_namespaced_service(name, backend.namespace).metadata.resource_version == service_version
    backend.stop(again.id)
    assert deployment(backend, again.id) is None and deployment(backend, instance.id).spec.replicas == 1

    if IMAGE:
        wait_for(running(backend, instance.id), "running", 300)

    own = instance_service_name(InstanceKey.parse(instance.id))
    own_ip = backend.core.read_namespaced_service(own, backend.namespace).spec.cluster_ip
    backend.stop(instance.id, remove=False)
    assert deployment(backend, instance.id).spec.replicas == 0
    paused = wait_for(lambda: (i := backend.get(instance.id)) and i.state == "exited" and i or None, "pause")
    assert paused.message in ("scaled to 0", "stopping")
    # A paused (or sleeping) instance keeps its Service, so it comes back at the same endpoint and address.
    assert backend.core.read_namespaced_service(own, backend.namespace).spec.cluster_ip == own_ip

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

    assert service(backend, own) is None  # the removed instance's Service went with it

    backend.stop(newer.id, remove=True)
    backend.remove_space(space)
    wait_for(lambda: backend.list(space) == [] or None, "the Space's pods to go")
    assert service(backend, object_name(space)) is None


def service(backend, name: str):
    """The Service as the API serves it, None when there is none."""
    from kubernetes import client

    try:
        return backend.core.read_namespaced_service(name, backend.namespace)
    except client.ApiException as e:
        if e.status == 404:
            return None
        raise


def serving_pods(backend, service_name: str) -> set[str]:
    """The pods a Service sends to: the ready endpoints of its EndpointSlices, by pod name."""
    from kubernetes import client

    slices = client.DiscoveryV1Api(backend.api).list_namespaced_endpoint_slice(
        backend.namespace, label_selector=f"kubernetes.io/service-name={service_name}"
    )
    return {
        e.target_ref.name
        for s in slices.items
        for e in s.endpoints or []
        if e.target_ref is not None and (e.conditions is None or e.conditions.ready)
    }


def pod_names(backend, instance_id: str) -> set[str]:
    pods = backend.core.list_namespaced_pod(backend.namespace, label_selector=InstanceKey.parse(instance_id).selector)
    return {p.metadata.name for p in pods.items if p.metadata.deletion_timestamp is None}


def test_an_instance_started_before_each_had_a_service_gets_one(backend) -> None:
    """After an upgrade, an instance the previous version started (a Deployment with a start label, no Service of
    its own) is named by an endpoint whose Service the backend adds when it starts."""
    from controlplane.runtime.kubernetes_backend import KubernetesBackend

    space = "gina/older"
    written = backend._apply(make_deployment(spec(space, "cpu-basic"), CATALOG.pool_for("cpu-basic"), backend.options,
                                             "a0b1c2"))  # as the previous version wrote it: no Service
    name = instance_service_name(InstanceKey.of(written))
    assert service(backend, name) is None
    upgraded = KubernetesBackend(backend.options, CATALOG)
    try:
        upgraded.list(space)  # its first read
        added = service(backend, name)
        assert added is not None
        assert added.spec.selector == written["spec"]["selector"]["matchLabels"]
        assert [o.uid for o in added.metadata.owner_references] == [written["metadata"]["uid"]]
    finally:
        upgraded.close()
    backend.remove_space(space)
    assert service(backend, name) is None


@pytest.mark.skipif(not IMAGE, reason="needs SPACEYARD_K8S_TEST_IMAGE (an app that serves) to be ready")
def test_a_redeploys_old_and_new_instances_are_two_services_each_with_only_its_pod(backend) -> None:
    """While a redeploy drains the old instance, what the proxy sends to the old endpoint must reach the old pod
    (a Gradio session's queue lives in one process). With one Service per Space both pods stood behind the one
    endpoint and kube-proxy mixed them per connection."""
    space = "frank/redeploy"
    old = backend.start(spec(space, "cpu-basic"))
    old = wait_for(running(backend, old.id), "the first build to run", 300)
    new = backend.start(spec(space, "cpu-basic", build_id=2))
    new = wait_for(running(backend, new.id), "the new build to run", 300)
    assert old.endpoint and new.endpoint and old.endpoint != new.endpoint
    services = {}
    for instance in (old, new):
        name, rest = instance.endpoint.split(".", 1)
        assert rest == f"{backend.namespace}.svc.cluster.local:80"
        assert name == instance_service_name(InstanceKey.parse(instance.id))
        services[instance.id] = name
    old_pod, new_pod = pod_names(backend, old.id), pod_names(backend, new.id)
    assert len(old_pod) == len(new_pod) == 1 and old_pod != new_pod

    def each_only_its_own() -> bool | None:  # the EndpointSlice controller takes a moment to list a ready pod
        mine = serving_pods(backend, services[old.id]), serving_pods(backend, services[new.id])
        return mine == (old_pod, new_pod) or None

    wait_for(each_only_its_own, "each instance's Service to select only its own pod", 60)
    assert service(backend, services[old.id]).spec.cluster_ip != service(backend, services[new.id]).spec.cluster_ip
    # The Space's Service (kept for its Ingress) takes both, as before.
    wait_for(lambda: serving_pods(backend, object_name(space)) == old_pod | new_pod or None, "the Space's Service", 60)

    backend.stop(old.id, remove=True)  # the deployer retires the old instance once drained
    assert service(backend, services[old.id]) is None
    assert backend.get(new.id).endpoint == new.endpoint
    assert serving_pods(backend, services[new.id]) == pod_names(backend, new.id)

    # Owned by its Deployment: deleted some other way (kubectl, a cleanup), the cluster's garbage collector takes it.
    backend.apps.delete_namespaced_deployment(deployment(backend, new.id).metadata.name, backend.namespace)
    wait_for(lambda: service(backend, services[new.id]) is None or None, "the garbage collector to take it", 60)
    backend.remove_space(space)


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
