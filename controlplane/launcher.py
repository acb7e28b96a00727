"""Starts the whole single-host platform: Docker engine check, private Redis, builder worker, control plane.

`spaceyard up` and the test suite both use `Platform`, so what the tests run is what users run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from builder.settings import BuilderSettings
from controlplane.core.files import PRIVATE_UMASK, make_tree_private, private_opener

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {int(timeout)} s")


def docker_ok() -> bool:
    import docker

    try:
        docker.from_env().ping()
        return True
    except Exception:
        return False


def ensure_docker(log_dir: Path) -> None:
    """Use the engine DOCKER_HOST points at; start the local dockerd when it is installed but not running."""
    if docker_ok():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise RuntimeError(
            "No Docker engine is reachable. Install it (scripts/setup.sh does) and start it, or set DOCKER_HOST."
        )
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(log_dir / "dockerd.log", "ab", opener=private_opener) as out:
        # setsid: the engine outlives this process, as a system service would.
        subprocess.Popen([dockerd], stdout=out, stderr=out, start_new_session=True)
    wait_for(docker_ok, 60, "the Docker engine")


class Platform:
    """The processes of one Spaceyard instance. Stop kills exactly what start began."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.data_dir = data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def _spawn(self, name: str, args: list[str], *, private: bool = True,
               extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """private: the process writes the data dir, so what it creates there is 0600/0700."""
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        out = open(self.logs / f"{name}.log", "ab", opener=private_opener)  # noqa: SIM115 - the child owns it
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env={**self.env, **(extra_env or {})},
                                start_new_session=True, umask=PRIVATE_UMASK if private else -1)
        self.procs.append((name, proc))
        return proc

    def start_redis(self) -> str:
        port = free_port()
        self._spawn(
            "redis",
            [
                "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "60",
                "1",
                "--appendonly",
                "no",
            ],
        )
        import redis

        client = redis.Redis(port=port)
        wait_for(client.ping, 20, "Redis")
        return f"redis://127.0.0.1:{port}/0"

    def start(self, *, base_images: bool = True) -> None:
        make_tree_private(self.data_dir)
        ensure_docker(self.logs)
        if not self.env.get("SPACEYARD_REDIS_URL"):
            self.env["SPACEYARD_REDIS_URL"] = self.start_redis()
        if not self.env.get("SPACEYARD_BUILD_CA_BUNDLE") and HOST_CA_BUNDLE.exists():
            self.env["SPACEYARD_BUILD_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
        if base_images:
            subprocess.run([sys.executable, "-m", "builder.baseimages"], env=self.env, check=True)
        self.start_builder()
        if self.env.setdefault("SPACEYARD_PROXY", "caddy") == "caddy":
            self.start_proxy()
            self.start_edge()
        self.start_controlplane()

    def start_builder(self) -> None:
        # The builder's own default unless the environment sets one (the launcher starts it, so it may ask).
        default = BuilderSettings.model_fields["builder_concurrency"].default
        concurrency = self.env.get("SPACEYARD_BUILDER_CONCURRENCY", str(default))
        # The control plane hands out as many builds as this worker runs: the rest wait in its fair queue.
        self.env.setdefault("SPACEYARD_BUILDS_IN_FLIGHT", concurrency)
        name = f"builder-{os.getpid()}-{len(self.procs)}@%h"
        worker = ["worker", "-Q", "builds", "--loglevel", "INFO", "--concurrency", concurrency, "--hostname", name]
        # Not private: the builder writes nothing in the data dir, and the files it hands `docker build` must
        # keep their modes (an app running as a non-root user reads them in the image).
        self._spawn("builder", [sys.executable, "-m", "celery", "-A", "builder.celery_app", *worker], private=False)

    def _proxy_settings(self):
        from controlplane.core.config import Settings

        if shutil.which("caddy") is None:
            raise RuntimeError("Caddy is not installed: run scripts/setup.sh, or set SPACEYARD_PROXY=none.")
        for var in ("SPACEYARD_CONTROLPLANE_PORT", "SPACEYARD_PROXY_INTERNAL_PORT"):
            self.env.setdefault(var, str(free_port()))
        self.env.setdefault("SPACEYARD_PROXY_ACTIVITY_PORT", str(free_udp_port()))
        named = {name: f"SPACEYARD_{name.upper()}" for name in Settings.model_fields}
        return Settings(**{name: self.env[var] for name, var in named.items() if var in self.env})

    def _caddy(self, name: str, config: Path) -> None:
        from controlplane.proxy import pusher

        folder = pusher.proxy_dir(self._proxy_settings())
        # Caddy's own state (autosave is off; storage is set in the config) stays in the data dir, not in ~.
        env = {"XDG_CONFIG_HOME": str(folder / "xdg-config"), "XDG_DATA_HOME": str(folder / "xdg-data")}
        self._spawn(name, ["caddy", "run", "--config", str(config)], extra_env=env)

    def start_proxy(self) -> None:
        """The proxy's routing tier (Caddy, loopback). It starts from the last route table the control plane
        wrote, so apps that were running serve at once; a first start sends everything to the control plane
        until it pushes its routes."""
        from controlplane.proxy import config, pusher

        settings = self._proxy_settings()
        path = pusher.config_file(settings)
        if not path.exists():
            pusher.write_config(path, config.build(config.Table(0, ()), pusher.layout(settings)))
        self._caddy("proxy", path)
        url = f"http://127.0.0.1:{settings.proxy_routes_port}/"
        wait_for(lambda: httpx.get(url, timeout=2).status_code > 0, 30, "The proxy (Caddy)")

    def start_edge(self) -> None:
        """The public listener (Caddy, static config): forwards to the routing tier, never reloads."""
        from controlplane.proxy import config, pusher

        settings = self._proxy_settings()
        path = pusher.edge_file(settings)
        pusher.write_config(path, config.edge(pusher.layout(settings)))
        self._caddy("proxy-edge", path)
        url = f"http://{settings.host}:{settings.port}/"
        wait_for(lambda: httpx.get(url, timeout=2).status_code > 0, 30, "The proxy's edge (Caddy)")

    def start_controlplane(self) -> None:
        host = self.env.get("SPACEYARD_HOST", "127.0.0.1")
        port = self.env.setdefault("SPACEYARD_PORT", "8000")
        self._spawn("controlplane", [sys.executable, "-m", "controlplane.cli", "serve"])
        # Through the proxy when there is one: what users reach must answer.
        url = f"http://{host}:{port}/api/health"
        wait_for(lambda: httpx.get(url, timeout=2).status_code == 200, 60, "The control plane")

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        for n, proc in list(self.procs):
            if n == name and proc.poll() is None:
                os.killpg(proc.pid, sig)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            if n == name:
                self.procs.remove((n, proc))

    def stop(self) -> None:
        for name, _proc in reversed(list(self.procs)):
            self.stop_process(name)

    def remove_engine_objects(self) -> None:
        """Remove every container and image this installation made (for throwaway test and bench platforms)."""
        import docker

        from controlplane.core.config import Settings

        instance = Settings(data_dir=self.data_dir).instance
        client = docker.from_env()
        # The low-level calls: the high-level ones inspect each object and fail on one removed meanwhile.
        for c in client.api.containers(all=True, filters={"label": f"spaceyard.instance={instance}"}):
            with contextlib.suppress(docker.errors.APIError):
                client.api.remove_container(c["Id"], force=True)
        for image in client.api.images():
            for tag in image.get("RepoTags") or []:
                if tag.startswith(f"spaceyard-{instance}/"):
                    # By tag: an image id can be shared with another installation's identical build.
                    with contextlib.suppress(docker.errors.APIError):
                        client.api.remove_image(tag)

    def wait(self) -> None:
        """Block until one of the platform's processes dies or the user presses Ctrl-C."""
        while all(p.poll() is None for _n, p in self.procs):
            time.sleep(0.5)
        dead = [n for n, p in self.procs if p.poll() is not None]
        raise RuntimeError(f"{', '.join(dead)} stopped; see {self.logs}")
