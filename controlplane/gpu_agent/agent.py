"""`spaceyard gpu-agent`: sample this node's GPUs every N seconds and post them to the control plane.

Runs on every GPU host (docker runtime) or as a DaemonSet on GPU node pools (kubernetes runtime). Samples that
could not be posted are kept (a bounded buffer) and sent, oldest first, once the control plane answers again;
failures back off exponentially up to a ceiling so a down control plane is not hammered by every node.
"""

from __future__ import annotations

import argparse
import json
import logging
import socket
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import httpx
from kubernetes.config import ConfigException
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from controlplane.gpu_agent.k8s_pods import CachedPodSpaces, KubernetesPodSpaces, kubernetes_mapper
from controlplane.gpu_agent.kubelet import KUBELET_SOCKET, list_pod_resources
from controlplane.gpu_agent.mapping import docker_containers, map_docker
from controlplane.gpu_agent.nvml import GpuReader, GpuReading, NvmlReader, NvmlUnavailable, RecordedReader, record

log = logging.getLogger("spaceyard.gpu_agent")

SAMPLES_PATH = "/api/metering/gpu-samples"
EXIT_OK, EXIT_POST_FAILED, EXIT_UNUSABLE = 0, 1, 2

Mapper = Callable[[Sequence[GpuReading]], dict[str, str]]


class AgentSettings(BaseSettings):
    """The agent's own settings (it is deployed apart from the control plane), prefix SPACEYARD_AGENT_."""

    model_config = SettingsConfigDict(env_prefix="SPACEYARD_AGENT_", extra="ignore")

    url: str | None = Field(default=None, description="Control plane base URL, e.g. https://spaceyard.example.")
    token: str | None = Field(default=None, description="Agent token, sent as a Bearer token.")
    interval: float = Field(default=15.0, gt=0, description="Seconds between samples.")
    max_backoff: float = Field(default=300.0, gt=0, description="Longest wait between failed posts.")
    buffer: int = Field(default=240, ge=1, description="Unsent samplings kept while the control plane is away.")
    node: str = Field(default_factory=socket.gethostname, description="Node name (Kubernetes: spec.nodeName).")
    mapping: Literal["docker", "kubernetes", "none"] = Field(
        default="docker", description="Where GPU-to-Space comes from."
    )
    namespace: str = Field(default="spaceyard-spaces", description="Kubernetes: the namespace Spaces run in.")
    kubelet_socket: Path = Field(default=KUBELET_SOCKET, description="Kubernetes: the pod-resources socket.")
    recording: Path | None = Field(default=None, description="Replay this recording instead of reading NVML.")


def build_payload(node: str, sampled_at: datetime, readings: Sequence[GpuReading], spaces: dict[str, str]) -> dict:
    """The JSON body of one post: what controlplane.metering.samples.GpuSamplesIn accepts."""
    return {
        "node": node,
        "sampled_at": sampled_at.astimezone(UTC).isoformat(),
        "gpus": [asdict(r) | {"space": spaces.get(r.uuid)} for r in readings],
    }


