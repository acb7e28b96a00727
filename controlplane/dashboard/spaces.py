"""The Spaces list, the New Space form, a Space's page and its live stage badge."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.datastructures import FormData

from controlplane import coldstart, likes, rollback, sessions
from controlplane.api.deps import DB, Caller, services
from controlplane.api.views import app_url, host_url, hub_stage
from controlplane.dashboard.forms import checked_form
from controlplane.dashboard.hardware import tier_choices
from controlplane.dashboard.settings import _owned_id
from controlplane.dashboard.web import Page, PageError, member, redirect, render, space_for, viewer
from controlplane.errors import DomainError
from controlplane.models import Build, Space
from controlplane.services import Services
from controlplane.spaces import SDKS, create_space

router = APIRouter(route_class=Page)


def clone_commands(svc: Services, user: str, space: Space) -> list[str]:
    """What to type to get code into the Space; git asks for a password, which is an API token (never shown)."""
    scheme, _, rest = svc.settings.base_url.partition("://")
    return [
        f"git clone {scheme}://{user}@{rest}/spaces/{space.owner}/{space.name}",
        f"cd {space.name}",
        "# add app.py (and requirements.txt), then:",
        'git add . && git commit -m "Add application" && git push',
    ]


@router.get("/")
def spaces_list(
    request: Request,
    show: str | None = None,
    who: Caller = Depends(viewer),
    svc: Services = Depends(services),
    s: Session = DB,
) -> Response:
    show = show if show in ("mine", "public") else ("mine" if who.user else "public")
    if show == "mine" and who.user is None:
        show = "public"
    q = select(Space).order_by(Space.updated_at.desc(), Space.id.desc())
    q = q.where(Space.owner == who.user.name) if show == "mine" else q.where(Space.private.is_(False))
    tiers = {t.name: t for t in svc.catalog.tiers}
    spaces = list(s.scalars(q))
    return render(request, "list.html", who, spaces=spaces, show=show, tiers=tiers,
                  likes=likes.counts(s, [sp.id for sp in spaces]), app_url=lambda space: app_url(svc, space))


@router.get("/new")
def new_page(
    request: Request, who: Caller = Depends(member), svc: Services = Depends(services), s: Session = DB
) -> Response:
    return render(request, "new.html", who, choices=tier_choices(svc, s), sdks=SDKS, form={})


@router.post("/new")
def new_space(
    request: Request,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    values = {k: str(form.get(k) or "") for k in ("name", "sdk", "visibility", "hardware")}
    try:
        with svc.db.session() as s:
            space = create_space(
                svc, s, owner=who.user.name, name=values["name"].strip(), sdk=values["sdk"] or "gradio",
                private=values["visibility"] == "private", hardware=values["hardware"] or None,
            )
            target = f"/spaces/{space.full_name}"
    except DomainError as e:
        with svc.db.session() as s:
            choices = tier_choices(svc, s)
        return render(request, "new.html", who, status=400, choices=choices, sdks=SDKS, form=values, error=e.message)
    return redirect(target)


def _page_context(svc: Services, s: Session, who: Caller, space: Space) -> dict:
    build = s.scalar(select(Build).where(Build.space_id == space.id).order_by(Build.id.desc()).limit(1))
    files = [e for e in svc.repos.tree(space.owner, space.name) if e.type == "file"]
    try:
        tier = svc.catalog.tier(space.hardware_requested)
    except KeyError:
        tier = None
    # A private app's own origin never gets the session cookie: hand it a grant for this session (the router
    # turns `__sign` into a cookie there). The path-based URL needs none (same origin), so `open_url` only
    # carries it when it is the host-based one.
    grant = ""
    if space.private and who.session is not None:
        grant = "?__sign=" + sessions.space_grant(svc.secret_key, who.session, space.full_name)
    return {
        "space": space,
        "stage": hub_stage(space),
        "build": build,
        "files": files,
        "tier": tier,
        "app_url": app_url(svc, space),
        "open_url": app_url(svc, space) + ("" if svc.settings.path_urls_enabled else grant),
        # Always the app's own origin: on the path-based URL an app would share the dashboard's origin.
        "frame_url": host_url(svc.settings, space.owner, space.name) + "/" + grant,
        "clone": clone_commands(svc, who.user.name if who.user else "USER", space),
        "can_write": who.owns(space),
        "likes": likes.counts(s, [space.id]).get(space.id, 0),
        "liked": likes.liked(s, who.user, space),
        "builds": [rollback.build_view(svc, space, b) for b in s.scalars(rollback.builds_query(space).limit(10))],
        "cold": coldstart.summary(s, space.id),
    }


@router.get("/spaces/{owner}/{name}")
def space_page(
    owner: str,
    name: str,
    request: Request,
    who: Caller = Depends(viewer),
    svc: Services = Depends(services),
    s: Session = DB,
) -> Response:
    space = space_for(s, who, owner, name)
    return render(request, "space.html", who, **_page_context(svc, s, who, space))


@router.post("/spaces/{owner}/{name}/likes/mine")
def set_like(
    owner: str,
    name: str,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    s: Session = DB,
) -> Response:
    """The Like button: `action` is "like" or "unlike" (not a toggle: a stale page or a resubmit can't flip it)."""
    space = space_for(s, who, owner, name)
    action = form.get("action")
    if action not in ("like", "unlike"):
        raise PageError(400, 'The form must say action "like" or "unlike".')
    (likes.like if action == "like" else likes.unlike)(s, who.user, space)
    return redirect(f"/spaces/{space.full_name}")


# Not .../rollback: POST /spaces/{owner}/{name}/{service} is the git server's.
@router.post("/spaces/{owner}/{name}/builds/rollback")
async def roll_back(
    owner: str,
    name: str,
    form: FormData = Depends(checked_form),
    who: Caller = Depends(member),
    svc: Services = Depends(services),
) -> Response:
    """The Builds table's "Roll back" button: the API's rollback, to the build the form names."""
    build = str(form.get("build") or "")
    if not build.isdigit():
        raise PageError(400, "The form must name a build.")
    space_id = await asyncio.to_thread(_owned_id, svc, who, owner, name)
    await rollback.rollback(svc, space_id, int(build))
    return redirect(f"/spaces/{owner}/{name}#builds")


@router.get("/spaces/{owner}/{name}/files")
def files_fragment(
    owner: str,
    name: str,
    request: Request,
    who: Caller = Depends(viewer),
    svc: Services = Depends(services),
    s: Session = DB,
) -> Response:
    """The file list alone: the Space page fetches it again when the stage moves (a push changed HEAD)."""
    space = space_for(s, who, owner, name)
    files = [e for e in svc.repos.tree(space.owner, space.name) if e.type == "file"]
    return render(request, "_files.html", who, space=space, files=files)


@router.get("/spaces/{owner}/{name}/stage")
def stage_fragment(
    owner: str,
    name: str,
    request: Request,
    who: Caller = Depends(viewer),
    s: Session = DB,
) -> Response:
    """The stage badge and message alone: the Space page swaps it in every few seconds."""
    space = space_for(s, who, owner, name)
    return render(request, "_stage.html", who, space=space, stage=hub_stage(space))
