"""Linked Spaces: a Space mirrors a branch of an external repository (docs/webhooks.md).

The linked branch is fetched into the Space's own repo and becomes its `main`, so builds, history and the Hub API
keep one path. What a Space owner controls here (a URL, a branch, a commit id) reaches `git fetch` only after
these checks:
- only http(s) URLs, without user:password (the credential has its own write-only field), and only to public
  addresses unless settings.link_private_addresses: no fetching from the host's loopback services or a cloud's
  metadata address. Git connects to the very address that was checked (http.curloptResolve: no DNS rebinding)
  and follows no redirect;
- the deploy credential reaches git as an Authorization header in git's environment (never the URL or the
  command line), and git's messages are scrubbed of it before anyone sees them;
- no system or global git config, no other protocol, no prompt, a time limit.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from controlplane.build_events import show_failure
from controlplane.builds import start_build
from controlplane.core.security import SecretBoxError
from controlplane.errors import InvalidInput
from controlplane.models import Build, Space, SpaceLink, utcnow
from controlplane.repos import BRANCH, mib
from controlplane.services import Services

MAX_URL = 2048
FETCH_TIMEOUT = 600
SHA_RE = re.compile(r"^[0-9a-f]{40}$")
BRANCH_RE = re.compile(r"^(?!-)(?!/)(?!.*\.\.)(?!.*//)(?!.*@\{)(?!.*\.lock$)(?!.*/$)[A-Za-z0-9._/+-]{1,255}$")
MASK = "****"
# One sync per Space at a time, so two pushes cannot interleave their fetch and the move of `main`.
_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


class LinkError(Exception):
    """A fetch of the linked repository failed; the message names the URL and git's words, never the credential."""


class Superseded(Exception):
    """A push named a commit that the Space's `main` is already past (forges may deliver out of order)."""


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    address: str  # the checked address git is pinned to


def check_branch(branch: object) -> str:
    if not isinstance(branch, str) or not BRANCH_RE.match(branch):
        raise InvalidInput(f"Invalid branch {branch!r}: a git branch name (letters, digits, '.', '_', '-', '/').")
    return branch


