"""Hub-compatible writes: `upload_file`, `upload_folder`, `delete_file`, `create_commit`.

The client's calls: validate-yaml (when README.md changes), preupload ("regular" or "lfs" per file), the LFS batch
API and its transfers for "lfs" files (controlplane/lfs/api.py), then the NDJSON commit.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from builder import spaceconfig
from controlplane import git_refs
from controlplane.api.bodies import Preupload, ValidateYaml
from controlplane.api.deps import DB, Caller, caller, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.revisions import git_answers
from controlplane.api.routes.spaces import owned_space_id
from controlplane.commits import CommitRequest, Limits, api_commits
from controlplane.repos import BRANCH
from controlplane.services import Services

router = APIRouter(tags=["files"])
HF_HUB_VERSION = re.compile(r"\bhf_hub/(\d+)\.")


def readme_problems(content: str) -> tuple[list[str], list[str]]:
    """Errors and warnings of a Space README's front matter, as the builder will judge it."""
    try:
        card = spaceconfig.front_matter(content)
        # Without `sdk` the Space keeps the SDK it was created with; any SDK stands in to check the other keys.
        spaceconfig.parse(card, default_sdk="gradio")
    except spaceconfig.ConfigError as e:
        return [str(e)], []
    if card.get("sdk") is None:
        return [], ["No `sdk` in the front matter: the Space keeps the SDK it was created with."]
    return [], []


@router.post("/api/validate-yaml")
def validate_yaml(payload: ValidateYaml) -> JSONResponse:
    content = payload.content
    if payload.repo_type != "space" or content is None:
        return JSONResponse({"errors": [], "warnings": []})
    errors, warnings = readme_problems(content)
    body = {"errors": [{"message": m} for m in errors], "warnings": [{"message": m} for m in warnings]}
    if errors:
        return JSONResponse({"error": "Invalid metadata in README.md: " + "; ".join(errors), **body}, status_code=400)
    return JSONResponse(body)


def limits(svc: Services) -> Limits:
    return Limits(svc.settings.max_file_bytes, svc.settings.max_commit_bytes)


def check_target(svc: Services, owner: str, name: str, rev: str, create_pr: bool) -> None:
    """Commits go to main or another existing branch (which never builds: only main is deployed)."""
    if create_pr:
        raise ApiError(400, "Spaceyard has no pull requests: commit to a branch directly (create_pr=False).")
    if rev != BRANCH:
        with git_answers(f"{owner}/{name}"):
            if git_refs.HEADS + rev not in git_refs.all_refs(svc.repos, owner, name):
                message = f"No branch {rev!r} in {owner}/{name}: create it first (create_branch)."
                raise ApiError(404, message[:500], "RevisionNotFound")


