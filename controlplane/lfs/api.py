"""The Git LFS batch API with basic transfers (docs/api/batch.md, basic-transfers.md of git-lfs) on
`/spaces/{owner}/{name}[.git]/info/lfs/`, for git-lfs and huggingface_hub alike.

The batch call is authorised like git itself: read access to download, a write token of the Space's owner to
upload. Its answer's hrefs point back here with a signed, expiring query (`signing.py`); the transfers check
that signature only.
"""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from starlette.requests import ClientDisconnect

from builder.lfs import OID
from controlplane.errors import DomainError, NotFound, Unauthenticated
from controlplane.lfs import signing
from controlplane.lfs.store import ObjectRefused
from controlplane.repo_access import repo_caller
from controlplane.services import Services, services

router = APIRouter(include_in_schema=False)
MEDIA = "application/vnd.git-lfs+json"
PREFIX = "/spaces/{owner}/{repo}/info/lfs"
MAX_BATCH_BYTES = 1024 * 1024


class ObjectResponse(FileResponse):
    """An object's bytes: read in 1 MiB pieces (Starlette's 64 KiB means a thread hop per 64 KiB of a 10 GB file)."""

    chunk_size = 1024 * 1024


def lfs_error(status: int, message: str, **headers: str) -> JSONResponse:
    # X-Error-Message: huggingface_hub shows it; git-lfs shows `message`.
    return JSONResponse({"message": message}, status, media_type=MEDIA, headers={"X-Error-Message": message, **headers})


def unauthorized(message: str) -> JSONResponse:
    realm = 'Basic realm="Spaceyard"'
    return lfs_error(401, message, **{"WWW-Authenticate": realm, "LFS-Authenticate": realm})


def lfs_answer(exc: DomainError) -> JSONResponse:
    """LFS's one mapping of a domain error: 401 asks git-lfs for credentials, then 404 and 403."""
    if isinstance(exc, Unauthenticated):
        return unauthorized(exc.message)
    return lfs_error(404 if isinstance(exc, NotFound) else 403, exc.message)


def parse_objects(payload: object) -> tuple[str, list[tuple[str, int]]] | str:
    """(operation, [(oid, size)]) of a batch request, or what is wrong with it."""
    if not isinstance(payload, dict) or payload.get("operation") not in ("upload", "download"):
        return 'a batch request needs "operation": "upload" or "download"'
    transfers = payload.get("transfers") or ["basic"]
    if not isinstance(transfers, list) or "basic" not in transfers:
        return 'Spaceyard offers only the "basic" transfer adapter'
    objects = payload.get("objects")
    if not isinstance(objects, list) or not objects:
        return 'a batch request needs a non-empty "objects" list'
    wanted = []
    for obj in objects:
        oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
        if not isinstance(oid, str) or not OID.match(oid) or not isinstance(size, int) or size < 0:
            return f"invalid object {obj!r}: oid must be 64 lowercase hex digits (sha256), size a whole number"
        wanted.append((oid, size))
    return payload["operation"], wanted


@router.post(PREFIX + "/objects/batch")
async def batch(owner: str, repo: str, request: Request, svc: Services = Depends(services)) -> Response:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BATCH_BYTES:
            return lfs_error(413, f"An LFS batch request is at most {MAX_BATCH_BYTES} bytes; send fewer objects.")
    try:
        parsed = parse_objects(json.loads(body))
    except (ValueError, RecursionError):
        parsed = "the body is not a JSON object"
    if isinstance(parsed, str):
        return lfs_error(422, f"Invalid LFS batch request: {parsed}.")
    return await asyncio.to_thread(answer_batch, svc, request, owner, repo.removesuffix(".git"), *parsed)


