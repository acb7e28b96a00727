"""Git smart-HTTP for Space repos, served by the real `git http-backend`, with Spaceyard's auth in front.

A push that moves `main` starts a build. Refusals travel inside the git protocol (`ERR ...`), so the
user's `git push` prints our sentence instead of a bare HTTP status.
"""

from __future__ import annotations

import asyncio
import logging
import os

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from starlette.requests import ClientDisconnect

from controlplane.builds import start_build
from controlplane.errors import DomainError, NotFound, Unauthenticated
from controlplane.lfs.api import router as lfs_router
from controlplane.models import Space
from controlplane.repo_access import repo_caller
from controlplane.repos import RepoError
from controlplane.services import Services, services

log = logging.getLogger(__name__)
router = APIRouter()
router.include_router(lfs_router)  # /spaces/{owner}/{name}[.git]/info/lfs/...
# A body this many times the push limit is cut off even while git's refusal is being drained.
DRAIN_FACTOR = 4


def pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def git_error(service: str, message: str) -> Response:
    body = pkt_line(f"# service={service}\n") + b"0000" + pkt_line(f"ERR {message}\n")
    return Response(body, media_type=f"application/x-{service}-advertisement")


def unauthorized(message: str) -> Response:
    return Response(message + "\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="Spaceyard"'})


def git_answer(service: str, exc: DomainError) -> Response:
    """git's one mapping of a domain error: a 401 makes git ask for credentials, a 404 is "repository not found",
    anything else is git's ERR line, which `git push` prints as the reason."""
    if isinstance(exc, Unauthenticated):
        return unauthorized(exc.message)
    if isinstance(exc, NotFound):
        return Response(exc.message + "\n", status_code=404)
    return git_error(service, exc.message)


@router.get("/spaces/{owner}/{repo}/info/refs", include_in_schema=False)
async def info_refs(owner: str, repo: str, request: Request, svc: Services = Depends(services)) -> Response:
    return await git_http(owner, repo, "info/refs", request, svc)


@router.post("/spaces/{owner}/{repo}/{service}", include_in_schema=False)
async def rpc(owner: str, repo: str, service: str, request: Request, svc: Services = Depends(services)) -> Response:
    if service not in ("git-upload-pack", "git-receive-pack"):
        raise NotFound("Not found")
    return await git_http(owner, repo, service, request, svc)


async def git_http(owner: str, repo: str, path: str, request: Request, svc: Services) -> Response:
    name = repo.removesuffix(".git")
    service = request.query_params.get("service") or (path if path.startswith("git-") else "git-upload-pack")
    writing = service == "git-receive-pack"

    def authorize() -> tuple[str | None, Response | None, str | None]:
        try:
            with svc.db.session() as s:
                who, space = repo_caller(svc, s, request.headers, owner, name, "push" if writing else None)
                return space.head_sha, None, who.name
        except DomainError as e:
            return None, git_answer(service, e), None

    before, refusal, user = await asyncio.to_thread(authorize)
    if refusal is not None:
        return refusal
    limit = svc.settings.max_push_bytes
    env = {
        **os.environ,
        # Limits enforced inside git, so a refusal reaches the user as git's own `remote:` lines.
        **svc.repos.receive_env(max_input_bytes=limit, max_repo_bytes=svc.settings.max_repo_bytes),
        "GIT_PROJECT_ROOT": str(svc.repos.root.resolve()),
        "GIT_HTTP_EXPORT_ALL": "1",
        "PATH_INFO": f"/{owner}/{name}.git/{path}",
        "REQUEST_METHOD": request.method,
        "QUERY_STRING": request.url.query,
        "CONTENT_TYPE": request.headers.get("content-type", ""),
        "REMOTE_USER": user or "anonymous",
        "REMOTE_ADDR": request.client.host if request.client else "",
        "HTTP_CONTENT_ENCODING": request.headers.get("content-encoding", ""),
        "GIT_PROTOCOL": request.headers.get("git-protocol", ""),
    }
    if request.headers.get("content-length"):
        env["CONTENT_LENGTH"] = request.headers["content-length"]
    proc = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    complete = await feed(proc.stdin, request, DRAIN_FACTOR * limit if writing else None)
    proc.stdin.close()
    if not complete:
        await abort(proc)
        if writing:
            await asyncio.to_thread(svc.repos.clean_stray, owner, name)
        return Response(f"The request body was cut off or exceeded {DRAIN_FACTOR * limit} bytes.\n", status_code=400)
    status, headers = 200, {}
    while line := (await proc.stdout.readline()).rstrip(b"\r\n"):
        key, _, value = line.decode().partition(":")
        if key.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[key.strip()] = value.strip()

    pushing = writing and path == "git-receive-pack"
    settled = False

    async def settle() -> None:
        nonlocal settled
        settled = True
        await asyncio.to_thread(svc.repos.clean_stray, owner, name)
        await asyncio.to_thread(after_push, svc, owner, name, before)

    async def body():
        try:
            # The last bytes wait until the push is settled: a client that sees its push end sees the Space
            # BUILDING (a listing or a runtime read right after `git push` shows the new commit).
            held = b""
            while chunk := await proc.stdout.read(65536):
                if held:
                    yield held
                held = chunk
            if pushing:
                await proc.wait()
                await settle()
            if held:
                yield held
        finally:
            await proc.wait()
            if proc.returncode:
                log.warning("git http-backend %s: %s", path, (await proc.stderr.read()).decode(errors="replace"))
            if pushing and not settled:  # the client went away: the push may still have moved main
                await settle()

    media = headers.pop("Content-Type", "application/octet-stream")
    return StreamingResponse(body(), status_code=status, headers=headers, media_type=media)


async def feed(stdin: asyncio.StreamWriter, request: Request, cap: int | None) -> bool:
    """Pass the request body to git; False when the client went away or sent more than `cap` bytes.

    When git stops reading early (receive.maxInputSize refused the pack), the rest of the body is read and
    dropped: the client then gets git's answer instead of a connection cut mid-stream (`bad band`,
    `remote end hung up`)."""
    received, git_reading = 0, True
    try:
        async for chunk in request.stream():
            if not chunk:
                # A GET (info/refs) yields one empty chunk; git may have exited already.
                continue
            received += len(chunk)
            if cap is not None and received > cap:
                return False
            if git_reading:
                try:
                    stdin.write(chunk)
                    await stdin.drain()
                except (BrokenPipeError, ConnectionResetError):
                    git_reading = False
    except ClientDisconnect:
        return False
    return True


async def abort(proc: asyncio.subprocess.Process) -> None:
    """End git after a cut-off request. Its input is closed already: receive-pack sees a truncated pack and
    deletes its quarantined objects itself (a kill would leave them), so it gets a moment before the kill."""
    try:
        await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def after_push(svc: Services, owner: str, name: str, before: str | None) -> None:
    """A push that moved `main` starts a build of the new head."""
    try:
        head = svc.repos.head(owner, name)
    except RepoError as e:  # git failed (a shutdown killed it): say so; the next push or commit builds the head
        log.error("could not read the head of %s/%s after a push, so no build started: %s", owner, name, e)
        return
    if head is None or head == before:
        return
    with svc.db.session() as s:
        space = s.scalar(select(Space).where(Space.owner == owner, Space.name == name))
        if space is not None:
            start_build(svc, s, space, head)
