"""The `builder.build` task: one commit of a Space repo -> one image, narrated on a Redis stream."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

import docker
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from builder import baseimages, dockerignore, dockerpolicy, engine, lfs, lfs_download, repofiles, spaceconfig
from builder.celery_app import app
from builder.dockerfile import UnavailablePython, app_dockerfile, python_version_for
from builder.events import BuildEvents, ClaimLost
from builder.settings import BuilderSettings

logger = logging.getLogger(__name__)

GENERATED_DOCKERFILE = ".spaceyard.Dockerfile"  # its name in the build context tar, never in the checkout
MAX_CONFIG_FILE = 256 * 1024  # bytes of a Dockerfile or .dockerignore the builder reads
# Files the generated Dockerfile copies before the code; only their presence changes its text.
DEPENDENCY_FILES = ("packages.txt", "pre-requirements.txt", "requirements.txt")
FETCH_TIMEOUT = 300
# How long a fetch waits out a control plane that is not answering (a restart takes seconds under `spaceyard up`).
FETCH_UNREACHABLE_SECONDS = 60
_UNREACHABLE = re.compile(
    r"Failed to connect|Connection refused|Could not resolve|returned error: 50[234]|"
    r"Empty reply|Connection reset|Recv failure"
)
_COMMIT = re.compile(r"^([0-9a-f]{40}|[0-9a-f]{64})$")
_ERROR_LINE = re.compile(r"^(ERROR:|E:|error:|fatal:|Error:)")
# A claim lapses after this many missed heartbeats: then another delivery of the build may take it.
LEASE_BEATS = 3
# Redis calls are retried this many times, at most a second apart: a broker restart does not fail a build.
REDIS_RETRIES = 60


class BuildFailed(Exception):
    """A failure the Space's author can act on: becomes the result's error_kind and error_message."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class BuildRequest:
    """The task's kwargs (docs/build-contract.md)."""

    build_id: int
    space: str
    repo_url: str
    commit: str
    image: str
    events: str
    no_cache: bool = False
    build_args: dict[str, str] = field(default_factory=dict)
    build_secrets: dict[str, str] = field(default_factory=dict)
    sdk: str | None = None


def _url_secrets(url: str) -> list[str]:
    parts = urlsplit(url)
    return [s for s in (parts.password, parts.password and unquote(parts.password)) if s]


def fetch(repo_url: str, commit: str, dest: Path, log: engine.Log) -> None:
    """Shallow-fetch exactly `commit` into `dest`, check it out with its Git LFS files' real content, then drop .git.

    .git goes because its FETCH_HEAD holds the URL with the builder's token, and the image must not.
    """
    if not _COMMIT.match(commit):
        raise BuildFailed("BUILD_ERROR", f"{commit!r} is not a full commit id")
    # LFS files are downloaded below, through the batch API: a git-lfs smudge filter has no remote to ask here.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_LFS_SKIP_SMUDGE": "1"}
    steps = [
        ["git", "init", "-q", str(dest)],
        ["git", "-C", str(dest), "fetch", "-q", "--depth", "1", "--no-tags", repo_url, commit],
        ["git", "-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "FETCH_HEAD"],
    ]
    log(f"Fetching commit {commit}")
    for cmd in steps:
        deadline = time.monotonic() + FETCH_UNREACHABLE_SECONDS
        while True:
            try:
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
            except subprocess.TimeoutExpired:
                raise BuildFailed("BUILD_ERROR", f"fetching the repository took over {FETCH_TIMEOUT} s") from None
            # The control plane restarting (connection refused, or the proxy's 502/503 meanwhile) is waited out:
            # the build is not the user's fault. A missing commit or a refusal fails at once.
            if proc.returncode == 0 or not _UNREACHABLE.search(proc.stderr) or time.monotonic() > deadline:
                break
            log("The repository server is not answering; retrying")
            time.sleep(1)
        for line in (proc.stdout + proc.stderr).splitlines():
            log(line)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["git failed"])[-1]
            raise BuildFailed("BUILD_ERROR", f"could not fetch commit {commit[:7]}: {last}")
    try:
        pointers = lfs.checkout_pointers(dest)
    except subprocess.CalledProcessError as exc:
        raise BuildFailed("BUILD_ERROR", f"could not list the files of commit {commit[:7]}: {exc.stderr}") from None
    if pointers:
        log(f"Downloading {len(pointers)} Git LFS file(s)")
        try:
            lfs_download.download_objects(dest, repo_url, pointers, FETCH_TIMEOUT)
        except lfs_download.ObjectMissing as exc:
            raise BuildFailed("BUILD_ERROR", str(exc)) from None
    shutil.rmtree(dest / ".git")


