"""Signing in and out (a signed session cookie) and the user's API tokens."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from controlplane.api.deps import DB, SESSION_COOKIE, SESSION_MAX_AGE, Caller, services, session_serializer
from controlplane.core.security import verify_password
from controlplane.dashboard.forms import checked_form
from controlplane.dashboard.web import PageError, member, redirect, render, safe_next, viewer
from controlplane.models import Token, User
from controlplane.services import Services
from controlplane.users import issue_token

router = APIRouter()


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
    s: Session = DB,
) -> Response:
    name, password = str(form.get("username") or "").strip(), str(form.get("password") or "")
    target = safe_next(str(form.get("next") or "/"))
    user = s.scalar(select(User).where(User.name == name))
    if user is None or not verify_password(password, user.password_hash):
        # One message for both cases: which user names exist is not disclosed.
        return render(
            request, "login.html", Caller(user=None), status=401, next=target, username=name,
            error="Wrong user name or password.",
        )
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE, session_serializer(svc).dumps({"uid": user.id}),
        max_age=SESSION_MAX_AGE, httponly=True, samesite="lax",
    )
    return response


@router.post("/logout")
def logout(form: FormData = Depends(checked_form)) -> Response:
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


def _tokens(s: Session, user: User) -> list[Token]:
    return list(s.scalars(select(Token).where(Token.user_id == user.id).order_by(Token.revoked, Token.id.desc())))


@router.get("/tokens")
def tokens_page(request: Request, who: Caller = Depends(member), s: Session = DB) -> Response:
    return render(request, "tokens.html", who, tokens=_tokens(s, who.user))


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
    with svc.db.session() as s:
        tokens = _tokens(s, who.user)
    # The clear token is in this one answer only; the database keeps its hash.
    return render(request, "tokens.html", who, tokens=tokens, new_token=clear, new_name=name)


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
