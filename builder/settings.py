"""Every builder setting, read from the environment (prefix SPACEYARD_)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

FALLBACK_DEBIAN_MIRROR = "http://deb.debian.org/debian"
REPO_RUNTIME_IMAGES = Path(__file__).resolve().parent.parent / "runtime-images"


def debian_mirror_from_apt(apt_dir: Path = Path("/etc/apt")) -> str:
    """The main Debian mirror this host's apt uses, so debootstrap reaches what apt reaches.

    Reads deb822 `*.sources` files and one-line `*.list` files; security and third-party
    repositories are skipped because they cannot bootstrap a system.
    """
    files = sorted(apt_dir.glob("sources.list.d/*.sources")) + [apt_dir / "sources.list"]
    files += sorted(apt_dir.glob("sources.list.d/*.list"))
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            uris = re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        else:
            uris = re.findall(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, flags=re.M)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                return uri.rstrip("/")
    return FALLBACK_DEBIAN_MIRROR


class BuilderSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACEYARD_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL: the Celery broker and where build events are written.",
    )
    docker_host: str | None = Field(
        default=None, description="Docker engine URL; unset = DOCKER_HOST or the default socket."
    )
    build_ca_bundle: Path | None = Field(
        default=None,
        description="Extra CA bundle (PEM) added to every image and used by pip/requests/OpenSSL "
        "(PIP_CERT, REQUESTS_CA_BUNDLE, SSL_CERT_FILE); for TLS-inspecting proxies. Unset = none.",
    )
    pip_index_url: str | None = Field(
        default=None, description="pip index URL used inside builds (PIP_INDEX_URL); unset = pip's default."
    )
    base_image_source: Literal["debootstrap", "registry"] = Field(
        default="debootstrap",
        description="Where the Python base comes from: 'debootstrap' builds it from the Debian mirror "
        "(no registry needed); 'registry' uses FROM python:X-slim.",
    )
    debian_mirror: str = Field(
        default_factory=debian_mirror_from_apt,
        description="Debian mirror for debootstrap; default the one in /etc/apt sources, "
        f"else {FALLBACK_DEBIAN_MIRROR}.",
    )
    debian_suite: str = Field(default="bookworm", description="Debian suite of the debootstrap base image.")
    registry: str | None = Field(
        default=None,
        description="Registry host[/prefix] to push app images to (nodes pull from it); unset = local only.",
    )
    builder_concurrency: int = Field(
        default=2, ge=1, description="Builds one worker runs at once (Celery worker processes)."
    )
    build_timeout: int = Field(
        default=30 * 60,
        gt=0,
        description="Wall-clock seconds a build may take, from the task's start; past it the build is "
        "stopped (its RUN container killed) and fails with BUILD_ERROR.",
    )
    build_memory: str = Field(
        default="4g",
        pattern=r"^[0-9]+[bkmg]?$",
        description="Memory limit of each container a Space's build runs (RUN steps), swap included, "
        "e.g. 4g or 512m; a step over it is killed and the build fails with BUILD_ERROR.",
    )
    build_cpu_shares: int = Field(
        default=512,
        ge=2,
        description="CPU weight of a Space's build containers (Docker cpu-shares; Docker's default, which "
        "app containers get unless set otherwise, is 1024), so builds yield CPU to apps on a busy host.",
    )
    build_network: str | None = Field(
        default=None,
        description="Docker network that RUN steps of Space builds use; unset = the engine's default "
        "bridge. 'host' is refused: a build would reach the host's loopback services.",
    )
    build_allowed_images: str = Field(
        default="python:*,debian:*,ubuntu:*,nvidia/cuda:*",
        description="Comma-separated glob patterns of public images a Docker-SDK Space may use in FROM, "
        "COPY --from and RUN --mount=from (matched against e.g. python:3.11-slim or "
        "nvidia/cuda:12.4.1-runtime-ubuntu22.04; add e.g. python@sha256:* for digest pins). The builder's "
        "own spaceyard/base:* and spaceyard/sdk-*:* and earlier stages are always allowed; other Spaces' "
        "images never are.",
    )
    runtime_images_dir: Path = Field(
        default=REPO_RUNTIME_IMAGES, description="The runtime-images/ directory (SDK helpers copied into bases)."
    )
    build_events_ttl: int = Field(
        default=7 * 24 * 3600, description="Seconds a build's event stream is kept after its result."
    )
    heartbeat_interval: float = Field(
        default=5.0, gt=0, le=10, description="Seconds between heartbeat events (the contract says <= 10)."
    )

    @field_validator("build_network")
    @classmethod
    def _not_host_network(cls, value: str | None) -> str | None:
        if value == "host":
            raise ValueError("builds may not run on the host's network")
        return value
