"""Creating and deleting Spaces: the database row, the git repo, and the first commit, kept in step."""

from __future__ import annotations

import re

import yaml
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controlplane.errors import InvalidInput, NameTaken
from controlplane.models import Space, SpaceRedirect
from controlplane.pools import not_offered_message, offered_tiers
from controlplane.repos import DEFAULT_GITATTRIBUTES
from controlplane.services import Services
from controlplane.stages import Stage, set_stage

NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?$")
SDKS = ("gradio", "streamlit", "docker", "static")


def validate_name(kind: str, value: str) -> None:
    if not value or not NAME_RE.match(value) or "--" in value or ".." in value or value.endswith(".git"):
        raise InvalidInput(
            f"Invalid {kind} name {value!r}: use letters, digits, '-', '_' or '.', "
            "start and end with a letter or digit, at most 96 characters, no '--' or '..'.",
        )


def requested_private(payload: dict, default: bool) -> bool:
    """The visibility a create, duplicate or settings call asks for: `visibility` (2.x clients) or `private`
    (0.x), else `default`."""
    if "visibility" in payload:
        visibility = payload["visibility"]
        if visibility not in ("public", "private"):
            raise InvalidInput(
                f"Unsupported visibility {visibility!r}: 'public' or 'private' (Spaceyard has no 'protected')."
            )
        return visibility == "private"
    private = payload.get("private")
    if private is None:
        return default
    if not isinstance(private, bool):
        raise InvalidInput(f'"private" must be true or false, not {private!r}.')
    return private


def initial_readme(name: str, sdk: str) -> bytes:
    front = {"title": name, "emoji": "🚀", "colorFrom": "blue", "colorTo": "purple", "sdk": sdk, "pinned": False}
    body = yaml.safe_dump(front, sort_keys=False, allow_unicode=True)
    return f"---\n{body}---\n\n# {name}\n".encode()


def create_space(
    svc: Services,
    s: Session,
    *,
    owner: str,
    name: str,
    sdk: str,
    private: bool,
    hardware: str | None,
    sleep_time: int | None = None,
) -> Space:
    validate_name("owner", owner)
    validate_name("Space", name)
    if sdk not in SDKS:
        raise InvalidInput(f"Invalid sdk {sdk!r}: must be one of {', '.join(SDKS)}.")
    hardware = hardware or "cpu-basic"
    check_tier(svc, hardware)
    taken = holder(s, owner, name)
    if taken is not None:
        raise name_taken(svc, owner, name, taken.full_name)
    space = Space(
        owner=owner,
        name=name,
        sdk=sdk,
        private=private,
        hardware_requested=hardware,
        sleep_time=sleep_time,
        card_data={},
    )
    s.add(space)
    try:
        s.flush()
    except IntegrityError:
        s.rollback()
        raise name_taken(svc, owner, name, None) from None
    release_redirect(s, owner, name)
    svc.repos.delete(owner, name)  # a leftover directory from a crashed delete must not leak into a new Space
    svc.repos.create(owner, name)
    readme = initial_readme(name, sdk)
    space.head_sha = svc.repos.commit(
        owner, name, {"README.md": readme, ".gitattributes": DEFAULT_GITATTRIBUTES}, "initial commit"
    )
    space.card_data = yaml.safe_load(readme.decode().split("---")[1])
    set_stage(s, space, Stage.NO_APP_FILE, app_file_hint(sdk))
    return space


def holder(s: Session, owner: str, name: str) -> Space | None:
    """The Space holding a name. Names are unique regardless of case, as on the Hub; the database index is the
    backstop for a race."""
    return s.scalar(
        select(Space).where(func.lower(Space.owner) == owner.lower(), func.lower(Space.name) == name.lower())
    )


def release_redirect(s: Session, owner: str, name: str) -> None:
    """A Space now holds this name: a moved Space's old URLs under it stop redirecting."""
    s.execute(
        delete(SpaceRedirect).where(
            func.lower(SpaceRedirect.owner) == owner.lower(), func.lower(SpaceRedirect.name) == name.lower()
        )
    )


def name_taken(svc: Services, owner: str, name: str, existing: str | None) -> NameTaken:
    """The Hub's answer for an existing repo (409 RepoExists), naming the Space that holds the name; its `url` in
    the body is what `create_repo(exist_ok=True)` and `duplicate_repo(exist_ok=True)` return."""
    url = f"{svc.settings.base_url}/spaces/{existing or f'{owner}/{name}'}"
    if existing is None or existing == f"{owner}/{name}":
        return NameTaken(f"You already created this space repo: {owner}/{name}", "RepoExists", extra={"url": url})
    return NameTaken(
        f"The name {owner}/{name} is taken: {existing} exists, and Space names are unique regardless of case.",
        "RepoExists",
        extra={"url": url},
    )


def app_file_hint(sdk: str) -> str:
    wanted = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}[sdk]
    return f"No application file: push {wanted} to start your Space."


def check_tier(svc: Services, tier: str) -> None:
    """Refuse a tier this installation cannot run: unknown, or no pool of this runtime serves it."""
    if tier not in offered_tiers(svc):
        raise InvalidInput(not_offered_message(svc, tier))
