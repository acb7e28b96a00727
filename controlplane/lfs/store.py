"""LFS objects on disk, content-addressed (`lfs/objects/ab/cd/<oid>`), one copy for all Spaces; and which Space may
serve which object.

An object is stored once however many Spaces hold it, so knowing an oid must not be enough to read it: each
Space repo keeps a link per object it may serve (`<repo>.git/lfs-links/<oid>`), written when that Space's writer
uploads the object (proving they hold its content, even when the store had it already) or when a Space is
duplicated. Pushes and API commits may only reference linked objects, so "linked" also means "referenced".
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path

LINKS = "lfs-links"
# Received bytes are hashed and written off the event loop in pieces this large.
WRITE_PIECE = 4 * 1024 * 1024
# A temp file untouched this long belongs to no live upload (its process was killed: the upload's own cleanup never
# ran). The edge cuts a connection silent for an hour (`timeout client`, controlplane/proxy/config.py), and a live
# upload writes at least every WRITE_PIECE.
STALE_TEMP_SECONDS = 2 * 3600


class ObjectRefused(Exception):
    """An upload whose bytes do not match the oid and size it was announced with; nothing was stored."""


def _private_dir(path: Path) -> Path:
    """mkdir -p with every created level 0700 (`Path.mkdir(parents=True)` gives the parents the umask's mode)."""
    if not path.is_dir():
        _private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
    return path


def _write_all(fd: int, parts: list[bytes]) -> None:
    for part in parts:
        view = memoryview(part)
        while view:
            view = view[os.write(fd, view) :]


def _hash(digest: hashlib._Hash, parts: list[bytes]) -> None:
    # Part by part: joining them first would copy every byte once more.
    for part in parts:
        digest.update(part)


async def _hash_and_write(chunks: AsyncIterator[bytes], size: int, digest: hashlib._Hash, fd: int) -> int:
    """Receive `chunks` into `fd` and `digest`; returns the bytes received. Pieces of WRITE_PIECE are hashed and
    written in worker threads (hashlib and os.write release the GIL), in two stages that do not wait for each other:
    while one piece is hashed, the one before it may still be written and the next one is received. Awaiting each
    write would stall the socket, as the server stops reading while the app does not ask. At most one piece per
    stage is in flight, so an upload holds about 3 pieces in memory."""
    received, piece, piece_bytes = 0, [], 0
    hashing: asyncio.Future | None = None
    writing: asyncio.Future | None = None
    try:
        async for chunk in chunks:
            received += len(chunk)
            if received > size:
                raise ObjectRefused(f"the upload is longer than the announced size of {size} bytes")
            piece.append(chunk)
            piece_bytes += len(chunk)
            if piece_bytes >= WRITE_PIECE:
                if hashing is not None:
                    await hashing
                hashing = asyncio.ensure_future(asyncio.to_thread(_hash, digest, piece))
                if writing is not None:
                    await writing  # a failed write (disk full) fails the upload here
                writing = asyncio.ensure_future(asyncio.to_thread(_write_all, fd, piece))
                piece, piece_bytes = [], 0
    finally:
        # Never close the file under a running write (nor end with a hash still running).
        await asyncio.gather(*(f for f in (hashing, writing) if f is not None), return_exceptions=True)
    for stage in (hashing, writing):
        if stage is not None:
            stage.result()
    await asyncio.gather(asyncio.to_thread(_hash, digest, piece), asyncio.to_thread(_write_all, fd, piece))
    return received


class LfsStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid[2:4] / oid

    def has(self, oid: str, size: int | None = None) -> bool:
        try:
            stored = self.path(oid).stat().st_size
        except FileNotFoundError:
            return False
        return size is None or stored == size

    async def receive(self, oid: str, size: int, chunks: AsyncIterator[bytes]) -> None:
        """Stream an upload to a temp file, check its sha256 and size, then rename it into place (atomic: a reader
        sees the whole object or none). An object already stored is kept; the upload only proved possession."""
        tmp = _private_dir(self.root / "tmp") / f"{oid}.{os.getpid()}.{id(chunks)}"
        digest = hashlib.sha256()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # outside the try: a name taken stays
        try:
            try:
                received = await _hash_and_write(chunks, size, digest, fd)
            finally:
                os.close(fd)
            if received != size:
                raise ObjectRefused(f"the upload has {received} bytes, not the announced {size}")
            if digest.hexdigest() != oid:
                raise ObjectRefused(f"the content's sha256 is {digest.hexdigest()}, not the announced oid {oid}")
            target = self.path(oid)
            _private_dir(target.parent)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def sweep_temp(self, older_than: float = STALE_TEMP_SECONDS) -> int:
        """Delete the temp files of uploads that died with their process; returns how many. Age, not owner, decides:
        another control plane on this data dir (the standby under `up`) may be receiving into the others."""
        cutoff, removed = time.time() - older_than, 0
        try:
            entries = list(os.scandir(self.root / "tmp"))
        except FileNotFoundError:
            return 0
        for entry in entries:
            try:
                if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass  # its upload finished, or another sweep took it
        return removed

    # Links: which Space may serve which object.
    @staticmethod
    def link(repo: Path, oid: str) -> None:
        link = _private_dir(repo / LINKS) / oid
        link.touch(mode=0o600, exist_ok=True)

    @staticmethod
    def linked(repo: Path, oid: str) -> bool:
        return (repo / LINKS / oid).is_file()

    def available(self, repo: Path, oid: str, size: int | None = None) -> bool:
        """The Space at `repo` may serve this object, and it is stored."""
        return self.linked(repo, oid) and self.has(oid, size)

    @staticmethod
    def copy_links(source: Path, target: Path) -> None:
        """A duplicated Space serves the objects its copied history references."""
        if (source / LINKS).is_dir():
            shutil.copytree(source / LINKS, target / LINKS, dirs_exist_ok=True)
