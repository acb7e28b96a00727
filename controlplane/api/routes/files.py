"""Hub-compatible reads of a Space's files: `list_repo_tree`, and `hf_hub_download`'s HEAD/GET on resolve URLs."""

from __future__ import annotations

import re
from dataclasses import asdict

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, Caller, caller, find_space, services
from controlplane.api.errors import ApiError
from controlplane.lfs.api import ObjectResponse
from controlplane.models import Space
from controlplane.repos import TreeEntry
from controlplane.services import Services

router = APIRouter(tags=["files"])
TREE_PAGE = 1000  # the Hub's page size for tree listings
# A branch, tag or sha; never an option to git (no leading '-').
REVISION = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_./-]*$")


def resolve_revision(svc: Services, space: Space, rev: str) -> str:
    """The commit sha `rev` names in the Space's repo, or the Hub's RevisionNotFound."""
    sha = svc.repos.head(space.owner, space.name, rev) if REVISION.match(rev) else None
    if sha is None:
        raise ApiError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
    return sha


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
    cursor: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    space = find_space(s, who, owner, name)
    commit = resolve_revision(svc, space, rev)
    path = path.strip("/")
    entries = svc.repos.tree(owner, name, commit, path=path, recursive=recursive)
    if path and not entries:  # git stores no empty folders: nothing listed means no such folder
        raise entry_not_found(path, rev)
    page = entries[cursor : cursor + TREE_PAGE]
    if cursor + TREE_PAGE < len(entries):
        response.headers["Link"] = f'<{request.url.include_query_params(cursor=cursor + TREE_PAGE)}>; rel="next"'
    return [tree_json(e) for e in page]


def tree_json(entry: TreeEntry) -> dict:
    """A tree entry as the Hub lists it: `lfs` only on LFS files."""
    return {k: v for k, v in asdict(entry).items() if k != "lfs" or v is not None}


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