class Agent:
    def __init__(
        self,
        reader: GpuReader,
        mapper: Mapper,
        client: httpx.Client,
        *,
        url: str,
        token: str,
        node: str,
        interval: float = 15.0,
        max_backoff: float = 300.0,
        buffer: int = 240,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._reader, self._mapper, self._client = reader, mapper, client
        self._endpoint = url.rstrip("/") + SAMPLES_PATH
        self._headers = {"Authorization": f"Bearer {token}"}
        self._node, self._interval, self._max_backoff = node, interval, max_backoff
        self._pending: deque[dict] = deque(maxlen=buffer)  # full: the oldest sampling is dropped
        self._now, self._sleep = now, sleep
        self.failures = 0

    def sample(self) -> dict:
        readings = self._reader.devices()
        try:
            spaces = self._mapper(readings)
        except Exception as e:  # the runtime being away must not stop GPU sampling
            log.warning("cannot map GPUs to Spaces (%s): posting samples unattributed", e)
            spaces = {}
        return build_payload(self._node, self._now(), readings, spaces)

    def flush(self) -> bool:
        """Post pending samplings oldest first. False when one must be retried later (kept) or was refused
        (dropped: retrying cannot fix a refused token or a rejected body); either way the agent backs off."""
        delivered = True
        while self._pending:
            try:
                resp = self._client.post(self._endpoint, json=self._pending[0], headers=self._headers)
            except httpx.HTTPError as e:
                log.warning("posting GPU samples to %s failed: %s", self._endpoint, e)
                return False
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                log.warning("control plane answered %s to GPU samples: retrying later", resp.status_code)
                return False
            if resp.is_error:
                log.error("control plane refused GPU samples (%s): %s", resp.status_code, resp.text[:200])
                delivered = False
            self._pending.popleft()
        return delivered

    def cycle(self) -> bool:
        try:
            self._pending.append(self.sample())
        except NvmlUnavailable as e:
            log.error("%s", e)
            return False
        return self.flush()

    def run(self, cycles: int | None = None) -> int:
        """Sample and post until stopped, or `cycles` times; exit status of the last cycle."""
        done = 0
        while True:
            ok = self.cycle()
            self.failures = 0 if ok else self.failures + 1
            done += 1
            if cycles is not None and done >= cycles:
                return EXIT_OK if ok else EXIT_POST_FAILED
            self._sleep(self.next_delay())

    def next_delay(self) -> float:
        if not self.failures:
            return self._interval
        return min(self._interval * 2**self.failures, self._max_backoff)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="spaceyard gpu-agent",
        description="Sample this node's NVIDIA GPUs and post them to the Spaceyard control plane. "
        "Settings also come from SPACEYARD_AGENT_* variables; the token only from SPACEYARD_AGENT_TOKEN.",
    )
    p.add_argument("--url", help="control plane base URL (SPACEYARD_AGENT_URL)")
    p.add_argument("--interval", type=float, help="seconds between samples (SPACEYARD_AGENT_INTERVAL)")
    p.add_argument("--node", help="node name reported with the samples (SPACEYARD_AGENT_NODE)")
    p.add_argument(
        "--mapping", choices=["docker", "kubernetes", "none"], help="GPU-to-Space source (SPACEYARD_AGENT_MAPPING)"
    )
    p.add_argument("--recording", type=Path, help="replay a recording instead of reading NVML")
    p.add_argument("--once", action="store_true", help="sample and post once, then exit (1 if the post failed)")
    p.add_argument("--record", type=Path, metavar="FILE", help="write a recording of this node's GPUs and exit")
    p.add_argument("--frames", type=int, default=5, help="readings in a --record recording")
    return p


def _mapper(settings: AgentSettings) -> Mapper:
    if settings.mapping == "docker":
        return lambda gpus: map_docker(docker_containers(), gpus)
    if settings.mapping == "kubernetes":
        spaces = CachedPodSpaces(KubernetesPodSpaces(settings.node), settings.namespace)
        return kubernetes_mapper(lambda: list_pod_resources(settings.kubelet_socket), spaces)
    return lambda gpus: {}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {
        k: v for k in ("url", "interval", "node", "mapping", "recording") if (v := getattr(args, k)) is not None
    }
    try:
        settings = AgentSettings(**overrides)
    except ValidationError as e:
        print(
            f"spaceyard gpu-agent: invalid setting: {e.errors()[0]['loc'][0]}: {e.errors()[0]['msg']}", file=sys.stderr
        )
        return EXIT_UNUSABLE
    try:
        reader: GpuReader = RecordedReader(settings.recording) if settings.recording else NvmlReader()
    except NvmlUnavailable as e:
        print(f"spaceyard gpu-agent: {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    if args.record:
        args.record.write_text(json.dumps(record(reader, args.frames), indent=2) + "\n")
        return EXIT_OK
    if not settings.url or not settings.token:
        print("spaceyard gpu-agent: set --url (or SPACEYARD_AGENT_URL) and SPACEYARD_AGENT_TOKEN", file=sys.stderr)
        return EXIT_UNUSABLE
    try:
        mapper = _mapper(settings)
    except ConfigException as e:
        print(f"spaceyard gpu-agent: no Kubernetes API credentials (in-cluster or KUBECONFIG): {e}", file=sys.stderr)
        return EXIT_UNUSABLE
    with httpx.Client(timeout=10.0) as client:
        agent = Agent(
            reader,
            mapper,
            client,
            url=settings.url,
            token=settings.token,
            node=settings.node,
            interval=settings.interval,
            max_backoff=settings.max_backoff,
            buffer=settings.buffer,
        )
        try:
            return agent.run(cycles=1 if args.once else None)
        except KeyboardInterrupt:
            return EXIT_OK
