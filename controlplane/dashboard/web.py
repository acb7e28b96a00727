"""What every dashboard page shares: the template environment, the signed-in user, rendering and errors."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.api.deps import DB, Caller, identify, role_refusal, services
from controlplane.api.errors import status_of
from controlplane.core.utc import as_utc
from controlplane.dashboard.forms import CSRF_COOKIE, csrf_token
from controlplane.errors import DomainError, Unauthenticated
from controlplane.models import Space
from controlplane.services import Services
from controlplane.stages import SERVING

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

templates = Jinja2Templates(directory=str(TEMPLATES_DIR))

# Badge colour per stage: green serving, amber in progress, red failed, grey idle.
STAGE_TONE = {
    "RUNNING": "ok",
    "RUNNING_BUILDING": "ok",
    "RUNNING_APP_STARTING": "ok",
    "BUILDING": "busy",
    "APP_STARTING": "busy",
    "DELETING": "busy",
    "BUILD_ERROR": "bad",
    "RUNTIME_ERROR": "bad",
    "CONFIG_ERROR": "bad",
}


def ago(when: datetime | None, now: datetime | None = None) -> str:
    if when is None:
        return "never"
    secs = int(((now or datetime.now(UTC)) - as_utc(when)).total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if secs >= size:
            n = secs // size
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "just now"


def money(value: float) -> str:
    return f"${value:,.2f}" if value >= 0.01 or value == 0 else f"${value:,.4f}"


templates.env.filters.update(ago=ago, money=money)
templates.env.globals.update(stage_tone=lambda stage: STAGE_TONE.get(stage, "idle"), serving={s.value for s in SERVING})


class PageError(Exception):
    """An error shown as an HTML page (the API's JSON errors are for API clients)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class LoginRequired(Exception):
    pass


class Page(APIRoute):
    """The route class of every dashboard page and form: the dashboard's one mapping of a domain error
    (controlplane/errors.py) to an HTML error page, with the status the Hub API answers for it."""

    def get_route_handler(self):
        handler = super().get_route_handler()

        async def page(request: Request) -> Response:
            try:
                return await handler(request)
            except DomainError as e:
                raise PageError(status_of(e), e.message) from e

        return page


def viewer(request: Request, svc: Services = Depends(services), s: Session = DB) -> Caller:
    try:
        who = identify(svc, s, request.headers, request.cookies)
    except Unauthenticated:
        return Caller(user=None)
    # Pages take tokens too: a "read" token posts no form (the API's rule, deps.role_refusal).
    if refusal := role_refusal(request.method, who):
        raise PageError(403, refusal)
    return who


def member(who: Caller = Depends(viewer)) -> Caller:
    if who.user is None:
        raise LoginRequired
    return who


def admin(who: Caller = Depends(member)) -> Caller:
    if not who.user.is_admin:
        raise PageError(403, "This page is for administrators.")
    return who


def space_for(s: Session, who: Caller, owner: str, name: str, *, write: bool = False) -> Space:
    space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
    # Private Spaces of others look missing, as in the API: their existence is not disclosed.
    if space is None or not who.can_read(space):
        raise PageError(404, f"There is no Space {owner}/{name}.")
    if write and not who.owns(space):
        raise PageError(403, f"You can't change {owner}/{name}.")
    return space


def render(request: Request, template: str, who: Caller, status: int = 200, **context) -> HTMLResponse:
    context.update(request=request, who=who, csrf=csrf_token(request), settings=services(request).settings)
    response = templates.TemplateResponse(request, template, context, status_code=status)
    new_cookie = getattr(request.state, "new_csrf", None)
    if new_cookie:
        response.set_cookie(CSRF_COOKIE, new_cookie, httponly=True, samesite="lax", max_age=14 * 24 * 3600,
                            secure=services(request).settings.secure_cookies_enabled)
    return response


def redirect(url: str) -> Response:
    # 303: the browser follows a POST's answer with a GET, so a reload does not resubmit the form.
    return RedirectResponse(url, status_code=303)


def login_redirect(request: Request) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return redirect(f"/login?next={quote(target)}")


def safe_next(target: str | None) -> str:
    """Only same-site paths: an open redirect after login would be a phishing aid."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
