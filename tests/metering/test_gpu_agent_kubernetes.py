"""The GPU agent on a Kubernetes node: kubelet pod-resources over real gRPC, Spaces from the pods' annotations.

The kubelet cannot run here, so a real gRPC server on a unix socket answers `PodResourcesLister.List` with a
recorded response, through the same generated stubs the agent uses; the API server is a loopback HTTP server
answering the recorded PodList, reached through a kubeconfig by the real kubernetes client. Against a real
cluster (KUBECONFIG set) the pod lookup also runs for real.
"""

from __future__ import annotations

import copy
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import pytest
from google.protobuf import json_format
from kubernetes import config

from controlplane.gpu_agent.agent import main
from controlplane.gpu_agent.k8s_pods import (
    CachedPodSpaces,
    KubernetesPodSpaces,
    kubernetes_mapper,
    pod_spaces_from_list,
    space_of,
)
from controlplane.gpu_agent.kubelet import list_pod_resources
from controlplane.gpu_agent.podresources import api_pb2, api_pb2_grpc
from controlplane.metering.samples import store_samples
from controlplane.runtime.base import AppSpec
from controlplane.runtime.k8s_objects import K8sOptions, make_deployment
from controlplane.tiers import default_catalog
from tests.metering.test_gpu_agent import H100_0, H100_NODE, ControlPlaneStub, Ticker, make_agent

DATA = Path(__file__).parent / "data"
KUBELET_LIST = DATA / "kubelet-list-h100x2.json"  # grpcurl's JSON of List on a 2x H100 node
POD_LIST = DATA / "pods-gpu-node-1.json"  # GET .../namespaces/spaceyard-spaces/pods on that node
H100_1 = "GPU-3c9e7d1a-64b2-f8e0-1a3c-5e7f9b2d4c6a"
NS = "spaceyard-spaces"
ALICE_POD = (NS, "space-alice-llm-c0ec9ff9-6d9f7c9b8-x2k4q")


class FakeKubelet(api_pb2_grpc.PodResourcesListerServicer):
    def __init__(self, response: api_pb2.ListPodResourcesResponse) -> None:
        self.response, self.calls = response, 0

    def List(self, request, context):  # noqa: N802 (the gRPC method name)
        self.calls += 1
        return self.response


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Path, FakeKubelet]]:
    socket = tmp_path / "kubelet.sock"
    recorded = json_format.ParseDict(json.loads(KUBELET_LIST.read_text()), api_pb2.ListPodResourcesResponse())
    servicer = FakeKubelet(recorded)
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    api_pb2_grpc.add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    yield socket, servicer
    server.stop(grace=None)


class ApiServerStub:
    """A loopback HTTP server answering the pod list the way the API server does, recording the queries."""

    def __init__(self, pod_list: dict) -> None:
        self.requests: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlsplit(self.path)
                stub.requests.append(
                    {"path": url.path, "query": parse_qs(url.query), "auth": self.headers["Authorization"]}
                )
                body = json.dumps(pod_list).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    def kubeconfig(self, path: Path) -> Path:
        path.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                    "users": [{"name": "gpu-agent", "user": {"token": "sa-token"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "gpu-agent"}}],
                    "current-context": "fake",
                }
            )
        )
        return path

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def api_server() -> Iterator[ApiServerStub]:
    stub = ApiServerStub(json.loads(POD_LIST.read_text()))
    yield stub
    stub.close()


@pytest.fixture
def control_plane() -> Iterator[ControlPlaneStub]:
    stub = ControlPlaneStub([])
    yield stub
    stub.close()


def recorded_pod() -> dict:
    return copy.deepcopy(json.loads(POD_LIST.read_text())["items"][0])


# --- the kubelet, over gRPC ----------------------------------------------------------------------


def test_list_pod_resources_is_a_real_grpc_round_trip(kubelet):
    socket, servicer = kubelet
    response = list_pod_resources(socket)
    assert servicer.calls == 1
    pods = {(p["namespace"], p["name"]): p for p in response["pod_resources"]}
    assert len(pods) == 5
    (device,) = pods[ALICE_POD]["containers"][0]["devices"]  # snake_case names, as map_kubernetes reads them
    assert device["resource_name"] == "nvidia.com/gpu" and device["device_ids"] == [H100_0]
    assert "devices" not in pods[("kube-system", "kube-proxy-q7d6m")]["containers"][0]


