"""Spending limits: an owner over this month's limit has their GPU Spaces paused and cannot start new ones."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.metering.billing import month_of, over_limit, spaces_to_pause
from controlplane.models import Space, User, utcnow
from controlplane.services import Services


def limit_message(s: Session, owner: str) -> str:
    limit = s.scalar(select(User.spending_limit).where(User.name == owner))
    return (f"Paused: {owner}'s spending limit ({limit:.2f} per month) is reached for {month_of(utcnow())}. "
            "Raise the limit or wait for next month to start GPU hardware again.")


def blocks_start(svc: Services, s: Session, space: Space) -> str | None:
    """Why this Space may not start now on its requested tier, or None."""
    if not svc.catalog.tier(space.hardware_requested).is_gpu:
        return None
    return limit_message(s, space.owner) if over_limit(s, space.owner, now=utcnow()) else None


def over_limit_spaces(svc: Services) -> list[tuple[int, str]]:
    """(space id, message) for every running GPU Space whose owner is over their limit."""
    out = []
    with svc.db.session() as s:
        owners = s.scalars(select(User.name).where(User.spending_limit.is_not(None)))
        for owner in list(owners):
            for space in spaces_to_pause(s, owner, utcnow(), catalog=svc.catalog):
                out.append((space.id, limit_message(s, owner)))
    return out
