"""Starts the whole single-host platform: Docker engine check, private Redis, builder worker, proxy, control plane.

`spaceyard up` and the test suite both use `Platform`, so what the tests run is what users run. Under `up`,
`Platform.supervise` keeps the parts running: one that exits is restarted with back-off while the others keep
serving (docs/operations.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import httpx

from builder.settings import BuilderSettings
from controlplane import logfiles, part_restarts
from controlplane.core.config import Settings
from controlplane.core.files import PRIVATE_UMASK, make_tree_private, private_opener

HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# However `up` was started (a terminal, `&` or nohup, which ignore INT or HUP, a service manager), these stop it.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
# A part that exits is restarted at once the first time within the restart window, then after this pause, doubled
# for each further exit, up to the cap.
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 30.0
# What a stopping part gets before it is killed: a build in progress is re-run after the next start.
STOP_TIMEOUT = 15.0


# A spare control plane under `up`: started ahead, its imports done, it serves once the running one exits, so
# a restart costs the app's start-up (a second or two) and not Python's imports as well (many seconds on a
# loaded host).
STANDBY = "controlplane-standby"
SERVE = [sys.executable, "-m", "controlplane.cli", "serve"]


class Stopped(BaseException):
    """`up` was asked to stop (a signal). Like KeyboardInterrupt, no `except Exception` (a retry loop) keeps it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


class PartFailed(RuntimeError):
    """A part kept exiting: more than restart_limit times within restart_window."""


class AlreadyRunning(RuntimeError):
    pass


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


