"""The chart installed as a user installs it on one machine, end to end, against the cluster KUBECONFIG names.

What a user does after `helm install -f helm/spaceyard/examples/local-cluster.yaml` on ../shared/k8s (one real node,
a plain-HTTP registry on the node at 127.0.0.1:5000, no ingress controller, no storage provisioner): the images built
from docker/*.Dockerfile are pushed to that registry; the control plane, builder, Redis and PostgreSQL pods reach
Ready; a Space is created through the in-cluster API and a Gradio app `git push`ed; the in-cluster builder builds it
on the build node's Docker engine (builder.engine=node: this machine's engine, the one this test talks to; its
spaceyard/sdk-gradio base already has Gradio, so no PyPI) and pushes it; the Space runs as a pod on node1 (pool cpu)
and gradio_client calls it through the control plane's router (its Host header, at the control plane's NodePort);
a t4-small Space is bound to the fake T4 node and a second one waits for hardware with the
scheduler's message until the first pauses; `helm uninstall` plus the documented removal of the Spaces namespace
leave nothing behind. The images are built once per engine (docker's cache) and pushed under a content tag.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import git
from tests.e2e.spaces import GRADIO_APP, readme

helm = pytest.importorskip("helm_python", reason="needs helm-python-sdk (pip install helm-python-sdk)")
docker = pytest.importorskip("docker")

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.docker,
    pytest.mark.timeout(1500),
    pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run"),
]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "spaceyard"
LOCAL_VALUES = CHART / "examples" / "local-cluster.yaml"
# The node's registry (../shared/k8s/start.sh --registry): Docker pushes to it and node1's containerd pulls from it.
REGISTRY = "127.0.0.1:5000"
RELEASE = "spaceyard"
RUN = uuid.uuid4().hex[:6]
NAMESPACE = f"sye2e-{RUN}"
SPACES = f"{NAMESPACE}-spaces"
PLATFORM = ("controlplane", "builder", "redis", "postgresql")


_config: list[pytest.Config] = []


@pytest.fixture(scope="module", autouse=True)
def _report_to(pytestconfig) -> None:
    _config[:] = [pytestconfig]


def report(line: str) -> None:
    """Print in the test run's output even when pytest captures it (CI shows the step times)."""
    capture = _config[0].pluginmanager.getplugin("capturemanager") if _config else None
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n[e2e] {line}", flush=True)


def timed(label: str, started: float) -> None:
    report(f"{label}: {time.monotonic() - started:.1f} s")


def until(what: str, check: Callable[[], object], timeout: float, every: float = 1.0, detail=lambda: "") -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s\n{detail()}")
        time.sleep(every)


@pytest.fixture(scope="module")
def engine() -> Iterator[docker.DockerClient]:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        pytest.skip("the build node's engine is mounted by its unix socket; DOCKER_HOST is not one")
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine reachable ({exc})")
    try:
        httpx.get(f"http://{REGISTRY}/v2/", timeout=5).raise_for_status()
    except httpx.HTTPError as exc:
        pytest.skip(f"no registry at {REGISTRY} ({exc}): start the cluster with ../shared/k8s/start.sh --registry")
    yield client
    client.close()


def push(client: docker.DockerClient, image_id: str, name: str) -> dict[str, str]:
    """Push under a tag naming the content (IfNotPresent then never runs a stale image); keep `:e2e` for the cache."""
    repository, tag = f"{REGISTRY}/spaceyard-e2e/{name}", image_id.split(":")[1][:12]
    try:
        previous = client.api.inspect_image(f"{repository}:e2e")["Id"]
    except docker.errors.ImageNotFound:
        previous = None
    client.api.tag(image_id, repository, "e2e")
    if previous not in (None, image_id):
        with contextlib.suppress(docker.errors.APIError):
            client.api.remove_image(previous)  # the last run's, now untagged; its layers the new one shares stay
    client.api.tag(image_id, repository, tag)
    for chunk in client.api.push(repository, tag, stream=True, decode=True):
        assert "error" not in chunk, chunk
    client.api.remove_image(f"{repository}:{tag}")  # the untag only: :e2e keeps the image and its build cache
    return {"repository": repository, "tag": tag}


