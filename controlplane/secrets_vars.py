"""A Space's secrets and variables: stored (secrets encrypted), listed (secret values never), applied on restart.

Both reach the app as env vars when an instance starts, so a change restarts a running Space. Variables are
also the build args of Docker SDK builds (`builds.send`); secrets never go to a build, so they cannot end up
in an image layer or its history.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.core.security import SecretBoxError
from controlplane.core.utc import iso
from controlplane.deploy import Deployer
from controlplane.errors import Conflict, InvalidInput, Unavailable
from controlplane.lifecycle import release, restart, stop_instance
from controlplane.models import Space, SpaceSecret, SpaceVariable, utcnow
from controlplane.services import Services
from controlplane.stages import SERVING, SLEEPING, Stage

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
MASK = "****"
Row = type[SpaceSecret] | type[SpaceVariable]


def _find(s: Session, model: Row, space: Space, key: str) -> SpaceSecret | SpaceVariable | None:
    return s.scalar(select(model).where(model.space_id == space.id, model.key == key))


def check_key(key: object) -> None:
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise InvalidInput(f"Invalid key {key!r}: an environment variable name (letters, digits, '_'; not "
                            "starting with a digit), at most 128 characters.")


def _upsert(s: Session, model: Row, space: Space, key: str, description: str | None) -> SpaceSecret | SpaceVariable:
    check_key(key)
    other = SpaceVariable if model is SpaceSecret else SpaceSecret
    if _find(s, other, space, key) is not None:
        kind = "variable" if other is SpaceVariable else "secret"
        raise Conflict(f"{space.full_name} already has a {kind} named {key}: delete it first.")
    row = _find(s, model, space, key) or model(space_id=space.id, key=key)
    s.add(row)
    row.description, row.updated_at = description, utcnow()
    return row


def set_secret(svc: Services, s: Session, space: Space, key: str, value: str, description: str | None = None) -> None:
    _upsert(s, SpaceSecret, space, key, description).value_encrypted = svc.secret_box.encrypt(str(value))


def set_variable(s: Session, space: Space, key: str, value: str, description: str | None = None) -> None:
    _upsert(s, SpaceVariable, space, key, description).value = str(value)


def payload_items(payload: dict) -> tuple[list[dict], list[dict]]:
    """The `secrets` and `variables` of a create or duplicate call ([{key, value, description?}]), checked before
    anything is created: a bad item is a 400, never a half-made Space."""
    lists = []
    for field in ("secrets", "variables"):
        items = payload.get(field) or []
        if not isinstance(items, list) or not all(isinstance(i, dict) and i.get("value") is not None for i in items):
            raise InvalidInput(f'"{field}" must be a list of {{"key": ..., "value": ..., "description"?: ...}}.')
        for item in items:
            check_key(item.get("key"))
        lists.append(items)
    both = {i["key"] for i in lists[0]} & {i["key"] for i in lists[1]}
    if both:
        raise InvalidInput(f"{', '.join(sorted(both))} is given both as a secret and as a variable.")
    return lists[0], lists[1]


def set_items(svc: Services, s: Session, space: Space, secrets: list[dict], variables: list[dict]) -> None:
    for item in secrets:
        set_secret(svc, s, space, item["key"], item["value"], item.get("description"))
    for item in variables:
        set_variable(s, space, item["key"], item["value"], item.get("description"))


def delete_key(s: Session, model: Row, space: Space, key: str) -> bool:
    row = _find(s, model, space, key)
    if row is not None:
        s.delete(row)
    return row is not None


def listing(s: Session, model: Row, space: Space) -> dict[str, dict]:
    """The Hub's shape: {KEY: {value (variables only), description, updatedAt}}."""
    out = {}
    for row in s.scalars(select(model).where(model.space_id == space.id).order_by(model.key)):
        item = {"description": row.description, "updatedAt": iso(row.updated_at)}
        if isinstance(row, SpaceVariable):
            item["value"] = row.value
        out[row.key] = item
    return out


def copy_variables(s: Session, source: Space, target: Space) -> None:
    for var in s.scalars(select(SpaceVariable).where(SpaceVariable.space_id == source.id)):
        set_variable(s, target, var.key, var.value, var.description)


def log_masker(svc: Services, s: Session, space: Space) -> Callable[[str], str]:
    """Replaces the Space's secret values in run-log lines (apps do print their env)."""
    try:
        rows = s.scalars(select(SpaceSecret).where(SpaceSecret.space_id == space.id))
        values = [svc.secret_box.decrypt(row.value_encrypted) for row in rows]
    except SecretBoxError as e:
        raise Unavailable(f"Run logs are withheld because secrets cannot be masked: {e}.") from e
    # Longest first, so a secret containing another is masked whole; very short values would mask noise.
    values = sorted((v for v in values if len(v) >= 4), key=len, reverse=True)

    def mask(line: str) -> str:
        for value in values:
            line = line.replace(value, MASK)
        return line

    return mask


async def apply_change(svc: Services, deployer: Deployer, space_id: int) -> None:
    """A secret or variable changed: a running (or starting) Space restarts with the new env; a sleeping one
    drops its kept container, whose env is the old one, so that waking starts a fresh one."""
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        sleeping = space.detail == SLEEPING
        kept = release(space) if sleeping else None
        running = not sleeping and (Stage(space.stage) in SERVING or space.stage == Stage.APP_STARTING)
    await stop_instance(svc, kept)
    if running:
        await restart(svc, deployer, space_id)
