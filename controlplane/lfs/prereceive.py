"""Pre-receive step (run by the shared hook, `repos.PRE_RECEIVE`): refuse a push whose new commits hold LFS pointers
to objects not uploaded to this Space.

Without it, a push of pointers alone (a client without git-lfs, `--no-verify`) is accepted, and the 133-byte pointer
is then served and built as the weights file. Runs in the repo, with the pushed objects still in quarantine.
Usage: python -m controlplane.lfs.prereceive < "old new ref" lines; exit 1 with the reason on stderr.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from builder import lfs as pointer
from controlplane.lfs.store import LfsStore

ZERO = "0" * 40
SHOWN = 5  # files named in the refusal


def git(*args: str, input: bytes = b"") -> bytes:
    return subprocess.run(["git", *args], input=input, capture_output=True, check=True).stdout


def new_pointers(new_commits: list[str]) -> list[tuple[str, pointer.Pointer]]:
    """(path, pointer) of every LFS pointer blob the pushed commits add, read in three batched git calls."""
    listing = git("rev-list", "--objects", *new_commits, "--not", "--all")
    paths: dict[str, str] = {}
    for line in listing.decode(errors="replace").splitlines():
        sha, _, path = line.partition(" ")
        if path:
            paths.setdefault(sha, path)
    if not paths:
        return []
    checks = git("cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize)", input="\n".join(paths).encode())
    small = [
        sha
        for sha, kind, size in (line.split() for line in checks.decode().splitlines() if line.count(" ") == 2)
        if kind == "blob" and int(size) < pointer.MAX_POINTER_BYTES
    ]
    return [(paths[sha], ptr) for sha, ptr in pointer.pointers_in(small, Path.cwd()).items()]


def main() -> int:
    new_commits = [line.split()[1] for line in sys.stdin if len(line.split()) == 3 and line.split()[1] != ZERO]
    if not new_commits:
        return 0
    store, repo = LfsStore(Path(os.environ["SPACEYARD_LFS_ROOT"])), Path.cwd()
    try:
        pointers = new_pointers(new_commits)
    except subprocess.CalledProcessError as e:
        print(f"Push refused: the pushed commits could not be read ({e.stderr.decode().strip()}).", file=sys.stderr)
        return 1
    missing = [(path, ptr) for path, ptr in pointers if not store.available(repo, ptr.oid, ptr.size)]
    if not missing:
        return 0
    named = ", ".join(f"{path} (sha256:{ptr.oid[:12]}…)" for path, ptr in missing[:SHOWN])
    more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    print(
        f"Push refused: {named}{more} {'is a Git LFS pointer' if len(missing) == 1 else 'are Git LFS pointers'} "
        "whose object was never uploaded to this Space, so the Space would get the pointer instead of the file.\n"
        "Install git-lfs and push again: run `git lfs install`, then `git push` (git-lfs uploads the objects "
        "first). A mirror of another repo also needs `git lfs fetch --all <source>` and `git lfs push --all "
        "<this remote>`.",
        file=sys.stderr,
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
