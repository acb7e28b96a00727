"""The chart's proxy replicas on the real cluster (../shared/k8s, node1 is this machine), installed as
examples/local-cluster.yaml plus proxy.enabled: two HAProxy pods (a StatefulSet) from docker/proxy.Dockerfile in front
of the control plane. A Gradio Space built and run in the cluster answers through the proxy's NodePort; each pod's
relay to the other (the owner of half the sessions) is up; a session pinned through one pod is in the other's table
(HAProxy peers), and in the table of the pod that replaces a deleted one (Ready once the control plane has sent it
the route table); with the control plane scaled to zero, every replica (also the replacement) still serves the
Space: the route table reached each replica, and the app's requests do not pass through the control plane; a pod
replaced then runs but stays not Ready (no table). Uses test_helm_e2e's installer and images."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from pathlib import Path

import httpx
import pytest

from controlplane.proxy import admin
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


def pin(pod, key: str) -> str | None:
    """The instance number a proxy pod's sessions table holds for `key` (through its runtime API on the pod's IP,
    which this host, the node, reaches)."""
    out = asyncio.run(admin.send(f"{pod.status.pod_ip}:9999", f"show table sessions key {key}"))
    return next((f.removeprefix("gpt0=") for f in out.split() if f.startswith("gpt0=")), None)


def relays_up(pod) -> bool:
    """The pod's relay servers (the other replicas, by their names resolved in the cluster) pass their checks."""
    stats = asyncio.run(admin.send(f"{pod.status.pod_ip}:9999", "show stat")).splitlines()
    owners = [line.split(",") for line in stats if line.startswith("relay-") and ",owner," in line]
    return bool(owners) and all(row[17] == "UP" for row in owners)


def by_name(core) -> dict:
    return {p.metadata.name: p for p in running(core, PROXY)}


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

    # A session pinned through one pod is in the other's table (peers), then in the table of the pod replacing it.
    pods = by_name(core)
    p0, p1 = pods["spaceyard-proxy-0"], pods["spaceyard-proxy-1"]
    # Each passes the sessions the other owns on to it (its name resolved by HAProxy in the cluster).
    until("each proxy pod's relay to the other up", lambda: relays_up(p0) and relays_up(p1), 30)
    key = "peers-check@/apps/alice/hello"  # the session, on the Space's prefix
    join = {"data": ["x"], "fn_index": 0, "session_hash": "peers-check"}
    started = time.monotonic()
    httpx.post(f"http://{p0.status.pod_ip}:8080/gradio_api/queue/join", json=join, headers={"Host": host}, timeout=10)
    until(
        "the pin on both proxy pods", lambda: pin(p0, key) not in (None, "0") and pin(p1, key) == pin(p0, key), 10, 0.01
    )
    print(f"pin through proxy-0 seen on proxy-1 after {time.monotonic() - started:.3f} s (join included)")
    pinned = pin(p0, key)
    core.delete_namespaced_pod(p0.metadata.name, NAMESPACE)
    until(
        "a new proxy-0 Ready",
        lambda: (
            (new := by_name(core).get("spaceyard-proxy-0")) is not None
            and new.metadata.uid != p0.metadata.uid
            and ready(new)
        ),
        120,
        1,
        lambda: describe(core, NAMESPACE),
    )
    assert pin(by_name(core)["spaceyard-proxy-0"], key) == pinned  # learned from proxy-1
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
        # HAProxy tries the control plane's Service 3 times (10 s connect timeout each) while kube-proxy may still
        # send connections to the pod just gone.
        assert httpx.get(f"{url}/api/spaces", timeout=40).status_code in (502, 503)
        for pod in running(core, PROXY):
            pod_url = f"http://{pod.status.pod_ip}:8080"
            assert answers(pod_url, host), f"{pod.metadata.name} does not serve the Space alone"
        assert greet(url, host, "alone") == "Hello alone!"
        # A replica replaced now has no route table: it runs, but is not Ready, so the Service sends it nothing.
        gone = by_name(core)["spaceyard-proxy-1"]
        core.delete_namespaced_pod(gone.metadata.name, NAMESPACE)
        until(
            "a new proxy-1 running",
            lambda: (
                (new := by_name(core).get("spaceyard-proxy-1")) is not None and new.metadata.uid != gone.metadata.uid
            ),
            120,
            1,
        )
        new = by_name(core)["spaceyard-proxy-1"]

        def not_loaded() -> bool:
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"http://{new.status.pod_ip}:8081/", timeout=5).status_code == 503
            return False

        until("its HAProxy answering 503 on the readiness port", not_loaded, 60)
        time.sleep(5)  # more than two probe periods
        assert not ready(core.read_namespaced_pod(new.metadata.name, NAMESPACE))
        assert not_loaded()
    finally:
        apps.patch_namespaced_deployment_scale("spaceyard-controlplane", NAMESPACE, {"spec": {"replicas": 1}})
