"""Reading the files of an untrusted checkout without ever following a symlink.

A pushed repo may hold symlinks to host files (/etc/passwd, the platform's database). The builder
opens every file it reads one path component at a time with O_NOFOLLOW, so neither the file nor a
folder above it can be a link; it never writes into a checkout (the build context is a tar it assembles).
Stdlib only: the control plane imports spaceconfig, which uses this.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

MAX_NAME_SHOWN = 200


class UnsafeFile(ValueError):
    """A file the builder reads is a symlink, sits in a symlinked folder, or is too large (CONFIG_ERROR)."""


def shown(name: str) -> str:
    return name if len(name) <= MAX_NAME_SHOWN else name[:MAX_NAME_SHOWN] + "..."


def _parts(relpath: str) -> list[str]:
    parts = relpath.split("/")
    if relpath.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise UnsafeFile(f"{shown(relpath)}: must be a relative path inside the repository (no /, . or .. parts)")
    return parts


def _open(root: Path, relpath: str) -> int | None:
    """A read-only fd of root/relpath reached without following links; None when it does not exist."""
    parts = _parts(relpath)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)  # the checkout folder itself is the builder's own
    try:
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            flags = os.O_RDONLY | os.O_NOFOLLOW | (os.O_NONBLOCK if last else os.O_DIRECTORY)
            try:
                child = os.open(part, flags, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                # ELOOP: the component is a symlink. ENOTDIR: a file where a folder should be (missing).
                if exc.errno == errno.ENOTDIR and not stat.S_ISLNK(os.lstat(part, dir_fd=fd).st_mode):
                    return None
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    link = "/".join(parts[: depth + 1])
                    raise UnsafeFile(
                        f"{shown(link)}: is a symbolic link; the builder does not follow symlinks for "
                        f"{shown(relpath)} (commit the file itself, not a link to it)"
                    ) from None
                raise
            os.close(fd)
            fd = child
        return os.dup(fd)
    finally:
        os.close(fd)


def is_regular_file(root: Path, relpath: str) -> bool:
    """Whether root/relpath is a regular file; raises UnsafeFile when it or a folder above it is a link."""
    fd = _open(root, relpath)
    if fd is None:
        return False
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    finally:
        os.close(fd)


def read_text(root: Path, relpath: str, limit: int, *, truncate: bool = False) -> str | None:
    """The file's text (UTF-8, errors replaced), or None when it is missing or not a regular file.

    Raises UnsafeFile for links, and for files over `limit` bytes unless `truncate` (then: the first `limit`).
    """
    fd = _open(root, relpath)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        data = fh.read(limit + 1)
    if len(data) > limit and not truncate:
        raise UnsafeFile(f"{shown(relpath)}: is larger than the {limit // 1024} KiB the builder reads")
    return data[:limit].decode("utf-8", errors="replace")
