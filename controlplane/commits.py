"""API commits (the Hub's NDJSON `/commit` call): parsing, size limits, one git commit, and a debounced build.

No HTTP here: a refusal is a domain error (controlplane/errors.py) raised before anything is written; the route
streams the body in and the API maps it. Commits land through
`Repos.commit` on `main`, so git users and API users share one history, and a build follows like after a push.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import threading
from dataclasses import dataclass, field

from builder import lfs as pointer
from controlplane.builds import show_building, start_build
from controlplane.errors import Conflict, Incomplete, InvalidInput, NotFound, Outdated, TooLarge
from controlplane.models import Space
from controlplane.repos import BRANCH, RepoError
from controlplane.services import Services

log = logging.getLogger(__name__)

# A burst of API commits (upload_folder, a loop of upload_file) builds once, for its last commit.
BUILD_DELAY_SECONDS = 1.0
# The Space's detail between an API commit and the start of its build.
BUILD_SOON = "the build starts in a moment"
# JSON around one base64 file: its path, the keys. Generous, so the decoded size decides.
LINE_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_commit_bytes: int

    @property
    def max_line_bytes(self) -> int:
        """Longest NDJSON line worth reading: one file at the limit, base64-encoded."""
        return self.max_file_bytes * 4 // 3 + LINE_OVERHEAD

    @property
    def max_body_bytes(self) -> int:
        return self.max_commit_bytes * 4 // 3 + 16 * LINE_OVERHEAD

    def file_too_large(self, what: str) -> TooLarge:
        return TooLarge(
            f"{what}: over the limit of {self.max_file_bytes} bytes per file (SPACEYARD_MAX_FILE_BYTES).",
            "FileTooLarge",
        )

    def commit_too_large(self, size: int) -> TooLarge:
        return TooLarge(
            f"This commit holds {size} bytes or more: over the limit of {self.max_commit_bytes} bytes per commit "
            "(SPACEYARD_MAX_COMMIT_BYTES). Split it into several commits.",
            "CommitTooLarge",
        )


def check_path(path: object) -> str:
    """A repo path git can store and a checkout cannot escape from."""
    if not isinstance(path, str) or not path:
        raise InvalidInput(f"Invalid path {path!r}: a non-empty string is required.")
    parts = path.split("/")
    if (
        path.startswith("/")
        or any(p in ("", ".", "..") or p.lower() == ".git" for p in parts)
        or any(c in path for c in "\0\n\r")
    ):
        raise InvalidInput(f"Invalid path {path!r}: use a relative path without '.', '..', '.git' or empty parts.")
    return path


@dataclass(frozen=True)
class Operation:
    kind: str  # "file" | "lfsFile" | "deletedFile" | "deletedFolder"
    path: str
    content: bytes | None = None  # an lfsFile's: its pointer
    lfs: pointer.Pointer | None = None


@dataclass
class CommitRequest:
    """What one NDJSON body asks for, operations in their order."""

    limits: Limits
    summary: str = ""
    description: str = ""
    parent: str | None = None
    operations: list[Operation] = field(default_factory=list)
    added_bytes: int = 0

    @property
    def message(self) -> str:
        summary = self.summary.strip() or "Upload files through the API"
        return f"{summary}\n\n{self.description.strip()}" if self.description.strip() else summary

    def feed(self, line: bytes) -> None:
        """One NDJSON line: `{"key": "header"|"file"|"deletedFile"|"deletedFolder"|"lfsFile", "value": {...}}`."""
        if not line.strip():
            return
        try:
            item = json.loads(line)
            key, value = item["key"], item["value"]
        except (ValueError, KeyError, TypeError):
            raise InvalidInput('Invalid commit body: each line must be {"key": ..., "value": {...}}.') from None
        if not isinstance(value, dict):
            raise InvalidInput(f"Invalid commit body: the value of {key!r} must be an object.")
        if key == "header":
            self.summary = str(value.get("summary") or "")
            self.description = str(value.get("description") or "")
            self.parent = value.get("parentCommit") or None
        elif key == "file":
            self._add(value)
        elif key in ("deletedFile", "deletedFolder"):
            path = check_path(str(value.get("path") or "").rstrip("/") if key == "deletedFolder" else value.get("path"))
            self.operations.append(Operation(key, path))
        elif key == "lfsFile":
            self._add_lfs(value)
        else:
            raise InvalidInput(f"Invalid commit body: unknown operation {key!r}.")

    def _add(self, value: dict) -> None:
        path = check_path(value.get("path"))
        if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
            raise InvalidInput(f"{path}: file content must be a base64 string with encoding 'base64'.")
        try:
            content = base64.b64decode(value["content"], validate=True)
        except binascii.Error:
            raise InvalidInput(f"{path}: the content is not valid base64.") from None
        if len(content) > self.limits.max_file_bytes:
            raise self.limits.file_too_large(f"{path} is {len(content)} bytes")
        self.added_bytes += len(content)
        if self.added_bytes > self.limits.max_commit_bytes:
            raise self.limits.commit_too_large(self.added_bytes)
        self.operations.append(Operation("file", path, content))

    def _add_lfs(self, value: dict) -> None:
        """A file uploaded through the LFS batch API before the commit: the commit writes its pointer."""
        path, oid, size = check_path(value.get("path")), value.get("oid"), value.get("size")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str) or not pointer.OID.match(oid):
            raise InvalidInput(f"{path}: an lfsFile needs algo 'sha256' and a 64-hex-digit oid.")
        if size is None:
            # CommitOperationCopy of an LFS file sends no size: the commit takes the stored object's.
            self.operations.append(Operation("lfsFile", path, None, pointer.Pointer(oid, None)))
            return
        if not isinstance(size, int) or size < 0:
            raise InvalidInput(f"{path}: an lfsFile needs its size in bytes.")
        ptr = pointer.Pointer(oid, size)
        self.operations.append(Operation("lfsFile", path, pointer.encode(oid, size), ptr))

    def changes(self, existing: set[str]) -> tuple[dict[str, bytes | None], tuple[str, ...]]:
        """Fold the operations, in order, onto the files of the parent: `Repos.commit`'s files and folders.

        `Repos.commit` removes folders before writing files, so a file added to a folder earlier in this commit
        is dropped here, and one added after the folder's deletion survives, as the operations' order says.
        """
        present = set(existing)
        files: dict[str, bytes | None] = {}
        folders: list[str] = []
        for op in self.operations:
            if op.kind in ("file", "lfsFile"):
                files[op.path] = op.content
                present.add(op.path)
            elif op.kind == "deletedFile":
                if op.path not in present:
                    raise NotFound(f"A file with this name doesn't exist: {op.path}", "EntryNotFound")
                files[op.path] = None
                present.discard(op.path)
            else:
                prefix = op.path + "/"
                inside = {p for p in present if p.startswith(prefix)}
                if not inside:
                    raise NotFound(f"A folder with this name doesn't exist: {op.path}", "EntryNotFound")
                present -= inside
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
                folders.append(op.path)
        return files, tuple(folders)


class ApiCommits:
    """Writes API commits one at a time per Space and starts one build per burst of them.

    Why a delay rather than a build per commit: `start_build` does supersede older builds (their events are
    then ignored and only the newest commit deploys), but a build already handed to the builder still runs
    to its end and holds a worker meanwhile. Waiting BUILD_DELAY_SECONDS after a Space's last API commit
    sends one build for the burst; a commit that lands after that build started supersedes it as a push does.
    """

    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self._locks: dict[int, threading.Lock] = {}
        self._guard = threading.Lock()
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task] = set()

    def write(
        self, space_id: int, owner: str, name: str, request: CommitRequest, author: str, branch: str = BRANCH
    ) -> str:
        """Check the parent, apply the operations as one commit on `branch`; returns its sha. Blocking (git)."""
        with self._guard:
            lock = self._locks.setdefault(space_id, threading.Lock())
        with lock:
            repos = self.svc.repos
            head = repos.head(owner, name, f"refs/heads/{branch}")
            if head is None and branch != BRANCH:  # deleted since the route checked it
                raise NotFound(f"No branch {branch!r} in {owner}/{name}.", "RevisionNotFound")
            if request.parent is not None and request.parent != head:
                raise Outdated(
                    f"parentCommit {request.parent} is not the head of {branch} ({head}): {owner}/{name} changed "
                    "since. Fetch the new head and retry.",
                    "PreconditionFailed",
                )
            existing = {e.path for e in repos.tree(owner, name, head or BRANCH) if e.type == "file"} if head else set()
            self._check_lfs_objects(owner, name, request)
            files, folders = request.changes(existing)
            self._check_quota(owner, name, sum(len(c) for c in files.values() if c))
            try:
                sha = repos.commit(
                    owner,
                    name,
                    files,
                    request.message,
                    parent=head,
                    delete_folders=folders,
                    author=author,
                    branch=branch,
                )
            except RepoError as e:
                # The ref moved between our check and the update: a git push landed meanwhile.
                raise Conflict(
                    f"{owner}/{name} changed during the commit ({e}); retry it.", "ConcurrentUpdate"
                ) from None
            if branch == BRANCH:  # other branches never build
                self._show_building(space_id, sha)
            return sha

    def _show_building(self, space_id: int, sha: str) -> None:
        """BUILDING (RUNNING_BUILDING while serving) before the commit is answered, though the build waits for
        the burst: a client that polls the runtime right after (`upload_folder` then `wait_for_space`) must not
        see the old build's RUNNING and stop waiting."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            if space is not None:
                show_building(s, space, sha, BUILD_SOON)

    def _check_lfs_objects(self, owner: str, name: str, request: CommitRequest) -> None:
        """Like a push (controlplane/lfs/prereceive.py): a pointer only to an object uploaded to this Space."""
        repo, store = self.svc.repos.path(owner, name), self.svc.repos.lfs
        for i, op in enumerate(request.operations):
            if op.lfs is not None and not store.available(repo, op.lfs.oid, op.lfs.size):
                raise Incomplete(
                    f"{op.path}: its LFS object (sha256:{op.lfs.oid}, {op.lfs.size or '?'} bytes) was not uploaded to "
                    f"{owner}/{name}; upload it through the LFS batch API first.",
                    "LfsObjectMissing",
                )
            if op.lfs is not None and op.lfs.size is None:
                size = store.path(op.lfs.oid).stat().st_size
                request.operations[i] = Operation(op.kind, op.path, pointer.encode(op.lfs.oid, size), op.lfs)

    def _check_quota(self, owner: str, name: str, adding: int) -> None:
        """The repo size limit pushes meet in the pre-receive hook; counted before compression, so on the safe side."""
        size, limit = self.svc.repos.size(owner, name), self.svc.settings.max_repo_bytes
        if size + adding > limit:
            raise TooLarge(
                f"This commit adds {adding} bytes to a repository of {size} bytes: over the limit of {limit} bytes "
                "per Space repository (SPACEYARD_MAX_REPO_BYTES). Keep large files in Git LFS.",
                "RepoTooLarge",
            )

    def build_soon(self, space_id: int) -> None:
        """(Re)arm this Space's build timer; call from the event loop."""
        if timer := self._timers.pop(space_id, None):
            timer.cancel()
        loop = asyncio.get_running_loop()
        self._timers[space_id] = loop.call_later(BUILD_DELAY_SECONDS, self._fire, space_id)

    def _fire(self, space_id: int) -> None:
        self._timers.pop(space_id, None)
        task = asyncio.create_task(self._build(space_id))
        self._tasks.add(task)  # the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _build(self, space_id: int) -> None:
        try:
            await asyncio.to_thread(self.build_head, space_id)
        except Exception:
            log.exception("starting the build after API commits to Space %s failed", space_id)

    def build_head(self, space_id: int) -> None:
        """Build the head of main unless it is already built or queued (a push in between started it)."""
        with self.svc.db.session() as s:
            space = s.get(Space, space_id)
            if space is None:
                return
            head = self.svc.repos.head(space.owner, space.name)
            if head is not None and head != space.head_sha:
                start_build(self.svc, s, space, head)


def api_commits(svc: Services) -> ApiCommits:
    """The installation's one ApiCommits (its locks and timers must be shared by every request)."""
    if svc.api_commits is None:
        svc.api_commits = ApiCommits(svc)
    return svc.api_commits