def _explain(exc: engine.EngineBuildError, tail: list[str]) -> str:
    """A sentence for the result: the step that failed and its last error line (pip's, apt's...)."""
    error_lines = [line for line in tail if _ERROR_LINE.match(line.strip())]
    detail = error_lines[-1].strip() if error_lines else str(exc)
    command = str(exc)
    if "pip install" in command and "requirements.txt" in command:
        name = "pre-requirements.txt" if "pre-requirements.txt" in command else "requirements.txt"
        return f"pip could not install {name}: {detail}"
    if "apt-get" in command:
        return f"apt-get could not install packages.txt: {detail}"
    return f"docker build failed: {detail}"


def _limits(settings: BuilderSettings) -> dict[str, Any]:
    """Engine options bounding what a Space's build containers (RUN steps) may use."""
    memory = docker.utils.parse_bytes(settings.build_memory)
    options: dict[str, Any] = {
        # memswap = memory: no swap on top, so the limit is the limit.
        "container_limits": {"memory": memory, "memswap": memory, "cpushares": settings.build_cpu_shares},
    }
    if settings.build_network:
        options["network_mode"] = settings.build_network
    return options


def _explain_limit(exc: engine.EngineBuildError, settings: BuilderSettings) -> str | None:
    # A RUN step killed by the kernel's OOM killer exits 137 (128 + SIGKILL).
    if str(exc).endswith("non-zero code: 137"):
        return (
            f"the build used more than the {settings.build_memory} build memory limit (SPACEYARD_BUILD_MEMORY); "
            "a RUN step was killed (exit code 137)"
        )
    return None


def _context(
    checkout: Path,
    workdir: Path,
    config: spaceconfig.SpaceConfig,
    req: BuildRequest,
    settings: BuilderSettings,
    deadline: float,
) -> IO[bytes]:
    """The build context tar with the Dockerfile to build, checked (Docker SDK) or generated (other SDKs)."""
    ignore = repofiles.read_text(checkout, ".dockerignore", MAX_CONFIG_FILE) or ""
    if config.sdk == "docker":
        text = repofiles.read_text(checkout, config.app_file, MAX_CONFIG_FILE) or ""
        namespace = req.image.split("/", 1)[0] if "/" in req.image else None
        allowed = [p.strip() for p in settings.build_allowed_images.split(",") if p.strip()]
        try:
            dockerpolicy.check(text, req.build_args, allowed, namespace)
        except dockerpolicy.Refused as exc:
            raise BuildFailed("BUILD_ERROR", str(exc)) from None
    else:
        files = {name for name in DEPENDENCY_FILES if repofiles.is_regular_file(checkout, name)}
        text = app_dockerfile(config, files, config.python_version or "")
    tar = open(workdir / "context.tar", "w+b")  # noqa: SIM115 - the caller closes it after the build
    return engine.context_tar(checkout, ignore, (GENERATED_DOCKERFILE, text), tar, deadline)


def _push(api: docker.APIClient, image: str, registry: str, log: engine.Log) -> str:
    remote = f"{registry.rstrip('/')}/{image}"
    repository, tag = remote.rsplit(":", 1)
    api.tag(image, repository, tag)
    log(f"Pushing {remote}")
    for chunk in api.push(repository, tag, stream=True, decode=True):
        if "error" in chunk:
            raise BuildFailed("BUILD_ERROR", f"push to {registry} failed: {chunk['error']}")
        if chunk.get("status") and "id" not in chunk:  # per-layer progress lines are noise
            log(chunk["status"])
    return remote


def _build(req: BuildRequest, settings: BuilderSettings, events: BuildEvents, workdir: Path) -> tuple[str, dict]:
    deadline = time.monotonic() + settings.build_timeout
    checkout = workdir / "repo"
    fetch(req.repo_url, req.commit, checkout, events.log)
    config = spaceconfig.load(checkout, default_sdk=req.sdk)
    events.log(f"Space config: sdk={config.sdk} sdk_version={config.sdk_version} app_file={config.app_file}")
    api = engine.client(settings)
    labels = {
        "spaceyard.space": req.space,
        "spaceyard.build": str(req.build_id),
        "spaceyard.commit": req.commit,
        "spaceyard.sdk": config.sdk,
    }
    options: dict[str, Any] = {"labels": labels, "nocache": req.no_cache, **_limits(settings)}
    if config.sdk == "docker":
        # Variables are build args; secrets are deliberately not (docs/build-contract.md).
        options["buildargs"] = dict(req.build_args)
    else:
        python = python_version_for(config.python_version, settings)
        config = dataclasses.replace(config, python_version=python)
        try:
            baseimages.ensure_sdk_base(api, config.sdk, config.sdk_version, python, settings, events.log)
        except baseimages.BaseImageError as exc:
            raise BuildFailed("BUILD_ERROR", f"{exc} (is sdk_version {config.sdk_version} on PyPI?)") from None
    try:
        with _context(checkout, workdir, config, req, settings, deadline) as context:
            events.log(f"Building image {req.image}")
            engine.build(
                api, context, GENERATED_DOCKERFILE, req.image, events.log, deadline - time.monotonic(), **options
            )
    except engine.BuildTimeout:
        raise BuildFailed(
            "BUILD_ERROR",
            f"the build took longer than the {_duration(settings.build_timeout)} build time limit "
            "(SPACEYARD_BUILD_TIMEOUT) and was stopped",
        ) from None
    except engine.EngineBuildError as exc:
        raise BuildFailed("BUILD_ERROR", _explain_limit(exc, settings) or _explain(exc, list(events.tail))) from None
    image = _push(api, req.image, settings.registry, events.log) if settings.registry else req.image
    return image, config.to_dict()


