"""GPU -> Space mapping from realistic `docker inspect` documents and kubelet pod-resources responses."""

from __future__ import annotations

import pytest

from controlplane.gpu_agent.mapping import (
    SPACE_LABEL,
    docker_containers,
    docker_visible_devices,
    map_docker,
    map_kubernetes,
)
from controlplane.gpu_agent.nvml import GpuReading

GPUS = [
    GpuReading(f"GPU-{i}a1b2c3d-0000-1111-2222-33334444555{i}", i, "NVIDIA A10G", 0.0, 0, 24146608128, 15.0)
    for i in range(4)
]
U = [g.uuid for g in GPUS]
CUDA_ENV = [  # what an nvidia/cuda base image puts in Config.Env
    "PATH=/usr/local/nvidia/bin:/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "NVIDIA_VISIBLE_DEVICES=all",
    "NVIDIA_DRIVER_CAPABILITIES=compute,utility",
    "CUDA_VERSION=12.4.1",
]


def inspect(space: str | None, requests: list | None, *, running: bool = True, runtime: str = "runc", env=None):
    """The parts of a `docker inspect` document the mapping reads, shaped as dockerd returns them."""
    return {
        "Id": "4f1c0b2e9a7d" * 5 + "abcd",
        "State": {"Status": "running" if running else "exited", "Running": running, "ExitCode": 0},
        "Config": {
            "Image": "spaceyard/alice-chat:3",
            "Env": env if env is not None else CUDA_ENV,
            "Labels": {SPACE_LABEL: space} if space else {"maintainer": "NVIDIA CORPORATION"},
        },
        "HostConfig": {"Runtime": runtime, "DeviceRequests": requests},
    }


