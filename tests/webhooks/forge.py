"""The "GitHub" of the tests: bare repositories served over git smart-HTTP by the real `git http-backend` on
127.0.0.1, optionally behind a token (HTTP Basic, as the forges take one), and the webhook deliveries the real
forges send for a push to them (their documented payload shapes, signed as each forge signs)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

from tests.conftest import git


class Forge:
    """Repos under `root`, served at http://127.0.0.1:PORT/{name}.git; `token` (if set) is required for every
    request. Every Authorization header received is kept in `seen_auth` (the tests check the credential arrived,
    and only as a header). Hostile modes for the attacker tests: `redirect_to` answers every request with a
    redirect there; `reflect_auth` refuses with a git error message quoting the credential it was sent."""

    def __init__(self, root: Path, token: str | None = None) -> None:
        self.root, self.token = root, token
        self.seen_auth: list[str] = []
        self.paths: list[str] = []
        self.redirect_to: str | None = None
        self.reflect_auth = False
        forge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                forge.serve(self)

            def do_POST(self) -> None:
                forge.serve(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def serve(self, req: BaseHTTPRequestHandler) -> None:
        path, _, query = req.path.partition("?")
        self.paths.append(req.path)
        auth = req.headers.get("Authorization")
        if auth:
            self.seen_auth.append(auth)
        if self.redirect_to is not None:
            req.send_response(302)
            req.send_header("Location", self.redirect_to + req.path)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        if self.reflect_auth:
            self.reflect(req, auth or "")
            return
        if self.token is not None:
            expected = "Basic " + base64.b64encode(f"x-access-token:{self.token}".encode()).decode()
            if auth != expected:
                req.send_response(401)
                req.send_header("WWW-Authenticate", 'Basic realm="forge"')
                req.send_header("Content-Length", "0")
                req.end_headers()
                return
        length = int(req.headers.get("Content-Length") or 0)
        body = req.rfile.read(length) if length else b""
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "REQUEST_METHOD": req.command,
            "QUERY_STRING": query,
            "CONTENT_TYPE": req.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": req.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": req.headers.get("Content-Encoding", ""),
            "REMOTE_USER": "tester",
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True).stdout
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, []
        for line in head.decode().split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        req.send_response(status)
        for key, value in headers:
            req.send_header(key, value)
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)

    @staticmethod
    def reflect(req: BaseHTTPRequestHandler, auth: str) -> None:
        """A git protocol error (`fatal: remote error: ...`) quoting the header and the token inside it."""
        decoded = base64.b64decode(auth.split(" ", 1)[-1]).decode(errors="replace") if auth else ""

        def pkt(text: str) -> bytes:
            return f"{len(text.encode()) + 4:04x}".encode() + text.encode()

        body = pkt("# service=git-upload-pack\n") + b"0000" + pkt(f"ERR you sent {auth} ({decoded})\n")
        req.send_response(200)
        req.send_header("Content-Type", "application/x-git-upload-pack-advertisement")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def create(self, name: str, files: dict[str, str | bytes], branch: str = "main") -> Upstream:
        bare = self.root / f"{name}.git"
        git("init", "-q", "--bare", f"--initial-branch={branch}", str(bare))
        work = self.root.parent / f"work-{name}"
        git("clone", "-q", str(bare), str(work))
        up = Upstream(self, name, work)
        up.commit(files, "initial", branch)
        return up


class Upstream:
    """One repository on the forge and a working clone of it."""

    def __init__(self, forge: Forge, name: str, work: Path) -> None:
        self.forge, self.name, self.work = forge, name, work

    @property
    def url(self) -> str:
        return f"{self.forge.url}/{self.name}.git"

    def commit(self, files: dict[str, str | bytes], message: str, branch: str = "main") -> tuple[str, str]:
        """Commit and push to `branch`; returns (before, after)."""
        before = git("rev-parse", "-q", "--verify", f"origin/{branch}", cwd=self.work, check=False).stdout.strip()
        git("checkout", "-q", "-B", branch, *([f"origin/{branch}"] if before else []), cwd=self.work)
        for path, content in files.items():
            target = self.work / path
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        git("add", "-A", cwd=self.work)
        git("commit", "-q", "--allow-empty", "-m", message, cwd=self.work)
        git("push", "-q", "origin", f"HEAD:refs/heads/{branch}", cwd=self.work)
        after = git("rev-parse", "HEAD", cwd=self.work).stdout.strip()
        return before or "0" * 40, after


def static_files(text: str) -> dict[str, str]:
    return {"README.md": "---\ntitle: Linked\nsdk: static\n---\n", "index.html": f"<h1>{text}</h1>\n"}


# --- the deliveries, in the shapes the forges document -------------------------------------------------------


def github_push(up: Upstream, branch: str, before: str, after: str, message: str) -> dict:
    commit = {
        "id": after,
        "tree_id": "0" * 40,
        "distinct": True,
        "message": message,
        "timestamp": "2026-11-30T00:00:00Z",
        "url": f"https://github.com/octo/{up.name}/commit/{after}",
        "author": {"name": "Test", "email": "t@example.com", "username": "octo"},
        "committer": {"name": "Test", "email": "t@example.com", "username": "octo"},
        "added": [],
        "removed": [],
        "modified": ["index.html"],
    }
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": after,
        "repository": {
            "id": 1296269,
            "name": up.name,
            "full_name": f"octo/{up.name}",
            "private": False,
            "owner": {"name": "octo", "login": "octo", "id": 1},
            "html_url": f"https://github.com/octo/{up.name}",
            "clone_url": up.url,
            "default_branch": "main",
        },
        "pusher": {"name": "octo", "email": "t@example.com"},
        "sender": {"login": "octo", "id": 1, "type": "User"},
        "created": before == "0" * 40,
        "deleted": after == "0" * 40,
        "forced": False,
        "base_ref": None,
        "compare": f"https://github.com/octo/{up.name}/compare/{before[:12]}...{after[:12]}",
        "commits": [commit],
        "head_commit": commit,
    }


def github_ping(up: Upstream) -> dict:
    return {
        "zen": "Keep it logically awesome.",
        "hook_id": 42,
        "hook": {"type": "Repository", "id": 42, "active": True, "events": ["push"],
                 "config": {"content_type": "json", "insecure_ssl": "0", "url": "https://spaceyard.example"}},
        "repository": {"id": 1296269, "name": up.name, "full_name": f"octo/{up.name}"},
        "sender": {"login": "octo", "id": 1, "type": "User"},
    }


def gitlab_push(up: Upstream, branch: str, before: str, after: str, message: str) -> dict:
    return {
        "object_kind": "push",
        "event_name": "push",
        "before": before,
        "after": after,
        "ref": f"refs/heads/{branch}",
        "ref_protected": True,
        "checkout_sha": after,
        "message": None,
        "user_id": 4,
        "user_name": "John Smith",
        "user_username": "jsmith",
        "user_email": "john@example.com",
        "user_avatar": "https://s.gravatar.com/avatar/d4c74594d841139328695756648b6bd6?s=80",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": up.name,
            "web_url": f"https://gitlab.example.com/mike/{up.name}",
            "git_http_url": up.url,
            "namespace": "Mike",
            "path_with_namespace": f"mike/{up.name}",
            "default_branch": "main",
        },
        "commits": [
            {
                "id": after,
                "message": message,
                "title": message,
                "timestamp": "2026-11-30T00:00:00+00:00",
                "url": f"https://gitlab.example.com/mike/{up.name}/commit/{after}",
                "author": {"name": "Test", "email": "t@example.com"},
                "added": [],
                "modified": ["index.html"],
                "removed": [],
            }
        ],
        "total_commits_count": 1,
        "repository": {"name": up.name, "url": up.url, "git_http_url": up.url, "visibility_level": 20},
    }


def gitea_push(up: Upstream, branch: str, before: str, after: str, message: str) -> dict:
    commit = {
        "id": after,
        "message": message,
        "url": f"http://localhost:3000/gitea/{up.name}/commit/{after}",
        "author": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
        "committer": {"name": "Gitea", "email": "someone@gitea.io", "username": "gitea"},
        "verification": None,
        "timestamp": "2026-11-30T00:00:00Z",
        "added": [],
        "removed": [],
        "modified": ["index.html"],
    }
    return {
        "ref": f"refs/heads/{branch}",
        "before": before,
        "after": after,
        "compare_url": f"http://localhost:3000/gitea/{up.name}/compare/{before}...{after}",
        "commits": [commit],
        "head_commit": commit,
        "repository": {
            "id": 140,
            "owner": {"id": 1, "login": "gitea", "full_name": "Gitea", "username": "gitea"},
            "name": up.name,
            "full_name": f"gitea/{up.name}",
            "private": False,
            "clone_url": up.url,
            "default_branch": "main",
        },
        "pusher": {"id": 1, "login": "gitea", "username": "gitea"},
        "sender": {"id": 1, "login": "gitea", "username": "gitea"},
    }


PUSH = {"github": github_push, "gitlab": gitlab_push, "gitea": gitea_push, "forgejo": gitea_push}
EVENT = {"github": "push", "gitlab": "Push Hook", "gitea": "push", "forgejo": "push"}


def signed_headers(provider: str, body: bytes, secret: str, event: str, delivery: str) -> dict[str, str]:
    """The headers each forge sends with a delivery."""
    mac = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    common = {"Content-Type": "application/json"}
    if provider == "github":
        return common | {"X-GitHub-Event": event, "X-GitHub-Delivery": delivery,
                         "X-Hub-Signature-256": f"sha256={mac}", "User-Agent": "GitHub-Hookshot/abc123"}
    if provider == "gitlab":
        return common | {"X-Gitlab-Event": event, "X-Gitlab-Event-UUID": delivery, "X-Gitlab-Token": secret,
                         "User-Agent": "GitLab/17.0.0"}
    if provider == "forgejo":  # Forgejo sends its own headers and Gitea's
        return common | {"X-Forgejo-Event": event, "X-Forgejo-Delivery": delivery, "X-Forgejo-Signature": mac,
                         "X-Gitea-Event": event, "X-Gitea-Delivery": delivery, "X-Gitea-Signature": mac}
    return common | {"X-Gitea-Event": event, "X-Gitea-Delivery": delivery, "X-Gitea-Signature": mac,
                     "X-GitHub-Event": event, "X-GitHub-Delivery": delivery}


def deliver(base_url: str, provider: str, space: str, payload: dict, secret: str, *, event: str | None = None,
            delivery: str | None = None) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = signed_headers(provider, body, secret, event or EVENT[provider], delivery or str(uuid.uuid4()))
    return httpx.post(f"{base_url}/api/webhooks/{provider}/{space}", content=body, headers=headers, timeout=60)
