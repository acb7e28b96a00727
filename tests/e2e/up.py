"""`spaceyard up` as an operator runs it, for the supervisor and lifecycle tests: its own process, output in a file.

`processes_of` finds the processes a platform started, however deep and whoever their parent is now, by the data
dir in their environment (each part inherits it); `Up.descendants` lists them while `up` runs. Together they tell
that a stop left nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import psutil
import sqlalchemy

from controlplane.core.config import Settings
from controlplane.launcher import free_port
from tests.conftest import ROOT, RunningPlatform

UP = [sys.executable, "-m", "controlplane.cli", "up"]
FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"}


def slow_dockerfile(seconds: int) -> str:
    """A Docker Space whose build takes `seconds` in a fresh step (a cached layer would skip it)."""
    return (
        "FROM spaceyard/base:py3.11\n"
        f"RUN echo slow step {uuid.uuid4().hex} && sleep {seconds}\n"
        'CMD ["python3", "-m", "http.server", "7860"]\n'
    )


def builds_of(data_dir: Path, space: str) -> list[tuple[str, str]]:
    """(status, commit) of the Space's builds, oldest first, from the platform's database."""
    owner, name = space.split("/")
    engine = sqlalchemy.create_engine(Settings(data_dir=data_dir).sqlalchemy_url)
    query = sqlalchemy.text(
        "SELECT b.status, b.commit_sha FROM builds b JOIN spaces s ON s.id = b.space_id "
        "WHERE s.owner = :owner AND s.name = :name ORDER BY b.id"
    )
    try:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query, {"owner": owner, "name": name})]
    finally:
        engine.dispose()


def wait_until(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running (a zombie is gone: only its parent's wait is missing)."""
    found = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def listens(proc: psutil.Process) -> bool:
    return any(c.status == psutil.CONN_LISTEN for c in proc.net_connections(kind="tcp"))


def processes_of(data_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("SPACEYARD_DATA_DIR") == str(data_dir):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


class Up:
    """`shell`: a command line that starts `up` in the background ({up} and {out} filled in), as with `&` or
    `setsid nohup`; its pid then comes from the pid file `up` writes."""

    def __init__(
        self, tmp: Path, extra_env: dict[str, str] | None = None, shell: str | None = None, port: int | None = None
    ) -> None:
        self.data_dir = tmp / "data"
        self.out = tmp / "up.out"
        self.port = port or free_port()
        self.env = {
            "SPACEYARD_DATA_DIR": str(self.data_dir),
            "SPACEYARD_PORT": str(self.port),
            "SPACEYARD_HOST": "127.0.0.1",
            "SPACEYARD_LOCAL_SPACE_MEMORY_GB": "0.5",
            **(extra_env or {}),
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.shell = shell
        self.pid = 0
        self.proc: subprocess.Popen | None = None
        self._platform: RunningPlatform | None = None

    def start(self) -> Up:
        env = {**os.environ, **self.env}
        if self.shell is None:
            with open(self.out, "wb") as out:
                self.proc = subprocess.Popen(
                    UP, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True
                )
            self.pid = self.proc.pid
            return self
        command = self.shell.format(up=" ".join(UP), out=self.out)
        subprocess.run(["bash", "-c", command], env=env, cwd=ROOT, check=True, timeout=30)
        pid_file = self.data_dir / "up.pid"
        wait_until(lambda: pid_file.exists() and pid_file.read_text().strip(), 60, "up never wrote its pid file")
        self.pid = int(pid_file.read_text())
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        try:
            return psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    def wait_up(self, timeout: float = 400) -> Up:
        wait_until(lambda: "Press Ctrl-C" in self.output() or not self.alive(), timeout, "up never came up")
        assert self.alive(), f"up exited while starting:\n{self.output()}"
        return self

    def wait_exit(self, timeout: float) -> float:
        """Seconds until `up` is gone."""
        started = time.monotonic()
        wait_until(lambda: not self.alive(), timeout, f"up still running after {timeout} s:\n{self.output()}")
        return time.monotonic() - started

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> float:
        os.kill(self.pid, sig)
        return self.wait_exit(timeout)

    def descendants(self) -> list[psutil.Process]:
        """Every process `up` started, now (Redis among them: it rewrites its environment, processes_of misses it)."""
        return psutil.Process(self.pid).children(recursive=True)

    def part(self, name: str) -> psutil.Process:
        """The running process of a part (a child of `up`) by what its command line holds."""
        needle = {"controlplane": "controlplane.cli serve", "builder": "celery", "redis": "redis-server"}[name]
        for child in psutil.Process(self.pid).children():
            try:
                # Two control planes while `up` supervises: the one serving, and a spare that listens on nothing.
                if needle in " ".join(child.cmdline()) and (name != "controlplane" or listens(child)):
                    return child
            except psutil.Error:  # gone, or a zombie `up` has not reaped yet
                continue
        raise AssertionError(f"no {name} under up:\n{self.output()}")

    def wait_new_part(self, name: str, old_pid: int, timeout: float = 60) -> psutil.Process:
        def replaced() -> bool:
            try:
                return self.part(name).pid != old_pid
            except AssertionError:
                return False

        wait_until(replaced, timeout, f"{name} was not restarted:\n{self.output()}")
        return self.part(name)

    def health(self) -> bool:
        try:
            return httpx.get(f"{self.url}/api/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def platform(self) -> RunningPlatform:
        """The helpers tests use on a platform (users, API, stages), over this `up`; one, so users are made once."""
        if self._platform is None:
            self._platform = RunningPlatform(url=self.url, data_dir=self.data_dir, env=self.env, platform=None)  # type: ignore[arg-type]
        return self._platform
