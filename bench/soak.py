"""Soak: bounded load on a `spaceyard up` of its own, with the faults the supervisor must heal, phase by phase.

    .venv/bin/python bench/soak.py                     # ~5-6 minutes: 5 phases of 50 s, plus setup and drain
    .venv/bin/python bench/soak.py --phase-seconds 15  # a shorter run

Load: --spaces Spaces (Docker SDK, a static file server), --app-clients threads requesting the apps by their own
host name, --api-clients threads calling the Hub API (runtime, Space info, whoami), and a git push every
--push-every seconds to the next Space whose previous push has settled. Phases, in order: baseline; the builder
SIGKILLed while it builds (a push with a slow step is made first); the control plane SIGKILLed; Redis restarted
(SIGTERM: it saves and exits, the supervisor starts it again); recovery. Then it waits for every push to settle,
stops `up` with SIGTERM and checks nothing it started is left.

Per phase it prints requests, errors and p50/p95/p99 latency of app and API traffic, the longest API outage
(first failed call to the next answered one), and pushes ok (the commit served), failed (the push itself was
refused) or stuck (never served by the end). Goals (issue 18): zero app errors for running apps during any single
control-plane-side fault, API outage <= 10 s, zero stuck pushes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from controlplane.launcher import Platform, free_port  # noqa: E402
from controlplane.router.resolver import space_label  # noqa: E402

OWNER = "soak"
DOCKERFILE = """FROM spaceyard/base:py3.11
{slow}WORKDIR /app
COPY . /app
CMD ["python3", "-m", "http.server", "7860"]
"""
README = "---\ntitle: soak\nsdk: docker\n---\n"


@dataclass
class Push:
    space: str
    marker: str
    phase: str
    at: float
    state: str = "pending"  # pending -> ok | failed | stuck


@dataclass
class Recorder:
    phase: str = "setup"
    samples: dict[tuple[str, str], list[tuple[float, bool, float]]] = field(default_factory=dict)
    pushes: list[Push] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def record(self, kind: str, started: float, ok: bool) -> None:
        now = time.monotonic()
        with self.lock:
            self.samples.setdefault((self.phase, kind), []).append((started, ok, now - started))


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "s",
        "GIT_AUTHOR_EMAIL": "s@s",
        "GIT_COMMITTER_NAME": "s",
        "GIT_COMMITTER_EMAIL": "s@s",
        "GIT_TERMINAL_PROMPT": "0",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


class Up:
    """`spaceyard up` in its own session, as an operator runs it."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "SPACEYARD_DATA_DIR": str(self.data_dir),
            "SPACEYARD_PORT": str(self.port),
            "SPACEYARD_LOCAL_SPACE_MEMORY_GB": "0.5",
        }
        self.out = open(tmp / "up.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "controlplane.cli", "up"],
            env=self.env,
            cwd=ROOT,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.log = tmp / "up.out"
        self.started: list[psutil.Process] = []
        deadline = time.monotonic() + 600
        while "Press Ctrl-C" not in self.log.read_text(errors="replace"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"spaceyard up did not come up:\n{self.log.read_text(errors='replace')}")
            time.sleep(0.5)
        self.token = subprocess.run(
            [sys.executable, "-m", "controlplane.cli", "user", "add", OWNER],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    def part(self, needle: str) -> psutil.Process:
        for child in psutil.Process(self.proc.pid).children():
            if needle not in " ".join(child.cmdline()) or child.status() == psutil.STATUS_ZOMBIE:
                continue
            # The control plane's spare (serve --standby) listens on nothing until it takes over.
            if "serve" not in needle or any(c.status == psutil.CONN_LISTEN for c in child.net_connections("tcp")):
                return child
        raise RuntimeError(f"no {needle!r} under spaceyard up")

    def builds_running(self) -> bool:
        import sqlalchemy

        from controlplane.core.config import Settings

        engine = sqlalchemy.create_engine(Settings(data_dir=self.data_dir).sqlalchemy_url)
        try:
            with engine.connect() as conn:
                return bool(conn.execute(sqlalchemy.text("SELECT 1 FROM builds WHERE status = 'RUNNING'")).first())
        finally:
            engine.dispose()

    def left_behind(self) -> list[str]:
        left = []
        for proc in {*psutil.process_iter(), *self.started}:
            try:
                ours = proc in self.started or proc.environ().get("SPACEYARD_DATA_DIR") == str(self.data_dir)
                if ours and proc.is_running() and proc.status() != "zombie":
                    left.append(" ".join(proc.cmdline())[:80])
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return left

    def stop(self) -> float:
        # Redis rewrites its environment (left_behind would miss it): what up started, by ancestry, too.
        self.started = psutil.Process(self.proc.pid).children(recursive=True)
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)
        self.out.close()
        return time.monotonic() - started


class Space:
    def __init__(self, platform: Up, name: str, workdir: Path) -> None:
        self.name, self.platform = name, platform
        self.host = f"{space_label(OWNER, name)}.localhost:{platform.port}"
        self.repo = workdir / name
        self.busy = False
        with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.token}"}) as api:
            api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "docker"}).raise_for_status()
        url = platform.url.replace("http://", f"http://{OWNER}:{platform.token}@") + f"/spaces/{OWNER}/{name}"
        git("clone", "-q", url, str(self.repo), cwd=workdir).check_returncode()

    def push(self, recorder: Recorder, slow: int = 0) -> Push:
        marker = uuid.uuid4().hex
        (self.repo / "README.md").write_text(README)
        (self.repo / "Dockerfile").write_text(
            DOCKERFILE.format(slow=f"RUN echo {marker} && sleep {slow}\n" if slow else "")
        )
        (self.repo / "index.html").write_text(marker)
        git("add", "-A", cwd=self.repo)
        git("commit", "-qm", marker, cwd=self.repo)
        push = Push(self.name, marker, recorder.phase, time.monotonic())
        done = git("push", "-q", "origin", "HEAD:main", cwd=self.repo)
        if done.returncode != 0:
            push.state = "failed"
            git("reset", "-q", "--hard", "origin/main", cwd=self.repo)  # the next push starts from the server's
        else:
            self.busy = True
        with recorder.lock:
            recorder.pushes.append(push)
        return push

    def serves(self, marker: str) -> bool:
        try:
            return (
                httpx.get(
                    f"http://127.0.0.1:{self.platform.port}/", headers={"Host": self.host}, timeout=5
                ).text.strip()
                == marker
            )
        except httpx.HTTPError:
            return False


