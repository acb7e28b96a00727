"""The kubelet pod-resources API (v1 `PodResourcesLister.List`) over its node-local unix socket.

It is the one place that names the devices the device plugin gave each container; pod specs only say how many.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.protobuf.json_format import MessageToDict

from controlplane.gpu_agent.podresources.api_pb2 import ListPodResourcesRequest
from controlplane.gpu_agent.podresources.api_pb2_grpc import PodResourcesListerStub

KUBELET_SOCKET = Path("/var/lib/kubelet/pod-resources/kubelet.sock")


def list_pod_resources(socket: Path = KUBELET_SOCKET, timeout: float = 5.0) -> dict[str, Any]:
    """The List response as protobuf JSON with snake_case names (what `map_kubernetes` reads).

    A channel per call: the kubelet recreates its socket on restart, and one call every interval is cheap."""
    with grpc.insecure_channel(f"unix://{socket}") as channel:
        response = PodResourcesListerStub(channel).List(ListPodResourcesRequest(), timeout=timeout)
    return MessageToDict(response, preserving_proto_field_name=True)
