"""The Helm chart, rendered for real by the Helm v4 engine (helm-python-sdk), no cluster needed.

Every rendered object is validated against the Kubernetes 1.30 schemas (kubernetes-validate, strict:
unknown fields fail), then the tests read the objects the way an operator's cluster would.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml

helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk (pip install helm-python-sdk)")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spaceyard"
GPU_EXAMPLE = CHART / "examples" / "gpu-pools.yaml"
KUBE_VERSION = "1.30.0"
RELEASE, NAMESPACE = "spaceyard", "spaceyard"


@pytest.fixture(scope="module")
def chart():
    with helm.Chart.load(CHART) as c:
        yield c


def example_values() -> dict:
    return yaml.safe_load(GPU_EXAMPLE.read_text())


def render(chart, values: dict | None = None) -> list[dict]:
    """Render with Helm, parse every document, validate each against the Kubernetes schema."""
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    objects = []
    for path, text in manifests.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
                objects.append(doc)
    return objects


def notes(chart, values: dict | None = None) -> str:
    manifests = chart.render(values or {}, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return next(text for path, text in manifests.items() if path.endswith("NOTES.txt"))


def find(objects, kind: str, name: str | None = None) -> list[dict]:
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objects, kind: str, name: str) -> dict:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def env_of(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def render_error(chart, values: dict) -> str:
    with pytest.raises(helm.HelmError) as info:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(info.value)


# --- lint and render -----------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_lint_is_clean(values):
    vals = example_values() if values else None
    report = helm.lint(CHART, vals, strict=True, kube_version=f"v{KUBE_VERSION}", namespace=NAMESPACE)
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert report["errors"] == [] and problems == [], report


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_every_object_is_valid_kubernetes(chart, values):
    objects = render(chart, example_values() if values else None)
    kinds = {o["kind"] for o in objects}
    assert {
        "Deployment",
        "StatefulSet",
        "DaemonSet",
        "Service",
        "ServiceAccount",
        "Secret",
        "ConfigMap",
        "Role",
        "RoleBinding",
        "Ingress",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "Namespace",
    } <= kinds
    statefulsets = sorted(s["metadata"]["name"] for s in find(objects, "StatefulSet"))
    assert statefulsets == ["spaceyard-postgresql", "spaceyard-proxy", "spaceyard-redis", "spaceyard-registry"]


def test_default_tier_catalog_is_the_control_planes(chart, tmp_path):
    """The ConfigMap is the catalog in controlplane/tiers.yaml, and the control plane loads it."""
    cm = one(render(chart), "ConfigMap", "spaceyard-tiers")
    rendered = yaml.safe_load(cm["data"]["tiers.yaml"])
    shipped = yaml.safe_load((ROOT / "controlplane" / "tiers.yaml").read_text())
    assert rendered == shipped

    from controlplane.tiers import load_catalog

    path = tmp_path / "tiers.yaml"
    path.write_text(cm["data"]["tiers.yaml"])
    catalog = load_catalog(path)
    assert catalog.tier("a100-large").price_per_hour == 2.5
    assert catalog.pool_for("t4-small").gpu_resource == "nvidia.com/gpu"


def test_example_catalog_loads(chart, tmp_path):
    cm = one(render(chart, example_values()), "ConfigMap", "spaceyard-tiers")
    from controlplane.tiers import load_catalog

    path = tmp_path / "tiers.yaml"
    path.write_text(cm["data"]["tiers.yaml"])
    catalog = load_catalog(path)
    assert [p.name for p in catalog.pools] == ["cpu", "t4", "a100"]
    assert "a10g-small" not in [t.name for t in catalog.tiers]


# --- control plane -------------------------------------------------------------------------------


def test_control_plane_deployment(chart):
    objects = render(chart, example_values())
    dep = one(objects, "Deployment", "spaceyard-controlplane")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["spaceyard", "serve"]
    env = env_of(c)
    assert env["SPACEYARD_RUNTIME"]["value"] == "kubernetes"
    assert env["SPACEYARD_APPS_DOMAIN"]["value"] == "apps.acme.dev"
    assert env["SPACEYARD_PUBLIC_URL"]["value"] == "https://spaceyard.acme.dev"
    for name, key in [
        ("SPACEYARD_SECRET_KEY", "secret-key"),
        ("SPACEYARD_DATABASE_URL", "database-url"),
        ("SPACEYARD_REDIS_URL", "redis-url"),
    ]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "spaceyard", "key": key}
    # The tiers file is the mounted ConfigMap.
    tiers_file = Path(env["SPACEYARD_TIERS_FILE"]["value"])
    mount = next(m for m in c["volumeMounts"] if m["mountPath"] == str(tiers_file.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    cm = one(objects, "ConfigMap", volume["configMap"]["name"])
    assert tiers_file.name in cm["data"]
    assert pod["serviceAccountName"] == "spaceyard-controlplane"
    one(objects, "ServiceAccount", "spaceyard-controlplane")
    svc = one(objects, "Service", "spaceyard-controlplane")
    assert svc["spec"]["selector"] == dep["spec"]["selector"]["matchLabels"]


def test_secret_holds_generated_credentials(chart):
    import base64

    secret = one(render(chart), "Secret", "spaceyard")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert len(data["secret-key"]) >= 32
    assert data["database-url"] == (
        f"postgresql+psycopg://spaceyard:{data['postgres-password']}@spaceyard-postgresql:5432/spaceyard"
    )
    assert data["redis-url"] == f"redis://:{data['redis-password']}@spaceyard-redis:6379/0"


def test_external_services_replace_bundled_ones(chart):
    import base64

    values = {
        "redis": {"external": {"url": "rediss://:pw@redis.internal:6380/2"}},
        "postgresql": {"external": {"url": "postgresql+psycopg://u:p@db.internal/spaceyard"}},
        "registry": {"external": {"address": "registry.acme.dev/spaceyard", "pushSecret": "push-creds"}},
    }
    objects = render(chart, values)
    assert [s["metadata"]["name"] for s in find(objects, "StatefulSet")] == ["spaceyard-proxy"]  # no datastore
    secret = one(objects, "Secret", "spaceyard")
    assert base64.b64decode(secret["data"]["redis-url"]).decode() == "rediss://:pw@redis.internal:6380/2"
    assert base64.b64decode(secret["data"]["database-url"]).decode().startswith("postgresql+psycopg://u:p@db")
    builder = one(objects, "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]
    assert [c["name"] for c in builder["containers"]] == ["builder", "dind"]  # no registry forwarder
    env = env_of(builder["containers"][0])
    assert env["SPACEYARD_REGISTRY"]["value"] == "registry.acme.dev/spaceyard"
    assert env["DOCKER_CONFIG"]["value"] == "/etc/spaceyard/docker"


def test_ingress_routes_dashboard_and_wildcard_app_hosts(chart):
    ing = one(render(chart, example_values()), "Ingress", "spaceyard")
    assert ing["spec"]["ingressClassName"] == "nginx"
    hosts = [r["host"] for r in ing["spec"]["rules"]]
    assert hosts == ["spaceyard.acme.dev", "*.apps.acme.dev"]
    assert ing["spec"]["tls"] == [{"secretName": "spaceyard-tls", "hosts": hosts}]
    for rule in ing["spec"]["rules"]:
        (path,) = rule["http"]["paths"]
        # The proxy replicas (on by default; tests/helm/test_helm_proxy.py), which hand the rest to the control plane.
        assert path["backend"]["service"] == {"name": "spaceyard-proxy", "port": {"name": "http"}}


def test_notes_tell_the_urls_and_the_admin_token(chart):
    text = notes(chart, example_values())
    assert "https://spaceyard.acme.dev/" in text
    assert "https://{owner}-{name}.apps.acme.dev/" in text
    assert "/apps/{owner}" not in text  # path URLs are off once a real apps domain is set (SPACEYARD_PATH_URLS)
    assert "spaceyard user add" in text and "get secret spaceyard" in text
    assert "example.com" not in text


# --- GPU agent -----------------------------------------------------------------------------------


def gpu_pools(values: dict) -> list[dict]:
    return [p for p in values["nodePools"] if p.get("gpuResource")]


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_gpu_agent_runs_only_on_gpu_pools(chart, values):
    vals = example_values() if values else chart.values
    objects = render(chart, example_values() if values else None)
    ds = one(objects, "DaemonSet", "spaceyard-gpu-agent")
    pod = ds["spec"]["template"]["spec"]
    assert "nodeSelector" not in pod  # placement is the affinity below, one term per GPU pool
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    expected = [sorted((k, "In", (v,)) for k, v in pool["nodeSelector"].items()) for pool in gpu_pools(vals)]
    got = [sorted((e["key"], e["operator"], tuple(e["values"])) for e in t["matchExpressions"]) for t in terms]
    assert got == expected
    cpu_selectors = [p["nodeSelector"] for p in vals["nodePools"] if not p.get("gpuResource")]
    for selector in cpu_selectors:
        assert sorted((k, "In", (v,)) for k, v in selector.items()) not in got
    # Tolerations: exactly the GPU pools' own, no blanket "tolerate everything".
    wanted = []
    for pool in gpu_pools(vals):
        for t in pool.get("tolerations", []):
            if t not in wanted:
                wanted.append(t)
    assert pod["tolerations"] == wanted
    assert all(t.get("key") for t in pod["tolerations"])
    (c,) = pod["containers"]
    assert c["command"] == ["spaceyard", "gpu-agent"]


def agent_pod(objects) -> dict:
    return one(objects, "DaemonSet", "spaceyard-gpu-agent")["spec"]["template"]["spec"]


def test_gpu_agent_env_is_the_agents_own_settings(chart, monkeypatch):
    """Every variable the chart sets is one the agent reads, and the agent reads them into a Kubernetes setup."""
    from controlplane.gpu_agent.agent import AgentSettings

    objects = render(chart, {"spaces": {"namespace": "apps-prod"}})
    (c,) = agent_pod(objects)["containers"]
    env = env_of(c)
    agent_vars = {name for name in env if name.startswith("SPACEYARD_")}
    assert {n.removeprefix("SPACEYARD_AGENT_").lower() for n in agent_vars} <= set(AgentSettings.model_fields)
    assert agent_vars >= {f"SPACEYARD_AGENT_{k}" for k in ("URL", "TOKEN", "NODE", "MAPPING", "NAMESPACE")}
    assert env["SPACEYARD_AGENT_NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    # Every GPU, no GPU claimed, only what NVML needs from the driver (the NVIDIA container runtime mounts it).
    assert env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all"
    assert env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility"
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])
    for name, e in env.items():
        monkeypatch.setenv(name, e.get("value", f"<{name} from the cluster>"))
    settings = AgentSettings()
    assert (settings.mapping, settings.namespace) == ("kubernetes", "apps-prod")
    # The URL is the control plane's Service, on its port.
    svc = one(objects, "Service", "spaceyard-controlplane")
    assert settings.url == f"http://spaceyard-controlplane.{NAMESPACE}.svc"
    assert [p["port"] for p in svc["spec"]["ports"] if p["protocol"] == "TCP"] == [80]


def test_gpu_agent_and_control_plane_share_the_token_secret(chart):
    from controlplane.core.config import Settings

    objects = render(chart)
    (agent,) = agent_pod(objects)["containers"]
    cp = one(objects, "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]["containers"][0]
    ref = {"name": "spaceyard-gpu-agent", "key": "token"}
    assert env_of(agent)["SPACEYARD_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    assert env_of(cp)["SPACEYARD_GPU_AGENT_TOKEN"]["valueFrom"]["secretKeyRef"] == ref
    assert "gpu_agent_token" in Settings.model_fields  # what SPACEYARD_GPU_AGENT_TOKEN sets
    assert "token" in one(objects, "Secret", "spaceyard-gpu-agent")["data"]


def test_gpu_agent_mounts_only_the_kubelet_pod_resources_socket(chart):
    pod = agent_pod(render(chart, example_values()))
    (c,) = pod["containers"]
    (volume,) = pod["volumes"]
    assert volume["hostPath"] == {"path": "/var/lib/kubelet/pod-resources", "type": "Directory"}
    (mount,) = c["volumeMounts"]
    assert mount == {"name": volume["name"], "mountPath": "/var/lib/kubelet/pod-resources", "readOnly": True}
    socket = Path(env_of(c)["SPACEYARD_AGENT_KUBELET_SOCKET"]["value"])
    assert socket == Path(mount["mountPath"]) / "kubelet.sock"
    # Root for the root-owned socket, but no capability and no escalation (unless gpuAgent.privileged).
    assert c["securityContext"]["runAsUser"] == 0
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert "hostNetwork" not in pod and "hostPID" not in pod


def test_gpu_agent_may_only_read_the_pods_of_the_spaces_namespace(chart):
    objects = render(chart, {"spaces": {"namespace": "apps-prod"}})
    pod = agent_pod(objects)
    assert pod["serviceAccountName"] == "spaceyard-gpu-agent"
    assert pod["automountServiceAccountToken"] is True  # in-cluster credentials for the pod lookup
    one(objects, "ServiceAccount", "spaceyard-gpu-agent")
    role = one(objects, "Role", "spaceyard-gpu-agent")
    assert role["metadata"]["namespace"] == "apps-prod"
    assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]
    binding = one(objects, "RoleBinding", "spaceyard-gpu-agent")
    assert binding["metadata"]["namespace"] == "apps-prod"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "spaceyard-gpu-agent",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "spaceyard-gpu-agent", "namespace": NAMESPACE}]


def test_gpu_agent_disabled_leaves_no_agent_objects(chart):
    objects = render(chart, {"gpuAgent": {"enabled": False}})
    assert find(objects, "DaemonSet") == [] and find(objects, "Role", "spaceyard-gpu-agent") == []
    assert find(objects, "Secret", "spaceyard-gpu-agent") == []
    cp = one(objects, "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]["containers"][0]
    assert "SPACEYARD_GPU_AGENT_TOKEN" not in env_of(cp)  # the derived token (`spaceyard agent-token`) applies


def test_example_gpu_agent_needs_all_labels_of_a_pool(chart):
    ds = one(render(chart, example_values()), "DaemonSet", "spaceyard-gpu-agent")
    spec = ds["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    t4 = terms["nodeSelectorTerms"][0]["matchExpressions"]
    assert {e["key"] for e in t4} == {"spaceyard.dev/pool", "nvidia.com/gpu.product"}
    assert spec["runtimeClassName"] == "nvidia"


def test_no_gpu_pool_no_gpu_agent(chart):
    values = {
        "tiers": [{"name": "cpu-basic", "prettyName": "CPU basic", "vcpu": 2, "memoryGb": 16, "pricePerHour": 0}],
        "nodePools": [{"name": "cpu", "tiers": ["cpu-basic"], "nodeSelector": {"spaceyard.dev/pool": "cpu"}}],
    }
    objects = render(chart, values)
    assert find(objects, "DaemonSet") == [] and find(objects, "Role", "spaceyard-gpu-agent") == []


# --- builder -------------------------------------------------------------------------------------


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_builder_keeps_off_space_pools(chart, values):
    vals = example_values() if values else chart.values
    dep = one(render(chart, example_values() if values else None), "Deployment", "spaceyard-builder")
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"spaceyard.dev/pool": "builds"}
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    not_in = {e["key"]: set(e["values"]) for e in term["matchExpressions"] if e["operator"] == "NotIn"}
    for pool in vals["nodePools"]:
        for key, value in pool["nodeSelector"].items():
            assert value in not_in[key], f"builder could land on pool {pool['name']} ({key}={value})"
    # No Space-pool toleration (e.g. the GPU taint) on the builder.
    assert "tolerations" not in pod


def test_builder_runs_celery_with_docker_in_docker(chart):
    pod = one(render(chart), "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    builder, dind = containers["builder"], containers["dind"]
    assert builder["command"][:6] == ["celery", "-A", "builder.celery_app", "worker", "-Q", "builds"]
    env = env_of(builder)
    assert env["SPACEYARD_REGISTRY"]["value"] == "localhost:30500"
    assert env["DOCKER_HOST"]["value"] == "unix:///run/dind/docker.sock"
    assert env["SPACEYARD_REDIS_URL"]["valueFrom"]["secretKeyRef"]["key"] == "redis-url"
    assert dind["image"].startswith("docker:") and dind["image"].endswith("-dind")
    assert dind["securityContext"]["privileged"] is True
    # The daemon listens on the shared unix socket only, never on TCP 2375/2376.
    assert dind["args"][:2] == ["dockerd", "--host=unix:///run/dind/docker.sock"]
    assert not any("tcp://" in a for a in dind["args"])
    assert "privileged" not in builder.get("securityContext", {})
    # The bundled registry is reachable at the same localhost:NodePort name the nodes pull from.
    forward = containers["registry-forward"]
    assert forward["command"][1].startswith("TCP-LISTEN:30500,bind=127.0.0.1")
    assert forward["command"][2] == "TCP:spaceyard-registry:5000"
    assert pod["automountServiceAccountToken"] is False


def test_builder_on_the_build_nodes_engine(chart):
    # builder.engine=node: the node's Docker socket instead of a privileged sidecar (and its registry forwarder).
    values = {"builder": {"engine": "node", "nodeEngine": {"socket": "/run/docker.sock", "groupId": 998}}}
    pod = one(render(chart, values), "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]
    (builder,) = pod["containers"]
    assert env_of(builder)["DOCKER_HOST"]["value"] == "unix:///run/dind/docker.sock"
    assert builder["volumeMounts"] == [{"name": "dind-socket", "mountPath": "/run/dind/docker.sock"}]
    assert pod["volumes"] == [{"name": "dind-socket", "hostPath": {"path": "/run/docker.sock", "type": "Socket"}}]
    assert pod["securityContext"] == {"supplementalGroups": [998]}
    assert builder["securityContext"]["runAsUser"] == 10001 and "privileged" not in builder["securityContext"]


def test_one_node_cluster_example(chart):
    objects = render(chart, yaml.safe_load((CHART / "examples" / "local-cluster.yaml").read_text()))
    pod = one(objects, "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]
    # Builds may share the only node with the Spaces there: no affinity keeping them off the cpu pool.
    assert pod["nodeSelector"] == {"spaceyard.dev/pool": "cpu"} and "affinity" not in pod
    service = one(objects, "Service", "spaceyard-controlplane")["spec"]
    assert service["type"] == "NodePort" and service["ports"][0]["nodePort"] == 30080
    assert find(objects, "Ingress") == [] and find(objects, "PersistentVolumeClaim") == []


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_platform_pods_get_no_service_links(chart, values):
    # A Service named spaceyard-controlplane would set SPACEYARD_CONTROLPLANE_PORT=tcp://..., which the control plane
    # reads as its setting controlplane_port (prefix SPACEYARD_) and refuses: it crash-looped on a real install.
    objects = render(chart, example_values() if values else None)
    for name in ("spaceyard-controlplane", "spaceyard-builder"):
        assert one(objects, "Deployment", name)["spec"]["template"]["spec"]["enableServiceLinks"] is False
    for agent in find(objects, "DaemonSet", "spaceyard-gpu-agent"):
        assert agent["spec"]["template"]["spec"]["enableServiceLinks"] is False


def test_builder_settings_reach_the_worker(chart):
    values = {
        "builder": {
            "baseImageSource": "debootstrap",
            "pipIndexUrl": "https://pypi.corp/simple",
            "caBundle": {"configMap": "corp-ca", "key": "ca.pem"},
        }
    }
    pod = one(render(chart, values), "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]
    builder = pod["containers"][0]
    env = env_of(builder)
    assert env["SPACEYARD_BASE_IMAGE_SOURCE"]["value"] == "debootstrap"
    assert env["SPACEYARD_PIP_INDEX_URL"]["value"] == "https://pypi.corp/simple"
    assert env["SPACEYARD_BUILDER_CONCURRENCY"]["value"] == "2"
    bundle = Path(env["SPACEYARD_BUILD_CA_BUNDLE"]["value"])
    mount = next(m for m in builder["volumeMounts"] if m["mountPath"] == str(bundle.parent))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    assert volume["configMap"] == {"name": "corp-ca", "items": [{"key": "ca.pem", "path": bundle.name}]}
    # debootstrap needs root in the worker container, never privileged.
    assert builder["securityContext"]["runAsUser"] == 0
    assert "privileged" not in builder["securityContext"]
    default = one(render(chart), "Deployment", "spaceyard-builder")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(default)["SPACEYARD_BASE_IMAGE_SOURCE"]["value"] == "registry"
    assert default["securityContext"]["runAsNonRoot"] is True


def test_bundled_registry_is_a_nodeport_on_the_pull_address(chart):
    objects = render(chart, {"registry": {"nodePort": 31555}})
    svc = one(objects, "Service", "spaceyard-registry")
    assert svc["spec"]["type"] == "NodePort"
    assert svc["spec"]["ports"][0]["nodePort"] == 31555
    sts = one(objects, "StatefulSet", "spaceyard-registry")
    assert sts["spec"]["template"]["spec"]["containers"][0]["image"].startswith("registry:2")
    cp = one(objects, "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]["containers"][0]
    assert env_of(cp)["SPACEYARD_REGISTRY"]["value"] == "localhost:31555"


def test_datastores_use_the_storage_class(chart):
    objects = render(chart, example_values())
    for sts in find(objects, "StatefulSet"):
        if sts["metadata"]["name"] == "spaceyard-proxy":  # the proxy replicas keep nothing
            continue
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["spec"]["storageClassName"] == "fast-ssd", sts["metadata"]["name"]
    for pvc in find(objects, "PersistentVolumeClaim"):
        assert pvc["spec"]["storageClassName"] == "fast-ssd"


DATA_OWNERS = {"spaceyard-controlplane": 10001, "spaceyard-postgresql": 70, "spaceyard-redis": 999,
               "spaceyard-registry": 1000}


@pytest.mark.parametrize("mode", ["hostPath", "emptyDir"])
def test_storage_for_clusters_without_a_provisioner(chart, mode):
    objects = render(chart, {"storage": {"volumes": mode, "hostPath": "/srv/sy/"}})
    assert find(objects, "PersistentVolumeClaim") == []
    workloads = {o["metadata"]["name"]: o for o in objects if o["kind"] in ("Deployment", "StatefulSet")}
    for name, uid in DATA_OWNERS.items():
        spec = workloads[name]["spec"]
        assert "volumeClaimTemplates" not in spec
        pod = spec["template"]["spec"]
        (data,) = [v for v in pod["volumes"] if v["name"] == "data"]
        if mode == "emptyDir":
            assert data == {"name": "data", "emptyDir": {}} and "initContainers" not in pod
            continue
        component = name.removeprefix("spaceyard-")
        assert data["hostPath"] == {"path": f"/srv/sy/{NAMESPACE}-{RELEASE}/{component}", "type": "DirectoryOrCreate"}
        # The kubelet makes the directory root's; the init container gives it to the app's user, with CHOWN only.
        (owner,) = pod["initContainers"]
        assert owner["command"] == ["chown", f"{uid}:{uid}", "/data"]
        assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN"]}
        assert owner["securityContext"]["allowPrivilegeEscalation"] is False


def test_request_ratio_reaches_the_control_plane(chart):
    def ratio(values):
        cp = one(render(chart, values), "Deployment", "spaceyard-controlplane")["spec"]["template"]["spec"]
        return env_of(cp["containers"][0])["SPACEYARD_K8S_REQUEST_RATIO"]["value"]

    assert ratio(None) == "1"
    assert ratio({"spaces": {"namespace": "spaceyard-spaces", "requestRatio": 0.25}}) == "0.25"
    assert "requestRatio" in render_error(chart, {"spaces": {"namespace": "spaceyard-spaces", "requestRatio": 0}})


def test_unknown_storage_mode_is_refused(chart):
    assert "'/storage/volumes': value must be one of" in render_error(chart, {"storage": {"volumes": "nfs"}})


# --- RBAC and network policy ---------------------------------------------------------------------

ALLOWED_RULES = {
    ("apps", "deployments"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "services"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("networking.k8s.io", "ingresses"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "secrets"): {"create", "get", "list", "watch", "patch", "update", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get", "list", "watch"},
    ("", "events"): {"get", "list", "watch"},
}


@pytest.mark.parametrize("values", [None, "gpu-pools"])
def test_rbac_is_namespaced_and_exactly_what_the_control_plane_needs(chart, values):
    objects = render(chart, example_values() if values else None)
    assert find(objects, "ClusterRole") == [] and find(objects, "ClusterRoleBinding") == []
    role = one(objects, "Role", "spaceyard-controlplane")
    assert role["metadata"]["namespace"] == "spaceyard-spaces"
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert set(rule) == {"apiGroups", "resources", "verbs"}  # no resourceNames/nonResourceURLs
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == ALLOWED_RULES
    binding = one(objects, "RoleBinding", "spaceyard-controlplane")
    assert binding["metadata"]["namespace"] == "spaceyard-spaces"
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "spaceyard-controlplane",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "spaceyard-controlplane", "namespace": NAMESPACE}]


def test_spaces_namespace_follows_values(chart):
    objects = render(chart, {"spaces": {"namespace": "apps-prod"}})
    assert one(objects, "Namespace", "apps-prod")
    assert one(objects, "Role", "spaceyard-controlplane")["metadata"]["namespace"] == "apps-prod"
    assert one(objects, "NetworkPolicy", "spaceyard-spaces")["metadata"]["namespace"] == "apps-prod"


def test_network_policy_fences_space_pods(chart):
    objects = render(chart)
    np = one(objects, "NetworkPolicy", "spaceyard-spaces")
    spec = np["spec"]
    assert np["metadata"]["namespace"] == "spaceyard-spaces"
    assert spec["podSelector"] == {
        "matchLabels": {"app.kubernetes.io/managed-by": "spaceyard"},
        "matchExpressions": [{"key": "spaceyard.dev/space", "operator": "Exists"}],
    }
    assert sorted(spec["policyTypes"]) == ["Egress", "Ingress"]
    (ingress_rule,) = spec["ingress"]
    sources = ingress_rule["from"]
    assert sources[0]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "controlplane"
    assert sources[0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": NAMESPACE}
    assert sources[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ingress-nginx"}
    assert all("ipBlock" not in s for s in sources)
    dns, internet = spec["egress"]
    assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}
    (block,) = internet["to"]
    assert block["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert {"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16"} <= set(block["ipBlock"]["except"])
    # The Space selector matches no platform pod.
    for kind in ("Deployment", "StatefulSet", "DaemonSet"):
        for obj in find(objects, kind):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            assert labels.get("app.kubernetes.io/managed-by") != "spaceyard"
    datastores = one(objects, "NetworkPolicy", "spaceyard-datastores")
    peers = [
        p["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for p in datastores["spec"]["ingress"][0]["from"]
    ]
    assert peers == ["controlplane", "builder"]


# --- values that must be refused -----------------------------------------------------------------


def with_changes(chart, change) -> dict:
    values = copy.deepcopy(chart.values)
    change(values)
    return values


def test_schema_rejects_negative_price(chart):
    values = with_changes(chart, lambda v: v["tiers"][2].update(pricePerHour=-0.4))
    message = render_error(chart, values)
    assert "/tiers/2/pricePerHour" in message and "minimum" in message


def test_schema_rejects_missing_domain(chart):
    message = render_error(chart, {"domains": {"apps": ""}})
    assert "/domains/apps" in message
    message = render_error(chart, {"domains": {"dashboard": None}})
    assert "dashboard" in message


def test_schema_rejects_wildcard_in_apps_domain(chart):
    assert "/domains/apps" in render_error(chart, {"domains": {"apps": "*.apps.example.com"}})


def test_schema_rejects_typos_and_bad_shapes(chart):
    assert "nodepools" in render_error(chart, {"nodepools": []})
    values = with_changes(chart, lambda v: v["nodePools"][0].update(capacity=-1))
    assert "/nodePools/0/capacity" in render_error(chart, values)
    values = with_changes(chart, lambda v: v["nodePools"][0].update(nodeSelector={}))
    assert "/nodePools/0/nodeSelector" in render_error(chart, values)
    assert "/registry/nodePort" in render_error(chart, {"registry": {"nodePort": 5000}})
    assert "/redis/external/url" in render_error(chart, {"redis": {"external": {"url": "localhost:6379"}}})


def test_refuses_tier_not_served_by_a_pool(chart):
    values = with_changes(chart, lambda v: v["nodePools"].pop(2))  # drop the a10g pool
    message = render_error(chart, values)
    assert 'tier "a10g-small" is not served by any node pool' in message


def test_refuses_pool_serving_unknown_tier(chart):
    values = with_changes(chart, lambda v: v["nodePools"][1]["tiers"].append("t4-xl"))
    message = render_error(chart, values)
    assert 'nodePools[t4].tiers: tier "t4-xl" is not in the tiers catalog' in message


def test_refuses_tier_on_two_pools(chart):
    values = with_changes(chart, lambda v: v["nodePools"][2]["tiers"].append("t4-small"))
    assert 'nodePools[a10g].tiers: tier "t4-small" is already served by pool "t4"' in render_error(chart, values)


def test_refuses_gpu_tier_on_pool_without_gpu_resource(chart):
    values = with_changes(chart, lambda v: v["nodePools"][3].pop("gpuResource"))
    assert 'nodePools[a100]: serves GPU tier "a100-large" but sets no gpuResource' in render_error(chart, values)


def test_refuses_duplicate_names(chart):
    values = with_changes(chart, lambda v: v["tiers"].append(dict(v["tiers"][0])))
    assert 'tier "cpu-basic" is listed twice' in render_error(chart, values)


def test_refuses_builder_on_a_space_pool(chart):
    message = render_error(chart, {"builder": {"nodeSelector": {"spaceyard.dev/pool": "t4"}}})
    assert "builder.nodeSelector: spaceyard.dev/pool=t4 selects a Space node pool" in message


def test_refuses_node_engine_without_the_sockets_group(chart):
    message = render_error(chart, {"builder": {"engine": "node"}})
    assert "builder.nodeEngine.groupId" in message


def test_refuses_shared_build_cache_across_replicas(chart):
    values = {"builder": {"replicas": 2, "dind": {"cache": {"persistence": True}}}}
    assert "builder.dind.cache.persistence" in render_error(chart, values)


# --- the platform's own images -------------------------------------------------------------------


def dockerfile(name: str) -> list[str]:
    """Instructions of a Dockerfile, continuation lines joined, comments dropped."""
    text = (ROOT / "docker" / name).read_text()
    text = re.sub(r"\\\n", " ", text)
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize("name", ["controlplane.Dockerfile", "builder.Dockerfile"])
def test_dockerfile_installs_the_project_on_a_replaceable_base(name):
    lines = dockerfile(name)
    assert lines[0] == "ARG BASE_IMAGE=python:3.11-slim"
    assert lines[1] == "FROM ${BASE_IMAGE}"
    copies = [line for line in lines if line.startswith("COPY ")]
    for path in ("pyproject.toml", "controlplane", "builder"):
        assert any(f" {path} " in line for line in copies), f"{name} does not COPY {path}"
    assert any(re.search(r"pip install .*\s\.$|pip install .*/src$", line) for line in lines if "RUN" in line)
    assert any(line.startswith("USER ") for line in lines)


def test_controlplane_image_entrypoint():
    lines = dockerfile("controlplane.Dockerfile")
    assert 'ENTRYPOINT ["spaceyard"]' not in lines  # the chart runs `spaceyard serve` and `spaceyard gpu-agent`
    assert 'CMD ["spaceyard", "serve"]' in lines
    assert any("git" in line for line in lines if line.startswith("RUN"))  # git http-backend


def test_builder_image_entrypoint():
    lines = dockerfile("builder.Dockerfile")
    cmd = next(line for line in lines if line.startswith("CMD "))
    assert cmd.startswith('CMD ["celery", "-A", "builder.celery_app", "worker", "-Q", "builds"')
    run = " ".join(line for line in lines if line.startswith("RUN"))
    assert "git" in run and "socat" in run and "debootstrap" in run
    # The builder copies runtime-images/ into SDK bases; it is not inside the installed package.
    assert "COPY runtime-images /opt/spaceyard/runtime-images" in lines
    assert "ENV SPACEYARD_RUNTIME_IMAGES_DIR=/opt/spaceyard/runtime-images" in lines
