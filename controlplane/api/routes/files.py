"""Hub-compatible reads of a Space's files: `list_repo_tree`, and `hf_hub_download`'s HEAD/GET on resolve URLs."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from controlplane import git_history
from controlplane.api.deps import DB, Caller, caller, find_space, services
from controlplane.api.errors import ApiError
from controlplane.api.revisions import git_answers, resolve_revision, revision_and_path
from controlplane.api.views import iso
from controlplane.lfs.api import ObjectResponse
from controlplane.models import Space
from controlplane.repos import TreeEntry
from controlplane.services import Services

router = APIRouter(tags=["files"])
TREE_PAGE = 1000  # the Hub's page size for tree listings
EXPANDED_PAGE = 50  # and with expand=True (each entry's last commit), as the Hub


def entry_not_found(path: str, rev: str) -> ApiError:
    return ApiError(404, f"Entry not found: {path} at revision {rev}.", "EntryNotFound")


@router.get("/api/spaces/{owner}/{name}/tree/{rev}")
@router.get("/api/spaces/{owner}/{name}/tree/{rev}/{path:path}")
def list_tree(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    response: Response,
    path: str = "",
    recursive: bool = False,
    expand: bool = False,
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    space = find_space(s, who, owner, name)
    rev, path = revision_and_path(request, rev, path)
    commit = resolve_revision(svc, space, rev)
    path = path.strip("/")
    entries = svc.repos.tree(owner, name, commit, path=path, recursive=recursive)
    if path and not entries:  # git stores no empty folders: nothing listed means no such folder
        raise entry_not_found(path, rev)
    size = EXPANDED_PAGE if expand else TREE_PAGE
    page = entries[cursor : cursor + size]
    if cursor + size < len(entries):
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=cursor + size)}>; rel="next"'
    return tree_page(svc, space, commit, page, expand)


def tree_page(svc: Services, space: Space, commit: str, entries: list[TreeEntry], expand: bool) -> list[dict]:
    """Entries as the Hub lists them; with `expand`, each with its `lastCommit` {id, title, date}."""
    last = {}
    if expand:
        with git_answers(space.full_name):
            last = git_history.last_commits(svc.repos, space.owner, space.name, commit, [e.path for e in entries])
    return [tree_json(e, last.get(e.path)) for e in entries]


def tree_json(entry: TreeEntry, last: git_history.LastCommit | None = None) -> dict:
    """A tree entry as the Hub lists it: `lfs` only on LFS files, `lastCommit` only when asked for."""
    body = {k: v for k, v in asdict(entry).items() if k != "lfs" or v is not None}
    if last is not None:
        body["lastCommit"] = {"id": last.id, "title": last.title, "date": iso(last.date)}
    return body


def file_entry(svc: Services, space: Space, commit: str, path: str) -> TreeEntry | None:
    folder = path.rsplit("/", 1)[0] if "/" in path else ""
    listing = svc.repos.tree(space.owner, space.name, commit, path=folder, recursive=False)
    return next((e for e in listing if e.path == path and e.type == "file"), None)


@router.api_route("/spaces/{owner}/{name}/resolve/{rev}/{path:path}", methods=["GET", "HEAD"])
def resolve(
    owner: str,
    name: str,
    rev: str,
    path: str,
    request: Request,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> Response:
    space = find_space(s, who, owner, name)
    rev, path = revision_and_path(request, rev, path)
    commit = resolve_revision(svc, space, rev)
    entry = file_entry(svc, space, commit, path)
    if entry is None:
        raise entry_not_found(path, rev)
    # Files are served as bytes, never rendered: the API shares its origin with the dashboard.
    headers = {"X-Repo-Commit": commit, "X-Content-Type-Options": "nosniff"}
    if entry.lfs is not None:
        return lfs_file(svc, space, entry, headers)
    headers |= {
        "ETag": f'"{entry.oid}"',  # the git blob sha, quoted as the Hub does for regular files
        "Content-Length": str(entry.size),
    }
    content = b"" if request.method == "HEAD" else svc.repos.read(owner, name, path, commit) or b""
    return Response(content, headers=headers, media_type="application/octet-stream")


def lfs_file(svc: Services, space: Space, entry: TreeEntry, headers: dict[str, str]) -> Response:
    """An LFS file's content, with the Hub's headers: ETag and X-Linked-Etag the sha256 (the client's cache key),
    X-Linked-Size the object's size."""
    oid = entry.lfs["oid"]
    if not svc.repos.lfs.available(svc.repos.path(space.owner, space.name), oid, entry.size):
        raise ApiError(
            404,
            f"{entry.path} is a Git LFS pointer whose object (sha256:{oid}) was never uploaded to "
            f"{space.owner}/{space.name}: push it again with git-lfs installed.",
            "EntryNotFound",
        )
    headers |= {"ETag": f'"{oid}"', "X-Linked-Etag": f'"{oid}"', "X-Linked-Size": str(entry.size)}
    return ObjectResponse(svc.repos.lfs.path(oid), headers=headers, media_type="application/octet-stream")
