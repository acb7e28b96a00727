"""The scheduler on the real docker runtime: a capacity-1 CPU pool, a recorded A10G host, quotas, tier changes.

One platform for the module, with its own catalog (small tiers, so a 2-core host shows the limits change) and
NVML readings recorded on an A10G node (so a GPU tier is offered without a GPU; none is ever started).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import docker
import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from controlplane.core.config import Settings
from tests.conftest import RunningPlatform, launch
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker

CATALOG = """
tiers:
  - {name: cpu-basic, pretty_name: CPU basic, vcpu: 0.5, memory_gb: 1}
  - {name: cpu-upgrade, pretty_name: CPU upgrade, vcpu: 1, memory_gb: 1.5, price_per_hour: 0.03}
  - {name: a10g-small, pretty_name: Nvidia A10G - small, vcpu: 1, memory_gb: 1, gpu_model: A10G, gpu_count: 1,
     gpu_memory_gb: 24, price_per_hour: 1.0}
  - {name: t4-small, pretty_name: Nvidia T4 - small, vcpu: 1, memory_gb: 1, gpu_model: T4, gpu_count: 1,
     gpu_memory_gb: 16, price_per_hour: 0.4}
pools:
  - {name: cpu, tiers: [cpu-basic, cpu-upgrade], capacity: 1}
  - {name: a10g, tiers: [a10g-small], capacity: 1}
  - {name: t4, tiers: [t4-small], capacity: 1}
