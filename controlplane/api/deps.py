"""Request dependencies of the JSON API: its services, its database session, and the caller, judged by the rules
of controlplane/auth.py (re-exported here for the routes)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from controlplane.api.errors import ApiError
from controlplane.auth import SAFE_METHODS as SAFE_METHODS
from controlplane.auth import Caller as Caller
from controlplane.auth import bearer_or_basic as bearer_or_basic
from controlplane.auth import find_space as find_space
from controlplane.auth import identify as identify
from controlplane.auth import owned_space as owned_space
from controlplane.auth import role_refusal as role_refusal
from controlplane.services import Services


def services(request: Request) -> Services:
    return request.app.state.services


def db_session(svc: Services = Depends(services)) -> Iterator[Session]:
    with svc.db.session() as s:
        yield s


# The request's session, as routes ask for it (`s: Session = DB`). scope="function" commits when the route
# returns, before the response leaves: FastAPI's default commits after sending, and a client acting on the
# answer at once (a push right after create) would not find the row yet.
DB = Depends(db_session, scope="function")


def caller(request: Request, svc: Services = Depends(services), s: Session = DB) -> Caller:
    who = identify(svc, s, request.headers, request.cookies)
    if refusal := role_refusal(request.method, who):
        raise ApiError(403, refusal, "Forbidden")
    if who.session is not None and request.method not in SAFE_METHODS:
        # The API reads no CSRF token, and a page on a same-site apps domain gets SameSite=Lax cookies sent
        # with its no-cors POSTs: a browser session changes state only through the dashboard's forms.
        raise ApiError(
            403,
            "API calls that change something need a token (Authorization: Bearer); a browser session "
            "changes things through the dashboard's forms.",
            "Forbidden",
        )
    return who


def signed_in(who: Caller = Depends(caller)) -> Caller:
    if who.user is None:
        raise ApiError(
            401, "Authentication required: pass a token as 'Authorization: Bearer <token>'.", "InvalidCredentials"
        )
    return who