def answer_batch(
    svc: Services, request: Request, owner: str, name: str, operation: str, wanted: list[tuple[str, int]]
) -> Response:
    try:
        with svc.db.session() as s:
            repo_caller(svc, s, request.headers, owner, name, "upload" if operation == "upload" else None)
    except DomainError as e:
        return lfs_answer(e)
    store, repo_dir = svc.repos.lfs, svc.repos.path(owner, name)
    limit = svc.settings.max_lfs_object_bytes
    base = f"{svc.settings.base_url}/spaces/{owner}/{name}.git/info/lfs/objects"
    space_id = f"{owner}/{name}"

    def action(op: str, oid: str, suffix: str = "") -> dict:
        query = signing.signed_query(svc.secret_key, op, space_id, oid)
        return {"href": f"{base}/{oid}{suffix}?{query}", "expires_in": signing.ACTION_TTL}

    answers = []
    for oid, size in wanted:
        answer: dict = {"oid": oid, "size": size, "authenticated": True}
        if operation == "download":
            if store.available(repo_dir, oid, size):
                answer["actions"] = {"download": action("download", oid)}
            else:
                answer["error"] = {"code": 404, "message": f"Object {oid} does not exist in {space_id}"}
        elif size > limit:
            answer["error"] = {
                "code": 422,
                "message": f"Object {oid} is {size} bytes: over the limit of {limit} bytes per LFS object "
                "(SPACEYARD_MAX_LFS_OBJECT_BYTES).",
            }
        elif not store.available(repo_dir, oid, size):
            # Uploaded even when the store holds it already: the bytes prove the uploader has the content.
            answer["actions"] = {"upload": action("upload", oid), "verify": action("verify", oid, "/verify")}
        answers.append(answer)
    return JSONResponse({"transfer": "basic", "objects": answers, "hash_algo": "sha256"}, media_type=MEDIA)


def signed(svc: Services, request: Request, op: str, owner: str, repo: str, oid: str) -> str | None:
    """The Space name when the request carries a valid signature for `op` on `oid`, else None."""
    name = repo.removesuffix(".git")
    query = request.query_params
    ok = OID.match(oid) and signing.valid(
        svc.secret_key, op, f"{owner}/{name}", oid, query.get("exp"), query.get("sig")
    )
    return name if ok and svc.repos.exists(owner, name) else None


DENIED = "This transfer link is invalid or expired: ask the batch API (objects/batch) for a new one."


@router.put(PREFIX + "/objects/{oid}")
async def upload(owner: str, repo: str, oid: str, request: Request, svc: Services = Depends(services)) -> Response:
    name = signed(svc, request, "upload", owner, repo, oid)
    if name is None:
        return lfs_error(403, DENIED)
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        return lfs_error(411, "An LFS upload needs a Content-Length.")
    if int(length) > svc.settings.max_lfs_object_bytes:
        return lfs_error(413, f"Over the limit of {svc.settings.max_lfs_object_bytes} bytes per LFS object.")
    try:
        await svc.repos.lfs.receive(oid, int(length), request.stream())
    except ClientDisconnect:
        # The client went away mid-body: nothing was stored and its temp file is gone; nobody reads this answer
        # (left to propagate, uvicorn would log every aborted upload as an error with a traceback).
        return Response(status_code=400)
    except ObjectRefused as e:
        # 400, not 422: git-lfs answers a 422 upload with a hint about Content-Type detection and hides the message.
        return lfs_error(400, f"Upload of {oid} refused: {e}.")
    svc.repos.lfs.link(svc.repos.path(owner, name), oid)
    return Response(status_code=200)


def linked(svc: Services, request: Request, op: str, owner: str, repo: str, oid: str) -> JSONResponse | None:
    """Why a signed link for an object of this Space is refused (403 bad link, 404 not linked), or None."""
    name = signed(svc, request, op, owner, repo, oid)
    if name is None:
        return lfs_error(403, DENIED)
    if not svc.repos.lfs.available(svc.repos.path(owner, name), oid):
        return lfs_error(404, f"Object {oid} is not in {owner}/{name}: it was never uploaded to this Space.")
    return None


@router.post(PREFIX + "/objects/{oid}/verify")
def verify(owner: str, repo: str, oid: str, request: Request, svc: Services = Depends(services)) -> Response:
    return linked(svc, request, "verify", owner, repo, oid) or Response(status_code=200)


@router.get(PREFIX + "/objects/{oid}")
def download(owner: str, repo: str, oid: str, request: Request, svc: Services = Depends(services)) -> Response:
    return linked(svc, request, "download", owner, repo, oid) or ObjectResponse(
        svc.repos.lfs.path(oid), media_type="application/octet-stream"
    )
