"""The chart's proxy replicas (docs/router.md, "On Kubernetes"), rendered by the Helm engine and validated against
the Kubernetes schemas (the helpers of test_helm_chart.py): HAProxy StatefulSet (peers by stable pod names, ready once
it holds a route table), its Services, the runtime API fenced to the control plane and the peers port to the
replicas, discovery RBAC, and the control plane behind it on its internal port."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane.core.config import Settings
from controlplane.proxy import kube
from tests.helm.test_helm_chart import CHART, NAMESPACE, env_of, find, helm, one, render, render_error

ON = {"proxy": {"enabled": True}}


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as c:
        yield c


def selector(component: str) -> dict:
    return {
        "app.kubernetes.io/name": "spaceyard",
        "app.kubernetes.io/instance": "spaceyard",
        "app.kubernetes.io/component": component,
    }


def test_two_replicas_spread_over_nodes_with_a_disruption_budget(chart):
    objects = render(chart, ON)
    dep = one(objects, "StatefulSet", "spaceyard-proxy")
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == selector("proxy")
    pdb = one(objects, "PodDisruptionBudget", "spaceyard-proxy")
    assert pdb["spec"] == {"minAvailable": 1, "selector": {"matchLabels": selector("proxy")}}
    # Non-root, nothing to write but its own emptyDir, no API token, no service-link variables.
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False and pod["enableServiceLinks"] is False
    (haproxy,) = pod["containers"]
    assert haproxy["image"] == "spaceyard/proxy:0.1.0"
    assert haproxy["securityContext"]["readOnlyRootFilesystem"] is True

    hard = render(chart, {"proxy": {"enabled": True, "antiAffinity": "hard", "replicas": 3}})
    dep = one(hard, "StatefulSet", "spaceyard-proxy")
    assert dep["spec"]["replicas"] == 3
    (term,) = dep["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    none = render(
        chart, {"proxy": {"enabled": True, "antiAffinity": "none", "podDisruptionBudget": {"enabled": False}}}
    )
    assert "affinity" not in one(none, "StatefulSet", "spaceyard-proxy")["spec"]["template"]["spec"]
    assert find(none, "PodDisruptionBudget") == []


def test_users_reach_the_proxy_and_the_proxy_the_control_planes_internal_port(chart):
    objects = render(chart, ON)
    ing = one(objects, "Ingress", "spaceyard")
    for rule in ing["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        assert path["backend"]["service"] == {"name": "spaceyard-proxy", "port": {"name": "http"}}
    svc = one(objects, "Service", "spaceyard-proxy")
    assert svc["spec"]["type"] == "ClusterIP" and svc["spec"]["selector"] == selector("proxy")
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    pod = one(objects, "StatefulSet", "spaceyard-proxy")["spec"]["template"]["spec"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports == {"http": 8080, "admin": 9999, "peers": 9998, "relay": 9997, "ready": 8081}
    # The init container writes the files from the control plane's code: the control plane behind the Service's
    # port 80, which is its internal port now; activity lines to the Service's UDP port.
    (init,) = pod["initContainers"]
    assert init["image"] == "spaceyard/controlplane:0.1.0"
    assert init["command"][:4] == ["python", "-m", "controlplane.proxy.kube", kube.FOLDER]
    args = dict(a.removeprefix("--").split("=", 1) for a in init["command"][4:])
    assert args == {
        "controlplane": "spaceyard-controlplane:80",
        "admin": "$(POD_IP):9999",
        "activity": "spaceyard-controlplane:8002",
        "ready": "$(POD_IP):8081",
        "name": "$(POD_NAME)",
        "replicas": "2",
        "peer-domain": "spaceyard-proxy-admin",
        "peer": "$(POD_IP):9998",
        "relay": "$(POD_IP):9997",
    }
    assert env_of(init)["POD_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env_of(init)["POD_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert {m["mountPath"] for m in pod["containers"][0]["volumeMounts"]} == {kube.FOLDER}

    cp_svc = one(objects, "Service", "spaceyard-controlplane")
    by_name = {p["name"]: p for p in cp_svc["spec"]["ports"]}
    assert by_name["http"]["port"] == 80 and by_name["http"]["targetPort"] == "http"
    assert by_name["activity"] == {"name": "activity", "port": 8002, "targetPort": "activity", "protocol": "UDP"}
    cp = one(objects, "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]["containers"][0]
    cp_ports = {p["name"]: (p["containerPort"], p.get("protocol", "TCP")) for p in cp["ports"]}
    assert cp_ports == {"http": (8001, "TCP"), "activity": (8002, "UDP")}
    env = {k: v["value"] for k, v in env_of(cp).items() if "value" in v}
    # The settings the control plane reads from that env put it behind the proxy on the ports above.
    settings = Settings(
        **{k.removeprefix("SPACEYARD_").lower(): v for k, v in env.items() if k.startswith("SPACEYARD_PROXY")},
        controlplane_port=env["SPACEYARD_CONTROLPLANE_PORT"],
        host=env["SPACEYARD_HOST"],
        port=8000,
    )
    assert (settings.proxy, settings.internal_port, settings.activity_port) == ("haproxy", 8001, 8002)
    # The control plane follows the headless Service of the replicas' runtime APIs.
    assert settings.proxy_targets == f"kubernetes:{NAMESPACE}/spaceyard-proxy-admin:9999"
    assert kube.targets(settings.proxy_targets) == []
    admin = one(objects, "Service", "spaceyard-proxy-admin")
    assert admin["spec"]["clusterIP"] == "None" and admin["spec"]["publishNotReadyAddresses"] is True
    assert admin["spec"]["ports"] == [{"name": "admin", "port": 9999, "targetPort": "admin", "protocol": "TCP"}]


def test_only_the_control_plane_reaches_the_runtime_api_and_only_replicas_the_peers_port(chart):
    objects = render(chart, ON)
    np = one(objects, "NetworkPolicy", "spaceyard-proxy")
    assert np["spec"]["podSelector"] == {"matchLabels": selector("proxy")}
    assert np["spec"]["policyTypes"] == ["Ingress"]
    anyone, controlplane, replicas = np["spec"]["ingress"]
    assert anyone == {"ports": [{"protocol": "TCP", "port": 8080}]}  # no "from": users, the ingress controller
    assert controlplane == {
        "from": [{"podSelector": {"matchLabels": selector("controlplane")}}],
        "ports": [{"protocol": "TCP", "port": 9999}],
    }
    assert replicas == {
        "from": [{"podSelector": {"matchLabels": selector("proxy")}}],
        "ports": [{"protocol": "TCP", "port": 9998}, {"protocol": "TCP", "port": 9997}],
    }
    # Space pods take the proxy's connections too.
    spaces = one(objects, "NetworkPolicy", "spaceyard-spaces")
    peers = [
        s["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        for s in spaces["spec"]["ingress"][0]["from"]
    ]
    assert peers == ["controlplane", None, "proxy"]


def test_replicas_are_peers_by_stable_names_and_ready_once_they_hold_a_table(chart):
    values = {"enabled": True, "replicas": 3, "peersPort": 7000, "readyPort": 7001, "relayPort": 7002}
    objects = render(chart, {"proxy": values})
    sts = one(objects, "StatefulSet", "spaceyard-proxy")
    # Pod names spaceyard-proxy-0..2 under the headless Service that publishes not-ready addresses: a starting
    # replica's name resolves for its peers (and the control plane finds it) before it is ready.
    assert sts["spec"]["serviceName"] == "spaceyard-proxy-admin"
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    pod = sts["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    args = dict(a.removeprefix("--").split("=", 1) for a in init["command"][4:])
    assert (args["replicas"], args["peer"], args["ready"]) == ("3", "$(POD_IP):7000", "$(POD_IP):7001")
    assert args["relay"] == "$(POD_IP):7002"
    (haproxy,) = pod["containers"]
    assert haproxy["readinessProbe"]["httpGet"] == {"port": "ready", "path": "/"}
    ports = {p["name"]: p["containerPort"] for p in haproxy["ports"]}
    assert (ports["peers"], ports["ready"], ports["relay"]) == (7000, 7001, 7002)
    np = one(objects, "NetworkPolicy", "spaceyard-proxy")
    assert np["spec"]["ingress"][2]["ports"] == [{"protocol": "TCP", "port": 7000}, {"protocol": "TCP", "port": 7002}]
    assert "must differ" in render_error(chart, {"proxy": {"enabled": True, "peersPort": 9999}})
    assert "must differ" in render_error(chart, {"proxy": {"enabled": True, "readyPort": 9998}})
    assert "must differ" in render_error(chart, {"proxy": {"enabled": True, "relayPort": 9999}})

    # What the init container writes from those arguments: every other ordinal as a peer (by its address when its
    # name resolves), this pod as the local one, the sessions table shared, the instances table not.
    names = {"spaceyard-proxy-0.spaceyard-proxy-admin": "10.0.0.5"}

    def resolve(name: str) -> str:
        if name not in names:
            raise OSError("not found")
        return names[name]

    peers = kube.peers("spaceyard-proxy-2", 3, "spaceyard-proxy-admin", "10.0.0.7:7000", resolve, wait=0)
    assert peers.local == "spaceyard-proxy-2" and peers.bind == "10.0.0.7:7000"
    assert peers.others == (("spaceyard-proxy-0", "10.0.0.5:7000"), ("spaceyard-proxy-1", kube.UNRESOLVED_PEER))
    # The relays: every replica by its full name (HAProxy's resolvers use no search list), resolved at run time.
    relay = kube.relay("spaceyard-proxy-2", 3, "spaceyard-proxy-admin", "10.0.0.7:7002", "ns.svc.cluster.local")
    assert (relay.ordinal, relay.bind, relay.resolvers) == (2, "10.0.0.7:7002", True)
    assert relay.replicas[0] == "spaceyard-proxy-0.spaceyard-proxy-admin.ns.svc.cluster.local:7002"
    assert len(relay.replicas) == 3


def test_the_control_plane_may_read_endpointslices_of_its_namespace_only(chart):
    objects = render(chart, ON)
    role = one(objects, "Role", "spaceyard-proxy-discovery")
    assert "namespace" not in role["metadata"]  # the release namespace
    assert role["rules"] == [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}
    ]
    binding = one(objects, "RoleBinding", "spaceyard-proxy-discovery")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "spaceyard-controlplane", "namespace": NAMESPACE}]


def test_without_an_ingress_controller_the_proxy_service_is_a_node_port(chart):
    objects = render(
        chart,
        {"proxy": {"enabled": True, "service": {"type": "NodePort", "nodePort": 30081}}, "ingress": {"enabled": False}},
    )
    svc = one(objects, "Service", "spaceyard-proxy")
    assert svc["spec"]["type"] == "NodePort" and svc["spec"]["ports"][0]["nodePort"] == 30081
    assert "type" in render_error(chart, {"proxy": {"enabled": True, "service": {"type": "ExternalName"}}})
    assert "antiAffinity" in render_error(chart, {"proxy": {"antiAffinity": "always"}})


def test_off_the_control_plane_routes_alone(chart):
    objects = render(chart, {"proxy": {"enabled": False}})
    assert [o for o in objects if o["metadata"]["name"].startswith("spaceyard-proxy")] == []
    cp = one(objects, "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]["containers"][0]
    assert [(p["name"], p["containerPort"]) for p in cp["ports"]] == [("http", 8000)]
    assert not any(k.startswith("SPACEYARD_PROXY") for k in env_of(cp))
    ing = one(objects, "Ingress", "spaceyard")
    assert ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] == "spaceyard-controlplane"


@pytest.mark.skipif(shutil.which("docker") is None, reason="needs Docker")
def test_the_proxy_image_starts_from_the_files_the_init_container_writes(tmp_path: Path):
    """docker/proxy.Dockerfile on the debootstrap base, as uid 10001 with a read-only root: HAProxy accepts the
    config `python -m controlplane.proxy.kube` writes (Lua, peers, relays and the readiness frontend included)."""
    from tests.images.test_platform_images import BASE_IMAGE

    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], capture_output=True).returncode:
        pytest.skip(f"{BASE_IMAGE} is missing: build it with `python -m builder.baseimages`")
    root = Path(__file__).resolve().parents[2]
    tag = "spaceyard-test/proxy:test"
    with open(root / "docker" / "proxy.Dockerfile", "rb") as dockerfile:
        subprocess.run(["docker", "build", "-q", "-t", tag, "-"], stdin=dockerfile, check=True, capture_output=True)
    try:
        kube.main(
            [
                str(tmp_path),
                "--controlplane=127.0.0.1:80",
                "--admin=127.0.0.1:9999",
                "--activity=127.0.0.1:8002",
                "--ready=127.0.0.1:8081",
                "--name=spaceyard-proxy-0",
                "--replicas=2",
                "--peer-domain=spaceyard-proxy-admin.invalid",
                "--peer=127.0.0.1:9998",
                "--relay=127.0.0.1:9997",
            ]
        )
        # The pod's emptyDir is written by the same uid; here the test's files, made readable for it.
        tmp_path.chmod(0o755)
        for f in tmp_path.iterdir():
            f.chmod(0o644)
        out = subprocess.run(
            [
                "docker",
                "run",
                "--rm",
                "--read-only",
                "--user",
                "10001:10001",
                "--network",
                "none",
                "-v",
                f"{tmp_path}:{tmp_path}:ro",  # the pod's emptyDir is at the path the files name
                tag,
                "haproxy",
                "-c",
                "-f",
                f"{tmp_path}/haproxy.cfg",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "Configuration file is valid" in out.stdout + out.stderr
    finally:
        subprocess.run(["docker", "image", "rm", tag], capture_output=True)
