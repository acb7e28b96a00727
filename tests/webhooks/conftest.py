"""A platform that may fetch from 127.0.0.1 (where the tests' forge runs), and the forge itself."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from controlplane.launcher import docker_ok
from tests.conftest import RunningPlatform, launch
from tests.webhooks.forge import Forge

# Small enough that the 413 test sends little; the documented payloads are a few KiB.
MAX_BODY = 65536
# Small enough that the test of a too large repository sends little.
MAX_REPO = 8 * 2**20


@pytest.fixture(scope="session")
def linked_platform(tmp_path_factory) -> Iterator[RunningPlatform]:
    """Linked repository URLs on loopback allowed: only tests (and closed networks) set this."""
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    env = {"SPACEYARD_LINK_PRIVATE_ADDRESSES": "true", "SPACEYARD_WEBHOOK_MAX_BODY_BYTES": str(MAX_BODY),
           "SPACEYARD_WEBHOOK_DELIVERIES_KEPT": "6", "SPACEYARD_MAX_REPO_BYTES": str(MAX_REPO)}
    running = launch(tmp_path_factory.mktemp("linked"), extra_env=env)
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def new_forge(root: Path, token: str | None = None) -> Forge:
    root.mkdir(parents=True, exist_ok=True)
    return Forge(root, token)


@pytest.fixture
def forge(tmp_path) -> Iterator[Forge]:
    f = new_forge(tmp_path / "forge")
    yield f
    f.close()
