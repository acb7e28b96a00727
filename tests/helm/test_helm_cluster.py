"""The chart installed for real: `helm install`, `upgrade` and `uninstall` (helm-python-sdk's releases, the Helm v4
engine, no helm binary) against the cluster KUBECONFIG names (`./dev.sh test` starts ../shared/k8s for it).

What this proves: the API server takes every object in the order Helm sends them (the Spaces namespace before
what lives in it), the default GPU agent needs nothing beyond the NVIDIA device plugin's taint and the pool labels
(no RuntimeClass), storage.volumes=hostPath leaves no claim to wait for a provisioner, and uninstall leaves only
what the chart keeps on purpose. Pods are not waited for: the chart's images are not on the test node.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk (pip install helm-python-sdk)")

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run"),
]

CHART = Path(__file__).resolve().parents[2] / "helm" / "spaceyard"
RELEASE = "spaceyard"


@pytest.fixture(scope="module")
def cluster():
    from controlplane.runtime.kubernetes_backend import load_api_client

    api = load_api_client()
    yield api
    api.close()


def manifest_objects(release: dict) -> list[dict]:
    return [d for d in yaml.safe_load_all(release["manifest"]) if d]


def exists(api, obj: dict, namespace: str) -> bool:
    from kubernetes import dynamic
    from kubernetes.dynamic.exceptions import NotFoundError

    resource = dynamic.DynamicClient(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    meta = obj["metadata"]
    try:
        resource.get(name=meta["name"], namespace=meta.get("namespace", namespace) if resource.namespaced else None)
        return True
    except NotFoundError:
        return False


def test_install_upgrade_uninstall(cluster, tmp_path) -> None:
    from kubernetes import client

    core = client.CoreV1Api(cluster)
    namespace = f"spaceyard-helm-{uuid.uuid4().hex[:8]}"
    spaces = f"{namespace}-spaces"
    values = {
        "spaces": {"namespace": spaces},
        "storage": {"volumes": "hostPath", "hostPath": str(tmp_path)},
        "registry": {"nodePort": 30000 + int(uuid.uuid4().hex[:3], 16) % 2000},
    }
    config = helm.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=namespace)
    try:
        with helm.Chart.load(CHART) as chart:
            installed = config.install(chart, RELEASE, values, namespace=namespace, create_namespace=True,
                                       timeout=120)
            assert installed["status"] == "deployed"
            objects = manifest_objects(installed)
            # Every object is there, the ones in the Spaces namespace too (Helm creates the namespace first).
            missing = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if not exists(cluster, o, namespace)]
            assert missing == []
            assert {o["metadata"].get("namespace") for o in objects if o["kind"] == "Role"} >= {spaces}
            assert core.read_namespace(spaces).metadata.labels["pod-security.kubernetes.io/enforce"] == "baseline"
            # ...and the API server enforces it: a privileged pod in the Spaces namespace is refused.
            privileged = client.V1Pod(metadata=client.V1ObjectMeta(name="escape"), spec=client.V1PodSpec(
                containers=[client.V1Container(name="c", image="registry.k8s.io/pause:3.9",
                                               security_context=client.V1SecurityContext(privileged=True))]))
            with pytest.raises(client.ApiException) as refused:
                core.create_namespaced_pod(spaces, privileged, dry_run="All")
            assert refused.value.status == 403 and "violates PodSecurity" in refused.value.body
            # hostPath storage: no claim waits for a provisioner this cluster does not have.
            assert core.list_namespaced_persistent_volume_claim(namespace).items == []

            # The GPU agent with the defaults: no RuntimeClass (the API server would refuse an unknown one); its
            # pods are placed on exactly the nodes of the GPU pools, by their labels and the device plugin taint.
            agent = client.AppsV1Api(cluster).read_namespaced_daemon_set(f"{RELEASE}-gpu-agent", namespace)
            assert agent.spec.template.spec.runtime_class_name is None
            gpu_pools = "spaceyard.dev/pool in (t4,a10g,a100)"
            gpu_nodes = {n.metadata.name for n in core.list_node(label_selector=gpu_pools).items}
            assert gpu_nodes, "the cluster has no nodes of the GPU pools (labels of docs/kubernetes.md)"
            placed = set()
            for _ in range(30):
                pods = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=gpu-agent")
                placed = {p.spec.node_name for p in pods.items}
                if placed == gpu_nodes:
                    break
                time.sleep(1)
            assert placed == gpu_nodes

            upgraded = config.upgrade(chart, RELEASE, {**values, "builder": {"concurrency": 3}}, namespace=namespace,
                                      timeout=120)
            assert (upgraded["status"], upgraded["revision"]) == ("deployed", 2)
            builder = client.AppsV1Api(cluster).read_namespaced_deployment(f"{RELEASE}-builder", namespace)
            assert "--concurrency=3" in builder.spec.template.spec.containers[0].command

        config.uninstall(RELEASE, timeout=120)
        # Only what the chart keeps on purpose is left: the Spaces namespace (running Spaces survive an uninstall).
        left = [f"{o['kind']}/{o['metadata']['name']}" for o in objects if exists(cluster, o, namespace)]
        assert left == [f"Namespace/{spaces}"]
    finally:
        config.close()
        for ns in (spaces, namespace):
            try:
                core.delete_namespace(ns)
            except client.ApiException as e:
                if e.status != 404:
                    raise
