"""A Space's settings: hardware, sleep time, pause/restart/rebuild, secrets and variables, linked repository and
webhook deliveries, visibility, delete."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from controlplane.api.deps import DB, Caller, services
from controlplane.api.views import runtime
from controlplane.dashboard.forms import checked_form
from controlplane.dashboard.hardware import tier_choices
from controlplane.dashboard.web import Page, PageError, member, redirect, render, space_for
from controlplane.lifecycle import change_hardware, delete, pause, restart
from controlplane.links import link_of, sync
from controlplane.models import Space, SpaceSecret, SpaceVariable
from controlplane.secrets_vars import apply_change, delete_key, set_secret, set_variable
from controlplane.services import Services
from controlplane.stages import Stage, set_stage
from controlplane.webhooks import deliveries
from controlplane.webhooks.linking import KEEP, save_link, unlink, view, webhook_urls

router = APIRouter(route_class=Page)

# The Hub's sleep-time choices, in seconds; "" keeps the platform default (cpu-basic sleeps, upgrades never).
SLEEP_CHOICES = [("", "Platform default"), ("300", "5 minutes"), ("900", "15 minutes"), ("3600", "1 hour"),
                 ("36000", "10 hours"), ("86400", "24 hours"), ("172800", "48 hours"), ("604800", "1 week")]


def _settings_context(svc: Services, s: Session, space: Space) -> dict:
    return {
        "space": space,
        "runtime": runtime(svc, space),
        "choices": tier_choices(svc, s),
        "sleep_choices": SLEEP_CHOICES,
        "secrets": _rows(s, SpaceSecret, space),
        "variables": _rows(s, SpaceVariable, space),
        **_link_context(svc, s, space),
    }


def _link_context(svc: Services, s: Session, space: Space) -> dict:
    link = link_of(s, space)
    return {
        "link": view(svc, space, link) if link else None,
        "webhook_urls": webhook_urls(svc, space),
        "deliveries": [deliveries.view(row) for row in deliveries.listing(s, space)] if link else [],
    }


def _rows(s: Session, model: type[SpaceSecret] | type[SpaceVariable], space: Space) -> list:
    return list(s.scalars(select(model).where(model.space_id == space.id).order_by(model.key)))


@router.get("/spaces/{owner}/{name}/settings")
def settings_page(
    owner: str,
    name: str,
    request: Request,
    who: Caller = Depends(member),
    svc: Services = Depends(services),
    s: Session = DB,
) -> Response:
    space = space_for(s, who, owner, name, write=True)
    return render(request, "settings.html", who, **_settings_context(svc, s, space))


def _owned_id(svc: Services, who: Caller, owner: str, name: str) -> int:
    with svc.db.session() as s:
        return space_for(s, who, owner, name, write=True).id


def _back(owner: str, name: str, anchor: str = "") -> Response:
    return redirect(f"/spaces/{owner}/{name}/settings{anchor}")


@router.post("/spaces/{owner}/{name}/settings/hardware")
async def set_hardware(
    owner: str, name: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    space_id = _owned_id(svc, who, owner, name)
    await change_hardware(svc, svc.deployer, space_id, str(form.get("hardware") or ""))
    return _back(owner, name, "#hardware")


@router.post("/spaces/{owner}/{name}/settings/sleep")
def set_sleep(
    owner: str, name: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    value = str(form.get("sleep_time") or "")
    if value and value not in dict(SLEEP_CHOICES):
        raise PageError(400, f"Unknown sleep time {value!r}.")
    with svc.db.session() as s:
        space_for(s, who, owner, name, write=True).sleep_time = int(value) if value else None
    return _back(owner, name, "#sleep")


@router.post("/spaces/{owner}/{name}/settings/{action}")
async def control(
    owner: str, name: str, action: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    """Pause, restart, factory rebuild: the same calls the API's /pause and /restart make."""
    if action not in ("pause", "restart", "rebuild"):
        raise PageError(404, f"Unknown action {action!r}.")
    space_id = _owned_id(svc, who, owner, name)
    deployer = svc.deployer
    if action == "pause":
        await pause(svc, deployer, space_id)
    else:
        await restart(svc, deployer, space_id, factory=action == "rebuild")
    return redirect(f"/spaces/{owner}/{name}")


