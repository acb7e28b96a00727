"""No build is lost to a fault: the builder worker SIGKILLed before or during a build, or Redis crashing under a
build. Each time the pushed commit goes live without another push, built once, and no Space is left BUILDING.

The whole platform (launcher.Platform: real Celery worker, Docker, control plane) on a Redis this module runs
itself, so it can crash it. The re-send bound (SPACEYARD_BUILD_HEARTBEAT_TIMEOUT) is short here.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy

from controlplane.builds import events_key
from controlplane.core.config import Settings
from controlplane.launcher import docker_ok, free_port
from tests.conftest import RunningPlatform, git, launch
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker
RESEND_AFTER = 10  # seconds: SPACEYARD_BUILD_HEARTBEAT_TIMEOUT in these tests
FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"}
SLOW_DOCKERFILE = """FROM spaceyard/base:py3.11
RUN echo slow step {nonce} && sleep {seconds}
WORKDIR /app
CMD ["python3", "-m", "http.server", "7860"]
"""


def slow_dockerfile(seconds: int) -> str:
    # A fresh step each time: a layer cached by an earlier build would skip the step this test waits for.
    return SLOW_DOCKERFILE.format(seconds=seconds, nonce=uuid.uuid4().hex)


class CrashableRedis:
    """A redis-server on a fixed port without persistence: a crash restarts it empty, the worst case."""

    def __init__(self, folder: Path) -> None:
        self.port, self.folder = free_port(), folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.ConnectionError):
                redis.Redis(port=self.port).ping()
                return
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)

    def crash(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture(scope="module")
def faults(tmp_path_factory) -> Iterator[tuple[RunningPlatform, CrashableRedis, Path]]:
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    tmp = tmp_path_factory.mktemp("faults")
    broker = CrashableRedis(tmp)
    broker.start()
    hold = tmp / "hold"
    hold.mkdir()
    env = {
        "SPACEYARD_REDIS_URL": broker.url,
        "SPACEYARD_BUILD_HEARTBEAT_TIMEOUT": str(RESEND_AFTER),
        "SPACEYARD_HEARTBEAT_INTERVAL": "1",
        "SPACEYARD_BUILDER_TEST_HOLD": str(hold),
        "SPACEYARD_PROXY": "none",  # builds only: the data path is not what these faults hit
    }
    running = launch(tmp, extra_env=env)
    yield running, broker, hold
    running.platform.stop()
    running.platform.remove_engine_objects()
    broker.crash()


def builds_of(platform: RunningPlatform, space: str) -> list[dict]:
    """The Space's build history, oldest first, from the platform's own database."""
    owner, name = space.split("/")
    engine = sqlalchemy.create_engine(Settings(data_dir=platform.data_dir).sqlalchemy_url)
    query = sqlalchemy.text(
        "SELECT b.id, b.status, b.attempt, b.commit_sha FROM builds b JOIN spaces s ON s.id = b.space_id "
        "WHERE s.owner = :owner AND s.name = :name ORDER BY b.id"
    )
    try:
        with engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query, {"owner": owner, "name": name})]
    finally:
        engine.dispose()


def event_kinds(platform: RunningPlatform, broker: CrashableRedis, build_id: int) -> list[str]:
    key = events_key(Settings(data_dir=platform.data_dir).instance, build_id)
    return [fields["type"] for _id, fields in broker.client().xrange(key)]


def wait_for(check, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


def slow_step_reached(broker: CrashableRedis, platform: RunningPlatform, build_id: int) -> bool:
    key = events_key(Settings(data_dir=platform.data_dir).instance, build_id)
    return any("slow step" in f.get("line", "") for _id, f in broker.client().xrange(key))


def assert_live_once(platform: RunningPlatform, space: str, commit: str, started_within: float) -> dict:
    """The commit went live on its own within the bound, from exactly one build, which succeeded."""
    runtime = platform.wait_stage(space, FINAL, timeout=started_within)
    assert runtime["stage"] == "RUNNING", runtime
    builds = builds_of(platform, space)
    assert [(b["status"], b["commit_sha"]) for b in builds] == [("SUCCESS", commit)], builds
    [container] = platform.containers(space)
    labels = container.image.labels
    assert labels["spaceyard.commit"] == commit and labels["spaceyard.build"] == str(builds[0]["id"]), labels
    return builds[0]


def test_worker_killed_between_receiving_and_starting_a_build(faults, tmp_path):
    platform, broker, hold = faults
    create(platform, "fay", "prestart", sdk="docker")
    (hold / "hold").touch()  # the worker's next task waits before it claims or starts its build
    try:
        commit = push(
            platform, "fay", "prestart", {"README.md": readme("docker"), "Dockerfile": slow_dockerfile(1)}, tmp_path
        )
        wait_for(lambda: any(hold.glob("held-*")), 60, "the worker never received the build")
        assert platform.wait_stage("fay/prestart", {"BUILDING"})["stage"] == "BUILDING"
        platform.platform.stop_process("builder", signal.SIGKILL)
    finally:
        (hold / "hold").unlink()
    platform.platform.start_builder()
    # Re-sent after RESEND_AFTER s of silence; then built (seconds) and started (seconds).
    build = assert_live_once(platform, "fay/prestart", commit, started_within=RESEND_AFTER + 150)
    assert build["attempt"] == 1  # it never ran before: the re-send is not a second attempt
    kinds = event_kinds(platform, broker, build["id"])
    assert kinds.count("started") == 1 and kinds.count("result") == 1, kinds


def start_slow_build(platform: RunningPlatform, broker, name: str, seconds: int, tmp_path) -> tuple[str, int]:
    """A Docker Space fay/{name} pushed with a build step of `seconds`; returns once the build is in that step."""
    create(platform, "fay", name, sdk="docker")
    files = {"README.md": readme("docker"), "Dockerfile": slow_dockerfile(seconds)}
    commit = push(platform, "fay", name, files, tmp_path)
    build_id = builds_of(platform, f"fay/{name}")[0]["id"]
    wait_for(lambda: slow_step_reached(broker, platform, build_id), 90, "the build never reached its slow step")
    return commit, build_id


def test_worker_killed_mid_build(faults, tmp_path):
    platform, broker, _hold = faults
    commit, build_id = start_slow_build(platform, broker, "midbuild", 15, tmp_path)
    platform.platform.stop_process("builder", signal.SIGKILL)
    platform.platform.start_builder()
    build = assert_live_once(platform, "fay/midbuild", commit, started_within=RESEND_AFTER + 180)
    assert build["attempt"] == 2
    kinds = event_kinds(platform, broker, build_id)
    # The killed run's start, the re-sent run's start, one result: the second delivery ran it to the end once.
    assert kinds.count("started") == 2 and kinds.count("result") == 1, kinds


def test_redis_crash_mid_build(faults, tmp_path):
    """Redis comes back empty: no queue, no event stream. The build goes on and goes live, run once."""
    platform, broker, _hold = faults
    commit, build_id = start_slow_build(platform, broker, "brokerloss", 15, tmp_path)
    broker.crash()
    time.sleep(2)
    broker.start()
    build = assert_live_once(platform, "fay/brokerloss", commit, started_within=RESEND_AFTER + 180)
    assert build["attempt"] == 1
    kinds = event_kinds(platform, broker, build_id)
    assert "started" not in kinds and kinds.count("result") == 1, kinds  # the first run went on to its result
    # The platform still builds after the crash: a new push goes live too.
    commit2 = push(platform, "fay", "brokerloss", {"index.html": "again"}, tmp_path)

    def serves_commit2() -> bool:
        containers = platform.containers("fay/brokerloss")
        return len(containers) == 1 and containers[0].image.labels["spaceyard.commit"] == commit2

    wait_for(serves_commit2, 180, "the next push never went live")
    assert platform.wait_stage("fay/brokerloss", FINAL)["stage"] == "RUNNING"


def test_control_plane_killed_mid_build(faults, tmp_path):
    """The build goes on without the control plane; the restarted one reads its result and deploys it once."""
    platform, broker, _hold = faults
    commit, build_id = start_slow_build(platform, broker, "cpkill", 10, tmp_path)
    platform.platform.stop_process("controlplane", signal.SIGKILL)
    platform.platform.start_controlplane()
    build = assert_live_once(platform, "fay/cpkill", commit, started_within=RESEND_AFTER + 180)
    assert build["attempt"] == 1
    kinds = event_kinds(platform, broker, build_id)
    assert kinds.count("started") == 1 and kinds.count("result") == 1, kinds


def strand(platform: RunningPlatform, space: str) -> None:
    """What a control plane stopped at the wrong moment leaves: BUILDING, and no build in the line."""
    owner, name = space.split("/")
    engine = sqlalchemy.create_engine(Settings(data_dir=platform.data_dir).sqlalchemy_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                sqlalchemy.text(
                    "UPDATE spaces SET stage = 'BUILDING', running_build_id = NULL "
                    "WHERE owner = :owner AND name = :name"
                ),
                {"owner": owner, "name": name},
            )
    finally:
        engine.dispose()


def test_a_space_left_building_with_no_build_in_the_line_is_settled(faults, tmp_path):
    """The control plane stopped between a build's result and its deploy: the Space must not stay BUILDING."""
    platform, _broker, _hold = faults
    create(platform, "fay", "stranded", sdk="static")
    push(platform, "fay", "stranded", {"README.md": readme("static"), "index.html": "<p>hi</p>\n"}, tmp_path)
    assert platform.wait_stage("fay/stranded", FINAL)["stage"] == "RUNNING"
    [build] = builds_of(platform, "fay/stranded")
    strand(platform, "fay/stranded")
    assert platform.wait_stage("fay/stranded", FINAL, timeout=90)["stage"] == "RUNNING"
    assert builds_of(platform, "fay/stranded") == [build]  # deployed again, not built again
    wait_for(lambda: len(platform.containers("fay/stranded")) == 1, 30, "the replaced instance was not retired")
    [container] = platform.containers("fay/stranded")
    assert container.image.labels["spaceyard.build"] == str(build["id"])


