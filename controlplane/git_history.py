"""A Space repo's history: commits of a revision, the last commit of each path, the date of main's last commit.

Callers pass commit shas already resolved (controlplane/git_refs.py), and paths as literal pathspecs
(`GIT_LITERAL_PATHSPECS`: `*` or `:(glob)` in a file name is just a character). Git runs with argument lists.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from controlplane.repos import BRANCH, GIT_ENV, RepoError, Repos

LITERAL = {"GIT_LITERAL_PATHSPECS": "1"}
# One record of `git log -z --name-only`: starts at \x01 followed by the sha and a NUL.
RECORD = re.compile(rb"\x01(?=[0-9a-f]{40}\x00)")
SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Commit:
    id: str
    title: str
    message: str  # the body, below the title
    authors: tuple[str, ...]
    date: datetime


@dataclass(frozen=True)
class LastCommit:
    id: str
    title: str
    date: datetime


def commits(repos: Repos, owner: str, name: str, sha: str, *, skip: int, limit: int) -> list[Commit]:
    """`limit` commits reachable from `sha`, newest first, after the first `skip`."""
    out = repos._git(
        repos.path(owner, name),
        "log",
        "-z",
        "--format=%H%x00%an%x00%cI%x00%s%x00%b",
        f"--skip={skip}",
        f"--max-count={limit}",
        sha,
        "--",
    )
    fields = out.decode(errors="replace").split("\0")
    found = []
    for i in range(0, len(fields) - 4, 5):
        oid, author, date, title, body = fields[i : i + 5]
        found.append(Commit(oid.lstrip("\n"), title, body.strip(), (author,), datetime.fromisoformat(date)))
    return found


def count(repos: Repos, owner: str, name: str, sha: str) -> int:
    return int(repos._git(repos.path(owner, name), "rev-list", "--count", sha, "--"))


def last_commits(repos: Repos, owner: str, name: str, sha: str, paths: list[str]) -> dict[str, LastCommit]:
    """For each path (file or folder), the newest commit reachable from `sha` that changed it.

    One `git log` over the paths, read as it streams and stopped once every path has its commit: the walk goes
    only as deep as the oldest of them."""
    wanted, found = set(paths), {}
    if not wanted:
        return found
    proc = subprocess.Popen(
        ["git", "log", "-z", "--name-only", "--format=%x01%H%x00%s%x00%cI", sha, "--", *sorted(wanted)],
        cwd=repos.path(owner, name),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, **GIT_ENV, **LITERAL},
    )
    assert proc.stdout is not None
    pending = b""
    try:
        while wanted and (chunk := proc.stdout.read1(65536)):
            records = RECORD.split(pending + chunk)
            pending = records.pop()  # perhaps cut off: completed by the next chunk
            for record in records:
                _assign(record, wanted, found)
        if wanted and pending:
            _assign(pending, wanted, found)
    finally:
        if wanted:
            proc.wait()
        else:
            proc.kill()  # the rest of the history is not needed
            proc.wait()
    assert proc.stderr is not None
    if wanted and proc.returncode != 0:
        raise RepoError(proc.stderr.read().decode(errors="replace").strip())
    return found


def _assign(record: bytes, wanted: set[str], found: dict[str, LastCommit]) -> None:
    if not record:
        return
    oid, title, date, *names = record.decode(errors="replace").split("\0")
    commit = LastCommit(oid, title, datetime.fromisoformat(date))
    for changed in (n.lstrip("\n") for n in names if n.strip("\n")):
        for path in [p for p in wanted if changed == p or changed.startswith(p + "/")]:
            found[path] = commit
            wanted.discard(path)


def last_modified(repos: Repos, owner: str, name: str) -> datetime | None:
    """When main last changed: its head's commit date (None for an empty repo).

    Every Space in a listing asks, so the head is read from the ref files (no git process) and the date of each
    head commit is remembered (a commit's date never changes)."""
    repo = repos.path(owner, name)
    if not repo.is_dir():
        raise FileNotFoundError(repo)
    head = _loose_or_packed(repo, f"refs/heads/{BRANCH}")
    if head is None and not (repo / "reftable").exists():
        return None  # an empty repo (no loose or packed main): no git process for each new Space of a listing
    if head is None:  # refs in a reftable, which this reader does not read: ask git
        out = repos._git(repo, "for-each-ref", "--format=%(objectname)", f"refs/heads/{BRANCH}").decode().strip()
        if not out:
            return None
        head = out
    return _commit_date(repos, str(repo), head)


def _loose_or_packed(repo: Path, ref: str) -> str | None:
    try:
        value = (repo / ref).read_text().strip()
        return value if SHA.match(value) else None
    except FileNotFoundError:
        pass
    try:
        packed = (repo / "packed-refs").read_text()
    except FileNotFoundError:
        return None
    for line in packed.splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and SHA.match(sha):
            return sha
    return None


@functools.lru_cache(maxsize=4096)
def _commit_date(repos: Repos, repo: str, sha: str) -> datetime:
    out = repos._git(Path(repo), "show", "-s", "--format=%cI", sha, "--")
    return datetime.fromisoformat(out.decode().strip())