@router.post("/api/spaces/{owner}/{name}/preupload/{rev:path}")
def preupload(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    payload: Preupload,
    create_pr: bool = False,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    owned_space(s, who, owner, name)
    check_target(svc, owner, name, rev, create_pr)
    files = payload.files
    # Refuse oversize files here, before the client sends their content.
    lim, total, threshold = limits(svc), 0, lfs_threshold(svc, request.headers.get("user-agent", ""))
    modes = {}
    for f in files:
        size = f.size
        modes[f.path] = "lfs" if size > threshold else "regular"
        if modes[f.path] == "lfs":
            if size > svc.settings.max_lfs_object_bytes:
                message = (
                    f"{f.path} is {size} bytes: over the limit of {svc.settings.max_lfs_object_bytes} bytes per "
                    "LFS file (SPACEYARD_MAX_LFS_OBJECT_BYTES)."
                )
                raise ApiError(413, message, "FileTooLarge")
            continue  # LFS files are not in the git commit: its limits do not apply
        if size > lim.max_file_bytes:
            raise lim.file_too_large(f"{f.path} is {size} bytes")
        total += size
    if total > lim.max_commit_bytes:
        raise lim.commit_too_large(total)
    # The oid of each file already there (sha256 for LFS files, else the blob sha) lets the client skip files
    # that did not change.
    existing = {
        e.path: e.lfs["oid"] if e.lfs else e.oid
        for e in svc.repos.tree(owner, name, git_refs.HEADS + rev)
        if e.type == "file"
    }
    return {
        "files": [
            {"path": f.path, "uploadMode": modes[f.path], "shouldIgnore": False, "oid": existing.get(f.path)}
            for f in files
        ]
    }


def lfs_threshold(svc: Services, user_agent: str) -> int:
    """Size above which preupload answers "lfs".

    huggingface_hub 0.x asks the batch API which transfer to use and takes our "basic". From 1.0 on, the client
    sends every "lfs" file to Xet storage when hf_xet is installed (a dependency), without asking the server
    (`_commit_api._upload_files`); only HF_HUB_DISABLE_XET=1, which the server cannot see, makes it use the
    batch API. Those clients get "lfs" only for files too large to be sent as "regular" anyway.
    """
    match = HF_HUB_VERSION.search(user_agent)
    if match and int(match[1]) >= 1:
        return max(svc.settings.lfs_threshold_bytes, svc.settings.max_file_bytes)
    return svc.settings.lfs_threshold_bytes


@router.api_route("/api/spaces/{owner}/{name}/xet-{kind}-token/{rev:path}", methods=["GET", "POST"])
def no_xet(owner: str, name: str, kind: str, rev: str, who: Caller = Depends(caller)) -> None:
    """huggingface_hub 1.x+ asks for a Xet token to upload an "lfs" file (or download one with an X-Xet-Hash, which
    Spaceyard never sends): answer why not, and what works. The caller is identified first, so a bad token or a
    read token asking to upload hears that, as on every other write."""
    raise ApiError(
        501,
        "Spaceyard stores large files with Git LFS, not Xet storage. Set HF_HUB_DISABLE_XET=1 in the environment "
        "of your huggingface_hub client (it then uploads through the LFS batch API), or use git with git-lfs.",
        "XetNotSupported",
    )


async def ndjson_lines(request: Request, lim: Limits) -> AsyncIterator[bytes]:
    """The body's lines as they arrive; stops reading past the limits instead of buffering the excess."""
    buffer, received = bytearray(), 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > lim.max_body_bytes:
            raise lim.commit_too_large(received * 3 // 4)
        start = len(buffer)
        buffer += chunk
        while (end := buffer.find(b"\n", start)) != -1:
            yield bytes(buffer[:end])
            del buffer[: end + 1]
            start = 0
        if len(buffer) > lim.max_line_bytes:
            raise lim.file_too_large(f"a file of this commit is over {lim.max_file_bytes} bytes")
    if buffer:
        yield bytes(buffer)


@router.post("/api/spaces/{owner}/{name}/commit/{rev:path}")
async def commit(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    create_pr: bool = False,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    space_id = await asyncio.to_thread(owned_space_id, svc, who, owner, name)
    await asyncio.to_thread(check_target, svc, owner, name, rev, create_pr)
    lim = limits(svc)
    length = int(request.headers.get("content-length") or 0)
    if length > lim.max_body_bytes:
        raise lim.commit_too_large(length * 3 // 4)
    commits = api_commits(svc)
    wanted = CommitRequest(lim)
    async for line in ndjson_lines(request, lim):
        # Decoding a large base64 file takes a while: off the event loop, which also serves the apps.
        await asyncio.to_thread(wanted.feed, line)
    sha = await asyncio.to_thread(commits.write, space_id, owner, name, wanted, who.name, rev)
    if rev == BRANCH:  # only main builds and deploys
        commits.build_soon(space_id)
    return {
        "success": True,
        "commitOid": sha,
        "commitUrl": f"{svc.settings.base_url}/spaces/{owner}/{name}/commit/{sha}",
        "hookOutput": "",
    }