def app_client(recorder: Recorder, spaces: list[Space], port: int, index: int) -> None:
    with httpx.Client(timeout=10) as client:
        n = index
        while not recorder.stop.is_set():
            space = spaces[n % len(spaces)]
            n += 1
            started = time.monotonic()
            try:
                ok = client.get(f"http://127.0.0.1:{port}/", headers={"Host": space.host}).status_code == 200
            except httpx.HTTPError:
                ok = False
            recorder.record("app", started, ok)
            time.sleep(0.05)


def api_client(recorder: Recorder, spaces: list[Space], platform: Up, index: int) -> None:
    headers = {"Authorization": f"Bearer {platform.token}"}
    with httpx.Client(base_url=platform.url, headers=headers, timeout=10) as client:
        n = index
        while not recorder.stop.is_set():
            space = spaces[n % len(spaces)]
            path = [f"/api/spaces/{OWNER}/{space.name}/runtime", f"/api/spaces/{OWNER}/{space.name}", "/api/whoami-v2"][
                n % 3
            ]
            n += 1
            started = time.monotonic()
            try:
                ok = client.get(path).status_code == 200
            except httpx.HTTPError:
                ok = False
            recorder.record("api", started, ok)
            time.sleep(0.1)


def pusher(recorder: Recorder, spaces: list[Space], every: float) -> None:
    n = 0
    while not recorder.stop.wait(every):
        idle = [s for s in spaces if not s.busy]
        if idle:
            idle[n % len(idle)].push(recorder)
            n += 1


def settler(recorder: Recorder, spaces: dict[str, Space]) -> None:
    while not recorder.stop.wait(1):
        settle(recorder, spaces)


def settle(recorder: Recorder, spaces: dict[str, Space]) -> None:
    for push in [p for p in recorder.pushes if p.state == "pending"]:
        if spaces[push.space].serves(push.marker):
            push.state = "ok"
            spaces[push.space].busy = False


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def outage(samples: list[tuple[float, bool, float]]) -> float:
    """Longest run of failures: from the first failed call's start to the next answered call's start."""
    longest, since = 0.0, None
    for started, ok, _latency in sorted(samples):
        if not ok and since is None:
            since = started
        elif ok and since is not None:
            longest, since = max(longest, started - since), None
    if since is not None and samples:
        longest = max(longest, max(s for s, _ok, _l in samples) - since)
    return longest


