"""The web dashboard: server-rendered pages on the control plane's own app (see docs/dashboard.md)."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import Response
from fastapi.staticfiles import StaticFiles

from controlplane.api.deps import Caller
from controlplane.dashboard import admin, auth, settings, spaces, usage
from controlplane.dashboard.forms import CsrfError
from controlplane.dashboard.web import STATIC_DIR, LoginRequired, PageError, login_redirect, render


def install(app: FastAPI) -> None:
    """Add the pages, their static files and their HTML error pages to the control plane's app.

    No page path collides with the git server's (GET `/spaces/o/n/info/refs`, POST `/spaces/o/n/git-*-pack`):
    page POSTs under a Space all sit two segments deeper, below `/spaces/o/n/settings/`.
    """
    for module in (auth, spaces, settings, usage, admin):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _exc: LoginRequired) -> Response:
        return login_redirect(request)

    @app.exception_handler(PageError)
    async def _page_error(request: Request, exc: PageError) -> Response:
        return render(request, "error.html", Caller(user=None), status=exc.status, message=exc.message)

    @app.exception_handler(CsrfError)
    async def _csrf(request: Request, _exc: CsrfError) -> Response:
        message = "This form expired or did not come from Spaceyard. Go back, reload the page and try again."
        return render(request, "error.html", Caller(user=None), status=403, message=message)
