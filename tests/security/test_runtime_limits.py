"""Limits of a Space's container on the docker runtime (issue 11, item 6): pids, capabilities, privilege gain,
log rotation, the tier's CPU and memory, uid 1000 whatever the image says; and a host whose memory is taken
makes the next Space wait for hardware instead of over-committing it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import docker
import pytest
from huggingface_hub import HfApi

from tests.conftest import RunningPlatform, launch
from tests.e2e.spaces import create, push, readme
from tests.scheduler.test_scheduler_docker import runtime_until, waiting
from tests.security.runtime_apps import app_get, delete_spaces, running_probe, space_container

pytestmark = pytest.mark.docker
GIB = 2**30


@pytest.fixture(scope="module")
def probe(platform: RunningPlatform, tmp_path_factory) -> Iterator[str]:
    space = running_probe(platform, "alice", "limitprobe", tmp_path_factory.mktemp("limits"))
    yield space
    delete_spaces(platform, space)


def test_container_limits_as_docker_inspect_shows_them(platform, probe):
    attrs = space_container(platform, probe).attrs
    host = attrs["HostConfig"]
    assert host["PidsLimit"] == 512
    assert host["SecurityOpt"] == ["no-new-privileges:true"]
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert host["Init"] is True
    # cpu-basic here: its local size (test platforms: 1 GiB), no swap beyond it, CPUs capped below the host's count.
    local_gib = float(platform.env["SPACEYARD_LOCAL_SPACE_MEMORY_GB"])
    assert host["Memory"] == host["MemorySwap"] == local_gib * GIB
    host_cpus = docker.from_env().info()["NCPU"]
    assert host["NanoCpus"] == int(min(2, max(host_cpus - 0.5, host_cpus / 4)) * 1e9)
    assert host["CpuShares"] == 2048
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert attrs["Config"]["User"] == "1000:1000"
    env = dict(e.split("=", 1) for e in attrs["Config"]["Env"])
    assert env["MEMORY"] == f"{local_gib:g}Gi"  # what the app really has, not the catalog's 16 GB


def test_user_root_image_runs_as_uid_1000_without_raw_sockets(platform, probe):
    me = app_get(platform, probe, "whoami")
    assert (me["uid"], me["gid"]) == (1000, 1000)
    assert me["raw_socket"].startswith("refused"), me  # NET_RAW dropped: no ping floods, no packet forging


CATALOG = """
tiers:
  - {name: cpu-basic, pretty_name: CPU basic, vcpu: 0.5, memory_gb: 16, local_memory_gb: 2}
pools:
  - {name: cpu, tiers: [cpu-basic], capacity: 5}
"""
STATIC = {"README.md": readme("static"), "index.html": "<h1>hello</h1>\n"}


@pytest.fixture(scope="module")
def three_gib(tmp_path_factory) -> Iterator[RunningPlatform]:
    """A platform that may give Spaces 3 GiB of this host (whatever its size): one 2 GiB Space fits, two do not;
    the pool's 5 slots are not what stops the second."""
    tmp = tmp_path_factory.mktemp("memory")
    (tmp / "tiers.yaml").write_text(CATALOG)
    total_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / GIB
    running = launch(tmp, extra_env={"SPACEYARD_TIERS_FILE": str(tmp / "tiers.yaml"),
                                     "SPACEYARD_LOCAL_RESERVED_MEMORY_GB": str(total_gib - 3)})
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def test_space_waits_for_memory_instead_of_over_committing_the_host(three_gib, tmp_path):
    for name in ("big1", "big2"):
        create(three_gib, "alice", name, sdk="static")
    push(three_gib, "alice", "big1", STATIC, tmp_path)
    three_gib.wait_stage("alice/big1", {"RUNNING"}, "alice")
    assert space_container(three_gib, "alice/big1").attrs["HostConfig"]["Memory"] == 2 * GIB
    push(three_gib, "alice", "big2", STATIC, tmp_path)
    rt = runtime_until(three_gib, "alice/big2", waiting("The host's memory for Spaces is taken"))
    assert rt["stage"] == "APP_STARTING"
    assert rt["errorMessage"] == (
        "Waiting for a cpu-basic: you are next (1 of 5 in use in pool local-cpu). The host's memory for Spaces is "
        "taken: 2.0 of 3.0 GiB reserved, this Space needs 2.0 GiB."
    )
    assert three_gib.containers("alice/big2") == []
    HfApi(endpoint=three_gib.url, token=three_gib.user("alice")).pause_space("alice/big1")
    three_gib.wait_stage("alice/big2", {"RUNNING"}, "alice")
