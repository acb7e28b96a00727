"""The one interface every runtime backend implements (docker for one host, kubernetes for node pools).

Backends only start, stop, describe and read logs of app instances; deciding *when* (stages, scheduling,
metering) stays in the control plane.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from controlplane.tiers import Tier


@dataclass(frozen=True)
class AppSpec:
    """Everything a backend needs to run one instance of a Space's app."""

    space: str  # owner/name
    build_id: int
    image: str
    port: int
    tier: Tier
    env: dict[str, str] = field(default_factory=dict)
    secret_env: dict[str, str] = field(default_factory=dict)
    startup_timeout: float = 1800.0


@dataclass
class Instance:
    """What a backend reports about one running (or finished) instance."""

    id: str
    space: str
    build_id: int
    tier: str
    state: str  # "pending" | "starting" | "running" | "exited" | "failed"
    endpoint: str | None = None  # host:port the router can reach
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    message: str | None = None  # e.g. the scheduler's reason while pending


class RuntimeBackend(ABC):
    @abstractmethod
    def start(self, spec: AppSpec) -> Instance: ...

    @abstractmethod
    def stop(self, instance_id: str, remove: bool = True) -> None: ...

    def resume(self, instance_id: str) -> Instance:
        """Start again an instance stopped with `remove=False` (a sleeping Space), reusing what it kept.

        Backends that keep nothing worth reusing leave this out; the caller then starts a fresh instance."""
        raise NotImplementedError(f"{type(self).__name__} cannot resume stopped instances")

    @abstractmethod
    def get(self, instance_id: str) -> Instance | None: ...

    @abstractmethod
    def list(self, space: str | None = None) -> list[Instance]: ...

    @abstractmethod
    def logs(
        self, instance_id: str, follow: bool = False, tail: int | None = None, timestamps: bool = False
    ) -> Iterator[str]:
        """The app's output, line by line; `timestamps`: each line starts with its RFC 3339 time and a space."""

    @abstractmethod
    def watch(self) -> Iterator[Instance]:
        """Instances whose state changed, for every Space, from one stream (no per-Space polling).
        Ends when the stream breaks; the caller watches again."""

    @abstractmethod
    def remove_space(self, space: str) -> None:
        """Remove every instance and image a Space left behind."""

    def remove_image(self, image: str) -> bool:
        """Remove one build's image (image GC, controlplane/images.py); False when it stays. By default images
        stay: on Kubernetes they live in a registry, whose own retention removes them (docs/lifecycle.md)."""
        return False

    def ended(self) -> list[Instance]:
        """Runs that `list` no longer shows but whose real start and finish the backend still knows (a deleted
        Kubernetes pod's last status). Metering closes usage at that finish; a removed docker container has none."""
        return []

    def close(self) -> None:
        """Release what the backend holds open (watches, connections)."""
        return None
