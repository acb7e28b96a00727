"""What the router asks before proxying: which app (if any) answers for a URL.

The router knows nothing about the database or the runtime; a resolver does. The control plane's resolver
looks Spaces up (and may wake a sleeping one before answering, which is why `resolve` is async and may take
long); `StaticResolver` is an in-memory one for tests and benchmarks.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Target:
    """Proxy to `upstream`. `prefix` is the Space's path-based root, e.g. "/apps/alice/demo"."""

    space: str  # "owner/name": what `Resolver.touched` receives
    upstream: str  # "host:port" of the app, e.g. "127.0.0.1:49153"
    prefix: str
    strip_prefix: bool  # True: the app serves at "/"; False: it serves under `prefix` itself


@dataclass(frozen=True)
class NotFound:
    """No Space answers at this address (the router shows a 404)."""


@dataclass(frozen=True)
class Unavailable:
    """The Space exists but cannot answer now: paused, building, failed, waiting for hardware..."""

    status: int
    message: str
    retry_after: int | None = None  # seconds, sent as Retry-After


@dataclass(frozen=True)
class Moved:
    """The host label is a former name of a Space that `move_repo` renamed, and no Space holds it now: the router
    redirects to the Space's own host under its current `owner`/`name` (the resolver's stored names, never the
    request's)."""

    owner: str
    name: str


Resolution = Target | NotFound | Unavailable | Moved


class Resolver(Protocol):
    async def resolve(
        self,
        *,
        label: str | None,
        owner: str | None,
        name: str | None,
        request_headers: Mapping[str, str],
    ) -> Resolution:
        """Host-based requests give `label` (the host's first label(s), lower-cased, port dropped) and no
        owner/name; path-based ones give owner/name and no label. `{owner}-{name}` is ambiguous when names
        contain '-', so only the resolver, which knows the Spaces, can map a label to a Space. `Moved` answers
        host-based requests only (path-based old names redirect in `controlplane/api/redirects.py`)."""
        ...

    def touched(self, space: str) -> None:
        """Called on every proxied request (and while WebSockets carry traffic) for idle tracking.
        Runs on the request path: it must only record in memory, never write to a database."""
        ...


_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


def space_label(owner: str, name: str) -> str:
    """The host label of a Space, as the Hub builds it: `{owner}-{name}`, lower-cased, '.' and '_' as '-'.

    The router, the proxy's host map, SPACE_HOST and the Kubernetes Ingress all use this one label. One DNS
    would refuse (longer than 63 characters, or edged with '-') is cut to fit and ends in a hash of the whole
    label, so two long names that share a beginning keep apart."""
    label = re.sub(r"[._]", "-", f"{owner}-{name}".lower())
    if _DNS_LABEL.fullmatch(label):
        return label
    digest = hashlib.sha256(label.encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", label).strip("-")[: 63 - len(digest) - 1].rstrip("-")
    return f"{slug}-{digest}" if slug else digest


def path_prefix(owner: str, name: str) -> str:
    return f"/apps/{owner}/{name}"


class StaticResolver:
    """A fixed table of Spaces ("owner/name" -> resolution). Records touches in memory."""

    def __init__(self, spaces: Mapping[str, Target | Unavailable] | None = None) -> None:
        self._spaces: dict[str, Target | Unavailable] = {}
        self._labels: dict[str, str] = {}
        self.last_touched: dict[str, float] = {}
        self.touches: dict[str, int] = {}
        for full_name, resolution in (spaces or {}).items():
            self.set(full_name, resolution)

    def set(self, full_name: str, resolution: Target | Unavailable) -> None:
        owner, name = full_name.split("/", 1)
        label = space_label(owner, name)
        if self._labels.get(label, full_name) != full_name:
            raise ValueError(f"{full_name} and {self._labels[label]} share the host label {label!r}")
        self._spaces[full_name] = resolution
        self._labels[label] = full_name

    async def resolve(
        self,
        *,
        label: str | None,
        owner: str | None,
        name: str | None,
        request_headers: Mapping[str, str],
    ) -> Resolution:
        full_name = self._labels.get(label or "") if label is not None else f"{owner}/{name}"
        return self._spaces.get(full_name or "", NotFound())

    def touched(self, space: str) -> None:
        self.last_touched[space] = time.monotonic()
        self.touches[space] = self.touches.get(space, 0) + 1
