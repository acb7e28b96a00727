"""Users and their API tokens (stored hashed; the clear token is shown once)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.core.security import hash_password, hash_token, new_token
from controlplane.models import Token, User
from controlplane.spaces import validate_name


def add_user(s: Session, name: str, *, admin: bool = False, password: str | None = None) -> User:
    validate_name("user", name)
    if s.scalar(select(User).where(User.name == name)):
        raise ValueError(f"user {name!r} already exists")
    user = User(name=name, is_admin=admin, password_hash=hash_password(password) if password else None)
    s.add(user)
    s.flush()
    return user


def issue_token(s: Session, user: User, name: str = "default", role: str = "write") -> str:
    token = new_token()
    s.add(Token(user_id=user.id, name=name, token_hash=hash_token(token), role=role))
    s.flush()
    return token
