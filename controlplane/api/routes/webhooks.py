"""Linked Spaces and push webhooks (docs/webhooks.md): the link (PUT/GET/DELETE .../link), the delivery log and
"redeliver", and the receiver the forges call, `POST /api/webhooks/{provider}/{owner}/{name}`."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, BackgroundTasks, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.requests import ClientDisconnect

from controlplane.api.bodies import Link
from controlplane.api.deps import Caller, owned_space, services, signed_in
from controlplane.api.errors import ApiError
from controlplane.links import link_of, sync
from controlplane.models import Space
from controlplane.services import Services
from controlplane.webhooks import deliveries
from controlplane.webhooks.linking import KEEP, require_link, save_link, unlink, view
from controlplane.webhooks.providers import PROVIDERS, PayloadError, parse

router = APIRouter(tags=["linked Spaces and webhooks"])


@router.put("/api/spaces/{owner}/{name}/link")
def put_link(
    owner: str,
    name: str,
    payload: Link,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    """Link the Space to {url, branch, credential?, webhook_secret?, new_webhook_secret?}, then mirror the branch
    into `main` and build it. The webhook secret Spaceyard generates (first link, or new_webhook_secret) is in
    this answer only."""
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        generated = save_link(
            svc,
            s,
            space,
            payload.url,
            payload.branch,
            payload.credential if "credential" in payload.model_fields_set else KEEP,
            payload.webhook_secret,
            payload.new_webhook_secret,
        )
        space_id = space.id
    result, detail, build = sync(svc, space_id)
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        out = view(svc, space, require_link(s, space))
    out["sync"] = {"result": result, "detail": detail, "build": build}
    if generated:
        out["webhookSecret"] = generated
    return out


@router.get("/api/spaces/{owner}/{name}/link")
def get_link(owner: str, name: str, who: Caller = Depends(signed_in), svc: Services = Depends(services)) -> dict:
    with svc.db.session() as s:
        space = owned_space(s, who, owner, name)
        return view(svc, space, require_link(s, space))


@router.delete("/api/spaces/{owner}/{name}/link")
def delete_link(owner: str, name: str, who: Caller = Depends(signed_in), svc: Services = Depends(services)) -> dict:
    """The Space keeps its code and stops following the repository; its delivery log goes too."""
    with svc.db.session() as s:
        if not unlink(s, owned_space(s, who, owner, name)):
            raise ApiError(404, f"{owner}/{name} is not linked to a repository.", "NotLinked")
    return {}


@router.get("/api/spaces/{owner}/{name}/webhooks/deliveries")
def get_deliveries(
    owner: str, name: str, who: Caller = Depends(signed_in), svc: Services = Depends(services)
) -> list[dict]:
    """The last deliveries, newest first (time, provider, event, delivery id, commit, result)."""
    with svc.db.session() as s:
        return [deliveries.view(row) for row in deliveries.listing(s, owned_space(s, who, owner, name))]


@router.post("/api/spaces/{owner}/{name}/webhooks/deliveries/{delivery}/redeliver", status_code=202)
def redeliver(
    owner: str,
    name: str,
    delivery: int,
    background: BackgroundTasks,
    who: Caller = Depends(signed_in),
    svc: Services = Depends(services),
) -> dict:
    with svc.db.session() as s:
        row = deliveries.redeliver(svc, s, owned_space(s, who, owner, name), delivery)
    if row.result == "accepted":
        background.add_task(deliveries.process, svc, row.id)
    return deliveries.view(row)


@router.post("/api/webhooks/{provider}/{owner}/{name}")
async def receive(
    provider: str,
    owner: str,
    name: str,
    request: Request,
    background: BackgroundTasks,
    svc: Services = Depends(services),
) -> JSONResponse:
    """A forge's push webhook. 401 bad signature (404 for a private Space), 404 unknown or unlinked Space, 413 too
    large, 400 malformed; 202 a push being fetched and built; 200 ignored (with the reason) or a duplicate."""
    forge = PROVIDERS.get(provider)
    if forge is None:
        raise ApiError(404, f"Unknown webhook provider {provider!r}: one of {', '.join(PROVIDERS)}.")
    limit = svc.settings.webhook_max_body_bytes
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"Webhook payload too large: at most {limit} bytes.", "PayloadTooLarge")
    unknown = ApiError(404, f"{owner}/{name} is not a Space linked to a repository.", "NotLinked")
    found = await asyncio.to_thread(_linked, svc, owner, name)
    if found is None:
        raise unknown
    space_id, branch, secret, private = found
    body = await _read(request, limit)
    if refusal := forge.signature_refusal(request.headers, body, secret):
        # Only the signature shows who is calling: to anyone else a private Space is no Space at all.
        raise unknown if private else ApiError(401, refusal, "InvalidSignature")
    try:
        payload, json_bytes = parse(body, request.headers.get("content-type", ""))
    except PayloadError as e:
        raise ApiError(400, str(e), "MalformedPayload") from e
    event = forge.event(request.headers)
    decision = deliveries.decide(provider, event, payload, branch)
    delivery_id = forge.delivery_id(request.headers, body)
    row = await asyncio.to_thread(deliveries.record, svc, space_id, provider, event, delivery_id, decision, json_bytes)
    if row is None:
        return JSONResponse({"result": "duplicate", "deliveryId": delivery_id, "detail": "Already received; ignored."})
    if row.result == "accepted":
        background.add_task(deliveries.process, svc, row.id)
        return JSONResponse(deliveries.view(row), status_code=202)
    return JSONResponse(deliveries.view(row))


def _linked(svc: Services, owner: str, name: str) -> tuple[int, str, str, bool] | None:
    with svc.db.session() as s:
        space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
        link = link_of(s, space) if space is not None else None
        if link is None:
            return None
        return space.id, link.branch, svc.secret_box.decrypt(link.webhook_secret_encrypted), space.private


async def _read(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it passes `limit` (a chunked body declares no length)."""
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"Webhook payload too large: at most {limit} bytes.", "PayloadTooLarge")
            chunks.append(chunk)
    except ClientDisconnect as e:
        raise ApiError(400, "The request body was cut off.") from e
    return b"".join(chunks)
