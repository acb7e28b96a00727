"""Revisions in Hub URLs: resolving a branch, tag or sha of a Space, and git's errors as the Hub answers them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import unquote

from fastapi import Request

from controlplane import git_refs
from controlplane.api.errors import ApiError
from controlplane.models import Space
from controlplane.repos import RepoError
from controlplane.services import Services

log = logging.getLogger(__name__)


@contextmanager
def git_answers(full_name: str) -> Iterator[None]:
    """Map git_refs' errors to the Hub's answers. A git failure is a 500 with a message, never "not found"."""
    try:
        yield
    except git_refs.RevisionNotFound as e:
        raise ApiError(404, f"Invalid rev id: {str(e)[:300]}", "RevisionNotFound") from None
    except git_refs.BadRefName as e:
        raise ApiError(400, str(e), "BadRequest") from None
    except git_refs.RefConflict as e:
        raise ApiError(409, f"Reference already exists: {e}", "Conflict") from None
    except RepoError as e:
        log.error("git failed on %s: %s", full_name, e)
        raise ApiError(500, f"git failed on {full_name}; the server's log has the details.") from None


def resolve_revision(svc: Services, space: Space, rev: str) -> str:
    """The commit sha a branch, tag or sha names in the Space's repo, or the Hub's RevisionNotFound."""
    with git_answers(space.full_name):
        return git_refs.resolve(svc.repos, space.owner, space.name, rev)


def revision_and_path(request: Request, rev: str, path: str) -> tuple[str, str]:
    """`{rev}` and `{path}` of a `/spaces/{o}/{n}/resolve/{rev}/{path}` or `/api/spaces/{o}/{n}/tree/{rev}/{path}`
    URL, read from the raw URL when there is one: clients quote a revision's '/' as %2F (`feature%2Fx`), which the
    decoded path the router matched has lost. The revision is the segment after the owner, name and verb."""
    raw = request.scope.get("raw_path")
    if not raw:
        return rev, path
    segments = raw.decode("latin-1").split("/")
    at = 5 if segments[1:2] == ["spaces"] else 6  # ["", "spaces", o, n, "resolve", rev] / ["", "api", ...]
    if len(segments) <= at:
        return rev, path
    return unquote(segments[at]), unquote("/".join(segments[at + 1 :]))