@pytest.fixture(scope="module")
def images(engine) -> dict[str, dict[str, str]]:
    from tests.images.test_platform_images import BASE_IMAGE, build

    try:
        engine.api.inspect_image(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE_IMAGE} is missing: build it with `python -m builder.baseimages` (./dev.sh test does)")
    started = time.monotonic()
    pushed = {}
    for name in ("controlplane", "builder"):
        tag, _seconds, _log = build(engine, name)
        image_id = engine.api.inspect_image(tag)["Id"]
        pushed[name] = push(engine, image_id, name)
        engine.api.remove_image(tag)
    pushed["datastores"] = build_alone(engine, "datastores")
    pushed["proxy"] = build_alone(engine, "proxy")
    timed("images built and pushed", started)
    return pushed


def build_alone(engine: docker.DockerClient, name: str) -> dict[str, str]:
    """Build docker/{name}.Dockerfile, which needs no context, on the base image; push it."""
    from tests.images.test_platform_images import BASE_IMAGE

    dockerfile = (ROOT / "docker" / f"{name}.Dockerfile").read_bytes()
    image_id = None
    for chunk in engine.api.build(
        fileobj=io.BytesIO(dockerfile), buildargs={"BASE_IMAGE": BASE_IMAGE}, rm=True, forcerm=True, decode=True
    ):
        assert "error" not in chunk, chunk
        if "aux" in chunk:
            image_id = chunk["aux"]["ID"]
    assert image_id is not None
    return push(engine, image_id, name)


@pytest.fixture(scope="module")
def cluster():
    from kubernetes import client

    from controlplane.runtime.kubernetes_backend import load_api_client

    api = load_api_client()
    node_address(client.CoreV1Api(api))  # skips at once on another cluster
    yield api
    api.close()


def node_address(core) -> str:
    from kubernetes import client

    try:
        node = core.read_node("node1")
    except client.ApiException as e:
        if e.status != 404:
            raise
        pytest.skip("needs ../shared/k8s: its node1 is this machine, whose Docker engine and registry the test uses")
    return next(a.address for a in node.status.addresses if a.type == "InternalIP")


def local_values(core, images: dict, hostpath: Path, namespace: str) -> dict:
    """examples/local-cluster.yaml, as this run installs it: its images, namespaces, a free NodePort, this engine."""
    node_port = 30000 + int(uuid.uuid4().hex[:3], 16) % 2000
    values = yaml.safe_load(LOCAL_VALUES.read_text())
    socket = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
    values["domains"]["publicUrl"] = f"http://{node_address(core)}:{node_port}"
    values["controlplane"]["service"] = {"nodePort": node_port}
    values["spaces"]["namespace"] = f"{namespace}-spaces"
    values["storage"]["hostPath"] = str(hostpath)
    values["registry"]["external"]["address"] = f"{REGISTRY}/{namespace}"
    values["images"] |= {
        "controlplane": images["controlplane"],
        "builder": images["builder"],
        "redis": images["datastores"],
        "postgresql": images["datastores"],
    }
    # The example's proxy replicas, from this run's image (a fresh machine's registry has none yet).
    values["proxy"]["image"] = images["proxy"]
    values["builder"]["nodeEngine"] = {"socket": socket, "groupId": 0}
    return values


@contextlib.contextmanager
def helm_release(cluster, values: dict, namespace: str) -> Iterator[dict]:
    """The chart installed in `namespace`; uninstalled and its namespaces deleted at the end, also on failure."""
    from kubernetes import client

    from tests.images.test_platform_images import ca_bundle

    core = client.CoreV1Api(cluster)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    config = helm.Config(kubeconfig_path=os.environ["KUBECONFIG"], namespace=namespace)
    try:
        bundle = ca_bundle()
        if bundle is not None:
            # The CA bundle the builds on this machine trust (as dev.sh gives the builder): Space images get it,
            # and the SDK base images it labels stay the ones the other platforms on this engine use.
            core.create_namespaced_config_map(
                namespace,
                client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name="build-ca"), data={"ca-certificates.crt": bundle.read_text()}
                ),
            )
            values["builder"]["caBundle"] = {"configMap": "build-ca", "key": "ca-certificates.crt"}
        started = time.monotonic()
        with helm.Chart.load(CHART) as chart:
            installed = config.install(chart, RELEASE, values, namespace=namespace, timeout=120)
        assert installed["status"] == "deployed"
        yield {
            "url": values["domains"]["publicUrl"],
            "values": values,
            "config": config,
            "manifest": installed["manifest"],
            "started": started,
        }
    finally:
        with contextlib.suppress(Exception):
            config.uninstall(RELEASE, timeout=120)
        config.close()
        for ns in (values["spaces"]["namespace"], namespace):
            with contextlib.suppress(client.ApiException):
                core.delete_namespace(ns)


