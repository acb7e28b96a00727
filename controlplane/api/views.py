"""How a Space looks to API clients: the Hub's JSON shapes, built in one place."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from controlplane.core.config import Settings
from controlplane.core.utc import iso as iso
from controlplane.git_history import last_modified
from controlplane.models import Space
from controlplane.repos import TreeEntry
from controlplane.router.resolver import path_prefix, space_label
from controlplane.services import Services
from controlplane.stages import SLEEPING, Stage


def hub_stage(space: Space) -> str:
    # Hub clients know no "sleeping": a sleeping Space is STOPPED, with Spaceyard's detail beside it.
    return Stage.STOPPED.value if space.detail == SLEEPING else space.stage


def _apps_scheme_and_port(settings: Settings) -> tuple[str, str]:
    """Apps are served by the same listener as the dashboard: same scheme, same port (":8000" or "")."""
    parts = urlsplit(settings.base_url)
    return parts.scheme or "http", f":{parts.port}" if parts.port else ""


def host_url(settings: Settings, owner: str, name: str) -> str:
    """The app's own origin, http(s)://{label}.{apps_domain}[:port], with no path."""
    scheme, port = _apps_scheme_and_port(settings)
    return f"{scheme}://{space_label(owner, name)}.{settings.apps_domain.strip('.')}{port}"


def apps_origin_pattern(settings: Settings) -> str:
    """Every app's origin as one CSP source expression (what the dashboard may frame)."""
    scheme, port = _apps_scheme_and_port(settings)
    return f"{scheme}://*.{settings.apps_domain.strip('.')}{port}"


def app_url(svc: Services, space: Space) -> str:
    """Where visitors open the app: the path-based URL while those are served (it resolves without wildcard
    DNS), else the app's own origin. The trailing slash matters: gradio_client urljoin()s onto it."""
    if svc.settings.path_urls_enabled:
        return f"{svc.settings.base_url}{path_prefix(space.owner, space.name)}/"
    return host_url(svc.settings, space.owner, space.name) + "/"


def runtime(svc: Services, space: Space) -> dict:
    sleep = space.sleep_time
    if sleep is None and space.hardware_requested == "cpu-basic":
        sleep = svc.settings.cpu_basic_sleep_seconds
    body = {
        "stage": hub_stage(space),
        "hardware": {
            "current": space.hardware_current if space.endpoint else None,
            "requested": space.hardware_requested,
        },
        "storage": None,
        "gcTimeout": sleep,
        "replicas": {"current": 1 if space.endpoint else 0, "requested": 1},
        "devMode": False,
        "domains": [{"domain": f"{space_label(space.owner, space.name)}.{svc.settings.apps_domain}", "stage": "READY"}],
        "spaceyard": {
            "detail": space.detail,
            "stage": space.stage,
            "url": app_url(svc, space),
            "hostUrl": host_url(svc.settings, space.owner, space.name),
            # What the README asks for; only the owner's request (hardware.requested) is ever applied.
            "suggestedHardware": (space.card_data or {}).get("suggested_hardware"),
            # The build that serves, and whether a rollback pinned it (until the next deploy of a push).
            "runningBuild": space.running_build_id,
            "pinned": space.pinned_build_id is not None and space.pinned_build_id == space.running_build_id,
        },
    }
    if space.error_message:
        body["errorMessage"] = space.error_message
    return body


def last_change(svc: Services, space: Space) -> datetime:
    """The date of main's last commit, as on the Hub (a build, a restart or a stage change leaves it alone); the
    creation date while the repo is empty."""
    try:
        return last_modified(svc.repos, space.owner, space.name) or space.created_at
    except FileNotFoundError:  # a repo being created or deleted
        return space.created_at


def files_of(entries: list[TreeEntry], files_metadata: bool = False) -> list[dict]:
    """The files of `space_info`; with files_metadata (the client's `blobs=True`) each one's size, git blob id and
    LFS details, as the Hub answers them."""
    files = []
    for e in (e for e in entries if e.type == "file"):
        item: dict = {"rfilename": e.path}
        if files_metadata:
            item |= {"size": e.size, "blobId": e.oid}
            if e.lfs:
                item["lfs"] = {"sha256": e.lfs["oid"], "size": e.lfs["size"], "pointerSize": e.lfs["pointerSize"]}
        files.append(item)
    return files


def space_info(
    svc: Services, space: Space, siblings: list[str] | None = None, likes: int = 0, listed: bool = False
) -> dict:
    """`listed`: an entry of `list_spaces`, whose `lastModified` is the stored date the listing sorted by (read
    from git just before by `listing.refresh_last_commits`), not a git read per entry."""
    card_tags = list(space.card_data.get("tags") or []) if isinstance(space.card_data, dict) else []
    info = {
        "_id": f"space-{space.id}",
        "id": space.full_name,
        "author": space.owner,
        "sha": space.head_sha,
        "lastModified": iso((space.last_commit_at or space.created_at) if listed else last_change(svc, space)),
        "createdAt": iso(space.created_at),
        "private": space.private,
        "disabled": False,
        "sdk": space.sdk,
        "likes": likes,
        # The Hub tags a Space with its SDK (what `list_spaces(filter="gradio")` matches), then its card's tags.
        "tags": [space.sdk, *(t for t in card_tags if t != space.sdk)],
        "cardData": space.card_data or {},
        "subdomain": space_label(space.owner, space.name),
        # gradio_client connects to `host`.
        "host": app_url(svc, space),
        "url": app_url(svc, space),
        "runtime": runtime(svc, space),
    }
    if siblings is not None:
        info["siblings"] = [{"rfilename": f} for f in siblings]
    return info