def test_an_absent_kubelet_socket_is_a_grpc_error(tmp_path):
    with pytest.raises(grpc.RpcError) as e:
        list_pod_resources(tmp_path / "missing.sock", timeout=2)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


# --- pods to Spaces ------------------------------------------------------------------------------


def test_space_of_a_recorded_pod():
    assert space_of(recorded_pod()) == "alice/llm"
    assert pod_spaces_from_list(json.loads(POD_LIST.read_text())) == {ALICE_POD: "alice/llm"}


def test_pods_that_are_no_spaces_or_carry_a_bad_annotation_have_none(caplog):
    unlabelled = recorded_pod()
    del unlabelled["metadata"]["labels"]["spaceyard.dev/space"]
    bare = {"metadata": {"name": "jupyter-0", "namespace": "research"}}
    malformed = recorded_pod()
    malformed["metadata"]["annotations"]["spaceyard.dev/space-id"] = "alice/llm/extra"
    assert [space_of(p) for p in (unlabelled, bare, malformed)] == [None, None, None]
    assert "'alice/llm/extra' is not owner/name" in caplog.text  # a bad value would fail the whole post


def test_the_pods_our_deployments_make_carry_what_the_agent_reads():
    catalog = default_catalog()
    spec = AppSpec("bob/Stable.Diffusion_XL", 3, "registry/bob:3", 7860, catalog.tier("a10g-small"))
    template = make_deployment(spec, catalog.pool_for("a10g-small"), K8sOptions())["spec"]["template"]
    pod = {"metadata": {"name": "p", "namespace": NS, **template["metadata"]}}
    assert space_of(pod) == "bob/Stable.Diffusion_XL"  # the label holds a slug; the annotation the exact id


def test_the_real_pod_lookup_asks_for_this_nodes_space_pods(api_server, tmp_path):
    api = config.new_client_from_config(config_file=str(api_server.kubeconfig(tmp_path / "kubeconfig")))
    assert KubernetesPodSpaces("gpu-node-1", api)(NS) == {ALICE_POD: "alice/llm"}
    [req] = api_server.requests
    assert req["path"] == f"/api/v1/namespaces/{NS}/pods"
    assert req["query"]["labelSelector"] == ["spaceyard.dev/space"]
    assert req["query"]["fieldSelector"] == ["spec.nodeName=gpu-node-1"]
    assert req["query"]["resourceVersion"] == ["0"]
    assert req["auth"] == "Bearer sa-token"


class CountingPodSpaces:
    def __init__(self, answer: dict) -> None:
        self.answer, self.calls = answer, []

    def __call__(self, namespace: str) -> dict:
        self.calls.append(namespace)
        return dict(self.answer)


def test_the_cache_lists_again_only_for_pods_it_has_not_checked():
    clock = [0.0]
    pods = CountingPodSpaces({ALICE_POD: "alice/llm"})
    cache = CachedPodSpaces(pods, NS, recheck=300, clock=lambda: clock[0])
    other = ("research", "jupyter-0")
    assert cache([ALICE_POD, other]) == {ALICE_POD: "alice/llm"}
    assert cache([ALICE_POD, other]) == {ALICE_POD: "alice/llm"}
    assert pods.calls == [NS]  # known pods, and pods of other namespaces, need no listing
    bob = (NS, "space-bob-sd-1a2b3c4d-7f8e9d0c1-k3j4h")
    pods.answer[bob] = "bob/sd"
    assert cache([ALICE_POD, bob]) == {ALICE_POD: "alice/llm", bob: "bob/sd"}  # a new pod: listed again
    stray = (NS, "debug-shell")
    assert cache([stray]) == {} and cache([stray]) == {}
    assert len(pods.calls) == 3  # a pod found to be no Space's is not looked up every cycle...
    clock[0] = 301
    assert cache([stray]) == {} and len(pods.calls) == 4  # ...only again after `recheck`


# --- the agent -----------------------------------------------------------------------------------


