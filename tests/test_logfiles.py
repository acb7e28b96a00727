"""The parts' logs rotate by size: a chatty process never grows its file past the limit, and old files roll."""

from __future__ import annotations

import subprocess
import sys

import pytest

from controlplane.logfiles import pump


@pytest.mark.parametrize("reader", ["thread", "process"])
def test_a_process_output_is_rotated_by_size_keeping_the_backups(tmp_path, reader):
    """thread: how `up` reads its parts; process: the detached reader of the Docker engine it starts, which
    outlives `up` as the engine does."""
    log = tmp_path / "part.log"
    lines = 2000  # 'line 0001\n' ... about 22 KB: several rotations of 4 KiB
    child = subprocess.Popen(
        [sys.executable, "-c", f"for i in range({lines}): print(f'line {{i:04}}', flush=True)"],
        stdout=subprocess.PIPE,
    )
    if reader == "thread":
        thread = pump(child.stdout, log, max_bytes=4096, backups=2)
        child.wait(30)
        thread.join(10)
        assert not thread.is_alive()
    else:
        rotate = subprocess.Popen([sys.executable, "-m", "controlplane.logfiles", str(log), "4096", "2"],
                                  stdin=child.stdout)
        child.stdout.close()
        child.wait(30)
        assert rotate.wait(30) == 0
    files = [log, tmp_path / "part.log.1", tmp_path / "part.log.2"]
    assert all(f.exists() for f in files) and not (tmp_path / "part.log.3").exists()
    assert all(f.stat().st_size <= 4096 for f in files)
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    # Newest last: the current file ends with the last line, and the backups hold what came just before it.
    kept = "".join(f.read_text() for f in reversed(files)).splitlines()
    assert kept[-1] == f"line {lines - 1:04}"
    assert kept == [f"line {i:04}" for i in range(lines - len(kept), lines)]
