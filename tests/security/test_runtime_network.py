"""A Space's container is reachable only through the router: not from another Space, not from a build, and a
Space cannot reach the control plane through the host's bridge address (issue 11, item 5).

The attacker is alice's probe Space (tests/security/runtime_apps.py) and a build of hers whose RUN step fetches
a URL; the victim is bob's Space, whose container address the test reads from Docker (an attacker would scan).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlparse

import httpx
import pytest
from huggingface_hub import HfApi

from tests.conftest import RunningPlatform
from tests.e2e.spaces import create, push, readme
from tests.security.runtime_apps import app_get, delete_spaces, running_probe, space_container, space_network

pytestmark = pytest.mark.docker

FETCH = '''import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as resp:
        print("PROBE-RESULT answered", resp.status, resp.read(100), flush=True)
except Exception as e:
    print("PROBE-RESULT no answer:", type(e).__name__, e, flush=True)
'''
BUILD_DOCKERFILE = """FROM spaceyard/base:py3.11
ARG TARGET
COPY fetch.py /fetch.py
RUN python3 /fetch.py "$TARGET"
CMD ["python3", "-m", "http.server", "7860"]
"""


@pytest.fixture(scope="module")
def spaces(platform: RunningPlatform, tmp_path_factory) -> Iterator[dict[str, str]]:
    work = tmp_path_factory.mktemp("netprobe")
    attacker = running_probe(platform, "alice", "netprobe", work)
    victim = running_probe(platform, "bob", "victim", work)
    yield {"attacker": attacker, "victim": victim}
    delete_spaces(platform, attacker, victim)


def address(platform: RunningPlatform, space: str) -> tuple[str, str]:
    """(container IP, bridge gateway) of the Space's container on the installation's Space network."""
    nets = space_container(platform, space).attrs["NetworkSettings"]["Networks"]
    assert list(nets) == [space_network(platform)], nets  # not the default bridge
    return nets[space_network(platform)]["IPAddress"], nets[space_network(platform)]["Gateway"]


def probe(platform: RunningPlatform, attacker: str, url: str) -> dict:
    return app_get(platform, attacker, "probe", url=url)


def test_a_space_reaches_no_other_space_directly(platform, spaces):
    victim_ip, _gateway = address(platform, spaces["victim"])
    victim_url = f"http://{victim_ip}:7860/"
    # The victim answers on that address (from the host) and through the router...
    assert httpx.get(victim_url, timeout=5).json() == {"space": spaces["victim"]}
    assert app_get(platform, spaces["victim"]) == {"space": spaces["victim"]}
    # ...and the probe works (its own port answers), yet from inside alice's Space bob's container is silent.
    assert probe(platform, spaces["attacker"], "http://127.0.0.1:7860/")["answered"] is True
    result = probe(platform, spaces["attacker"], victim_url)
    assert result["answered"] is False, result


def test_a_space_reaches_neither_the_control_plane_nor_published_ports_through_the_bridge(platform, spaces):
    _ip, gateway = address(platform, spaces["attacker"])
    cp_port = urlparse(platform.url).port
    victim_ports = space_container(platform, spaces["victim"]).attrs["NetworkSettings"]["Ports"]["7860/tcp"]
    for url in (f"http://{gateway}:{cp_port}/api/health", f"http://{gateway}:{victim_ports[0]['HostPort']}/"):
        result = probe(platform, spaces["attacker"], url)
        assert result["answered"] is False, (url, result)


def test_a_build_step_reaches_no_running_space(platform, spaces, tmp_path):
    victim_ip, _gateway = address(platform, spaces["victim"])
    create(platform, "alice", "buildprobe", sdk="docker")
    hub = HfApi(endpoint=platform.url, token=platform.user("alice"))
    hub.add_space_variable("alice/buildprobe", "TARGET", f"http://{victim_ip}:7860/")  # variables are build args
    files = {"README.md": readme("docker", app_port="7860"), "Dockerfile": BUILD_DOCKERFILE, "fetch.py": FETCH}
    push(platform, "alice", "buildprobe", files, tmp_path)
    platform.wait_stage("alice/buildprobe", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, user="alice")
    url = f"{platform.url}/api/spaces/alice/buildprobe/logs/build?follow=false"
    headers = {"Authorization": f"Bearer {platform.user('alice')}"}
    with httpx.stream("GET", url, headers=headers, timeout=60) as resp:
        log = "\n".join(json.loads(line[6:])["data"] for line in resp.iter_lines() if line.startswith("data: "))
    assert "PROBE-RESULT no answer" in log, log
    assert "PROBE-RESULT answered" not in log
    hub.delete_repo("alice/buildprobe", repo_type="space")