def _duration(seconds: int) -> str:
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


def run_build(req: BuildRequest, settings: BuilderSettings, worker: str) -> dict[str, str] | None:
    """Claim the build, build it and write every event, ending in exactly one result, which is also returned.

    None, and no events, when this delivery of the build is a duplicate: another worker holds its claim or
    it already has a result (docs/build-contract.md, "Deliveries and the claim").
    Failures the author causes (config, missing file, pip...) and engine failures all end in a failed
    result; only a Redis unreachable for a minute escapes as an exception (the control plane's heartbeat
    timeout then re-sends the task).
    """
    retry = Retry(ExponentialBackoff(cap=1.0, base=0.05), REDIS_RETRIES)
    client = redis.Redis.from_url(settings.redis_url, retry=retry)
    events = BuildEvents(
        client,
        req.events,
        settings.build_events_ttl,
        redact=[*req.build_secrets.values(), *_url_secrets(req.repo_url)],
    )
    lease = LEASE_BEATS * settings.heartbeat_interval
    if not events.claim(lease):
        logger.info("build %s: another delivery runs it or it is done; this one does nothing", req.build_id)
        return None
    try:
        return _run_claimed(req, settings, events, worker, lease)
    except ClaimLost:
        logger.warning("build %s: another delivery took it over; this one stops", req.build_id)
        return None


def _run_claimed(
    req: BuildRequest, settings: BuilderSettings, events: BuildEvents, worker: str, lease: float
) -> dict[str, str]:
    started = time.monotonic()
    events.started(worker)
    image, config, kind, message = "", None, "", ""
    heartbeats = events.heartbeats(settings.heartbeat_interval, lease)
    with heartbeats, tempfile.TemporaryDirectory(prefix="spaceyard-build-") as tmp:
        try:
            image, config = _build(req, settings, events, Path(tmp))
        except ClaimLost:
            raise
        except spaceconfig.NoAppFile as exc:
            kind, message, config = "NO_APP_FILE", str(exc), exc.config.to_dict()
        except (spaceconfig.ConfigError, UnavailablePython) as exc:
            kind, message = "CONFIG_ERROR", f"README.md: {exc}" if "README.md" not in str(exc) else str(exc)
        except repofiles.UnsafeFile as exc:
            kind, message = "CONFIG_ERROR", str(exc)
        except dockerignore.BadPattern as exc:
            kind, message = "CONFIG_ERROR", f".dockerignore: {exc}"
        except BuildFailed as exc:
            kind, message = exc.kind, str(exc)
        except Exception as exc:  # the task's boundary: even a builder bug ends in a result
            logger.exception("build %s failed in the builder", req.build_id)
            kind, message = "BUILD_ERROR", f"the builder could not complete the build: {exc}"
    if kind:
        events.log(f"Build failed: {events.scrub(message)}")
    return events.result(
        status="failed" if kind else "success",
        image=image,
        error_kind=kind,
        error_message=message,
        config=config,
        seconds=time.monotonic() - started,
    )


def _hold_for_tests(build_id: int) -> None:
    """Test hook (tests/e2e/test_build_faults.py), inert unless SPACEYARD_BUILDER_TEST_HOLD names a folder:
    while that folder holds a file `hold`, a task taken from the broker waits here, before it claims or starts
    its build, after writing `held-{build_id}`, so a test can kill its worker at exactly that point."""
    folder = os.environ.get("SPACEYARD_BUILDER_TEST_HOLD")
    if not folder or not (Path(folder) / "hold").exists():
        return
    (Path(folder) / f"held-{build_id}").touch()
    while (Path(folder) / "hold").exists():
        time.sleep(0.2)


@app.task(name="builder.build", bind=True)
def build(self: Any, **kwargs: Any) -> dict[str, str] | None:
    """Celery entry point; kwargs as in docs/build-contract.md (unknown ones ignored for compatibility)."""
    known = {f.name for f in dataclasses.fields(BuildRequest)}
    req = BuildRequest(**{k: v for k, v in kwargs.items() if k in known})
    _hold_for_tests(req.build_id)
    worker = self.request.hostname or f"{socket.gethostname()}:{os.getpid()}"
    return run_build(req, BuilderSettings(), worker)
