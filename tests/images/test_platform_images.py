"""The platform's own images (docker/*.Dockerfile), built for real by the Docker engine and smoke-run.

Built the air-gapped way (FROM the debootstrap-made spaceyard/base:py3.11, as CI has no registry), with the host
CA bundle in docker/extra-ca/ (pip reaches PyPI through a TLS-inspecting proxy here). The context is what
.dockerignore lets through, as with `docker build .`; the CA goes into that tar, not into the working tree.
Each image gets a tag unique to this run and is removed at the end; nothing else on the engine is touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
from docker.utils.build import tar as build_tar

from controlplane.launcher import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parents[2]
BASE_IMAGE = "spaceyard/base:py3.11"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Inside docker/extra-ca/, where both Dockerfiles pick up *.crt files.
CA_IN_CONTEXT = "docker/extra-ca/spaceyard-test-host-ca.crt"
RUN_ID = uuid.uuid4().hex[:10]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        pytest.skip(f"no Docker engine reachable ({exc}); ./dev.sh test starts one")
    try:
        client.api.inspect_image(BASE_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.skip(f"{BASE_IMAGE} is missing: build it with `python -m builder.baseimages` (./dev.sh test does)")
    yield client
    client.close()


def ca_bundle() -> Path | None:
    """The CA bundle builds must trust: the one dev.sh hands the builder, else the host's."""
    configured = os.environ.get("SPACEYARD_BUILD_CA_BUNDLE")
    if configured:
        return Path(configured)
    return HOST_CA_BUNDLE if HOST_CA_BUNDLE.exists() else None


def build_context(dockerfile: str) -> tempfile.SpooledTemporaryFile:
    """The repo as `docker build .` would send it (.dockerignore applied), plus the CA bundle."""
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    exclude = [line.strip() for line in ignore if line.strip() and not line.strip().startswith("#")]
    context = build_tar(str(ROOT), exclude=exclude, dockerfile=(dockerfile, None))
    bundle = ca_bundle()
    if bundle is not None:
        # build_tar leaves an uncompressed tar at offset 0, which tarfile can append to.
        with tarfile.open(fileobj=context, mode="a") as tar:
            tar.add(str(bundle), arcname=CA_IN_CONTEXT)
        context.seek(0)
    return context


def build(client: docker.DockerClient, name: str) -> tuple[str, float, list[str]]:
    """Build docker/{name}.Dockerfile; return the tag, the seconds it took and the build log."""
    tag = f"spaceyard-imagetest-{RUN_ID}/{name}:test"
    dockerfile = f"docker/{name}.Dockerfile"
    log: list[str] = []
    started = time.monotonic()
    with build_context(dockerfile) as context:
        # forcerm: a failed step's container is removed too (the engine is shared).
        stream = client.api.build(fileobj=context, custom_context=True, dockerfile=dockerfile, tag=tag,
                                  buildargs={"BASE_IMAGE": BASE_IMAGE}, rm=True, forcerm=True, decode=True)
        for chunk in stream:
            if "stream" in chunk:
                log.extend(line for line in chunk["stream"].splitlines() if line.strip())
            if "error" in chunk:
                tail = "\n".join(log[-40:])
                raise AssertionError(f"building {dockerfile} failed: {chunk['error']}\n{tail}")
    seconds = time.monotonic() - started
    print(f"\n{dockerfile}: built in {seconds:.1f} s ({sum('Using cache' in line for line in log)} cached steps)")
    return tag, seconds, log


def remove_image(client: docker.DockerClient, tag: str) -> None:
    with contextlib.suppress(docker.errors.APIError):
        # Removing the tag also removes this build's own untagged layers, never layers other images use.
        client.api.remove_image(tag, force=True)


