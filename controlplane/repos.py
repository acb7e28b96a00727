"""Space git repositories on disk (bare repos, branch `main`): create, read, commit, delete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from builder import lfs as pointer
from controlplane.lfs.store import LfsStore

BRANCH = "main"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Spaceyard",
    "GIT_AUTHOR_EMAIL": "spaceyard@localhost",
    "GIT_COMMITTER_NAME": "Spaceyard",
    "GIT_COMMITTER_EMAIL": "spaceyard@localhost",
}

# A new Space's .gitattributes: the Hub's default, so weights and archives go to Git LFS as on huggingface.co. No
# `* text=auto`: it made git rewrite CRLF files on push.
DEFAULT_GITATTRIBUTES = b"""\
*.7z filter=lfs diff=lfs merge=lfs -text
*.arrow filter=lfs diff=lfs merge=lfs -text
*.bin filter=lfs diff=lfs merge=lfs -text
*.bz2 filter=lfs diff=lfs merge=lfs -text
*.ckpt filter=lfs diff=lfs merge=lfs -text
*.ftz filter=lfs diff=lfs merge=lfs -text
*.gz filter=lfs diff=lfs merge=lfs -text
*.h5 filter=lfs diff=lfs merge=lfs -text
*.joblib filter=lfs diff=lfs merge=lfs -text
*.lfs.* filter=lfs diff=lfs merge=lfs -text
*.mlmodel filter=lfs diff=lfs merge=lfs -text
*.model filter=lfs diff=lfs merge=lfs -text
*.msgpack filter=lfs diff=lfs merge=lfs -text
*.npy filter=lfs diff=lfs merge=lfs -text
*.npz filter=lfs diff=lfs merge=lfs -text
*.onnx filter=lfs diff=lfs merge=lfs -text
*.ot filter=lfs diff=lfs merge=lfs -text
*.parquet filter=lfs diff=lfs merge=lfs -text
*.pb filter=lfs diff=lfs merge=lfs -text
*.pickle filter=lfs diff=lfs merge=lfs -text
*.pkl filter=lfs diff=lfs merge=lfs -text
*.pt filter=lfs diff=lfs merge=lfs -text
*.pth filter=lfs diff=lfs merge=lfs -text
*.rar filter=lfs diff=lfs merge=lfs -text
*.safetensors filter=lfs diff=lfs merge=lfs -text
saved_model/**/* filter=lfs diff=lfs merge=lfs -text
*.tar.* filter=lfs diff=lfs merge=lfs -text
*.tar filter=lfs diff=lfs merge=lfs -text
*.tflite filter=lfs diff=lfs merge=lfs -text
*.tgz filter=lfs diff=lfs merge=lfs -text
*.wasm filter=lfs diff=lfs merge=lfs -text
*.xz filter=lfs diff=lfs merge=lfs -text
*.zip filter=lfs diff=lfs merge=lfs -text
*.zst filter=lfs diff=lfs merge=lfs -text
*tfevents* filter=lfs diff=lfs merge=lfs -text
"""

# Runs with the pushed objects still in quarantine (objects/incoming-*, inside the repo): refusing here makes
# git delete them, so a refused push leaves nothing. Its stderr reaches the pusher as `remote:` lines.
PRE_RECEIVE = """#!/bin/sh
# Every LFS pointer pushed names an object uploaded to this Space (controlplane/lfs/prereceive.py).
"$SPACEYARD_PYTHON" -m controlplane.lfs.prereceive || exit 1
limit="${SPACEYARD_MAX_REPO_BYTES:-0}"
[ "$limit" -gt 0 ] || exit 0
size=$(du -sb . | cut -f1)
if [ "$size" -gt "$limit" ]; then
    echo "Push refused: this Space repository would grow to $size bytes, over its limit of $limit bytes" \\
         "($SPACEYARD_MAX_REPO_TEXT). Keep large files in Git LFS, or ask the operator to raise" \\
         "SPACEYARD_MAX_REPO_BYTES." >&2
    exit 1