def test_the_agent_on_a_kubernetes_node_attributes_gpus_and_the_route_stores_them(kubelet, control_plane, session):
    socket, servicer = kubelet
    pods = CountingPodSpaces(pod_spaces_from_list(json.loads(POD_LIST.read_text())))
    mapper = kubernetes_mapper(lambda: list_pod_resources(socket), CachedPodSpaces(pods, NS))
    with httpx.Client(timeout=5) as client:
        assert make_agent(control_plane.url, client, Ticker(), mapper=mapper).run(cycles=2) == 0
    assert servicer.calls == 2 and pods.calls == [NS]  # the kubelet every cycle, the API server once
    for req in control_plane.requests:
        # GPU 1 is held by a pod outside Spaceyard (research/jupyter-0): posted, unattributed.
        assert [(g["uuid"], g["space"]) for g in req["json"]["gpus"]] == [(H100_0, "alice/llm"), (H100_1, None)]
    assert store_samples(session, control_plane.requests[0]["json"]) == 2


def test_without_the_kubelet_samples_go_out_unattributed(tmp_path, control_plane, caplog):
    mapper = kubernetes_mapper(
        lambda: list_pod_resources(tmp_path / "missing.sock", timeout=2), CachedPodSpaces(dict, NS)
    )
    with httpx.Client(timeout=5) as client:
        assert make_agent(control_plane.url, client, Ticker(), mapper=mapper).run(cycles=1) == 0
    assert [g["space"] for g in control_plane.requests[0]["json"]["gpus"]] == [None, None]
    assert "posting samples unattributed" in caplog.text


def test_cli_with_kubernetes_mapping(kubelet, api_server, control_plane, tmp_path, monkeypatch):
    """The DaemonSet's configuration: everything from SPACEYARD_AGENT_* as the chart sets it."""
    socket, _ = kubelet
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(api_server.kubeconfig(tmp_path / "kubeconfig")))
    for key, value in {
        "URL": control_plane.url,
        "TOKEN": "agent-secret",
        "NODE": "gpu-node-1",
        "MAPPING": "kubernetes",
        "NAMESPACE": NS,
        "KUBELET_SOCKET": str(socket),
    }.items():
        monkeypatch.setenv(f"SPACEYARD_AGENT_{key}", value)
    assert main(["--recording", str(H100_NODE), "--once"]) == 0
    [req] = control_plane.requests
    assert req["headers"]["Authorization"] == "Bearer agent-secret"
    assert [g["space"] for g in req["json"]["gpus"]] == ["alice/llm", None]
    assert api_server.requests[0]["query"]["fieldSelector"] == ["spec.nodeName=gpu-node-1"]


def test_cli_with_kubernetes_mapping_and_no_credentials_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SPACEYARD_AGENT_TOKEN", "tok")
    argv = ["--recording", str(H100_NODE), "--url", "http://127.0.0.1:9", "--mapping", "kubernetes", "--once"]
    assert main(argv) == 2
    assert "no Kubernetes API credentials" in capsys.readouterr().err


# --- a real cluster ------------------------------------------------------------------------------


@pytest.mark.k8s
@pytest.mark.skipif(not os.environ.get("KUBECONFIG"), reason="no Kubernetes cluster: set KUBECONFIG to run")
def test_the_real_pod_lookup_on_a_cluster():
    """A pod bound to a node (nodeName set, so no scheduler or image pull is needed to list it) is found."""
    from kubernetes import client

    from controlplane.runtime.kubernetes_backend import load_api_client

    api = load_api_client()
    core = client.CoreV1Api(api)
    node = core.list_node().items[0].metadata.name
    namespace = f"spaceyard-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "space-alice-llm-c0ec9ff9-6d9f7c9b8-x2k4q",
                "labels": {"spaceyard.dev/space": "space-alice-llm-c0ec9ff9"},
                "annotations": {"spaceyard.dev/space-id": "alice/llm"},
            },
            "spec": {"nodeName": node, "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.9"}]},
        }
        core.create_namespaced_pod(namespace, pod)
        core.create_namespaced_pod(namespace, {**pod, "metadata": {"name": "not-a-space"}})
        lookup = KubernetesPodSpaces(node, api)
        deadline = time.monotonic() + 20
        while (found := lookup(namespace)) == {} and time.monotonic() < deadline:
            time.sleep(0.5)  # resourceVersion=0 reads the API server's cache, which may lag a moment
        assert found == {(namespace, pod["metadata"]["name"]): "alice/llm"}
        assert KubernetesPodSpaces(f"{node}-elsewhere", api)(namespace) == {}
    finally:
        core.delete_namespace(namespace)
