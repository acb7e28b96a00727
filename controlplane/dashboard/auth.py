"""Signing in and out (a server-side session named by a random cookie), the user's sessions, password and API
tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from controlplane import sessions
from controlplane.api.deps import Caller, services
from controlplane.core.security import verify_password
from controlplane.dashboard.forms import checked_form
from controlplane.dashboard.web import Page, PageError, member, redirect, render, safe_next, viewer
from controlplane.models import Token, User
from controlplane.services import Services
from controlplane.users import issue_token

router = APIRouter(route_class=Page)

MIN_PASSWORD = 8


def with_session(response: Response, svc: Services, value: str) -> Response:
    response.set_cookie(
        sessions.cookie_name(svc.settings), value, max_age=int(sessions.MAX_AGE.total_seconds()),
        httponly=True, samesite="lax", secure=svc.settings.secure_cookies_enabled,
    )
    return response


@router.get("/login")
def login_page(request: Request, next: str = "/", who: Caller = Depends(viewer)) -> Response:
    if who.user is not None:
        return redirect(safe_next(next))
    return render(request, "login.html", who, next=safe_next(next))


@router.post("/login")
def login(
    request: Request,
    form: FormData = Depends(checked_form),
    svc: Services = Depends(services),
) -> Response:
    name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
    target = safe_next(str(form.get("next") or "/"))
    with svc.db.session() as s:
        user = s.scalar(select(User).where(User.name == name))
        # One message for wrong, unknown and disabled: which user names exist is not disclosed.
        if user is None or user.disabled or not verify_password(password, user.password_hash):
            return render(
                request, "login.html", Caller(user=None), status=401, next=target, username=name,
                error="Wrong user name or password.",
            )
        value = sessions.start(s, user, request.headers.get("user-agent"))
    return with_session(redirect(target), svc, value)


@router.post("/logout")
def logout(form: FormData = Depends(checked_form), who: Caller = Depends(viewer),
           svc: Services = Depends(services)) -> Response:
    if who.session is not None:
        with svc.db.session() as s:
            sessions.end(s, who.session.user_id, who.session.id)
    response = redirect("/login")
    response.delete_cookie(sessions.cookie_name(svc.settings), secure=svc.settings.secure_cookies_enabled)
    return response


def _tokens(s: Session, user: User) -> list[Token]:
    return list(s.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.revoked, Token.id.desc())))


def _tokens_page(request: Request, who: Caller, svc: Services, status: int = 200, **extra) -> Response:
    with svc.db.session() as s:
        tokens, live = _tokens(s, who.user), sessions.live(s, who.user.id)
        return render(request, "tokens.html", who, status=status, tokens=tokens, sessions=live, **extra)


@router.get("/tokens")
def tokens_page(request: Request, who: Caller = Depends(member), svc: Services = Depends(services)) -> Response:
    return _tokens_page(request, who, svc)


@router.post("/tokens")
def create_token(
    request: Request,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    name = str(form.get("name") or "").strip()[:96] or "dashboard"
    role = "read" if form.get("role") == "read" else "write"
    # Committed before answering: the user may paste the token into git at once.
    with svc.db.session() as s:
        clear = issue_token(s, s.get(User, who.user.id), name, role)
    # The clear token is in this one answer only; the database keeps its hash.
    return _tokens_page(request, who, svc, new_token=clear, new_name=name)


@router.post("/tokens/{token_id}/revoke")
def revoke_token(
    token_id: int,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    with svc.db.session() as s:
        token = s.get(Token, token_id)
        if token is None or token.user_id != who.user.id:
            raise PageError(404, "No such token.")
        token.revoked = True
    return redirect("/tokens")


@router.post("/sessions/{session_id}/end")
def end_session(
    session_id: int,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    with svc.db.session() as s:
        if not sessions.end(s, who.user.id, session_id):
            raise PageError(404, "No such session.")
    # Ending the session this browser uses is signing out.
    return redirect("/login" if who.session is not None and who.session.id == session_id else "/tokens#sessions")


@router.post("/password")
def change_password(
    request: Request,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    """A new password ends every session, this one included; this browser gets a fresh one."""
    current, new = str(form.get("current") or ""), str(form.get("new") or "")
    with svc.db.session() as s:
        user = s.get(User, who.user.id)
        if not verify_password(current, user.password_hash):
            error = "The current password is wrong."
        elif len(new) < MIN_PASSWORD:
            error = f"The new password needs at least {MIN_PASSWORD} characters."
        else:
            sessions.set_password(s, user, new)
            value = sessions.start(s, user, request.headers.get("user-agent"))
            error = None
    if error:
        return _tokens_page(request, who, svc, status=400, password_error=error)
    return with_session(redirect("/tokens#password"), svc, value)