def test_a_commit_whose_build_never_started_is_built(faults, tmp_path):
    """An API commit shows BUILDING at once and starts its build a moment later: a control plane stopped in that
    moment left the commit unbuilt. The head of main is what a Space should run, so it is built."""
    platform, _broker, _hold = faults
    create(platform, "fay", "unbuilt", sdk="static")
    push(platform, "fay", "unbuilt", {"README.md": readme("static"), "index.html": "<p>one</p>\n"}, tmp_path)
    assert platform.wait_stage("fay/unbuilt", FINAL)["stage"] == "RUNNING"
    # A commit lands in the repo behind the control plane's back (no push handler, no build), and the Space says
    # BUILDING as an API commit leaves it.
    work = tmp_path / "fay-unbuilt"
    (work / "index.html").write_text("<p>two</p>\n")
    git("commit", "-qam", "two", cwd=work)
    bare = Settings(data_dir=platform.data_dir).repos_dir / "fay" / "unbuilt.git"
    git("push", "-q", str(bare), "HEAD:main", cwd=work)
    commit = git("rev-parse", "HEAD", cwd=work).stdout.strip()
    strand(platform, "fay/unbuilt")

    def serves_it() -> bool:
        containers = platform.containers("fay/unbuilt")
        return len(containers) == 1 and containers[0].image.labels["spaceyard.commit"] == commit

    wait_for(serves_it, RESEND_AFTER + 120, "the unbuilt commit never went live")
    assert [b["commit_sha"] for b in builds_of(platform, "fay/unbuilt")][-1] == commit


