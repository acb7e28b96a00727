"""The Docker engine, through docker-py's low-level API: a client from settings, build contexts, streamed builds."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import docker
import requests
import urllib3

from builder import dockerignore
from builder.settings import BuilderSettings

Log = Callable[[str], None]
# The classic builder colours a RUN step's stderr red; the log is plain text.
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class EngineBuildError(Exception):
    """`docker build` failed; the message is the engine's error (e.g. a RUN step's non-zero exit)."""


class BuildTimeout(Exception):
    """The build ran past its time limit and was cancelled."""


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


def context_tar(
    root: Path, ignore: str, dockerfile: tuple[str, str], dest: IO[bytes], deadline: float | None = None
) -> IO[bytes]:
    """A build context the builder assembles itself: root's files minus `ignore` patterns, plus `dockerfile`.

    Symlinks go in as links (the engine resolves them inside the context, never on the host), and the
    Dockerfile and .dockerignore are added as tar entries, so nothing is written into the checkout.
    Raises BuildTimeout past `deadline` (time.monotonic()).
    """
    name, text = dockerfile
    try:
        files = dockerignore.included(str(root), f"{ignore}\n.git", deadline)
    except dockerignore.TimeUp:
        raise BuildTimeout() from None
    # The engine drops a Dockerfile and .dockerignore that .dockerignore names, after reading them.
    extra = [(".dockerignore", f".dockerignore\n{name}\n"), (name, text)]
    return docker.utils.create_archive(str(root), files=files, fileobj=dest, extra_files=extra)


def _cancel_after(api: docker.APIClient, seconds: float, expired: threading.Event) -> Callable[[], None]:
    """Arm a timer that cuts the build's HTTP stream after `seconds`; returns the disarm function.

    Cutting the stream is what cancels a classic build: the engine then kills and removes the RUN
    step's container itself, so no container is left behind and no other build's is touched.
    """
    responses: list[Any] = []

    def keep(response: Any, **_: Any) -> None:
        responses.append(response)

    api.hooks["response"].append(keep)
    done = threading.Event()

    def watch() -> None:
        if done.wait(seconds):
            return
        expired.set()
        while not done.is_set():  # the response exists once the engine has read the context
            if responses:
                with contextlib.suppress(OSError, AttributeError):
                    responses[-1].raw.connection.sock.shutdown(socket.SHUT_RDWR)
                return
            done.wait(0.2)

    def disarm() -> None:
        done.set()
        api.hooks["response"].remove(keep)

    threading.Thread(target=watch, name="build timeout", daemon=True).start()
    return disarm


def build(
    api: docker.APIClient,
    context: Path | IO[bytes],
    dockerfile: str,
    tag: str,
    log: Log,
    timeout: float | None = None,
    **options: Any,
) -> None:
    """Build `context` (a folder, or a tar from context_tar) into `tag`, passing every output line to `log`.

    With `timeout` (seconds), a build still running then is cancelled and raises BuildTimeout.
    """
    source = {"path": str(context)} if isinstance(context, Path) else {"fileobj": context, "custom_context": True}
    expired = threading.Event()
    disarm = _cancel_after(api, timeout, expired) if timeout is not None else lambda: None
    pending = ""
    try:
        for chunk in api.build(**source, dockerfile=dockerfile, tag=tag, decode=True, rm=True, forcerm=True, **options):
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
    except (urllib3.exceptions.HTTPError, requests.exceptions.RequestException, OSError) as exc:
        if expired.is_set():
            raise BuildTimeout() from None
        raise EngineBuildError(f"lost the connection to the Docker engine ({exc})") from None
    finally:
        disarm()
    if expired.is_set():
        raise BuildTimeout()
    if pending.strip():
        log(pending.rstrip())