"""
A10G_HOST = Path(__file__).resolve().parent.parent / "metering" / "data" / "a10g-node.json"
STATIC = {"README.md": readme("static", suggested_hardware="t4-small"), "index.html": "<h1>hello</h1>\n"}


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Iterator[RunningPlatform]:
    tmp = tmp_path_factory.mktemp("scheduler")
    (tmp / "tiers.yaml").write_text(CATALOG)
    running = launch(tmp, extra_env={"SPACEYARD_TIERS_FILE": str(tmp / "tiers.yaml"),
                                     "SPACEYARD_GPU_RECORDING": str(A10G_HOST),
                                     # CPU tiers keep their catalog memory (1 and 1.5 GB) rather than a local size.
                                     "SPACEYARD_LOCAL_SPACE_MEMORY_GB": "2"})
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def hf(platform: RunningPlatform, user: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=platform.user(user))


def runtime_until(platform: RunningPlatform, space: str, ok: Callable[[dict], bool], timeout: float = 240) -> dict:
    deadline, last = time.monotonic() + timeout, {}
    with platform.api("alice") as api:
        while time.monotonic() < deadline:
            last = api.get(f"/api/spaces/{space}/runtime").json()
            if ok(last):
                return last
            time.sleep(0.5)
    raise AssertionError(f"{space}: condition never met; last runtime: {last}\n{platform.log_tail()}")


def waiting(text: str) -> Callable[[dict], bool]:
    return lambda rt: rt["spaceyard"]["detail"] == "waiting for hardware" and text in (rt.get("errorMessage") or "")


def cli(platform: RunningPlatform, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "controlplane.cli", *args], env={**os.environ, **platform.env},
                          capture_output=True, text=True)


def container_limits(platform: RunningPlatform, space: str) -> tuple[int, int]:
    label = f"spaceyard.instance={Settings(data_dir=Path(platform.env['SPACEYARD_DATA_DIR'])).instance}"
    deadline = time.monotonic() + 15
    # After a redeploy the old container drains for a moment: wait until only one serves.
    while len(running := docker.from_env().containers.list(filters={"label": [label, f"spaceyard.space={space}"]})) > 1:
        assert time.monotonic() < deadline, running
        time.sleep(0.5)
    host = running[0].attrs["HostConfig"]
    return host["NanoCpus"], host["Memory"]


def test_hardware_list_as_the_hub_client_reads_it(small):
    tiers = {t.name: t for t in hf(small, "alice").list_spaces_hardware()}
    assert list(tiers) == ["cpu-basic", "cpu-upgrade", "a10g-small", "t4-small"]
    basic = tiers["cpu-basic"]
    assert (basic.cpu, basic.ram, basic.accelerator) == ("0.5 vCPU", "1 GB", None)
    a10g = tiers["a10g-small"].accelerator
    assert (a10g.model, a10g.quantity, a10g.vram) == ("A10G", "1", "24 GB")
    assert tiers["a10g-small"].unit_label == "minute" and tiers["a10g-small"].unit_cost_micro_usd == 16667
    own = {t["name"]: t["spaceyard"] for t in small.api().get("/api/spaces/hardware").json()}
    assert own["cpu-basic"] | {"inUse": 0} == {"offered": True, "pool": "local-cpu", "capacity": 1, "inUse": 0,
                                               "free": 1, "waiting": 0, "pricePerHour": 0.0}
    assert own["a10g-small"]["offered"] and own["a10g-small"]["capacity"] == 1  # the recorded host's one A10G
    assert own["t4-small"] == {"offered": False, "pool": None, "pricePerHour": 0.4}


def test_tiers_this_host_cannot_run_are_refused(small, tmp_path):
    with small.api("alice") as api:
        for tier, why in (("t4-small", "not offered here (this host has no matching GPU)"),
                          ("h200-huge", "Unknown hardware 'h200-huge'")):
            resp = api.post("/api/repos/create", json={"type": "space", "name": f"r-{tier}", "organization": "alice",
                                                       "sdk": "static", "hardware": tier})
            assert resp.status_code == 400 and why in resp.json()["error"], resp.text
            assert "Available here: cpu-basic, cpu-upgrade, a10g-small." in resp.json()["error"]
    create(small, "alice", "refused", sdk="static")
    with pytest.raises(HfHubHTTPError, match="not offered here"):
        hf(small, "alice").request_space_hardware("alice/refused", "t4-small")
    assert hf(small, "alice").get_space_runtime("alice/refused").requested_hardware == "cpu-basic"
    out = cli(small, "hardware", "alice/refused", "t4-small", "--token", small.user("alice"))
    assert out.returncode != 0 and "error 400: Hardware 't4-small' is not offered here" in out.stderr


def test_full_pool_makes_spaces_wait_in_line_and_start_as_it_frees(small, tmp_path):
    for name in ("first", "second", "third"):
        create(small, "alice", name, sdk="static")
    push(small, "alice", "first", STATIC, tmp_path)
    small.wait_stage("alice/first", {"RUNNING"}, "alice")
    push(small, "alice", "second", STATIC, tmp_path)
    second = runtime_until(small, "alice/second", waiting("Waiting for a cpu-basic: you are next"))
    assert second["stage"] == "APP_STARTING" and second["hardware"]["current"] is None
    assert second["spaceyard"]["suggestedHardware"] == "t4-small"  # shown, not applied
    assert second["hardware"]["requested"] == "cpu-basic"
    push(small, "alice", "third", STATIC, tmp_path)
    runtime_until(small, "alice/third", waiting("Waiting for a cpu-basic: 1 ahead of you"))
    own = {t["name"]: t["spaceyard"] for t in small.api().get("/api/spaces/hardware").json()}
    assert (own["cpu-upgrade"]["free"], own["cpu-upgrade"]["waiting"]) == (0, 2)

    hf(small, "alice").pause_space("alice/first")
    small.wait_stage("alice/second", {"RUNNING"}, "alice")
    runtime_until(small, "alice/third", waiting("you are next"))
    hf(small, "alice").pause_space("alice/second")
    small.wait_stage("alice/third", {"RUNNING"}, "alice")


def test_hardware_change_restarts_on_the_new_limits(small):
    # alice/third holds the pool's only slot: moving it to another tier of the same pool must not wait on itself.
    assert container_limits(small, "alice/third") == (500_000_000, 1024 * 2**20)
    rt = hf(small, "alice").request_space_hardware("alice/third", "cpu-upgrade")
    assert rt.requested_hardware == "cpu-upgrade"
    runtime_until(small, "alice/third", lambda r: r["stage"] == "RUNNING" and r["hardware"]["current"] == "cpu-upgrade")
    assert container_limits(small, "alice/third") == (1_000_000_000, 1536 * 2**20)
    hf(small, "alice").pause_space("alice/third")


def test_gpu_quota_refuses_with_a_clear_message(small, tmp_path):
    boss = cli(small, "user", "add", "boss", "--admin")
    assert boss.returncode == 0, boss.stderr
    token = boss.stdout.strip()
    with small.api("alice") as api:  # not an admin
        assert api.patch("/api/admin/users/alice", json={"max_gpus": 5}).status_code == 403
    out = cli(small, "quota", "alice", "--max-gpus", "0", "--token", token)
    assert out.returncode == 0 and "alice: max GPUs 0" in out.stdout, out.stderr

    create(small, "alice", "quota-cpu", sdk="static")
    with pytest.raises(HfHubHTTPError, match="Your quota of 0 GPUs is too small for a10g-small"):
        hf(small, "alice").request_space_hardware("alice/quota-cpu", "a10g-small")
    # Created on a GPU tier (creation holds nothing): the start is refused, the Space is held, not failed.
    with small.api("alice") as api:
        resp = api.post("/api/repos/create", json={"type": "space", "name": "quota-gpu", "organization": "alice",
                                                   "sdk": "static", "hardware": "a10g-small"})
        assert resp.status_code == 200, resp.text
    push(small, "alice", "quota-gpu", STATIC, tmp_path)
    rt = small.wait_stage("alice/quota-gpu", {"PAUSED"}, "alice")
    assert rt["spaceyard"]["detail"] == "over quota"
    assert rt["errorMessage"].startswith("Not started. Your quota of 0 GPUs is too small for a10g-small")
    out = cli(small, "quota", "alice", "--max-gpus", "none", "--token", token)
    assert "alice: max GPUs unlimited" in out.stdout
