"""Shutdown ends the Docker runtime's event watch at once, not at the engine's next event."""

from __future__ import annotations

import threading

import docker
import pytest

from controlplane.core.config import Settings
from controlplane.launcher import docker_ok
from controlplane.runtime.docker_backend import DockerBackend

pytestmark = pytest.mark.docker


def test_closing_the_docker_runtime_ends_a_watch_waiting_for_events(tmp_path):
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    backend = DockerBackend(Settings(data_dir=tmp_path))
    try:
        watched: list = []
        thread = threading.Thread(target=lambda: watched.extend(backend.watch()), daemon=True)
        thread.start()
        thread.join(1)
        assert thread.is_alive()  # nothing of this installation happens: the watch waits
        backend.close()
        thread.join(5)
        assert not thread.is_alive() and watched == []
        assert list(backend.watch()) == []  # a watch begun after close ends at once
    finally:
        docker.from_env().networks.get(backend.network).remove()