def check_url(url: object, *, private_ok: bool) -> Target:
    """The URL's host resolved to an address Spaceyard may fetch from; a 400 naming the reason otherwise."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidInput("Invalid repository URL: an http(s) URL of at most 2048 characters, without spaces.")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidInput(
            f"Refused repository URL: only http:// and https:// URLs can be linked, not {parts.scheme!r}."
        )
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("Refused repository URL: put the token in the credential field, not in the URL.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise InvalidInput(f"Invalid repository URL: {e}.") from e
    host = parts.hostname
    if not host or parts.query or parts.fragment:
        raise InvalidInput("Invalid repository URL: it needs a host, and no query or fragment.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise InvalidInput(f"Refused repository URL: its host {host} does not resolve ({e}).") from e
    addresses = sorted({info[4][0] for info in infos}, key=lambda a: (":" in a, a))  # IPv4 first
    for address in addresses:
        if refusal := address_refusal(ipaddress.ip_address(address.split("%")[0]), private_ok):
            raise InvalidInput(f"Refused repository URL: {host} resolves to {address}, {refusal}.")
    return Target(host=host, port=port, address=addresses[0])


def address_refusal(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, private_ok: bool) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    # Link-local holds the clouds' metadata services (169.254.169.254; fd00:ec2::254 is also private): never.
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified or (ip.is_reserved and not ip.is_loopback):
        return "a link-local, multicast or reserved address (cloud metadata lives there)"
    if not ip.is_global and not private_ok:
        return "a loopback or private address; an operator can allow those with SPACEYARD_LINK_PRIVATE_ADDRESSES"
    return None


def new_webhook_secret() -> str:
    return secrets.token_urlsafe(32)


def auth_header(credential: str) -> str:
    """Basic auth, as every forge takes a token over git: `user:token`, or a bare token (GitHub's
    x-access-token user; GitLab and Gitea accept any user name with a token)."""
    user, sep, token = credential.partition(":")
    pair = credential if sep and user and token else f"x-access-token:{credential}"
    return "Basic " + base64.b64encode(pair.encode()).decode()


def scrubber(credential: str | None) -> Callable[[str], str]:
    """Replaces the credential (as given, as its token part, and as sent) in git's messages."""
    forms = []
    if credential:
        forms = [credential, credential.partition(":")[2], auth_header(credential).split(" ", 1)[1]]
    forms = sorted({f for f in forms if len(f) >= 4}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for form in forms:
            text = text.replace(form, MASK)
        return text

    return scrub


def git_env(target: Target, credential: str | None) -> dict[str, str]:
    pinned = f"[{target.address}]" if ":" in target.address else target.address
    config = {
        "protocol.allow": "never",
        "protocol.http.allow": "always",
        "protocol.https.allow": "always",
        "http.followRedirects": "false",
        "http.curloptResolve": f"{target.host}:{target.port}:{pinned}",
        "http.lowSpeedLimit": "1000",
        "http.lowSpeedTime": "60",
        # Always one pack (index-pack), never loose objects: a cut-off fetch leaves one tmp pack to remove.
        "fetch.unpackLimit": "1",
        "credential.helper": "",
        "core.askPass": "",
    }
    if credential:
        config["http.extraHeader"] = f"Authorization: {auth_header(credential)}"
    # Nothing from the host's environment that would trace headers or change where git goes (the operator's CA
    # bundle stays: TLS-inspecting proxies need it).
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_") or k in ("GIT_SSL_CAINFO", "GIT_SSL_CAPATH")}
    env |= {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "",
        "GIT_ALLOW_PROTOCOL": "http:https",
        "GIT_CONFIG_COUNT": str(len(config)),
    }
    for i, (key, value) in enumerate(config.items()):
        env |= {f"GIT_CONFIG_KEY_{i}": key, f"GIT_CONFIG_VALUE_{i}": value}
    return env


def mirror(svc: Services, space: Space, link: SpaceLink, commit: str | None) -> str:
    """Fetch the linked branch (and `commit`, when a push named one) into the Space's repo and make it `main`;
    returns the commit. Raises LinkError naming the URL and git's message."""
    try:
        credential = svc.secret_box.decrypt(link.credential_encrypted) if link.credential_encrypted else None
    except SecretBoxError as e:
        raise LinkError(
            f"Could not fetch from {link.url}: the stored credential cannot be read ({e}); set it again."
        ) from e
    scrub = scrubber(credential)
    repo = svc.repos.path(space.owner, space.name)
    try:
        target = check_url(link.url, private_ok=svc.settings.link_private_addresses)  # DNS may have changed
    except InvalidInput as e:
        raise LinkError(f"Could not fetch from {link.url}: {e.message}") from e
    env = git_env(target, credential)
    limit = svc.settings.max_repo_bytes
    too_large = f"the repository is larger than this Space's limit of {mib(limit)} (SPACEYARD_MAX_REPO_BYTES)"
    # No file git writes (a received pack) may pass the repo limit: a huge repository cannot fill the disk.
    bound = ["prlimit", f"--fsize={limit}", "--"] if shutil.which("prlimit") else []

    def git(*args: str) -> str:
        try:
            proc = subprocess.run([*bound, "git", *args], cwd=repo, env=env, capture_output=True, timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise LinkError(f"Could not fetch from {link.url}: git took longer than {FETCH_TIMEOUT} s.") from e
        if proc.returncode != 0:
            message = scrub(proc.stderr.decode(errors="replace").strip()) or f"git exited with {proc.returncode}"
            if reached(repo, limit):  # git itself only says "invalid index-pack output"
                message = too_large
            raise LinkError(f"Could not fetch {commit or link.branch} from {link.url}: {message}")
        return proc.stdout.decode().strip()

    # `--` ends the options: neither the URL nor the refspec can be read as one.
    git("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--", link.url, f"refs/heads/{link.branch}")
    head = git("rev-parse", "--verify", "FETCH_HEAD^{commit}")
    if commit is not None and commit != head:
        if not has_commit(env, repo, commit):
            # A push named a commit the branch has moved past, or one git only serves by id.
            git("fetch", "--quiet", "--no-tags", "--no-recurse-submodules", "--", link.url, commit)
        if not has_commit(env, repo, commit):
            raise LinkError(f"Could not fetch {commit} from {link.url}: the repository did not send that commit.")
        if behind_main(repo, commit):
            # An older push's delivery arriving after a newer one's must not take the Space back (rollback does).
            raise Superseded(f"{commit[:7]} is older than the Space's current commit: nothing to do (rollback does).")
        head = commit
    if svc.repos.size(space.owner, space.name) > limit:
        raise LinkError(f"Could not fetch {head} from {link.url}: {too_large}.")
    git("update-ref", f"refs/heads/{BRANCH}", head)
    return head


def behind_main(repo: Path, commit: str) -> bool:
    """Whether `commit` is a strict ancestor of the Space's `main` (false when there is no main yet)."""
    main = subprocess.run(["git", "rev-parse", "-q", "--verify", f"refs/heads/{BRANCH}^{{commit}}"], cwd=repo,
                          capture_output=True, text=True).stdout.strip()
    if not main or main == commit:
        return False
    return subprocess.run(["git", "merge-base", "--is-ancestor", commit, main], cwd=repo).returncode == 0


def has_commit(env: dict[str, str], repo: Path, commit: str) -> bool:
    proc = subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=repo, env=env, capture_output=True)
    return proc.returncode == 0


def sync(svc: Services, space_id: int, commit: str | None = None) -> tuple[str, str, int | None]:
    """Mirror the linked branch (or the pushed `commit`) into `main` and build it, as a push to Spaceyard does.
    Returns (result, detail, build id): ("building", ...) or ("fetch failed", message), where a failed fetch is a
    failed build too (BUILD_ERROR naming the URL and git's message)."""
    if commit is not None and not SHA_RE.match(commit):
        return "ignored", f"{commit!r} is not a commit id.", None
    with svc.db.session() as s:
        space = s.get(Space, space_id)
        link = link_of(s, space) if space is not None else None
        if link is None:
            return "ignored", "The Space is no longer linked.", None
        s.expunge(link)
        s.expunge(space)
    with _locks_guard:
        lock = _locks.setdefault(space_id, threading.Lock())
    with lock:
        try:
            head = mirror(svc, space, link, commit)
        except Superseded as e:
            return "ignored", str(e), None
        except LinkError as e:
            drop_partial_packs(svc.repos.path(space.owner, space.name))
            with svc.db.session() as s:
                if (space := s.get(Space, space_id)) is None:
                    return "ignored", "The Space was deleted meanwhile.", None
                build = failed_build(s, space, commit or space.head_sha or "", str(e))
                return "fetch failed", str(e), build.id
        with svc.db.session() as s:
            if (space := s.get(Space, space_id)) is None:
                return "ignored", "The Space was deleted meanwhile.", None
            build = start_build(svc, s, space, head)
            s.flush()
            return "building", f"Building {head[:7]} from {link.branch}.", build.id


def reached(repo: Path, limit: int) -> bool:
    """Whether a fetch's pack was cut off at the file size bound."""
    return any(f.stat().st_size >= limit for f in (repo / "objects" / "pack").glob("tmp_*"))


def drop_partial_packs(repo: Path) -> None:
    """What a cut-off fetch left (up to the repo limit each time). Pushes write theirs in quarantine dirs
    (objects/incoming-*), and fetches of this Space hold its lock, so every tmp pack here is a failed fetch's."""
    for partial in (repo / "objects" / "pack").glob("tmp_*"):
        partial.unlink(missing_ok=True)


def failed_build(s: Session, space: Space, commit: str, message: str) -> Build:
    """A build that never got its source: listed with the others, and the Space's stage says why."""
    now = utcnow()
    build = Build(
        space_id=space.id,
        commit_sha=commit,
        status="FAILED",
        error_kind="BUILD_ERROR",
        error_message=message,
        log=message + "\n",
        started_at=now,
        finished_at=now,
    )
    s.add(build)
    s.flush()
    show_failure(s, space, build)
    return build


def link_of(s: Session, space: Space) -> SpaceLink | None:
    return s.scalar(select(SpaceLink).where(SpaceLink.space_id == space.id))
