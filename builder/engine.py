"""The Docker engine, through docker-py's low-level API: a client from settings and a streamed build."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker

from builder.settings import BuilderSettings

Log = Callable[[str], None]
# The classic builder colours a RUN step's stderr red; the log is plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class EngineBuildError(Exception):
    """`docker build` failed; the message is the engine's error (e.g. a RUN step's non-zero exit)."""


def client(settings: BuilderSettings) -> docker.APIClient:
    if settings.docker_host:
        return docker.APIClient(base_url=settings.docker_host, version="auto", timeout=600)
    return docker.from_env(version="auto", timeout=600).api


def image_labels(api: docker.APIClient, image: str) -> dict[str, str] | None:
    """The image's labels, or None when the engine has no such image."""
    try:
        info = api.inspect_image(image)
    except docker.errors.ImageNotFound:
        return None
    return info.get("Config", {}).get("Labels") or {}


def build(api: docker.APIClient, context: Path, dockerfile: str, tag: str, log: Log, **options: Any) -> None:
    """Build `context` (dockerfile: a path inside it) into `tag`, passing every output line to `log`."""
    pending = ""
    for chunk in api.build(
        path=str(context), dockerfile=dockerfile, tag=tag, decode=True, rm=True, forcerm=True, **options
    ):
        if "error" in chunk:
            if pending:
                log(pending)
            raise EngineBuildError(chunk["error"].strip())
        text = chunk.get("stream") or (chunk.get("status", "") + "\n" if "status" in chunk else "")
        pending += _ANSI.sub("", text)
        *lines, pending = pending.split("\n")
        for line in lines:
            if line.strip():
                log(line.rstrip())
    if pending.strip():
        log(pending.rstrip())