@pytest.fixture(scope="module")
def release(cluster, engine, images, tmp_path_factory) -> Iterator[dict]:
    from kubernetes import client

    values = local_values(client.CoreV1Api(cluster), images, tmp_path_factory.mktemp("hostpath"), NAMESPACE)
    try:
        with helm_release(cluster, values, NAMESPACE) as installed:
            yield installed
    finally:
        remove_space_images(engine)


def remove_space_images(engine: docker.DockerClient) -> None:
    """The Space images this run's builder made on the engine (pushed as {REGISTRY}/{NAMESPACE}/...)."""
    for image in engine.images.list():
        if any(t.startswith(f"{REGISTRY}/{NAMESPACE}/") for t in image.tags):
            with contextlib.suppress(docker.errors.APIError):
                engine.api.remove_image(image.id, force=True)


def pods_ready(core, namespace: str) -> dict[str, bool]:
    out = {}
    for pod in core.list_namespaced_pod(namespace).items:
        component = (pod.metadata.labels or {}).get("app.kubernetes.io/component", pod.metadata.name)
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        out[component] = out.get(component, False) or ready
    return out


def describe(core, namespace: str) -> str:
    lines = [
        f"{p.metadata.name}: {p.status.phase} on {p.spec.node_name}" for p in core.list_namespaced_pod(namespace).items
    ]
    events = core.list_namespaced_event(namespace).items[-15:]
    return "\n".join(lines + [f"  {e.involved_object.name}: {e.reason} {e.message}" for e in events])


def exec_in(cluster, namespace: str, pod: str, command: list[str], container: str = "controlplane") -> str:
    from kubernetes import client
    from kubernetes.stream import stream

    return stream(
        client.CoreV1Api(cluster).connect_get_namespaced_pod_exec,
        pod,
        namespace,
        command=command,
        container=container,
        stderr=False,
        stdin=False,
        stdout=True,
        tty=False,
    )


def space_pods(core, name: str) -> list:
    return [p for p in core.list_namespaced_pod(SPACES).items if p.metadata.name.startswith(f"space-alice-{name}-")]


def ok_page(url: str, host: str) -> httpx.Response | None:
    with contextlib.suppress(httpx.HTTPError):
        page = httpx.get(url, headers={"Host": host}, timeout=10)
        if page.status_code == 200:
            return page
    return None


def push_app(url: str, token: str, name: str, files: dict[str, str], tmp_path: Path) -> None:
    repo = tmp_path / name
    git("clone", "-q", url.replace("http://", f"http://alice:{token}@") + f"/spaces/alice/{name}", str(repo))
    for path, text in files.items():
        (repo / path).write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "app", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)


def greet(url: str, host: str, name: str) -> str:
    """The Space's /greet, called as a user calls it: gradio_client, through the router (the Space's Host header)."""
    from gradio_client import Client

    return Client(f"{url}/", headers={"Host": host}, verbose=False).predict(name, api_name="/greet")


def pulled(core, pod: str) -> str:
    """The kubelet's pull message for a Space pod ('Successfully pulled image ... in 2.1s ...'), or why not."""
    events = core.list_namespaced_event(SPACES, field_selector=f"involvedObject.name={pod}").items
    return next((e.message for e in events if e.reason in ("Pulled", "Failed")), "no pull event")