def test_a_superseded_build_stops(faults, tmp_path):
    """A newer push supersedes a build in progress: its worker stops at its next line instead of finishing it."""
    platform, broker, _hold = faults
    create(platform, "fay", "superseded", sdk="docker")
    ticking = slow_dockerfile(1).replace("sleep 1", "for i in $(seq 1 120); do echo tick $i; sleep 0.5; done")
    push(platform, "fay", "superseded", {"README.md": readme("docker"), "Dockerfile": ticking}, tmp_path)
    old = builds_of(platform, "fay/superseded")[0]["id"]
    key = events_key(Settings(data_dir=platform.data_dir).instance, old)

    def ticks() -> list[str]:
        return [f["line"] for _id, f in broker.client().xrange(key) if f.get("line", "").startswith("tick")]

    wait_for(lambda: len(ticks()) >= 3, 90, "the build never started ticking")
    commit = push(platform, "fay", "superseded", {"Dockerfile": slow_dockerfile(1)}, tmp_path)
    runtime = platform.wait_stage("fay/superseded", FINAL, timeout=RESEND_AFTER + 150)
    assert runtime["stage"] == "RUNNING", runtime
    seen = len(ticks())
    time.sleep(3)
    assert len(ticks()) == seen < 120, "the superseded build went on"
    assert "result" not in event_kinds(platform, broker, old)
    assert [b["status"] for b in builds_of(platform, "fay/superseded")] == ["CANCELLED", "SUCCESS"]
    [container] = platform.containers("fay/superseded")
    assert container.image.labels["spaceyard.commit"] == commit
