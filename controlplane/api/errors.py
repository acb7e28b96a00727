"""Errors as the Hub answers them: JSON body plus X-Error-Code / X-Error-Message headers the client reads."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from controlplane import errors as domain
from controlplane.repos import RepoError

log = logging.getLogger(__name__)
MAX_MESSAGE = 1000  # a body of a thousand bad items is refused in a line, not a header of megabytes


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, code: str | None = None, headers: dict | None = None, extra: dict | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.headers = status, message, code, headers or {}
        self.extra = extra or {}  # more fields of the JSON body, e.g. the existing repo's `url` in a 409


# The Hub's status for each domain error (controlplane/errors.py); a subclass takes its nearest listed base's.
STATUS: dict[type[domain.DomainError], int] = {
    domain.InvalidInput: 400,
    domain.Unauthenticated: 401,
    domain.Forbidden: 403,
    domain.NotFound: 404,
    domain.Conflict: 409,
    domain.Gone: 410,
    domain.Outdated: 412,
    domain.TooLarge: 413,
    domain.Incomplete: 422,
    domain.Failed: 500,
    domain.Unavailable: 503,
}
# Git clients ask for credentials again on this challenge; the Hub clients ignore it.
CHALLENGE = {"WWW-Authenticate": 'Basic realm="Spaceyard"'}


def status_of(exc: domain.DomainError) -> int:
    return next(STATUS[k] for k in type(exc).__mro__ if k in STATUS)


def from_domain(exc: domain.DomainError) -> ApiError:
    """The one translation of a domain error into the Hub's answer (the dashboard uses its status too)."""
    headers = CHALLENGE if isinstance(exc, domain.Unauthenticated) else None
    return ApiError(status_of(exc), exc.message, exc.code, headers=headers, extra=exc.extra)


def repo_not_found(full_name: str) -> ApiError:
    return from_domain(domain.SpaceNotFound(full_name))


def render(exc: ApiError) -> JSONResponse:
    headers = dict(exc.headers)
    headers["X-Error-Message"] = exc.message.encode("ascii", "replace").decode()
    if exc.code:
        headers["X-Error-Code"] = exc.code
    return JSONResponse({**exc.extra, "error": exc.message}, status_code=exc.status, headers=headers)


def invalid_request(exc: RequestValidationError) -> ApiError:
    """A body, query or header the route's types refuse: a 400 naming each field by the name the caller sent
    (the Hub's, e.g. `sleepTimeSeconds`), the same text in the body and in X-Error-Message (what clients show)."""
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in exc.errors()
    )
    message = f"Invalid request: {problems}"
    return ApiError(400, message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "...", "BadRequest")


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_req: Request, exc: ApiError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(domain.DomainError)
    async def _domain_error(_req: Request, exc: domain.DomainError) -> JSONResponse:
        return render(from_domain(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        return render(invalid_request(exc))

    @app.exception_handler(RepoError)
    async def _git_failed(req: Request, exc: RepoError) -> JSONResponse:
        # git failed (killed by a shutdown, a broken repo): an error, never "not found" (404 is for what is missing).
        log.error("git failed for %s %s: %s (exit status %s)", req.method, req.url.path, exc, exc.returncode)
        message = "git failed on this repository; try again, and if it persists the server's log has the details."
        return JSONResponse({"error": message}, status_code=500, headers={"X-Error-Message": message})