def test_install_build_serve_schedule_uninstall(cluster, engine, release, tmp_path) -> None:
    from huggingface_hub import HfApi
    from kubernetes import client

    core = client.CoreV1Api(cluster)
    url = release["url"]
    total = release["started"]

    # 1. The platform's pods reach Ready on the node (images pulled from the node's registry).
    until(
        "platform pods Ready",
        lambda: all(pods_ready(core, NAMESPACE).get(c) for c in PLATFORM),
        420,
        2,
        lambda: describe(core, NAMESPACE),
    )
    timed("install to all platform pods Ready", total)
    until(
        "control plane answering on its NodePort",
        lambda: httpx.get(f"{url}/api/spaces", timeout=5).status_code == 200,
        60,
    )

    # 2. A user, made as the install notes say (spaceyard user add in the control plane pod).
    (pod,) = [
        p.metadata.name
        for p in core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=controlplane").items
        if p.status.phase == "Running"
    ]
    token = exec_in(cluster, NAMESPACE, pod, ["spaceyard", "user", "add", "alice"]).strip().splitlines()[-1]
    api = HfApi(endpoint=url, token=token)

    # 3. A Gradio Space pushed with git, built in the cluster, run in a pod on the cpu pool, called through the router.
    started = time.monotonic()
    api.create_repo("alice/hello", repo_type="space", space_sdk="gradio")
    push_app(url, token, "hello", {"app.py": GRADIO_APP, "README.md": readme("gradio")}, tmp_path)
    runtime = api.wait_for_space("alice/hello", timeout=300, poll_interval=1)
    assert runtime.stage == "RUNNING", runtime.raw
    timed("git push to RUNNING (Gradio)", started)
    (pod,) = space_pods(core, "hello")
    assert pod.spec.node_name == "node1"
    image = pod.spec.containers[0].image
    assert image.startswith(f"{REGISTRY}/{NAMESPACE}/")  # what the in-cluster builder pushed
    size = engine.api.inspect_image(image)["Size"] / 1e6  # still on the build node's engine
    report(f"Space image {size:.0f} MB; node1: {pulled(core, pod.metadata.name)}")
    host = runtime.raw["spaceyard"]["hostUrl"].removeprefix("http://")
    assert greet(url, host, "x") == "Hello x!"
    timed("git push to an answer from gradio_client", started)

    # 4. helm upgrade with a running Space: the control plane is replaced (a new setting), the Space's pod is not,
    # and the new control plane routes to it.
    started = time.monotonic()
    (old_cp,) = core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=controlplane").items
    values = {
        **release["values"],
        "controlplane": {
            **release["values"]["controlplane"],
            "extraEnv": [{"name": "SPACEYARD_WAKE_TIMEOUT", "value": "5"}],
        },
    }
    with helm.Chart.load(CHART) as chart:
        upgraded = release["config"].upgrade(chart, RELEASE, values, namespace=NAMESPACE, timeout=120)
    assert (upgraded["status"], upgraded["revision"]) == ("deployed", 2)

    def new_controlplane_ready() -> bool:
        # The Deployment recreates its pod (one SQLite writer): for a moment there may be no control-plane pod at all;
        # only a Ready pod other than the old one counts.
        pods = core.list_namespaced_pod(NAMESPACE, label_selector="app.kubernetes.io/component=controlplane").items
        return any(
            p.metadata.uid != old_cp.metadata.uid
            and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            for p in pods
        )

    until("the upgraded control plane Ready", new_controlplane_ready, 180, 2, lambda: describe(core, NAMESPACE))
    until("the Space answering through the new control plane", lambda: ok_page(url, host), 60)
    assert greet(url, host, "again") == "Hello again!"
    assert [p.metadata.uid for p in space_pods(core, "hello")] == [pod.metadata.uid]
    timed("helm upgrade to serving again", started)

    # 5. GPU Spaces: the first is bound to the (fake) T4 node; the second waits with the scheduler's message.
    # Static pages: the fake node never runs them, so only their build and placement count.
    started = time.monotonic()
    for name in ("gpu1", "gpu2"):
        api.create_repo(f"alice/{name}", repo_type="space", space_sdk="static", space_hardware="t4-small")
        push_app(url, token, name, {"index.html": f"<p>{name}</p>\n"}, tmp_path)
    bound = until(
        "gpu1 bound to a node",
        lambda: [p.spec.node_name for p in space_pods(core, "gpu1") if p.spec.node_name],
        300,
        2,
        lambda: describe(core, SPACES),
    )
    assert bound == ["gpu-t4-1"]
    waiting = until(
        "gpu2 waiting for hardware with the scheduler's message",
        lambda: "Insufficient nvidia.com/gpu" in httpx.get(f"{url}/api/spaces/alice/gpu2/runtime", timeout=10).text,
        300,
        2,
        lambda: httpx.get(f"{url}/api/spaces/alice/gpu2/runtime", timeout=10).text,
    )
    assert waiting
    assert [p.spec.node_name for p in space_pods(core, "gpu2")] == [None]
    timed("GPU Spaces bound / waiting", started)
    # ...and is placed once the first one pauses and gives the GPU back.
    api.pause_space("alice/gpu1")
    until(
        "gpu2 bound once gpu1 paused",
        lambda: [p.spec.node_name for p in space_pods(core, "gpu2")] == ["gpu-t4-1"],
        120,
        2,
        lambda: describe(core, SPACES),
    )

    # 6. helm uninstall: the platform's objects go; the Spaces namespace stays on purpose (running Spaces survive
    # an uninstall), and deleting it as docs/install-kubernetes.md says leaves nothing behind.
    release["config"].uninstall(RELEASE, timeout=120)
    until("platform pods gone", lambda: not core.list_namespaced_pod(NAMESPACE).items, 120, 2)
    kept = [
        f"{d['kind']}/{d['metadata']['name']}"
        for d in yaml.safe_load_all(release["manifest"])
        if d and d["kind"] != "Namespace" and exists(cluster, d)
    ]
    assert kept == []
    core.delete_namespace(SPACES)
    core.delete_namespace(NAMESPACE)

    def gone(ns: str) -> bool:
        try:
            core.read_namespace(ns)
            return False
        except client.ApiException as e:
            return e.status == 404

    until("namespaces deleted", lambda: gone(SPACES) and gone(NAMESPACE), 180, 2)
    timed("whole test", total)