def report(recorder: Recorder, phases: list[str]) -> None:
    head = (
        f"{'phase':24} {'app req':>8} {'err':>5} {'p50':>6} {'p95':>6} {'p99':>6}   {'api req':>8} {'err':>5} "
        f"{'p50':>6} {'p95':>6} {'p99':>6} {'outage s':>9}   {'pushes ok/failed/stuck':>22}"
    )
    print("\n" + head + "\n" + "-" * len(head))
    for phase in phases:
        cells = []
        for kind in ("app", "api"):
            samples = recorder.samples.get((phase, kind), [])
            latencies = [lat for _s, ok, lat in samples if ok]
            errors = sum(1 for _s, ok, _l in samples if not ok)
            cells.append(
                f"{len(samples):>8} {errors:>5} {percentile(latencies, 0.5):>6.1f} "
                f"{percentile(latencies, 0.95):>6.1f} {percentile(latencies, 0.99):>6.1f}"
            )
        api_outage = outage(recorder.samples.get((phase, "api"), []))
        pushes = [p for p in recorder.pushes if p.phase == phase]
        counts = "/".join(str(sum(1 for p in pushes if p.state == s)) for s in ("ok", "failed", "stuck"))
        print(f"{phase:24} {cells[0]}   {cells[1]} {api_outage:>9.1f}   {counts:>22}")
    print("latencies in ms, of answered requests; errors: refused, failed or non-200")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spaces", type=int, default=4)
    parser.add_argument("--app-clients", type=int, default=8)
    parser.add_argument("--api-clients", type=int, default=4)
    parser.add_argument("--push-every", type=float, default=20.0)
    parser.add_argument("--phase-seconds", type=float, default=50.0)
    parser.add_argument("--settle-seconds", type=float, default=180.0, help="how long pushes may take to go live")
    parser.add_argument("--keep", action="store_true", help="keep the data dir (logs) after the run")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="spaceyard-soak-"))
    print(f"soak: starting spaceyard up in {tmp}", flush=True)
    platform = Up(tmp)
    recorder = Recorder()
    restarts = None
    phases = ["baseline", "builder SIGKILL mid-build", "control plane SIGKILL", "Redis restart", "recovery"]
    try:
        spaces = [Space(platform, f"s{i}", tmp) for i in range(args.spaces)]
        by_name = {s.name: s for s in spaces}
        for space in spaces:
            space.push(recorder)
        deadline = time.monotonic() + args.settle_seconds
        while any(p.state == "pending" for p in recorder.pushes) and time.monotonic() < deadline:
            settle(recorder, by_name)
            time.sleep(1)
        print(f"soak: {sum(p.state == 'ok' for p in recorder.pushes)}/{len(spaces)} Spaces running", flush=True)
        slow = Space(platform, "slow", tmp)  # pushed in the builder phase only: its build is the one killed
        by_name["slow"] = slow
        threads = [
            threading.Thread(target=app_client, args=(recorder, spaces, platform.port, i), daemon=True)
            for i in range(args.app_clients)
        ]
        threads += [
            threading.Thread(target=api_client, args=(recorder, spaces, platform, i), daemon=True)
            for i in range(args.api_clients)
        ]
        threads += [
            threading.Thread(target=pusher, args=(recorder, spaces, args.push_every), daemon=True),
            threading.Thread(target=settler, args=(recorder, by_name), daemon=True),
        ]
        for phase in phases:
            recorder.phase = phase
            print(f"soak: phase {phase!r}", flush=True)
            if phase == "baseline":
                for t in threads:
                    t.start()
            elif phase.startswith("builder"):
                slow.push(recorder, slow=20)
                until = time.monotonic() + 120
                while not platform.builds_running() and time.monotonic() < until:
                    time.sleep(0.5)
                platform.part("celery").kill()
            elif phase.startswith("control plane"):
                platform.part("controlplane.cli serve").kill()
            elif phase.startswith("Redis"):
                platform.part("redis-server").terminate()
            time.sleep(args.phase_seconds)
        recorder.phase = "drain"
        recorder.stop.set()
        deadline = time.monotonic() + args.settle_seconds
        while any(p.state == "pending" for p in recorder.pushes) and time.monotonic() < deadline:
            settle(recorder, by_name)
            time.sleep(1)
        for push in recorder.pushes:
            if push.state == "pending":
                push.state = "stuck"
        admin = (platform.data_dir / "admin-token").read_text().strip()
        restarts = httpx.get(f"{platform.url}/metrics", headers={"Authorization": f"Bearer {admin}"})
    finally:
        stopped_in = platform.stop()
        Platform({}, platform.data_dir).remove_engine_objects()  # the Spaces' containers and images
    report(recorder, phases)
    setup = [p for p in recorder.pushes if p.phase == "setup"]
    print(f"setup pushes ok: {sum(p.state == 'ok' for p in setup)}/{len(setup)}")
    if restarts is not None and restarts.status_code == 200:
        print("\n".join(line for line in restarts.text.splitlines() if line.startswith("spaceyard_part_restarts")))
    print("\n".join(line for line in platform.log.read_text().splitlines() if " spaceyard up: " in line))
    left = platform.left_behind()
    print(f"spaceyard up stopped in {stopped_in:.1f} s (SIGTERM); processes left behind: {len(left)} {left}")
    print(f"supervisor log: {tmp / 'up.out'}")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
