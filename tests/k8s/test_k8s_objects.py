"""The Space manifests for every tier in the default catalog: valid Kubernetes, placed on the right pool."""

from __future__ import annotations

import asyncio
import re

import kubernetes_validate
import pytest

from controlplane.router.resolver import StaticResolver, Target, path_prefix, space_label
from controlplane.runtime.base import AppSpec
from controlplane.runtime.k8s_objects import (
    BUILD_LABEL,
    SPACE_ANNOTATION,
    SPACE_LABEL,
    START_LABEL,
    STARTUP_PERIOD_SECONDS,
    TIER_LABEL,
    InstanceKey,
    K8sOptions,
    deployment_name,
    instance_endpoint,
    instance_service_name,
    make_deployment,
    make_ingress,
    make_instance_service,
    make_secret,
    make_service,
    object_name,
    space_host,
)
from controlplane.tiers import default_catalog

K8S_VERSIONS = ("1.28", "1.30")  # the scheduler DESIGN.md's facts were checked on, and a recent one
DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")  # RFC 1035: what Service names need
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
CATALOG = default_catalog()
TIERS = [t.name for t in CATALOG.tiers]
AWKWARD = [
    "alice/demo",
    "Alice_Smith/My.Cool_App",
    "a-b/c",
    "a/b-c",
    "org/" + "x" * 96,
    "UPPER/--dashes--",
    "123/456",
    "_/_",
]
OPTIONS = K8sOptions(
    namespace="spaces",
    apps_domain="apps.example.com",
    ingress_class="nginx",
    tls_secret="apps-wildcard-tls",
    image_pull_secret="registry-creds",
)


def app_spec(tier: str, space: str = "alice/demo", **kw) -> AppSpec:
    return AppSpec(
        space=space,
        build_id=kw.pop("build_id", 7),
        image=kw.pop("image", "registry.example.com/spaces/alice-demo:7"),
        port=kw.pop("port", 7860),
        tier=CATALOG.tier(tier),
        env=kw.pop("env", {"SPACE_ID": space, "SYSTEM": "spaces", "GRADIO_SERVER_PORT": "7860"}),
        secret_env=kw.pop("secret_env", {"HF_TOKEN": "hf_secret", "OPENAI_API_KEY": "sk-x"}),
        **kw,
    )


UID = "0b5c5d2e-6a0e-4d7e-9a8e-1c2b3a4d5e6f"


def owned(deployment: dict) -> dict:
    """The Deployment as the API returns it: with its uid."""
    return {**deployment, "metadata": {**deployment["metadata"], "uid": UID}}


def render(tier: str, options: K8sOptions = OPTIONS, **kw) -> dict[str, dict]:
    spec = app_spec(tier, **kw)
    pool = CATALOG.pool_for(tier)
    return {
        "Deployment": make_deployment(spec, pool, options, "a1b2c3"),
        "InstanceService": make_instance_service(owned(make_deployment(spec, pool, options, "a1b2c3"))),
        "Service": make_service(spec, options),
        "Ingress": make_ingress(spec, options),
        "Secret": make_secret(spec, options),
    }


def container(deployment: dict) -> dict:
    (app,) = deployment["spec"]["template"]["spec"]["containers"]
    return app


def env_of(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(deployment)["env"]}