def exists(api, obj: dict) -> bool:
    from kubernetes import dynamic
    from kubernetes.dynamic.exceptions import NotFoundError

    resource = dynamic.DynamicClient(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    meta = obj["metadata"]
    try:
        resource.get(name=meta["name"], namespace=meta.get("namespace", NAMESPACE) if resource.namespaced else None)
        return True
    except NotFoundError:
        return False


# As the builder worker (uid 10001) runs it: the engine behind DOCKER_HOST answers and builds.
DIND_CHECK = """
import io, os, time
import docker
client = docker.from_env()
for _ in range(60):
    try:
        client.ping()
        break
    except Exception:
        time.sleep(1)
image, _ = client.images.build(fileobj=io.BytesIO(b"FROM scratch\\nLABEL dev.spaceyard.check=dind\\n"), rm=True)
print(os.getuid(), client.version()["Version"], image.labels["dev.spaceyard.check"])
"""


def test_the_default_dind_builder_runs(cluster, engine, images, tmp_path_factory) -> None:
    """builder.engine: dind, the chart's default, on the same cluster. docker:27-dind cannot be pulled here, so
    images.dind is docker/dind.Dockerfile (Debian's Docker Engine): the privileged sidecar starts its daemon and the
    unprivileged worker drives it through the shared socket (dockerd --group=10001)."""
    from kubernetes import client

    core = client.CoreV1Api(cluster)
    namespace = f"sye2e-dind-{RUN}"
    started = time.monotonic()
    values = local_values(core, images, tmp_path_factory.mktemp("dind"), namespace)
    # baseImageSource registry: the worker runs as uid 10001, so the socket's group is what lets it in.
    values["builder"] |= {"engine": "dind", "baseImageSource": "registry"}
    values["images"]["dind"] = build_alone(engine, "dind")
    with helm_release(cluster, values, namespace):
        until(
            "the builder pod Ready",
            lambda: pods_ready(core, namespace).get("builder"),
            300,
            2,
            lambda: describe(core, namespace),
        )
        (pod,) = core.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/component=builder").items
        assert {c.name: bool(c.security_context and c.security_context.privileged) for c in pod.spec.containers} == {
            "builder": False,
            "dind": True,
        }
        out = exec_in(cluster, namespace, pod.metadata.name, ["python", "-c", DIND_CHECK], container="builder")
        uid, version, label = out.split()[-3:]
        assert (uid, label) == ("10001", "dind") and version.startswith("20.10"), out
    timed("DinD builder: install to a build on its engine", started)
