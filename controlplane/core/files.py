"""Files in the data dir are the operator's alone: repos, the database, the secret key, Redis's dump, logs."""

from __future__ import annotations

import os
import stat
from pathlib import Path

# The umask of the processes that write the data dir (control plane, private Redis): 0700 dirs, 0600 files.
PRIVATE_UMASK = 0o077


def private_opener(path: str, flags: int) -> int:
    """`open(..., opener=private_opener)`: a new file is created 0600 whatever the process's umask."""
    return os.open(path, flags, 0o600)


def make_private(path: Path) -> None:
    """Make the data dir `path` 0700 (created when missing)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & stat.S_ISVTX:
        # A shared scratch folder such as /tmp: closing it would break every other user of the host.
        raise RuntimeError(f"The data dir {path} is a shared folder (sticky bit); give Spaceyard a folder of its own.")
    path.chmod(0o700)


def make_tree_private(root: Path) -> None:
    """make_private(root), and group and other permissions off everything under it (symlinks untouched):
    installations before this rule wrote 644 files and 755 dirs, which a 0700 root alone hides only while
    the tree stays where it is."""
    make_private(root)
    for folder, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            entry = os.path.join(folder, name)
            mode = os.lstat(entry).st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                os.chmod(entry, stat.S_IMODE(mode) & ~0o077)