fi
"""
# What an interrupted push leaves (a killed receive-pack cannot delete its quarantine); untouched this long, it
# belongs to no push still running.
STRAY_AGE = 600.0


def mib(size: int) -> str:
    return f"{size / 2**20:.2f} MiB"


class RepoError(Exception):
    def __init__(self, message: str, returncode: int | None = None) -> None:
        super().__init__(message)
        self.returncode = returncode  # git's exit status; negative: killed by that signal (a shutdown)

    @property
    def killed(self) -> bool:
        return self.returncode is not None and self.returncode < 0


@dataclass(frozen=True)
class TreeEntry:
    type: str  # "file" | "directory"
    path: str
    oid: str
    size: int  # an LFS file's: its object's size, as on the Hub
    lfs: dict | None = None  # {oid, size, pointerSize} for an LFS pointer


class Repos:
    def __init__(self, root: Path) -> None:
        self.root = root
        # LFS objects live beside the repos (not counted in their size), shared by all Spaces.
        self.lfs = LfsStore(root.parent / "lfs")

    def path(self, owner: str, name: str) -> Path:
        return self.root / owner / f"{name}.git"

    @property
    def hooks_dir(self) -> Path:
        # Beside the repos, not in them: pushed content can never reach it, and every repo shares it.
        hooks = self.root.parent / "git-hooks"
        hook = hooks / "pre-receive"
        if not hook.exists() or hook.read_text() != PRE_RECEIVE:
            hooks.mkdir(parents=True, exist_ok=True)
            tmp = hooks / f".pre-receive.{os.getpid()}"
            tmp.write_text(PRE_RECEIVE)
            tmp.chmod(0o700)
            tmp.replace(hook)
        return hooks

    def receive_env(self, *, max_input_bytes: int, max_repo_bytes: int) -> dict[str, str]:
        """Environment for `git http-backend`: receive.maxInputSize stops git reading a pack past the push limit,
        and the shared pre-receive hook enforces the repo size and checks LFS pointers. unpackLimit 1: every push
        goes through index-pack, whose refusal names the limit (`pack exceeds maximum allowed size (1024.00 KiB)`);
        unpack-objects, used for small pushes otherwise, says no size."""
        config = {
            "core.hooksPath": str(self.hooks_dir.resolve()),
            "receive.maxInputSize": str(max_input_bytes),
            "receive.unpackLimit": "1",
        }
        env = {"GIT_CONFIG_COUNT": str(len(config))}
        for i, (key, value) in enumerate(config.items()):
            env |= {f"GIT_CONFIG_KEY_{i}": key, f"GIT_CONFIG_VALUE_{i}": value}
        return env | {
            "SPACEYARD_MAX_REPO_BYTES": str(max_repo_bytes),
            "SPACEYARD_MAX_REPO_TEXT": mib(max_repo_bytes),
            "SPACEYARD_PYTHON": sys.executable,
            "SPACEYARD_LFS_ROOT": str(self.lfs.root.resolve()),
        }

    def size(self, owner: str, name: str) -> int:
        return sum(f.stat().st_size for f in self.path(owner, name).rglob("*") if f.is_file())

    def clean_stray(self, owner: str, name: str, older_than: float = STRAY_AGE) -> None:
        """Remove the quarantine dirs and tmp_pack_* files of pushes that were interrupted."""
        objects = self.path(owner, name) / "objects"
        now = time.time()
        for stray in [*objects.glob("incoming-*"), *objects.glob("pack/tmp_*")]:
            try:
                touched = max([stray.stat().st_mtime] + [f.stat().st_mtime for f in stray.rglob("*")])
                if now - touched < older_than:
                    continue
                if stray.is_dir():
                    shutil.rmtree(stray)
                else:
                    stray.unlink()
            except FileNotFoundError:
                continue  # its push finished meanwhile

    def _git(self, repo: Path, *args: str, input: bytes | None = None, env: dict | None = None) -> bytes:
        proc = subprocess.run(
            ["git", *args], cwd=repo, input=input, capture_output=True, env={**os.environ, **GIT_ENV, **(env or {})}
        )
        if proc.returncode != 0:
            raise RepoError(proc.stderr.decode(errors="replace").strip(), proc.returncode)
        return proc.stdout

    def create(self, owner: str, name: str) -> Path:
        repo = self.path(owner, name)
        repo.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["git", "init", "-q", "--bare", f"--initial-branch={BRANCH}", str(repo)], check=True)
        # receivepack: pushes are authorised by the control plane, not by git's REMOTE_USER rule;
        # allowAnySHA1InWant: the builder fetches exactly the commit it was asked to build.
        for key, value in (
            ("http.receivepack", "true"),
            ("uploadpack.allowAnySHA1InWant", "true"),
            ("receive.denyNonFastForwards", "false"),
        ):
            self._git(repo, "config", key, value)
        return repo

    def delete(self, owner: str, name: str) -> None:
        shutil.rmtree(self.path(owner, name), ignore_errors=True)

    def move(self, owner: str, name: str, new_owner: str, new_name: str) -> None:
        """A renamed or transferred Space's repo, with its hooks config and LFS links, under its new name."""
        target = self.path(new_owner, new_name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.path(owner, name), target)

    def exists(self, owner: str, name: str) -> bool:
        return self.path(owner, name).is_dir()

    def head(self, owner: str, name: str, rev: str = BRANCH) -> str | None:
        """The commit `rev` names; None only when the repo or the revision does not exist. Any other failure of
        git (killed by a shutdown, a broken repo) raises RepoError: an error, never "not found"."""
        repo = self.path(owner, name)
        if not repo.is_dir():
            return None
        try:
            return self._git(repo, "rev-parse", "--verify", "-q", f"{rev}^{{commit}}").decode().strip()
        except RepoError as e:
            if e.returncode == 1 and not str(e):  # `--verify -q` says "no such revision" with a silent exit 1
                return None
            raise

    def read(self, owner: str, name: str, path: str, rev: str = BRANCH) -> bytes | None:
        try:
            return self._git(self.path(owner, name), "cat-file", "blob", f"{rev}:{path}")
        except RepoError as e:
            if e.killed:
                raise
            return None

    def tree(
        self, owner: str, name: str, rev: str = BRANCH, *, path: str = "", recursive: bool = True
    ) -> list[TreeEntry]:
        args = ["ls-tree", "-l", "-z"]
        if recursive:
            args += ["-r", "-t"]
        target = f"{rev}:{path}" if path else rev
        try:
            out = self._git(self.path(owner, name), *args, target)
        except RepoError as e:
            if e.killed:
                raise
            return []
        entries = []
        prefix = f"{path.rstrip('/')}/" if path else ""
        for record in out.decode().split("\0"):
            if not record:
                continue
            meta, file_path = record.split("\t", 1)
            _mode, kind, oid, size = meta.split()
            entries.append(
                TreeEntry(
                    type="directory" if kind == "tree" else "file",
                    path=prefix + file_path,
                    oid=oid,
                    size=0 if size == "-" else int(size),
                )
            )
        small = [e.oid for e in entries if e.type == "file" and e.size < pointer.MAX_POINTER_BYTES]
        pointers = pointer.pointers_in(small, self.path(owner, name))
        return [
            replace(e, size=p.size, lfs={"oid": p.oid, "size": p.size, "pointerSize": e.size})
            if (p := pointers.get(e.oid)) and e.type == "file"
            else e
            for e in entries
        ]

    def commit(
        self,
        owner: str,
        name: str,
        files: dict[str, bytes | None],
        message: str,
        *,
        parent: str | None = None,
        delete_folders: tuple[str, ...] = (),
        author: str | None = None,
        branch: str = BRANCH,
    ) -> str:
        """Write one commit on `branch`: files maps path -> content (None deletes). Returns the new sha."""
        repo = self.path(owner, name)
        current = self.head(owner, name, f"refs/heads/{branch}")
        if parent is not None and current is not None and parent != current:
            raise RepoError(f"parent commit {parent} is not the head of {branch} ({current})")
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            if author:
                env |= {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": f"{author}@users.spaceyard"}
            if current:
                self._git(repo, "read-tree", current, env=env)
            for folder in delete_folders:
                self._git(repo, "rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", folder.rstrip("/"), env=env)
            for path, content in files.items():
                if content is None:
                    self._git(repo, "rm", "-q", "--cached", "--ignore-unmatch", "--", path, env=env)
                    continue
                oid = self._git(repo, "hash-object", "-w", "--stdin", input=content).decode().strip()
                self._git(repo, "update-index", "--add", "--cacheinfo", f"100644,{oid},{path}", env=env)
            tree = self._git(repo, "write-tree", env=env).decode().strip()
            args = ["commit-tree", tree, "-m", message] + (["-p", current] if current else [])
            sha = self._git(repo, *args, env=env).decode().strip()
        # The old value makes the ref update atomic against a concurrent push.
        self._git(repo, "update-ref", f"refs/heads/{branch}", sha, current or "0" * 40)
        return sha
