"""CSRF protection for the dashboard's forms.

A random `spaceyard_csrf` cookie is bound to the session cookie by an HMAC; that HMAC is the hidden form field.
Signing in changes the session cookie, so the token is per session; another site can neither read the cookie
nor compute the HMAC without the secret key, so it cannot forge a form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from fastapi import Request
from starlette.datastructures import FormData

from controlplane import sessions
from controlplane.api.deps import services

CSRF_COOKIE = "spaceyard_csrf"
CSRF_FIELD = "csrf_token"


class CsrfError(Exception):
    pass


def csrf_cookie(request: Request) -> str:
    """The browser's CSRF cookie value; a fresh one (set on the response by `render`) when it has none."""
    value = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not value:
        value = request.state.new_csrf = secrets.token_urlsafe(24)
    return value


def csrf_token(request: Request, session_cookie: str | None = None) -> str:
    svc = services(request)
    secret = svc.secret_key.encode()
    cookie = sessions.cookie_name(svc.settings)
    session = session_cookie if session_cookie is not None else request.cookies.get(cookie, "")
    msg = f"{csrf_cookie(request)}|{session}".encode()
    return hmac.new(secret, msg, hashlib.sha256).hexdigest()


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after checking its CSRF token (a dependency for every dashboard POST)."""
    form = await request.form()
    sent = str(form.get(CSRF_FIELD) or "")
    if not request.cookies.get(CSRF_COOKIE) or not hmac.compare_digest(sent, csrf_token(request)):
        raise CsrfError
    return form
