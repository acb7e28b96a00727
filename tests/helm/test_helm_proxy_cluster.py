"""The chart's proxy replicas on the real cluster (../shared/k8s, node1 is this machine), installed as
examples/local-cluster.yaml plus proxy.enabled: two HAProxy pods from docker/proxy.Dockerfile in front of the control
plane. A Gradio Space built and run in the cluster answers through the proxy's NodePort; with the control plane
scaled to zero, every replica (also one that replaced a deleted pod) still serves it: the route table reached each
replica, and the app's requests do not pass through the control plane. Uses test_helm_e2e's installer and images."""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.spaces import GRADIO_APP, readme
from tests.helm.test_helm_e2e import (  # noqa: F401  (fixtures)
    REGISTRY,
    build_alone,
    cluster,
    describe,
    engine,
    exec_in,
    greet,
    helm_release,
    images,
    local_values,
    node_address,
    pods_ready,
    push_app,
    until,
)

NAMESPACE = f"syproxy-{uuid.uuid4().hex[:6]}"
PROXY = "app.kubernetes.io/component=proxy"
CONTROLPLANE = "app.kubernetes.io/component=controlplane"


def running(core, selector: str) -> list:
    pods = core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
    return [p for p in pods if p.status.phase == "Running" and p.metadata.deletion_timestamp is None]


def ready(pod) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def answers(url: str, host: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/config", headers={"Host": host}, timeout=5).status_code == 200
    return False


@pytest.fixture(scope="module")
def release(cluster, engine, images, tmp_path_factory):  # noqa: F811
    from kubernetes import client

    core = client.CoreV1Api(cluster)
    values = local_values(core, images, tmp_path_factory.mktemp("hostpath"), NAMESPACE)
    proxy_port = 30000 + (int(values["domains"]["publicUrl"].rsplit(":", 1)[1]) - 30000 + 1000) % 2000
    values["proxy"] = {
        "enabled": True,
        "image": build_alone(engine, "proxy"),
        "service": {"type": "NodePort", "nodePort": proxy_port},
        "nodeSelector": {"spaceyard.dev/pool": "cpu"},  # node1; the other nodes are fake
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}},
    }
    try:
        with helm_release(cluster, values, NAMESPACE) as installed:
            yield {**installed, "proxy_url": f"http://{node_address(core)}:{proxy_port}"}
    finally:
        for image in engine.images.list():
            if any(t.startswith(f"{REGISTRY}/{NAMESPACE}/") for t in image.tags):
                with contextlib.suppress(Exception):
                    engine.api.remove_image(image.id, force=True)


def test_proxy_replicas_serve_a_running_space_without_the_control_plane(cluster, release, tmp_path: Path) -> None:  # noqa: F811
    from huggingface_hub import HfApi
    from kubernetes import client

    core, apps = client.CoreV1Api(cluster), client.AppsV1Api(cluster)
    url = release["proxy_url"]
    until(
        "platform and 2 proxy pods Ready",
        lambda: (
            all(pods_ready(core, NAMESPACE).get(c) for c in ("controlplane", "builder", "redis", "postgresql"))
            and len([p for p in running(core, PROXY) if ready(p)]) == 2
        ),
        420,
        2,
        lambda: describe(core, NAMESPACE),
    )
    # The API through the proxy (its backend: the control plane's Service, internal port).
    until("the API through the proxy", lambda: httpx.get(f"{url}/api/spaces", timeout=5).status_code == 200, 60)
    (cp,) = running(core, CONTROLPLANE)
    token = (
        exec_in(cluster, NAMESPACE, cp.metadata.name, ["spaceyard", "user", "add", "alice"]).strip().splitlines()[-1]
    )
    api = HfApi(endpoint=url, token=token)
    api.create_repo("alice/hello", repo_type="space", space_sdk="gradio")
    push_app(url, token, "hello", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    runtime = api.wait_for_space("alice/hello", timeout=300, poll_interval=1)
    assert runtime.stage == "RUNNING", runtime.raw
    host = runtime.raw["spaceyard"]["hostUrl"].removeprefix("http://")
    assert greet(url, host, "x") == "Hello x!"

    # A replica replaced: the new pod starts empty and is sent the table by the control plane.
    old = running(core, PROXY)[0].metadata.name
    core.delete_namespaced_pod(old, NAMESPACE)
    until(
        "a new proxy pod Ready",
        lambda: len([p for p in running(core, PROXY) if ready(p) and p.metadata.name != old]) == 2,
        120,
        2,
        lambda: describe(core, NAMESPACE),
    )
    time.sleep(3)  # the control plane's watch and push (a version check at most 1 s later)

    # The control plane gone: each replica still serves the running Space by itself.
    apps.patch_namespaced_deployment_scale("spaceyard-controlplane", NAMESPACE, {"spec": {"replicas": 0}})
    try:
        until(
            "the control plane gone",
            lambda: not core.list_namespaced_pod(NAMESPACE, label_selector=CONTROLPLANE).items,
            120,
            1,
        )
        assert httpx.get(f"{url}/api/spaces", timeout=10).status_code in (502, 503)
        for pod in running(core, PROXY):
            pod_url = f"http://{pod.status.pod_ip}:8080"
            assert answers(pod_url, host), f"{pod.metadata.name} does not serve the Space alone"
        assert greet(url, host, "alone") == "Hello alone!"
    finally:
        apps.patch_namespaced_deployment_scale("spaceyard-controlplane", NAMESPACE, {"spec": {"replicas": 1}})
