"""The kubernetes runtime's fence around a Space pod: the pod a Space runs as is one the chart's NetworkPolicy
selects (ingress only from the control plane / router and the ingress controller), and the API server of a
real cluster accepts the Deployment's restrictions and the policy (server-side dry run: nothing is created).

The first test needs no cluster; the second runs where KUBECONFIG points at one (/work/shared/k8s/start.sh).
NetworkPolicy enforcement itself needs a CNI that implements it (Calico, Cilium), which that cluster lacks.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
import yaml

from controlplane.runtime.base import AppSpec
from controlplane.runtime.k8s_objects import K8sOptions, make_deployment
from controlplane.tiers import default_catalog

helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk (pip install helm-python-sdk)")

CHART = Path(__file__).resolve().parents[2] / "helm" / "spaceyard"
CATALOG = default_catalog()


def chart_policy(namespace: str = "spaceyard-spaces") -> dict:
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render({"spaces": {"namespace": namespace}}, name="spaceyard", namespace="spaceyard",
                                 is_install=True)
    docs = [d for path, text in manifests.items() if path.endswith("networkpolicy.yaml")
            for d in yaml.safe_load_all(text) if d]
    return next(d for d in docs if d["metadata"]["name"] == "spaceyard-spaces")


def space_deployment(namespace: str = "spaceyard-spaces") -> dict:
    spec = AppSpec(space="mallory/app", build_id=1, image="localhost/spaceyard-hello:1", port=8080,
                   tier=CATALOG.tier("cpu-basic"), env={"SPACE_ID": "mallory/app"})
    return make_deployment(spec, CATALOG.pool_for("cpu-basic"), K8sOptions(namespace=namespace))


def selects(selector: dict, labels: dict[str, str]) -> bool:
    """A label selector as the API server evaluates it (the operators this chart uses)."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        present, value = expr["key"] in labels, labels.get(expr["key"])
        ok = {"Exists": present, "DoesNotExist": not present, "In": value in expr.get("values", []),
              "NotIn": value not in expr.get("values", [])}[expr["operator"]]
        if not ok:
            return False
    return True


def test_every_space_pod_is_behind_the_charts_policy():
    policy, pod = chart_policy(), space_deployment()["spec"]["template"]
    assert selects(policy["spec"]["podSelector"], pod["metadata"]["labels"])
    # Ingress comes only from pods of other namespaces (the control plane's, the ingress controller's), so
    # never from another Space's pod.
    for source in policy["spec"]["ingress"][0]["from"]:
        assert "ipBlock" not in source
        namespace = source["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        assert namespace != "spaceyard-spaces"
    assert policy["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == (
        "controlplane"
    )
    # And the pod itself: unprivileged, no token, default seccomp.
    pod_spec = pod["spec"]
    assert pod_spec["automountServiceAccountToken"] is False
    assert pod_spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec["securityContext"]["runAsNonRoot"] is True


@pytest.mark.k8s
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run")
def test_the_api_server_accepts_the_deployment_and_policy():
    from kubernetes import client, dynamic

    from controlplane.runtime.kubernetes_backend import load_api_client

    api = load_api_client()
    namespace = f"spaceyard-sec-{uuid.uuid4().hex[:8]}"
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        resources = dynamic.DynamicClient(api).resources
        for obj in (chart_policy(namespace), space_deployment(namespace)):
            resource = resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            # Server-side apply, dry run: admission and validation of the real API server, nothing stored.
            applied = resource.server_side_apply(body=obj, namespace=namespace, field_manager="spaceyard",
                                                 dry_run="All").to_dict()
            assert applied["kind"] == obj["kind"]
            if obj["kind"] == "Deployment":
                pod = applied["spec"]["template"]["spec"]
                assert pod["securityContext"]["runAsUser"] == 1000
                assert pod["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            else:
                assert applied["spec"]["podSelector"] == obj["spec"]["podSelector"]
    finally:
        core.delete_namespace(namespace)