def gpus_all():  # docker run --gpus all
    return [{"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]


def gpus_devices(*ids: str):  # docker run --gpus '"device=1,2"'  /  docker-py DeviceRequest(device_ids=[...])
    return [{"Driver": "nvidia", "Count": 0, "DeviceIDs": list(ids), "Capabilities": [["gpu"]], "Options": {}}]


def gpus_count(n: int):  # docker run --gpus 2
    return [{"Driver": "", "Count": n, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": {}}]


def test_device_requests_as_dockerd_resolves_them():
    assert docker_visible_devices(inspect("a/b", gpus_all())) == ["all"]
    assert docker_visible_devices(inspect("a/b", gpus_devices("1", U[2]))) == ["1", U[2]]
    assert docker_visible_devices(inspect("a/b", gpus_devices("0,3"))) == ["0", "3"]
    assert docker_visible_devices(inspect("a/b", gpus_count(2))) == ["0", "1"]  # dockerd: indices 0..N-1


def test_without_a_device_request_the_image_env_gives_no_gpu_under_runc():
    assert docker_visible_devices(inspect("a/b", None)) == []
    assert docker_visible_devices(inspect("a/b", [])) == []
    legacy = inspect("a/b", None, runtime="nvidia", env=[*CUDA_ENV[:1], "NVIDIA_VISIBLE_DEVICES=2,GPU-x"])
    assert docker_visible_devices(legacy) == ["2", "GPU-x"]
    assert docker_visible_devices(inspect("a/b", None, runtime="nvidia", env=["NVIDIA_VISIBLE_DEVICES=void"])) == []


def test_map_docker_by_index_uuid_and_count():
    containers = [
        inspect("alice/chat", gpus_devices("0")),
        inspect("bob/sd", gpus_devices(U[2].lower(), U[3])),  # UUIDs match case-insensitively
        inspect("carol/old", gpus_devices("1"), running=False),  # exited: holds nothing
        inspect(None, gpus_devices("1")),  # not a Space
        inspect("dave/cpu", None),  # CPU Space on the GPU host, cuda image env ignored
    ]
    assert map_docker(containers, GPUS) == {U[0]: "alice/chat", U[2]: "bob/sd", U[3]: "bob/sd"}
    assert map_docker([inspect("erin/x2", gpus_count(2))], GPUS) == {U[0]: "erin/x2", U[1]: "erin/x2"}


def test_a_gpu_claimed_by_two_spaces_stays_unattributed(caplog):
    containers = [inspect("alice/all", gpus_all()), inspect("bob/one", gpus_devices("1"))]
    mapping = map_docker(containers, GPUS)
    assert mapping == {U[0]: "alice/all", U[2]: "alice/all", U[3]: "alice/all"}
    assert "used by several Spaces" in caplog.text


def test_unknown_and_mig_devices_resolve_to_nothing():
    mig = "MIG-4f8e2c1a-9b7d-5e3f-1a2b-3c4d5e6f7a8b"
    assert map_docker([inspect("a/b", gpus_devices("7", mig, "GPU-not-here"))], GPUS) == {}


POD_RESOURCES = {  # kubelet PodResourcesLister/List, protobuf JSON (camelCase), one GPU node
    "podResources": [
        {
            "name": "space-alice-chat-6d9f7c9b8-x2k4q",
            "namespace": "spaceyard-spaces",
            "containers": [
                {
                    "name": "app",
                    "devices": [{"resourceName": "nvidia.com/gpu", "deviceIds": [U[1]], "topology": {"nodes": [{}]}}],
                    "cpuIds": ["2", "3"],
                }
            ],
        },
        {
            "name": "space-bob-llm-7c8d9e0f1-abcde",
            "namespace": "spaceyard-spaces",
            "containers": [{"name": "app", "devices": [{"resourceName": "nvidia.com/gpu", "deviceIds": [U[2], U[3]]}]}],
        },
        {"name": "nvidia-device-plugin-daemonset-8xk2p", "namespace": "kube-system", "containers": [{"name": "p"}]},
        {
            "name": "other-workload",
            "namespace": "default",
            "containers": [{"name": "c", "devices": [{"resourceName": "nvidia.com/gpu", "deviceIds": [U[0]]}]}],
        },
    ]
}
POD_SPACES = {
    ("spaceyard-spaces", "space-alice-chat-6d9f7c9b8-x2k4q"): "alice/chat",
    ("spaceyard-spaces", "space-bob-llm-7c8d9e0f1-abcde"): "bob/llm",
}


def test_map_kubernetes_from_pod_resources():
    assert map_kubernetes(POD_RESOURCES, POD_SPACES, GPUS) == {U[1]: "alice/chat", U[2]: "bob/llm", U[3]: "bob/llm"}


def test_map_kubernetes_accepts_snake_case_and_time_sliced_ids():
    response = {
        "pod_resources": [
            {
                "name": "p1",
                "namespace": "ns",
                "containers": [
                    {"name": "app", "devices": [{"resource_name": "nvidia.com/gpu", "device_ids": [f"{U[0]}::0"]}]}
                ],
            },
            {
                "name": "p2",
                "namespace": "ns",
                "containers": [
                    {"name": "app", "devices": [{"resource_name": "nvidia.com/gpu", "device_ids": [f"{U[0]}::1"]}]}
                ],
            },
            {
                "name": "p3",
                "namespace": "ns",
                "containers": [
                    {"name": "app", "devices": [{"resource_name": "nvidia.com/gpu", "device_ids": [f"{U[1]}::3"]}]}
                ],
            },
        ]
    }
    spaces = {("ns", "p1"): "a/one", ("ns", "p2"): "b/two", ("ns", "p3"): "c/three"}
    # Replicas of GPU 0 are shared by two Spaces: unattributed. GPU 1's replica has one user.
    assert map_kubernetes(response, spaces, GPUS) == {U[1]: "c/three"}


@pytest.mark.docker
def test_a_real_docker_inspect_document_has_the_shape_the_mapping_reads():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        images = client.images.list()
    except docker.errors.DockerException as e:
        pytest.skip(f"no Docker engine: {e}")
    if not images:
        pytest.skip("no local image to create a container from")
    request = docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])
    # Created, never started: dockerd records the device request without needing a GPU on this host.
    container = client.containers.create(
        images[0].id, command="true", labels={SPACE_LABEL: "test/metering-shape"}, device_requests=[request]
    )
    try:
        attrs = client.api.inspect_container(container.id)
        assert docker_visible_devices(attrs) == ["all"]
        assert map_docker([attrs], GPUS) == {}  # not running
        # The live source lists only running Spaceyard containers, each with its full inspect document.
        assert all(SPACE_LABEL in c["Config"]["Labels"] and "HostConfig" in c for c in docker_containers())
    finally:
        container.remove(force=True)
        client.close()
