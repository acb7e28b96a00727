"""Hub-compatible secrets, variables and duplicate calls for a Space (`HfApi.add_space_secret`, ...)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from sqlalchemy.orm import Session

from controlplane.api.bodies import Duplicate, Item, Key
from controlplane.api.deps import DB, Caller, caller, find_space, owned_space, services, signed_in
from controlplane.duplicate import duplicate
from controlplane.models import SpaceSecret, SpaceVariable
from controlplane.secrets_vars import apply_change, delete_key, listing, set_secret, set_variable
from controlplane.services import Services

router = APIRouter(prefix="/api/spaces", tags=["secrets and variables"])


async def _changed(svc: Services, space_id: int) -> None:
    await apply_change(svc, svc.deployer, space_id)


@router.get("/{owner}/{name}/secrets")
def get_secrets(owner: str, name: str, who: Caller = Depends(signed_in), s: Session = DB) -> dict:
    """Keys, descriptions and update times only: secret values are write-only."""
    return listing(s, SpaceSecret, owned_space(s, who, owner, name))


@router.post("/{owner}/{name}/secrets")
async def add_secret(
    owner: str, name: str, payload: Item, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        set_secret(svc, s, space, payload.key, str(payload.value), payload.description)
        space_id = space.id
    await _changed(svc, space_id)
    return {}


@router.delete("/{owner}/{name}/secrets")
async def delete_secret(
    owner: str, name: str, payload: Key, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        deleted, space_id = delete_key(s, SpaceSecret, space, payload.key), space.id
    if deleted:
        await _changed(svc, space_id)
    return {}


@router.get("/{owner}/{name}/variables")
def get_variables(owner: str, name: str, who: Caller = Depends(caller), s: Session = DB) -> dict:
    # Variables are public config (as on the Hub): whoever can see the Space can read them.
    return listing(s, SpaceVariable, find_space(s, who, owner, name))


@router.post("/{owner}/{name}/variables")
async def add_variable(
    owner: str, name: str, payload: Item, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        set_variable(s, space, payload.key, str(payload.value), payload.description)
        space_id = space.id
    await _changed(svc, space_id)
    return _variables(svc, who, owner, name)


@router.delete("/{owner}/{name}/variables")
async def delete_variable(
    owner: str, name: str, payload: Key, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> dict:
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        deleted, space_id = delete_key(s, SpaceVariable, space, payload.key), space.id
    if deleted:
        await _changed(svc, space_id)
    return _variables(svc, who, owner, name)


def _variables(svc: Services, who: Caller, owner: str, name: str) -> dict:
    with svc.db.session() as s:
        return listing(s, SpaceVariable, find_space(s, who, owner, name))


@router.post("/{owner}/{name}/duplicate")
def duplicate_space(
    owner: str,
    name: str,
    payload: Duplicate,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
    s: Session = DB,
) -> dict:
    copy = duplicate(svc, s, who, find_space(s, who, owner, name), payload.fields())
    return {"url": f"{svc.settings.base_url}/spaces/{copy.full_name}"}
