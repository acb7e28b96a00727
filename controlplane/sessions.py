"""Dashboard sign-in sessions, kept on the server so that they can be ended: sign-out, "end session", a
password change and an admin disabling the account all revoke rows, and a revoked cookie is worth nothing.

The cookie holds a random id; the database keeps its SHA-256 (as for API tokens, a stolen database holds no
usable session).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane.core.config import Settings
from controlplane.core.security import hash_password, hash_token
from controlplane.core.utc import as_utc
from controlplane.models import LoginSession, User, utcnow

MAX_AGE = timedelta(days=14)


def cookie_name(settings: Settings) -> str:
    """Over https, the __Host- prefix: browsers then accept the cookie only from this exact host, Secure, with
    Path=/ and no Domain, so an app on a sibling or child domain cannot plant one."""
    return "__Host-spaceyard_session" if settings.secure_cookies_enabled else "spaceyard_session"


def start(s: Session, user: User, user_agent: str | None) -> str:
    """A new session for `user`; returns the cookie value (shown to the browser only)."""
    value = secrets.token_urlsafe(32)
    s.add(LoginSession(user_id=user.id, session_hash=hash_token(value), user_agent=(user_agent or "")[:255] or None))
    s.flush()
    return value


def find(s: Session, value: str | None) -> LoginSession | None:
    """The live session a cookie names: not revoked, not expired, its user not disabled."""
    if not value:
        return None
    row = s.scalar(select(LoginSession).where(LoginSession.session_hash == hash_token(value)))
    return row if _alive(row) else None


def _alive(row: LoginSession | None) -> bool:
    if row is None or row.revoked or row.user.disabled:
        return False
    return utcnow() - as_utc(row.created_at) <= MAX_AGE


def end(s: Session, user_id: int, session_id: int) -> bool:
    """End one of the user's sessions; False when it is not theirs or already ended."""
    result = s.execute(
        update(LoginSession)
        .where(LoginSession.id == session_id, LoginSession.user_id == user_id, LoginSession.revoked.is_(False))
        .values(revoked=True)
    )
    return result.rowcount > 0


def end_all(s: Session, user_id: int) -> int:
    mine = (LoginSession.user_id == user_id) & LoginSession.revoked.is_(False)
    return s.execute(update(LoginSession).where(mine).values(revoked=True)).rowcount


def live(s: Session, user_id: int) -> list[LoginSession]:
    """The user's sessions that still work, most recently active first."""
    since = utcnow() - MAX_AGE
    rows = s.scalars(
        select(LoginSession)
        .where(LoginSession.user_id == user_id, LoginSession.revoked.is_(False), LoginSession.created_at >= since)
        .order_by(LoginSession.last_seen_at.desc(), LoginSession.id.desc())
    )
    return list(rows)


def set_password(s: Session, user: User, password: str) -> None:
    """A new password ends every session: whoever knew the old one is signed out everywhere."""
    user.password_hash = hash_password(password)
    end_all(s, user.id)


def set_disabled(s: Session, user: User, disabled: bool) -> None:
    """A disabled user's tokens and sessions stop working at once (identify() refuses them)."""
    user.disabled = disabled
    if disabled:
        end_all(s, user.id)


def _grants(secret_key: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt="spaceyard-space-access")


def space_grant(secret_key: str, login: LoginSession, full_name: str) -> str:
    """What the dashboard hands a private Space's own origin (the `__sign` parameter, then a cookie there): this
    session may open this Space. It dies with the session."""
    return _grants(secret_key).dumps({"sid": login.id, "space": full_name})


def grant_holder(s: Session, secret_key: str, value: str | None, full_name: str) -> User | None:
    """The user a grant cookie speaks for, if it is genuine, for this Space, and its session still live."""
    if not value:
        return None
    try:
        data = _grants(secret_key).loads(value, max_age=int(MAX_AGE.total_seconds()))
    except BadSignature:
        return None
    if not isinstance(data, dict) or data.get("space") != full_name:
        return None
    row = s.get(LoginSession, data.get("sid"))
    return row.user if _alive(row) else None
