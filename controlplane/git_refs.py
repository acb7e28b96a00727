"""Branches and tags of a Space repo: resolving a revision, listing, creating and deleting refs.

Only `refs/heads/*` and `refs/tags/*` are revisions: a name is looked up in the repo's list of those refs (a plain
string compare, so nothing a client sends reaches git's revision parser), and a commit sha is checked with
`cat-file --batch-check`. `HEAD@{1}`, `main~1`, `refs/remotes/...` or `--upload-pack=...` resolve to nothing.
New names pass `git check-ref-format` and Spaceyard's own limits (no leading '-', at most 255 bytes).
Git is always run with an argument list, never a shell. A git failure is a `RepoError` (an error, not "missing").
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

from controlplane.repos import BRANCH, Repos

HEADS, TAGS = "refs/heads/", "refs/tags/"
SHA = re.compile(r"^[0-9a-f]{40}$")
MAX_NAME_BYTES = 255
ZERO = "0" * 40


class RevisionNotFound(Exception):
    """No branch, tag or commit of that name (the Hub's RevisionNotFound)."""


class BadRefName(Exception):
    """A name git or Spaceyard refuses for a new branch or tag (400)."""


class RefConflict(Exception):
    """The ref exists already, or a ref is in the way of its name (`a` blocks `a/b`) (409)."""


@dataclass(frozen=True)
class Ref:
    name: str  # "dev", "v1.0"
    ref: str  # "refs/heads/dev"
    target: str  # the commit sha (an annotated tag's, peeled)
    oid: str  # what the ref holds (an annotated tag's: the tag object)


def _git(repos: Repos, owner: str, name: str, *args: str, input: bytes | None = None) -> bytes:
    return repos._git(repos.path(owner, name), *args, input=input)


def all_refs(repos: Repos, owner: str, name: str) -> dict[str, Ref]:
    """Every branch and tag, by full ref name."""
    out = _git(repos, owner, name, "for-each-ref", "--format=%(refname)%00%(objectname)%00%(*objectname)", HEADS, TAGS)
    refs = {}
    for line in out.decode(errors="replace").splitlines():
        ref, oid, peeled = line.split("\0")
        short = ref.removeprefix(HEADS) if ref.startswith(HEADS) else ref.removeprefix(TAGS)
        refs[ref] = Ref(short, ref, peeled or oid, oid)
    return refs


def branches(repos: Repos, owner: str, name: str) -> list[Ref]:
    return [r for r in all_refs(repos, owner, name).values() if r.ref.startswith(HEADS)]


def tags(repos: Repos, owner: str, name: str) -> list[Ref]:
    return [r for r in all_refs(repos, owner, name).values() if r.ref.startswith(TAGS)]


def is_commit(repos: Repos, owner: str, name: str, sha: str) -> bool:
    out = _git(repos, owner, name, "cat-file", "--batch-check=%(objecttype)", input=f"{sha}\n".encode())
    return out.split() == [b"commit"]


def resolve(repos: Repos, owner: str, name: str, rev: str) -> str:
    """The commit a branch, tag (`dev`, `refs/tags/v1`) or full commit sha names; RevisionNotFound otherwise."""
    if len(rev.encode()) > MAX_NAME_BYTES + len(HEADS):
        raise RevisionNotFound(rev)
    if SHA.match(rev):
        if is_commit(repos, owner, name, rev):
            return rev
        raise RevisionNotFound(rev)
    refs = all_refs(repos, owner, name)
    candidates = [rev] if rev.startswith((HEADS, TAGS)) else [HEADS + rev, TAGS + rev]
    for candidate in candidates:
        if candidate in refs:
            return refs[candidate].target
    raise RevisionNotFound(rev)


def branch_head(repos: Repos, owner: str, name: str, branch: str) -> str | None:
    """The head of an existing branch (None for `main` of an empty repo); RevisionNotFound for another missing one."""
    ref = all_refs(repos, owner, name).get(HEADS + branch)
    if ref is None and branch != BRANCH:
        raise RevisionNotFound(branch)
    return ref.target if ref else None


def check_name(name: str, kind: str) -> str:
    """A name for a new branch or tag, as `git check-ref-format` and the Hub accept it (no `refs/...`)."""
    if not name or len(name.encode()) > MAX_NAME_BYTES:
        raise BadRefName(f"Invalid {kind} name: between 1 and {MAX_NAME_BYTES} bytes, please.")
    if name.startswith(("-", "refs/")) or name == "HEAD" or "@{" in name:
        raise BadRefName(f"Invalid {kind} name {name!r}: no leading '-', no 'refs/', no 'HEAD' or '@{{'.")
    full = (HEADS if kind == "branch" else TAGS) + name
    # The argument starts with "refs/", so git never reads it as an option.
    if subprocess.run(["git", "check-ref-format", full], capture_output=True).returncode != 0:
        raise BadRefName(
            f"Invalid {kind} name {name!r}: not a valid git ref name (no '..', spaces, '~^:?*[\\', or a trailing "
            "'.lock' or '/')."
        )
    return full


def _check_free(refs: dict[str, Ref], full: str) -> None:
    if full in refs:
        raise RefConflict(f"{full} already exists.")
    # git keeps refs as files: refs/heads/a and refs/heads/a/b cannot both exist.
    if blocker := next((r for r in refs if r.startswith(full + "/") or full.startswith(r + "/")), None):
        raise RefConflict(f"{full} cannot be created while {blocker} exists.")


def create_ref(repos: Repos, owner: str, name: str, full: str, sha: str) -> None:
    _check_free(all_refs(repos, owner, name), full)
    # The zero old value: update-ref fails rather than move a ref created meanwhile.
    _git(repos, owner, name, "update-ref", full, sha, ZERO)


def create_annotated_tag(
    repos: Repos, owner: str, name: str, full: str, sha: str, message: str, tagger: str | None
) -> None:
    """An annotated tag object (the tag's message), then its ref."""
    _check_free(all_refs(repos, owner, name), full)
    who = tagger or "Spaceyard"
    body = (
        f"object {sha}\ntype commit\ntag {full.removeprefix(TAGS)}\n"
        f"tagger {who} <{who}@users.spaceyard> {int(time.time())} +0000\n\n{message.rstrip()}\n"
    )
    tag = _git(repos, owner, name, "mktag", input=body.encode()).decode().strip()
    _git(repos, owner, name, "update-ref", full, tag, ZERO)


def delete_ref(repos: Repos, owner: str, name: str, full: str) -> None:
    ref = all_refs(repos, owner, name).get(full)
    if ref is None:
        raise RevisionNotFound(full)
    # The old value: a ref moved meanwhile (a push) is not deleted.
    _git(repos, owner, name, "update-ref", "-d", full, ref.oid)
