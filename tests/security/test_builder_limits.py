"""A Space's build cannot hold the builder or the host: it is stopped at its time limit and its memory limit.

Before: a 90 s RUN loop delayed another tenant's push by 86 s, and one RUN step held 3 GiB.
This module runs its own platform with tight limits (SPACEYARD_BUILD_TIMEOUT / SPACEYARD_BUILD_MEMORY).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import docker
import pytest

from tests.conftest import RunningPlatform, launch
from tests.security.builder_spaces import DOCKER_README, SERVE, build_log, push_tree, settle

pytestmark = pytest.mark.docker
TIMEOUT_S = 20
MEMORY = "64m"


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    running = launch(
        tmp_path_factory.mktemp("limited"),
        extra_env={
            "SPACEYARD_BUILD_TIMEOUT": str(TIMEOUT_S),
            "SPACEYARD_BUILD_MEMORY": MEMORY,
            "SPACEYARD_BUILDER_CONCURRENCY": "2",
        },
    )
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def containers_running(marker: str) -> list[str]:
    """Containers (any state) whose command mentions `marker`: this test's own RUN step only."""
    found = []
    for container in docker.from_env().containers.list(all=True):
        cmd = container.attrs["Config"].get("Cmd") or []
        if marker in " ".join(cmd):
            found.append(container.id)
    return found


def test_build_over_the_time_limit_is_stopped_and_does_not_hold_up_others(limited, tmp_path) -> None:
    marker = f"sleeper-{uuid.uuid4().hex[:8]}"
    dockerfile = f"FROM spaceyard/base:py3.11\nRUN echo {marker} && sleep 300\n{SERVE}"
    started = time.monotonic()
    push_tree(limited, "slowpoke", "sleeper", {"README.md": DOCKER_README, "Dockerfile": dockerfile}, tmp_path)
    # Another tenant's push is built beside the sleeper, not after it.
    quick = f"FROM spaceyard/base:py3.11\nRUN echo quick\n{SERVE}"
    push_tree(limited, "bystander", "quick", {"README.md": DOCKER_README, "Dockerfile": quick}, tmp_path)
    assert settle(limited, "bystander/quick", "bystander")["stage"] in {"APP_STARTING", "RUNNING"}
    with limited.api("slowpoke") as api:
        assert api.get("/api/spaces/slowpoke/sleeper/runtime").json()["stage"] == "BUILDING"
    runtime = settle(limited, "slowpoke/sleeper", "slowpoke")
    took = time.monotonic() - started
    assert runtime["stage"] == "BUILD_ERROR", runtime
    message = runtime["errorMessage"]
    assert "time limit" in message and "SPACEYARD_BUILD_TIMEOUT" in message and f"{TIMEOUT_S} s" in message
    assert took < TIMEOUT_S + 30, f"the build was stopped only after {took:.0f} s"
    assert marker in build_log(limited, "slowpoke/sleeper", "slowpoke")  # the step did start
    deadline = time.monotonic() + 15
    while containers_running(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert containers_running(marker) == [], "the RUN step's container outlived the build"


def test_build_over_the_memory_limit_fails_naming_the_limit(limited, tmp_path) -> None:
    # 200 MB, written (not just reserved), against a 64m limit: the kernel kills the step.
    grab = "python3 -c \"b = b'x' * (200 * 1024 * 1024); print('ALLOCATED', len(b))\""
    dockerfile = f"FROM spaceyard/base:py3.11\nRUN {grab}\n{SERVE}"
    push_tree(limited, "hog", "memory", {"README.md": DOCKER_README, "Dockerfile": dockerfile}, tmp_path)
    runtime = settle(limited, "hog/memory", "hog")
    assert runtime["stage"] == "BUILD_ERROR", runtime
    message = runtime["errorMessage"]
    assert f"more than the {MEMORY} build memory limit (SPACEYARD_BUILD_MEMORY)" in message, message
    assert "ALLOCATED 209715200" not in build_log(limited, "hog/memory", "hog")  # the print never ran