def ensure_docker(log_dir: Path, settings: Settings | None = None) -> None:
    """Use the engine DOCKER_HOST points at; start the local dockerd when it is installed but not running."""
    if docker_ok():
        return
    dockerd = shutil.which("dockerd")
    if dockerd is None or os.geteuid() != 0:
        raise RuntimeError(
            "No Docker engine is reachable. Install it (scripts/setup.sh does) and start it, or set DOCKER_HOST."
        )
    log_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    limits = settings or Settings()
    # setsid: the engine outlives this process, as a system service would, and so does the reader of its output,
    # which rotates dockerd.log like the other parts' logs.
    engine = subprocess.Popen([dockerd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    rotate = [sys.executable, "-m", "controlplane.logfiles", str((log_dir / "dockerd.log").resolve()),
              str(limits.log_max_bytes), str(limits.log_backups)]
    subprocess.Popen(rotate, stdin=engine.stdout, start_new_session=True, cwd=Path(__file__).resolve().parent.parent)
    engine.stdout.close()  # the reader holds the pipe now
    wait_for(docker_ok, 60, "the Docker engine")


def hold_lock(data_dir: Path) -> BinaryIO:
    """One `spaceyard up` per data dir: an flock on data_dir/up.pid (with its pid), held while the file is open."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    lock = open(data_dir / "up.pid", "a+", opener=private_opener)  # noqa: SIM115 - held until the process ends
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        pid = lock.read().strip() or "unknown"
        lock.close()
        raise AlreadyRunning(f"already running on {data_dir} (pid {pid})") from None
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


def started_at(pid: int) -> str | None:
    """When a process started (clock ticks since boot, /proc/PID/stat), None when it is gone: with the pid it
    names one process, never a later one that reuses the pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def describe_exit(code: int) -> str:
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class Platform:
    """The processes of one Spaceyard instance. Stop kills exactly what start began.

    A part is one process, named after its log file (`redis`, `builder`, `controlplane`, the proxy's); the
    supervisor restarts it with the method that first started it."""

    def __init__(self, env: dict[str, str], data_dir: Path) -> None:
        self.env = {**os.environ, **env}
        self.data_dir = data_dir.resolve()
        self.logs = self.data_dir / "logs"
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.starters: dict[str, Callable[[], object]] = {}
        self.restarts: dict[str, int] = {}
        self._exits: dict[str, list[float]] = {}
        self._starting: Callable[[], object] | None = None
        self._lock: BinaryIO | None = None
        self._signals: dict[int, object] = {}
        self._held_signal: int | None = None
        self._holding = False
        self._redis_port: int | None = None
        self._pumps: list[threading.Thread] = []
        self._standby_wanted = False

    def settings(self) -> Settings:
        named = {name: f"SPACEYARD_{name.upper()}" for name in Settings.model_fields}
        return Settings(**{name: self.env[var] for name, var in named.items() if var in self.env})

    def lock(self) -> None:
        """Refuse to start (AlreadyRunning, with its pid) while another `up` runs on this data dir."""
        if self._lock is None:
            self._lock = hold_lock(self.data_dir)

    def _record_parts(self) -> None:
        """The parts' pids in the data dir, so a later `up` can stop what an `up` killed outright left running."""
        entries = [f"{proc.pid} {started_at(proc.pid)}\n" for _name, proc in self.procs]
        with open(self.data_dir / "parts.pids", "w", opener=private_opener) as f:
            f.writelines(entries)

    def _stop_leftovers(self) -> None:
        """Each part runs in a session of its own, so an `up` that was SIGKILLed leaves them running (holding
        ports); the lock says no other `up` has them now."""
        path = self.data_dir / "parts.pids"
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            pid, started = line.split()
            if started_at(int(pid)) == started:
                say(f"stopping process group {pid}, left running by an earlier spaceyard up")
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(pid), signal.SIGKILL)
        path.unlink()

    def _spawn(
        self,
        name: str,
        args: list[str],
        *,
        private: bool = True,
        extra_env: dict[str, str] | None = None,
        standby: bool = False,
    ) -> subprocess.Popen:
        """private: the process writes the data dir, so what it creates there is 0600/0700. Its output goes
        through a pipe into logs/{name}.log, rotated by size. standby: it waits for a line on its stdin, and its
        output is logged from when it takes over."""
        self.logs.mkdir(mode=0o700, parents=True, exist_ok=True)
        settings = self.settings()
        # A stop signal that arrives now is taken once the process is on the list, so stop() finds it.
        self._holding = True
        try:
            proc = subprocess.Popen(
                args,
                stdin=subprocess.PIPE if standby else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env={**self.env, **(extra_env or {})},
                start_new_session=True,
                umask=PRIVATE_UMASK if private else -1,
            )
            self.procs.append((name, proc))
            self._record_parts()
        finally:
            self._holding = False
        if not standby:
            self._log(proc, name, settings)
        if self._starting is not None and not standby:
            self.starters[name] = self._starting
        if self._held_signal is not None:
            raise Stopped(self._held_signal)
        return proc

    def _log(self, proc: subprocess.Popen, name: str, settings: Settings) -> None:
        self._pumps.append(
            logfiles.pump(proc.stdout, self.logs / f"{name}.log", settings.log_max_bytes, settings.log_backups)
        )

    def _part(self, start: Callable[[], object]) -> None:
        """Run `start` and remember it as the way to restart whatever process it spawns."""
        self._starting = start
        try:
            start()
        finally:
            self._starting = None

    def start_redis(self) -> str:
        # A restarted Redis keeps its port: every other part has its URL. And its data, to the last second (append
        # only file): builds in progress keep their logs, and their claims (docs/build-contract.md) survive a crash.
        self._redis_port = port = self._redis_port or free_port()
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
                "yes",
                "--appendfsync",
                "everysec",
            ],
        )
        import redis

        client = redis.Redis(port=port)
        wait_for(client.ping, 20, "Redis")
        return f"redis://127.0.0.1:{port}/0"

    def start(self, *, base_images: bool = True) -> None:
        self.lock()
        self._stop_leftovers()
        make_tree_private(self.data_dir)
        ensure_docker(self.logs, self.settings())
        if not self.env.get("SPACEYARD_REDIS_URL"):
            self._part(self._start_private_redis)
        if not self.env.get("SPACEYARD_BUILD_CA_BUNDLE") and HOST_CA_BUNDLE.exists():
            self.env["SPACEYARD_BUILD_CA_BUNDLE"] = str(HOST_CA_BUNDLE)
        if base_images:
            subprocess.run([sys.executable, "-m", "builder.baseimages"], env=self.env, check=True)
        self._part(self.start_builder)
        if self.env.setdefault("SPACEYARD_PROXY", "haproxy") == "haproxy":
            self._part(self.start_proxy)
        self._part(self.start_controlplane)

    def _start_private_redis(self) -> None:
        self.env["SPACEYARD_REDIS_URL"] = self.start_redis()

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

        if shutil.which("haproxy") is None:
            raise RuntimeError("HAProxy is not installed: run scripts/setup.sh, or set SPACEYARD_PROXY=none.")
        self.env.setdefault("SPACEYARD_CONTROLPLANE_PORT", str(free_port()))
        self.env.setdefault("SPACEYARD_PROXY_ACTIVITY_PORT", str(free_udp_port()))
        named = {name: f"SPACEYARD_{name.upper()}" for name in Settings.model_fields}
        return Settings(**{name: self.env[var] for name, var in named.items() if var in self.env})

    def start_proxy(self) -> None:
        """The proxy (HAProxy) on host:port. It starts from the route maps the control plane last wrote, so apps
        that were running serve at once (a first start sends everything to the control plane until it pushes
        its routes); the rest of its files are static, written at each start, and never reloaded."""
        from controlplane.proxy import config, pusher

        settings = self._proxy_settings()
        layout = pusher.layout(settings)
        for name, text in config.files(config.Table(0, ()), layout).items():
            path = Path(layout.path(name))
            if not (name.endswith(".map") and path.exists()):
                pusher.write_file(path, text)
        self._spawn("proxy", ["haproxy", "-db", "-f", layout.path("haproxy.cfg")])
        url = f"http://{settings.host}:{settings.port}/"
        # Any answer: with no control plane yet, HAProxy answers 502 after its retries (about 2 s).
        wait_for(lambda: httpx.get(url, timeout=10).status_code > 0, 30, "The proxy (HAProxy)")

    def start_controlplane(self) -> None:
        host = self.env.get("SPACEYARD_HOST", "127.0.0.1")
        port = self.env.setdefault("SPACEYARD_PORT", "8000")
        proc = self._standby_takes_over() or self._spawn("controlplane", SERVE)
        # Through the proxy when there is one: what users reach must answer.
        url = f"http://{host}:{port}/api/health"
        wait_for(
            lambda: proc.poll() is not None or httpx.get(url, timeout=2).status_code == 200, 60, "The control plane"
        )
        if proc.poll() is not None:
            raise RuntimeError(f"The control plane {describe_exit(proc.returncode)} while starting; see {self.logs}")
        if self._standby_wanted:
            self._spawn(STANDBY, [*SERVE, "--standby"], standby=True)

    def _standby_takes_over(self) -> subprocess.Popen | None:
        entry = next(((n, p) for n, p in self.procs if n == STANDBY), None)
        if entry is None:
            return None
        proc = entry[1]
        try:
            proc.stdin.write(b"serve\n")
            proc.stdin.close()
        except OSError:  # it died
            self._stop([entry], signal.SIGKILL)
            return None
        self.procs[self.procs.index(entry)] = ("controlplane", proc)
        self._log(proc, "controlplane", self.settings())
        say("the standby control plane takes over")
        return proc

    def stop_process(self, name: str, sig: int = signal.SIGTERM) -> None:
        self._stop([(n, p) for n, p in self.procs if n == name], sig)

    def stop(self) -> None:
        """Stop every part at once (none waits on another's shutdown), then release the data dir."""
        self._ignore_signals()
        self._stop(list(self.procs), signal.SIGTERM)
        for pump in self._pumps:
            pump.join(timeout=2)  # the parts' last lines reach their logs
        self._pumps.clear()
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def _stop(self, procs: list[tuple[str, subprocess.Popen]], sig: int) -> None:
        # The whole process group: what a part forked (Celery's pool, a build's helpers) goes with it.
        for _name, proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        deadline = time.monotonic() + STOP_TIMEOUT
        for _name, proc in procs:
            try:
                proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        for entry in procs:
            self.procs.remove(entry)
        self._record_parts()

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

    def stop_on_signals(self) -> None:
        """SIGINT, SIGTERM and SIGHUP raise Stopped in the main thread, however `up` was started (a background
        job or nohup inherit INT or HUP ignored: the handlers are set explicitly)."""

        def handler(signum: int, _frame) -> None:
            if self._holding:
                self._held_signal = signum
            else:
                raise Stopped(signum)

        for sig in STOP_SIGNALS:
            self._signals[sig] = signal.signal(sig, handler)

    def _ignore_signals(self) -> None:
        # A second Ctrl-C must not cut the stop short and leave processes behind.
        for sig in self._signals:
            signal.signal(sig, signal.SIG_IGN)

    def supervise(self) -> None:
        """Restart every part that exits, with back-off, the others running on; return never. Raises Stopped
        (a signal, via stop_on_signals) or PartFailed (a part exited more than restart_limit times within
        restart_window)."""
        settings = self.settings()
        self.restarts = dict.fromkeys(self.starters, 0)
        part_restarts.write_counts(self.data_dir, self.restarts)
        if "controlplane" in self.starters:
            self._standby_wanted = True
            self._spawn(STANDBY, [*SERVE, "--standby"], standby=True)
        while True:
            for name, proc in list(self.procs):
                if proc.poll() is not None and name in self.starters:
                    self._restart(name, proc, settings)
            time.sleep(0.5)

    def _restart(self, name: str, proc: subprocess.Popen, settings: Settings) -> None:
        now = time.monotonic()
        exits = [t for t in self._exits.get(name, []) if now - t < settings.restart_window] + [now]
        self._exits[name] = exits
        how = describe_exit(proc.returncode)
        log = self.logs / f"{name}.log"
        if settings.restart_limit and len(exits) > settings.restart_limit:
            raise PartFailed(
                f"{name} exited {len(exits)} times within {settings.restart_window:g} s (last: {how}); see {log}"
            )
        self._stop([(name, proc)], signal.SIGKILL)  # what it forked goes too (an orphaned Celery pool child)
        delay = 0.0 if len(exits) == 1 else min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (len(exits) - 2))
        say(f"{name} exited ({how}); restarting in {delay:g} s (see {log})")
        time.sleep(delay)
        try:
            self._part(self.starters[name])
        except RuntimeError as e:
            say(f"{name} did not come back: {e}")  # counted as its next exit when the supervisor sees it gone
        self.restarts[name] = self.restarts.get(name, 0) + 1
        part_restarts.write_counts(self.data_dir, self.restarts)


def say(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} spaceyard up: {message}", flush=True)
