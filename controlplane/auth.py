"""Who is calling (token, Basic, session cookie), what their token's role allows, and which Space they may see:
one rule for every surface (the API's dependencies, the dashboard, git, LFS, the app router)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane import sessions
from controlplane.core.security import hash_token, secret_matches
from controlplane.errors import Forbidden, SpaceNotFound, Unauthenticated
from controlplane.models import LoginSession, Space, Token, User
from controlplane.services import Services

# Methods that change nothing: what a "read" token may call.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Caller:
    user: User | None
    token: Token | None = None
    is_builder: bool = False
    session: LoginSession | None = None  # set when the caller is a signed-in browser

    @property
    def name(self) -> str | None:
        return self.user.name if self.user else None

    def can_read(self, space: Space) -> bool:
        return not space.private or self.is_builder or self.owns(space)

    def owns(self, space: Space) -> bool:
        return self.user is not None and (self.user.name == space.owner or self.user.is_admin)


def bearer_or_basic(headers) -> str | None:
    """The token a request presents: Authorization (Bearer, or Basic's password as git sends it), else
    x-hf-authorization, the header the Hub's clients (gradio_client) carry the token in for Spaces."""
    auth = headers.get("authorization") or headers.get("x-hf-authorization") or ""
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value:
        return value.strip()
    if scheme.lower() == "basic" and value:
        try:
            _user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return None
        return password or None
    return None


def identify(svc: Services, s: Session, headers, cookies) -> Caller:
    """Resolve the caller; a presented but unknown token is an error (Unauthenticated), not anonymity."""
    token = bearer_or_basic(headers)
    if token:
        if secret_matches(token, svc.builder_token):
            return Caller(user=None, is_builder=True)
        row = s.scalar(select(Token).where(Token.token_hash == hash_token(token), Token.revoked.is_(False)))
        if row is None or row.user.disabled:
            raise Unauthenticated(
                "Invalid credentials: this token is unknown or revoked, or its account is disabled.",
                "InvalidCredentials",
            )
        svc.db.record_use(Token.last_used_at, row.id, row.last_used_at)
        return Caller(user=row.user, token=row)
    login = sessions.find(s, cookies.get(sessions.cookie_name(svc.settings)))
    if login is None:
        return Caller(user=None)
    svc.db.record_use(LoginSession.last_seen_at, login.id, login.last_seen_at)
    return Caller(user=login.user, session=login)


def role_refusal(method: str, who: Caller) -> str | None:
    """Why `who` may not make a `method` call, or None. The one rule for tokens' roles: a "read" token reads;
    every state change needs a "write" token or a dashboard session (the user itself)."""
    if method in SAFE_METHODS or who.token is None or who.token.role == "write":
        return None
    return (
        f"This token has the '{who.token.role}' role: it can read but not change anything. "
        "Use a token with the 'write' role."
    )


def find_space(s: Session, who: Caller, owner: str, name: str) -> Space:
    space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
    if space is None or not who.can_read(space):
        raise SpaceNotFound(f"{owner}/{name}")
    return space


def owned_space(s: Session, who: Caller, owner: str, name: str) -> Space:
    space = find_space(s, who, owner, name)
    if not who.owns(space):
        raise Forbidden(f"You don't have write access to {owner}/{name}.", "Forbidden")
    return space
