"""How a Space looks to API clients: the Hub's JSON shapes, built in one place."""

from __future__ import annotations

from datetime import UTC, datetime

from controlplane.models import Space
from controlplane.router.resolver import path_prefix, space_label
from controlplane.services import Services
from controlplane.stages import SLEEPING, Stage


def iso(when: datetime | None) -> str | None:
    """Hub timestamps end in Z; SQLite hands datetimes back without a zone, and they are UTC."""
    if when is None:
        return None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def hub_stage(space: Space) -> str:
    # Hub clients know no "sleeping": a sleeping Space is STOPPED, with Spaceyard's detail beside it.
    return Stage.STOPPED.value if space.detail == SLEEPING else space.stage


def app_url(svc: Services, space: Space) -> str:
    return f"{svc.settings.base_url}{path_prefix(space.owner, space.name)}/"


def host_url(svc: Services, space: Space) -> str:
    port = svc.settings.base_url.rsplit(":", 1)[-1] if svc.settings.base_url.count(":") == 2 else ""
    label = space_label(space.owner, space.name)
    return f"http://{label}.{svc.settings.apps_domain}{':' + port if port.isdigit() else ''}"


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
            "hostUrl": host_url(svc, space),
            # What the README asks for; only the owner's request (hardware.requested) is ever applied.
            "suggestedHardware": (space.card_data or {}).get("suggested_hardware"),
        },
    }
    if space.error_message:
        body["errorMessage"] = space.error_message
    return body


def space_info(svc: Services, space: Space, siblings: list[str] | None = None) -> dict:
    info = {
        "_id": f"space-{space.id}",
        "id": space.full_name,
        "author": space.owner,
        "sha": space.head_sha,
        "lastModified": iso(space.updated_at),
        "createdAt": iso(space.created_at),
        "private": space.private,
        "disabled": False,
        "sdk": space.sdk,
        "likes": 0,
        "tags": list(space.card_data.get("tags") or []) if isinstance(space.card_data, dict) else [],
        "cardData": space.card_data or {},
        "subdomain": space_label(space.owner, space.name),
        # gradio_client connects to `host`; the path-based URL resolves everywhere, wildcard DNS or not. The
        # trailing slash matters: the client urljoin()s its config and API paths onto `host` as it is.
        "host": app_url(svc, space),
        "url": app_url(svc, space),
        "runtime": runtime(svc, space),
    }
    if siblings is not None:
        info["siblings"] = [{"rfilename": f} for f in siblings]
    return info