def docker_socket_options(client: docker.DockerClient) -> tuple[dict[str, str], dict, list[int]]:
    """env, volumes and extra groups that give a uid-10001 container this engine (the docker runtime needs one)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return {"DOCKER_HOST": host}, {}, []  # TCP: reachable over --network host
    path = host.removeprefix("unix://")
    return ({"DOCKER_HOST": host}, {path: {"bind": path, "mode": "rw"}}, [os.stat(path).st_gid])


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A real Redis on a free loopback port; the containers reach it through --network host."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (scripts/setup.sh installs it)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def controlplane_image(client: docker.DockerClient) -> Iterator[str]:
    tag, _seconds, _log = build(client, "controlplane")
    yield tag
    remove_image(client, tag)


@pytest.fixture(scope="module")
def builder_image(client: docker.DockerClient) -> Iterator[str]:
    tag, _seconds, log = build(client, "builder")
    # The Dockerfiles share everything up to the dependency layer, so after the control plane image (same
    # engine) pip is not run again; a cold engine has no cache either way.
    print(f"builder: pip dependency layer {'from cache' if pip_layer_cached(log) else 'built'}")
    yield tag
    remove_image(client, tag)


def pip_layer_cached(log: list[str]) -> bool:
    for i, line in enumerate(log):
        if line.startswith("Step ") and "setuptools>=68" in line:
            return i + 1 < len(log) and "Using cache" in log[i + 1]
    return False


def run(client: docker.DockerClient, image: str, command: list[str], **kwargs) -> str:
    """Run a command in a throwaway container; return its output, failing with it on a non-zero exit."""
    container = client.containers.run(image, command, detach=True, **kwargs)
    try:
        status = container.wait(timeout=120)["StatusCode"]
        output = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert status == 0, f"{command} exited {status}:\n{output}"
    return output


def alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(ROOT / "controlplane" / "migrations"))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


# --- control plane -------------------------------------------------------------------------------


def test_controlplane_image_cli(client, controlplane_image):
    out = run(client, controlplane_image, ["sh", "-c", "spaceyard --help && git --version && id -u"])
    assert "serve" in out and "gpu-agent" in out
    assert "git version" in out  # `git http-backend` serves Space repos
    assert out.strip().splitlines()[-1] == "10001"  # not root


def test_controlplane_image_serves_and_migrates(client, controlplane_image, redis_url):
    # The same path inside and outside: the instance name derives from the data dir, so it is unique to this run
    # and the control plane never takes another installation's containers on the shared engine for its own.
    data = Path(tempfile.mkdtemp(prefix=f"spaceyard-imagetest-{RUN_ID}-"))
    os.chown(data, 10001, 10001)
    port = free_port()
    env, volumes, groups = docker_socket_options(client)
    env |= {"SPACEYARD_REDIS_URL": redis_url, "SPACEYARD_DATA_DIR": str(data), "SPACEYARD_HOST": "127.0.0.1",
            "SPACEYARD_PORT": str(port)}
    container = client.containers.run(controlplane_image, detach=True, network_mode="host", environment=env,
                                      volumes={str(data): {"bind": str(data), "mode": "rw"}, **volumes},
                                      group_add=groups, name=f"spaceyard-imagetest-{RUN_ID}-controlplane")
    try:
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited":
                break
            with contextlib.suppress(httpx.HTTPError):
                status = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).status_code
                if status == 200:
                    break
            time.sleep(0.5)
        logs = container.logs().decode(errors="replace")
        assert status == 200, f"GET /api/health never answered 200 (last {status}):\n{logs[-4000:]}"
        assert httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=5).json() == {"status": "ok"}
        # The startup migration ran: the schema is at the repo's head revision, written by uid 10001.
        db = data / "spaceyard.db"
        assert db.stat().st_uid == 10001
        with contextlib.closing(sqlite3.connect(db)) as conn:
            version = conn.execute("SELECT version_num FROM alembic_version").fetchone()
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert version == (alembic_head(),)
        assert {"users", "spaces", "builds"} <= tables, tables
    finally:
        container.remove(force=True)
        shutil.rmtree(data, ignore_errors=True)


# --- builder -------------------------------------------------------------------------------------


def test_builder_image_has_its_tools_and_runtime_images(client, builder_image):
    check = (
        "import builder.tasks\n"
        "from builder.settings import BuilderSettings\n"
        "s = BuilderSettings()\n"
        "assert (s.runtime_images_dir / 'build.sh').is_file(), s.runtime_images_dir\n"
        "print(s.runtime_images_dir)\n"
    )
    script = 'python -c "$CHECK" && git --version && command -v socat && command -v debootstrap && id -u'
    out = run(client, builder_image, ["sh", "-c", script], environment={"CHECK": check})
    lines = out.strip().splitlines()
    assert lines[0] == "/opt/spaceyard/runtime-images"  # SPACEYARD_RUNTIME_IMAGES_DIR, set by the image
    assert any(line.startswith("git version") for line in lines)
    assert any(line.endswith("/socat") for line in lines) and any(line.endswith("/debootstrap") for line in lines)
    assert lines[-1] == "10001"


def test_builder_image_worker_answers_ping(client, builder_image, redis_url):
    name = f"imagetest-{RUN_ID}@spaceyard"
    # The image's own CMD (the worker on the builds queue), only named so the ping can address it.
    command = ["celery", "-A", "builder.celery_app", "worker", "-Q", "builds", "--loglevel=INFO",
               "--hostname", name]
    env, volumes, groups = docker_socket_options(client)
    container = client.containers.run(builder_image, command, detach=True, network_mode="host",
                                      environment={**env, "SPACEYARD_REDIS_URL": redis_url}, volumes=volumes,
                                      group_add=groups, name=f"spaceyard-imagetest-{RUN_ID}-builder")
    try:
        deadline = time.monotonic() + 90
        out = ""
        while time.monotonic() < deadline:
            container.reload()
            if container.status == "exited":
                break
            code, raw = container.exec_run(["celery", "-A", "builder.celery_app", "inspect", "ping", "--timeout", "2",
                                            "--destination", name])
            out = raw.decode(errors="replace")
            if code == 0 and "pong" in out:
                break
            time.sleep(1)
        logs = container.logs().decode(errors="replace")
        assert "pong" in out, f"the worker never answered ping:\n{out}\n--- worker log\n{logs[-4000:]}"
        assert "builder.build" in logs  # the build task is registered
    finally:
        container.remove(force=True)
