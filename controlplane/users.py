"""Users and their API tokens (stored hashed; the clear token is shown once)."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.core.security import hash_password, hash_token, new_token
from controlplane.errors import NameTaken
from controlplane.models import Token, User
from controlplane.spaces import validate_name


def add_user(s: Session, name: str, *, admin: bool = False, password: str | None = None) -> User:
    """A new user; InvalidInput for a bad name, NameTaken for one in use (regardless of case)."""
    validate_name("user", name)
    # Unique regardless of case, as on the Hub: `Bob` next to `bob` would be one name to people and URLs.
    existing = s.scalar(select(User.name).where(func.lower(User.name) == name.lower()))
    if existing is not None:
        raise NameTaken(name_taken(name, existing))
    user = User(name=name, is_admin=admin, password_hash=hash_password(password) if password else None)
    s.add(user)
    try:
        s.flush()
    except IntegrityError:  # created meanwhile; the unique index refused it
        s.rollback()
        raise NameTaken(name_taken(name, name)) from None
    return user


def name_taken(name: str, existing: str) -> str:
    if existing == name:
        return f"user {name!r} already exists"
    return f"user name {name!r} is taken: user {existing!r} exists, and user names are unique regardless of case"


def issue_token(s: Session, user: User, name: str = "default", role: str = "write") -> str:
    token = new_token()
    s.add(Token(user_id=user.id, name=name, token_hash=hash_token(token), role=role))
    s.flush()
    return token