@router.post("/spaces/{owner}/{name}/settings/link/set")
def set_link(
    owner: str,
    name: str,
    request: Request,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    """Link (or relink) and mirror the branch at once, as the API's PUT .../link; a webhook secret Spaceyard
    generates is shown in this answer only. A blank credential keeps the stored one."""
    credential = str(form.get("credential") or "")
    with svc.db.session() as s:
        space = space_for(s, who, owner, name, write=True)
        generated = save_link(
            svc,
            s,
            space,
            str(form.get("url") or "").strip(),
            str(form.get("branch") or "main").strip(),
            None if form.get("remove_credential") else credential or KEEP,
            str(form.get("webhook_secret") or "") or None,
            bool(form.get("new_webhook_secret")),
        )
        space_id = space.id
    result, detail, _build = sync(svc, space_id)
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        context = _settings_context(svc, s, space)
        return render(request, "settings.html", who, new_webhook_secret=generated, sync=(result, detail), **context)


@router.post("/spaces/{owner}/{name}/settings/link/delete")
def delete_link(
    owner: str, name: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    with svc.db.session() as s:
        unlink(s, space_for(s, who, owner, name, write=True))
    return _back(owner, name, "#link")


@router.post("/spaces/{owner}/{name}/settings/link/redeliver")
def redeliver(
    owner: str, name: str, background: BackgroundTasks, form: FormData = Depends(checked_form),
    who: Caller = Depends(member), svc: Services = Depends(services),
) -> Response:
    """Process a stored delivery again (as the API's .../redeliver)."""
    delivery = str(form.get("delivery") or "")
    if not delivery.isdigit():
        raise PageError(400, f"Unknown delivery {delivery[:40]!r}.")
    with svc.db.session() as s:
        row = deliveries.redeliver(svc, s, space_for(s, who, owner, name, write=True), int(delivery))
    if row.result == "accepted":
        background.add_task(deliveries.process, svc, row.id)
    return _back(owner, name, "#link")


@router.post("/spaces/{owner}/{name}/settings/visibility/set")
def set_visibility(
    owner: str, name: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    with svc.db.session() as s:
        space = space_for(s, who, owner, name, write=True)
        space.private = form.get("visibility") == "private"
        # Re-stating the stage announces the change after commit, so the router's cache forgets the old
        # visibility (its cached entry decides who may open the app).
        set_stage(s, space, Stage(space.stage), space.error_message, detail=space.detail)
    return _back(owner, name, "#visibility")


@router.post("/spaces/{owner}/{name}/settings/delete/confirm")
async def delete_space(
    owner: str, name: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    space_id = _owned_id(svc, who, owner, name)
    if str(form.get("confirm") or "") != f"{owner}/{name}":
        raise PageError(400, f"To delete, type the Space's full name ({owner}/{name}) exactly.")
    await delete(svc, svc.deployer, space_id)
    return redirect("/?show=mine")


@router.post("/spaces/{owner}/{name}/settings/{kind}/{op}")
async def edit_env(
    owner: str, name: str, kind: str, op: str, form: FormData = Depends(checked_form), who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    """Set or delete a secret or variable, as the API does (a running Space restarts with the new env).
    Declared last: `/settings/visibility/set` and `/settings/delete/confirm` have the same shape.

    Secrets are write-only: stored encrypted, and no page shows a value again.
    """
    if kind not in ("secrets", "variables") or op not in ("set", "delete"):
        raise PageError(404, f"Unknown operation {kind}/{op}.")
    key = str(form.get("key") or "").strip()
    value, description = str(form.get("value") or ""), str(form.get("description") or "") or None
    with svc.db.session() as s:
        space = space_for(s, who, owner, name, write=True)
        space_id = space.id
        if op == "delete":
            changed = delete_key(s, SpaceSecret if kind == "secrets" else SpaceVariable, space, key)
        else:
            if kind == "secrets":
                set_secret(svc, s, space, key, value, description)
            else:
                set_variable(s, space, key, value, description)
            changed = True
    if changed:
        # Only a running or sleeping Space needs the deployer; pages served without the loops have none.
        await apply_change(svc, svc.deployer, space_id)
    return _back(owner, name, f"#{kind}")
