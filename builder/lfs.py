"""Git LFS pointer files (https://github.com/git-lfs/git-lfs/blob/main/docs/spec.md), what a repo stores instead of a
large file's content.

Shared with the control plane (which imports it, as it does builder.spaceconfig): one parser for the push check,
the Hub API and the build.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

VERSION_LINE = b"version https://git-lfs.github.com/spec/v1\n"
# The spec: a pointer is under 1024 bytes; anything larger is a regular file even if it looks like one.
MAX_POINTER_BYTES = 1024
OID = re.compile(r"^[0-9a-f]{64}$")
_KEY_LINE = re.compile(rb"^([a-z0-9.-]+) ([^\n]*)$")


@dataclass(frozen=True)
class Pointer:
    oid: str  # sha256 of the content, lowercase hex
    size: int


def parse(data: bytes) -> Pointer | None:
    """The pointer `data` is, or None for any other content."""
    if len(data) >= MAX_POINTER_BYTES or not data.startswith(VERSION_LINE) or not data.endswith(b"\n"):
        return None
    fields: dict[bytes, bytes] = {}
    for line in data[len(VERSION_LINE) : -1].split(b"\n"):
        match = _KEY_LINE.match(line)
        if match is None:
            return None
        fields[match[1]] = match[2]
    oid, size = fields.get(b"oid", b""), fields.get(b"size", b"")
    if not oid.startswith(b"sha256:") or not OID.match(oid[7:].decode("ascii", "replace")) or not size.isdigit():
        return None
    return Pointer(oid[7:].decode(), int(size))


def encode(oid: str, size: int) -> bytes:
    """The pointer git-lfs itself writes for this object (byte-equal, so the blob shas agree)."""
    return VERSION_LINE + f"oid sha256:{oid}\nsize {size}\n".encode()


def pointers_in(blobs: list[str], git_dir: Path) -> dict[str, Pointer]:
    """Which of these git blobs (sha, each under MAX_POINTER_BYTES) are LFS pointers: one `git cat-file --batch`."""
    if not blobs:
        return {}
    out = subprocess.run(
        ["git", "cat-file", "--batch"], cwd=git_dir, input="\n".join(blobs).encode() + b"\n", capture_output=True
    ).stdout
    found, at = {}, 0
    for sha in blobs:
        header_end = out.find(b"\n", at)
        header = out[at:header_end].split()
        if header_end == -1 or len(header) != 3:  # "<sha> missing", or git failed
            break
        size = int(header[2])
        content = out[header_end + 1 : header_end + 1 + size]
        at = header_end + 1 + size + 1  # each content is followed by a newline
        if (ptr := parse(content)) is not None:
            found[sha] = ptr
    return found


def checkout_pointers(checkout: Path) -> dict[str, Pointer]:
    """path -> pointer for the regular files of a checkout's HEAD that are LFS pointers (symlinks are never one)."""
    listing = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "-l", "HEAD"], cwd=checkout, capture_output=True, check=True
    ).stdout
    small: dict[str, str] = {}
    for record in listing.decode(errors="surrogateescape").split("\0"):
        meta, _, path = record.partition("\t")
        fields = meta.split()
        if len(fields) == 4 and fields[0] in ("100644", "100755") and int(fields[3]) < MAX_POINTER_BYTES:
            small[fields[2]] = path
    return {small[sha]: ptr for sha, ptr in pointers_in(list(small), checkout).items()}
