"""Log files of a long-running host: each part's output goes through a writer that rotates the file by size.

`spaceyard up` reads its children's stdout and stderr through a pipe and writes them here, so Redis, Celery,
the proxy and the control plane need no rotation of their own and nothing grows without bound.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import BinaryIO

from controlplane.core.files import private_opener


class RotatingLog:
    """`name.log`, rolled over to `name.log.1` ... `name.log.{backups}` once it would pass `max_bytes`."""

    def __init__(self, path: Path, max_bytes: int, backups: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        self._file = self._open()

    def _open(self) -> BinaryIO:
        return open(self.path, "ab", buffering=0, opener=private_opener)  # noqa: SIM115 - kept open, closed in close()

    def write(self, data: bytes) -> None:
        while len(data) > self.max_bytes - self._file.tell():
            room = self.max_bytes - self._file.tell()
            # Whole lines where there is a line end; a line longer than a whole file is split.
            cut = data.rfind(b"\n", 0, room) + 1 or (room if self._file.tell() == 0 else 0)
            self._file.write(data[:cut])
            data = data[cut:]
            self._rotate()
        self._file.write(data)

    def _rotate(self) -> None:
        self._file.close()
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))
        self._file = self._open()

    def close(self) -> None:
        self._file.close()


def pump(stream: BinaryIO, path: Path, max_bytes: int, backups: int) -> threading.Thread:
    """Copy a child's output into its rotating log on a thread of its own, until every process that holds the
    pipe (the child and what it forked) has closed it."""
    log = RotatingLog(path, max_bytes, backups)

    def copy() -> None:
        try:
            while chunk := stream.read1(64 * 1024):
                log.write(chunk)
        finally:
            stream.close()
            log.close()

    thread = threading.Thread(target=copy, daemon=True, name=f"log-{path.stem}")
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    """`python -m controlplane.logfiles PATH MAX_BYTES BACKUPS`: stdin into a rotating log until it ends. For a
    process that outlives `spaceyard up` (the Docker engine it starts), so its pipe's reader must outlive it too."""
    parser = argparse.ArgumentParser(prog="python -m controlplane.logfiles")
    parser.add_argument("path", type=Path)
    parser.add_argument("max_bytes", type=int)
    parser.add_argument("backups", type=int)
    args = parser.parse_args(argv)
    pump(sys.stdin.buffer, args.path, args.max_bytes, args.backups).join()


if __name__ == "__main__":
    main()