def validate(obj: dict, version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        # The library's message embeds the whole schema; its first line says what is wrong.
        pytest.fail(f"{obj['kind']} invalid for Kubernetes {version}: {str(e).splitlines()[0]}")


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("tier", TIERS)
def test_every_object_validates_strictly(tier: str, version: str) -> None:
    for obj in render(tier).values():
        validate(obj, version)


@pytest.mark.parametrize("tier", TIERS)
def test_pod_lands_on_the_tier_pool(tier: str) -> None:
    pool = CATALOG.pool_for(tier)
    pod = render(tier)["Deployment"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == pool.node_selector
    assert pod["tolerations"] == [dict(t) for t in pool.tolerations]
    if CATALOG.tier(tier).is_gpu:
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    else:
        assert pod["tolerations"] == []  # CPU pods must never tolerate the GPU taint


@pytest.mark.parametrize("tier", TIERS)
def test_resources_follow_the_tier(tier: str) -> None:
    t = CATALOG.tier(tier)
    deployment = render(tier)["Deployment"]
    resources = container(deployment)["resources"]
    assert resources["limits"]["cpu"] == f"{round(t.vcpu * 1000)}m"
    assert resources["limits"]["memory"] == f"{round(t.memory_gb * 1024)}Mi"
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]  # Guaranteed QoS by default
    gpu_keys = {k for part in resources.values() for k in part if "gpu" in k}
    env = env_of(deployment)
    if t.is_gpu:
        assert resources["limits"]["nvidia.com/gpu"] == str(t.gpu_count)
        assert resources["requests"]["nvidia.com/gpu"] == str(t.gpu_count)
        assert "NVIDIA_VISIBLE_DEVICES" not in env  # the device plugin sets it to the granted GPUs
    else:
        assert gpu_keys == set()
        assert env["NVIDIA_VISIBLE_DEVICES"] == {"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}


def test_cpu_tier_overrides_a_spec_that_asks_for_all_gpus() -> None:
    deployment = render("cpu-basic", env={"NVIDIA_VISIBLE_DEVICES": "all"})["Deployment"]
    visible = [e for e in container(deployment)["env"] if e["name"] == "NVIDIA_VISIBLE_DEVICES"]
    assert visible == [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]


def test_request_ratio_lowers_requests_not_limits_or_gpus() -> None:
    options = K8sOptions(request_ratio=0.75)
    resources = container(render("t4-small", options)["Deployment"])["resources"]
    assert resources["requests"]["cpu"] == "3000m" and resources["limits"]["cpu"] == "4000m"
    assert resources["requests"]["memory"] == f"{round(15 * 1024 * 0.75)}Mi"
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == "1"


def test_the_pod_pulls_the_image_the_builder_pushed() -> None:
    # The builder pushes a build's image (spaceyard-<instance>/space-<id>:b<n>) as {SPACEYARD_REGISTRY}/<image>.
    pushed = K8sOptions(registry="127.0.0.1:5000/spaceyard/")
    image = container(render("cpu-basic", pushed, image="spaceyard-x/space-1:b2")["Deployment"])["image"]
    assert image == "127.0.0.1:5000/spaceyard/spaceyard-x/space-1:b2"
    local = container(render("cpu-basic", image="spaceyard-x/space-1:b2")["Deployment"])["image"]
    assert local == "spaceyard-x/space-1:b2"


@pytest.mark.parametrize("tier", TIERS)
def test_gpu_tiers_recreate_instead_of_surging(tier: str) -> None:
    strategy = render(tier)["Deployment"]["spec"]["strategy"]
    if CATALOG.tier(tier).is_gpu:
        assert strategy == {"type": "Recreate"}
    else:
        assert strategy["type"] == "RollingUpdate"
        assert strategy["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("timeout", [30.0, 600.0, 1800.0, 7.0])
def test_startup_probe_honours_the_startup_timeout(timeout: float) -> None:
    probe = container(render("cpu-basic", startup_timeout=timeout)["Deployment"])["startupProbe"]
    window = probe["failureThreshold"] * probe["periodSeconds"]
    assert probe["periodSeconds"] == STARTUP_PERIOD_SECONDS
    assert timeout <= window < timeout + STARTUP_PERIOD_SECONDS
    assert probe["tcpSocket"] == {"port": "http"}


def test_http_probe_when_configured() -> None:
    app = container(render("cpu-basic", K8sOptions(http_probe_path="/healthz"))["Deployment"])
    assert app["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert app["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert "livenessProbe" not in app


def test_pod_runs_unprivileged_without_a_service_account_token() -> None:
    deployment = render("a10g-small")["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    assert pod["enableServiceLinks"] is False  # no env var naming every other Space's Service
    app = container(deployment)
    assert app["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    assert pod["imagePullSecrets"] == [{"name": "registry-creds"}]
    unset = make_deployment(app_spec("cpu-basic"), CATALOG.pool_for("cpu-basic"), K8sOptions())
    assert "imagePullSecrets" not in unset["spec"]["template"]["spec"]


def test_the_app_is_not_pid_1_and_stops_like_on_docker() -> None:
    pod = render("cpu-basic")["Deployment"]["spec"]["template"]["spec"]
    # The pause process is PID 1 (it reaps, and SIGTERM reaches an app that installs no handler).
    assert pod["shareProcessNamespace"] is True
    assert pod["terminationGracePeriodSeconds"] == 5


def test_env_and_secret_refs() -> None:
    objects = render("cpu-basic", env={"SPACE_ID": "alice/demo", "HF_TOKEN": "shadowed"})
    env = env_of(objects["Deployment"])
    name = object_name("alice/demo")
    assert env["SPACE_ID"] == {"name": "SPACE_ID", "value": "alice/demo"}
    # A secret wins over a variable of the same name, and its value never enters the Deployment.
    assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": "HF_TOKEN"}}}
    assert "hf_secret" not in str(objects["Deployment"])
    assert objects["Secret"]["data"] == {"HF_TOKEN": "aGZfc2VjcmV0", "OPENAI_API_KEY": "c2steA=="}


def test_secret_change_rolls_the_pod() -> None:
    checksum_key = "spaceyard.dev/secret-checksum"
    one = render("cpu-basic")["Deployment"]["spec"]["template"]["metadata"]["annotations"][checksum_key]
    two = render("cpu-basic", secret_env={"HF_TOKEN": "rotated"})["Deployment"]
    assert two["spec"]["template"]["metadata"]["annotations"][checksum_key] != one


def test_bad_secret_name_is_refused() -> None:
    with pytest.raises(ValueError, match="MY SECRET"):
        make_secret(app_spec("cpu-basic", secret_env={"MY SECRET": "x"}), OPTIONS)


def test_replicas_param_pauses() -> None:
    spec = app_spec("t4-small")
    assert make_deployment(spec, CATALOG.pool_for("t4-small"), OPTIONS)["spec"]["replicas"] == 1
    assert make_deployment(spec, CATALOG.pool_for("t4-small"), OPTIONS, replicas=0)["spec"]["replicas"] == 0


@pytest.mark.parametrize("tier", TIERS)
def test_labels_and_selectors(tier: str) -> None:
    objects = render(tier)
    deployment, service, own = objects["Deployment"], objects["Service"], objects["InstanceService"]
    name = object_name("alice/demo")
    for obj in objects.values():
        labels = obj["metadata"]["labels"]
        assert labels[SPACE_LABEL] == name
        assert labels[BUILD_LABEL] == "7"
        assert labels[TIER_LABEL] == tier
        assert labels["app.kubernetes.io/managed-by"] == "spaceyard"
        assert obj["metadata"]["annotations"][SPACE_ANNOTATION] == "alice/demo"
        assert obj["metadata"]["namespace"] == "spaces"
        # The rest is per Space.
        assert obj["metadata"]["name"] == (f"{name}-b7-a1b2c3" if obj in (deployment, own) else name)
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]
    # Each start of a build its own Deployment (a redeploy or restart starts beside the serving one).
    assert deployment["spec"]["selector"]["matchLabels"] == {SPACE_LABEL: name, BUILD_LABEL: "7", START_LABEL: "a1b2c3"}
    assert template_labels[START_LABEL] == deployment["metadata"]["labels"][START_LABEL] == "a1b2c3"
    # The instance's Service (its endpoint) takes only its own pods: a redeploy's old and new instances are two
    # Services, so what the proxy sends to the old one while it drains reaches the old pod.
    assert own["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert own["spec"]["selector"].items() <= template_labels.items()
    assert own["metadata"]["ownerReferences"] == [
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": f"{name}-b7-a1b2c3", "uid": UID}
    ]
    # The Space's Service (only for its Ingress) takes any ready pod of the Space.
    assert service["spec"]["selector"] == {SPACE_LABEL: name}
    assert template_labels[BUILD_LABEL] == "7" and template_labels[TIER_LABEL] == tier


def test_ingress_host_class_tls_and_backend() -> None:
    ingress = render("cpu-basic")["Ingress"]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == "alice-demo.apps.example.com"
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["alice-demo.apps.example.com"], "secretName": "apps-wildcard-tls"}]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": object_name("alice/demo"), "port": {"number": 80}}

    plain = make_ingress(app_spec("cpu-basic"), K8sOptions())
    assert "tls" not in plain["spec"] and "ingressClassName" not in plain["spec"]


@pytest.mark.parametrize("space", AWKWARD)
def test_awkward_space_names_give_valid_deterministic_names(space: str) -> None:
    name = object_name(space)
    assert DNS_LABEL.match(name) and len(name) <= 63, name
    assert LABEL_VALUE.match(name)
    assert object_name(space) == name
    host_label = space_host(space, "apps.example.com").removesuffix(".apps.example.com")
    assert re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", host_label) and len(host_label) <= 63, host_label
    for obj in render("a100-large", space=space).values():
        validate(obj, "1.30")


@pytest.mark.parametrize("space", AWKWARD)
@pytest.mark.parametrize("build", [1, 123456789])
def test_instance_service_names_are_dns_labels_and_distinct(space: str, build: int) -> None:
    key = InstanceKey(object_name(space), build, "a1b2c3")
    name = instance_service_name(key)
    assert DNS_LABEL.match(name) and len(name) <= 63, name
    # The Deployment's own name where that fits; else still one per start and build.
    fits = len(deployment_name(space, build, "a1b2c3")) <= 63
    assert (name == deployment_name(space, build, "a1b2c3")) == fits
    assert name != instance_service_name(InstanceKey(key.name, build, "a1b2c4"))
    assert name != instance_service_name(InstanceKey(key.name, build + 1, "a1b2c3"))
    assert instance_endpoint(key, "spaces") == f"{name}.spaces.svc.cluster.local:80"
    # A Deployment from before starts had their own keeps the Space's Service (no selector says "no start label").
    assert instance_service_name(InstanceKey(key.name, build)) == key.name
    legacy = make_deployment(app_spec("cpu-basic", space=space), CATALOG.pool_for("cpu-basic"), OPTIONS)
    with pytest.raises(ValueError):
        make_instance_service(legacy)


def test_names_that_slug_alike_stay_distinct() -> None:
    assert object_name("a-b/c") != object_name("a/b-c")
    assert object_name("Alice/Demo") != object_name("alice/demo")
    long_a, long_b = "org/" + "x" * 96 + "a", "org/" + "x" * 96 + "b"
    assert object_name(long_a) != object_name(long_b)
    assert space_host(long_a, "d") != space_host(long_b, "d")


def test_ingress_host_is_the_routers_host_past_63_characters() -> None:
    """The Ingress names the host the router answers for the Space, even where {owner}-{name} is too long."""
    owner, name = "an-organisation-with-a-long-name", "a-space-whose-name-goes-on-well-past-the-dns-label-limit-2"
    assert len(owner + name) == 90
    space = f"{owner}/{name}"
    (rule,) = make_ingress(app_spec("cpu-basic", space=space), OPTIONS)["spec"]["rules"]
    label = rule["host"].removesuffix(".apps.example.com")
    assert DNS_LABEL.match(label) and len(label) <= 63, label
    assert label == space_label(owner, name)
    target = Target(space, "127.0.0.1:1", path_prefix(owner, name), True)
    found = asyncio.run(StaticResolver({space: target}).resolve(label=label, owner=None, name=None, request_headers={}))
    assert found == target


def test_instance_ids_round_trip() -> None:
    key = InstanceKey(object_name("alice/demo"), 42, "a1b2c3")
    assert key.id == f"{object_name('alice/demo')}:42:a1b2c3"
    assert InstanceKey.parse(key.id) == key
    # Ids from before each start had its own Deployment still name theirs, which has no start label.
    legacy = InstanceKey.parse(f"{key.name}:42")
    assert legacy.start == "" and legacy.selector.endswith(f",!{START_LABEL}")
    for bad in ("not-an-instance", "a:b", "a:1:x:y", ":1"):
        with pytest.raises(ValueError):
            InstanceKey.parse(bad)
