"""Hub-compatible history and refs of a Space: `list_repo_commits`, `list_repo_refs`, `create_branch`,
`delete_branch`, `create_tag`, `delete_tag`, `get_paths_info`.

Branches other than main hold commits but never build: only main is deployed."""

from __future__ import annotations

import html

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from sqlalchemy.orm import Session

from controlplane import git_history, git_refs
from controlplane.api.bodies import NewBranch, NewTag
from controlplane.api.deps import DB, Caller, caller, find_space, identify, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.api.revisions import git_answers, resolve_revision
from controlplane.api.routes.files import tree_page
from controlplane.api.views import iso
from controlplane.repos import BRANCH
from controlplane.services import Services

router = APIRouter(prefix="/api/spaces/{owner}/{name}", tags=["history"])
COMMITS_PAGE = 50
MAX_PATHS = 1000  # per paths-info call; the client asks in batches of 100


@router.get("/refs")
def list_refs(
    owner: str,
    name: str,
    include_prs: bool = False,
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = find_space(s, who, owner, name)
    with git_answers(space.full_name):
        refs = git_refs.all_refs(svc.repos, owner, name).values()
    entries = {
        kind: [{"name": r.name, "ref": r.ref, "targetCommit": r.target} for r in refs if r.ref.startswith(prefix)]
        for kind, prefix in (("branches", git_refs.HEADS), ("tags", git_refs.TAGS))
    }
    return {**entries, "converts": [], **({"pullRequests": []} if include_prs else {})}


@router.get("/commits/{rev:path}")
def list_commits(
    owner: str,
    name: str,
    rev: str,
    request: Request,
    response: Response,
    p: int = Query(default=0, ge=0),
    who: Caller = Depends(caller),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    space = find_space(s, who, owner, name)
    sha = resolve_revision(svc, space, rev)
    formatted = "formatted" in request.query_params.getlist("expand[]")
    with git_answers(space.full_name):
        found = git_history.commits(svc.repos, owner, name, sha, skip=p * COMMITS_PAGE, limit=COMMITS_PAGE)
        total = git_history.count(svc.repos, owner, name, sha)
    response.headers["X-Total-Count"] = str(total)
    if (p + 1) * COMMITS_PAGE < total:
        response.headers["Link"] = f'<{request.url.include_query_params(p=p + 1)}>; rel="next"'
    items = []
    for c in found:
        item = {
            "id": c.id,
            "title": c.title,
            "message": c.message,
            "authors": [{"user": a} for a in c.authors],
            "date": iso(c.date),
        }
        if formatted:
            item["formatted"] = {"title": html.escape(c.title), "message": html.escape(c.message)}
        items.append(item)
    return items


@router.post("/branch/{branch:path}")
def create_branch(
    owner: str,
    name: str,
    branch: str,
    payload: NewBranch | None = None,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = owned_space(s, who, owner, name)
    start = (payload and payload.starting_point) or BRANCH
    with git_answers(space.full_name):
        full = git_refs.check_name(branch, "branch")
        git_refs.create_ref(svc.repos, owner, name, full, git_refs.resolve(svc.repos, owner, name, start))
    return {"success": True}


@router.delete("/branch/{branch:path}")
def delete_branch(
    owner: str,
    name: str,
    branch: str,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = owned_space(s, who, owner, name)
    if branch == BRANCH:
        raise ApiError(403, f"{BRANCH} is the branch Spaceyard builds and serves: it cannot be deleted.", "Forbidden")
    with git_answers(space.full_name):
        git_refs.delete_ref(svc.repos, owner, name, git_refs.HEADS + branch)
    return {"success": True}


@router.post("/tag/{rev:path}")
def create_tag(
    owner: str,
    name: str,
    rev: str,
    # Optional here so that a caller who may not see the Space gets its 404 before a missing body's 400.
    payload: NewTag | None = None,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = owned_space(s, who, owner, name)
    if payload is None:
        raise ApiError(400, "Invalid request: tag: Field required", "BadRequest")
    tag, message = payload.tag, payload.message
    with git_answers(space.full_name):
        full = git_refs.check_name(tag, "tag")
        sha = git_refs.resolve(svc.repos, owner, name, rev)
        if message:
            git_refs.create_annotated_tag(svc.repos, owner, name, full, sha, message, who.name)
        else:
            git_refs.create_ref(svc.repos, owner, name, full, sha)
    return {"success": True}


@router.delete("/tag/{tag:path}")
def delete_tag(
    owner: str,
    name: str,
    tag: str,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    space = owned_space(s, who, owner, name)
    with git_answers(space.full_name):
        git_refs.delete_ref(svc.repos, owner, name, git_refs.TAGS + tag)
    return {"success": True}


def reader(request: Request, svc: Services = Depends(services), s: Session = DB) -> Caller:
    """The caller of a POST that only reads (paths-info): any token, as for a GET. A browser session may call it
    too: it changes nothing, and another site's page cannot read the answer."""
    return identify(svc, s, request.headers, request.cookies)


@router.post("/paths-info/{rev:path}")
def paths_info(
    owner: str,
    name: str,
    rev: str,
    # huggingface_hub sends them form-encoded: paths=a&paths=b&expand=False
    paths: list[str] = Form(default=[], max_length=MAX_PATHS),
    expand: bool = Form(default=False),
    who: Caller = Depends(reader),
    svc: Services = Depends(services),
    s: Session = DB,
) -> list[dict]:
    space = find_space(s, who, owner, name)
    commit = resolve_revision(svc, space, rev)
    # Missing paths are left out, as on the Hub.
    entries = {e.path: e for e in svc.repos.tree(owner, name, commit)}
    found = [entries[p] for p in dict.fromkeys(p.strip("/") for p in paths) if p in entries]
    return tree_page(svc, space, commit, found, expand)
