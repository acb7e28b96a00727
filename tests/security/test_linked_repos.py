"""Linked repositories, attacked: a Space owner chooses the URL, branch and forge, so they must not turn Spaceyard
into a fetcher of the host's own services (SSRF) or a runner of git's transport tricks; the deploy credential must
never come back out (API, logs, build log, database, git's messages); the webhook secret is write-only."""

from __future__ import annotations

import base64
import os
import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.conftest import RunningPlatform, git
from tests.e2e.spaces import create
from tests.webhooks.conftest import MAX_REPO, linked_platform, new_forge  # noqa: F401 (a fixture)
from tests.webhooks.forge import PUSH, deliver, static_files
from tests.webhooks.spaces import build_log, deliveries, link, wait_delivery, wait_serving

pytestmark = pytest.mark.docker

REFUSED_URLS = [
    # the host's own services and the clouds' metadata address (private addresses are off by default)
    ("http://127.0.0.1:{port}/spaces/victim/app.git", "loopback or private"),
    ("http://localhost:{port}/", "loopback or private"),
    ("http://[::1]:{port}/", "loopback or private"),
    ("http://[::ffff:127.0.0.1]:{port}/", "loopback or private"),
    ("http://10.0.0.1/repo.git", "loopback or private"),
    ("http://192.168.1.1/repo.git", "loopback or private"),
    ("http://0.0.0.0:{port}/", "link-local, multicast or reserved"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    # other transports and git's option tricks
    ("ext::sh -c touch% /tmp/pwned-{tag}", "Invalid repository URL"),
    ("ext::sh", "only http:// and https://"),
    ("ssh://-oProxyCommand=touch%20/tmp/pwned-{tag}/x", "only http:// and https://"),
    ("git@github.com:o/r.git", "only http:// and https://"),
    ("file:///etc/", "only http:// and https://"),
    ("fd::ffff", "only http:// and https://"),
    ("--upload-pack=touch /tmp/pwned-{tag}", "Invalid repository URL"),
    ("--upload-pack=id", "only http:// and https://"),
    ("git://example.com/r.git", "only http:// and https://"),
    # a credential belongs in its own write-only field, never in the URL that is stored and shown
    ("https://user:ghp_secret@example.com/r.git", "credential field"),
    ("http://no-such-host.invalid/r.git", "does not resolve"),
]


def test_ssrf_and_transport_tricks_are_refused(platform: RunningPlatform):
    owner, name = "ssrf", f"target-{uuid.uuid4().hex[:6]}"
    create(platform, owner, name, sdk="static")
    port = platform.url.rsplit(":", 1)[1]
    tag = uuid.uuid4().hex
    with platform.api(owner) as api:
        for url, reason in REFUSED_URLS:
            resp = api.put(f"/api/spaces/{owner}/{name}/link", json={"url": url.format(port=port, tag=tag)})
            assert resp.status_code == 400, (url, resp.text)
            assert reason in resp.json()["error"], (url, resp.json())
        for branch in ("--upload-pack=touch /tmp/x", "../x", "a..b", "main@{1}", "-x", "a b", "x.lock", ""):
            resp = api.put(f"/api/spaces/{owner}/{name}/link",
                           json={"url": "https://example.com/r.git", "branch": branch})
            assert resp.status_code == 400 and "branch" in resp.json()["error"], (branch, resp.text)
        assert api.get(f"/api/spaces/{owner}/{name}/link").status_code == 404
    assert not list(Path("/tmp").glob(f"pwned-{tag}*"))


def test_only_the_owner_links(platform: RunningPlatform):
    owner, name = "linkowner", "mine"
    create(platform, owner, name, sdk="static")
    body = {"url": "https://example.com/r.git"}
    with platform.api("intruder") as api:
        assert api.put(f"/api/spaces/{owner}/{name}/link", json=body).status_code == 403
        assert api.get(f"/api/spaces/{owner}/{name}/link").status_code == 403
        assert api.delete(f"/api/spaces/{owner}/{name}/link").status_code == 403
    with platform.api() as anonymous:
        assert anonymous.put(f"/api/spaces/{owner}/{name}/link", json=body).status_code == 401


def leaks(token: str) -> list[str]:
    """The forms a credential could leak in: itself, and as sent (Basic x-access-token:TOKEN)."""
    return [token, base64.b64encode(f"x-access-token:{token}".encode()).decode()]


def test_deploy_credential_never_comes_back_out(linked_platform: RunningPlatform, tmp_path):  # noqa: F811
    token = "ghp_" + uuid.uuid4().hex
    forge = new_forge(tmp_path / "forge", token=token)
    try:
        owner, name = "creds", "private-repo"
        space = f"{owner}/{name}"
        up = forge.create(name, static_files("behind a token"))
        # Without the credential the fetch fails; with it the branch is mirrored and built.
        failed = link(linked_platform, owner, name, up)
        assert failed["sync"]["result"] == "fetch failed" and up.url in failed["sync"]["detail"]
        with linked_platform.api(owner) as api:
            resp = api.put(f"/api/spaces/{space}/link", json={"url": up.url, "credential": token})
            assert resp.status_code == 200 and resp.json()["sync"]["result"] == "building", resp.text
            answers = [resp.text]
            wait_serving(linked_platform, space, "behind a token")
            shown = api.get(f"/api/spaces/{space}/link")
            assert shown.json()["hasCredential"] is True and "webhookSecret" not in shown.json()
            answers += [shown.text, api.get(f"/api/spaces/{space}/webhooks/deliveries").text]
        # It reached the forge as a header only, never in a URL.
        assert f"Basic {leaks(token)[1]}" in forge.seen_auth
        assert not any(token in path for path in forge.paths)

        # A hostile forge quotes the credential back in git's error: the failure says what git said, masked.
        forge.reflect_auth = True
        with linked_platform.api(owner) as api:
            secret = api.put(f"/api/spaces/{space}/link", json={"url": up.url, "new_webhook_secret": True}).json()
        assert secret["sync"]["result"] == "fetch failed" and "****" in secret["sync"]["detail"], secret
        answers.append(str(secret))
        before, after = up.commit(static_files("v2"), "v2")
        resp = deliver(linked_platform.url, "github", space, PUSH["github"](up, "main", before, after, "v2"),
                       secret["webhookSecret"])
        row = wait_delivery(linked_platform, owner, space, resp.json()["deliveryId"])
        assert row["result"] == "fetch failed" and "you sent" in row["detail"] and "****" in row["detail"], row
        answers += [str(deliveries(linked_platform, owner, space)), build_log(linked_platform, owner, space)]
        with linked_platform.api(owner) as api:
            answers.append(api.get(f"/api/spaces/{space}/runtime").text)

        stored = [
            *(p.read_text(errors="replace") for p in (linked_platform.data_dir / "logs").glob("*.log*")),
            *(p.read_text(errors="replace") for p in
              (linked_platform.data_dir / "repos" / owner / f"{name}.git").rglob("*") if p.is_file() and
              p.stat().st_size < 1_000_000),
            *database_text(linked_platform.data_dir),
        ]
        for text in answers + stored:
            for form in leaks(token):
                assert form not in text
    finally:
        forge.close()


def database_text(data_dir: Path) -> list[str]:
    """Every text value in the SQLite database (the credential is stored encrypted)."""
    db = next(data_dir.glob("*.db"))
    out = []
    with sqlite3.connect(db) as conn:
        for (table,) in conn.execute("select name from sqlite_master where type='table'"):
            for row in conn.execute(f'select * from "{table}"'):
                out += [str(v) for v in row if isinstance(v, str | bytes)]
    return out


def test_redirects_are_not_followed(linked_platform: RunningPlatform, tmp_path):  # noqa: F811
    """A forge that redirects (where an attacker would point it at the host's own services) is not followed."""
    target = new_forge(tmp_path / "target")
    hop = new_forge(tmp_path / "hop")
    try:
        up = target.create("real", static_files("x"))
        hop.redirect_to = target.url
        linked = link(linked_platform, "redirects", "r", type(up)(hop, "real", up.work))
        assert linked["sync"]["result"] == "fetch failed", linked
        assert target.paths == [], "git followed the redirect"
    finally:
        target.close()
        hop.close()


def test_webhook_secret_is_write_only_and_rotates(linked_platform: RunningPlatform, tmp_path):  # noqa: F811
    forge = new_forge(tmp_path / "forge")
    try:
        owner, name = "rotate", "app"
        space = f"{owner}/{name}"
        up = forge.create(name, static_files("one"))
        first = link(linked_platform, owner, name, up)["webhookSecret"]
        with linked_platform.api(owner) as api:
            again = api.put(f"/api/spaces/{space}/link", json={"url": up.url}).json()
            assert "webhookSecret" not in again and first not in str(again)
            assert first not in api.get(f"/api/spaces/{space}/link").text
            second = api.put(f"/api/spaces/{space}/link", json={"url": up.url, "new_webhook_secret": True})
            second = second.json()["webhookSecret"]
            mine = api.put(f"/api/spaces/{space}/link", json={"url": up.url, "webhook_secret": "chosen-by-owner"})
            assert "webhookSecret" not in mine.json()
        before, after = up.commit(static_files("two"), "two")
        payload = PUSH["gitlab"](up, "main", before, after, "two")
        for old in (first, second):
            assert deliver(linked_platform.url, "gitlab", space, payload, old).status_code == 401
        assert deliver(linked_platform.url, "gitlab", space, payload, "chosen-by-owner").status_code == 202
        with linked_platform.api(owner) as api:
            assert api.delete(f"/api/spaces/{space}/link").status_code == 200
            assert api.get(f"/api/spaces/{space}/link").status_code == 404
        # Unlinked: the webhook URL no longer exists for anyone.
        assert deliver(linked_platform.url, "gitlab", space, payload, "chosen-by-owner").status_code == 404
    finally:
        forge.close()


def test_a_huge_repository_cannot_fill_the_disk(linked_platform: RunningPlatform, tmp_path):  # noqa: F811
    """No file a fetch writes may pass the repo limit (8 MiB here): a 12 MiB pack is cut off, its partial
    pack removed, `main` left alone, and the failure says why."""
    forge = new_forge(tmp_path / "forge")
    try:
        up = forge.create("huge", {**static_files("x"), "blob.bin": os.urandom(12 * 2**20)})
        linked = link(linked_platform, "huge", "app", up)
        assert linked["sync"]["result"] == "fetch failed", linked
        assert "larger than this Space's limit of 8.00 MiB" in linked["sync"]["detail"], linked
        repo = linked_platform.data_dir / "repos" / "huge" / "app.git"
        assert sum(f.stat().st_size for f in repo.rglob("*") if f.is_file()) < MAX_REPO // 4
        with linked_platform.api("huge") as api:
            assert api.get("/api/spaces/huge/app").json()["sha"] != git("rev-parse", "HEAD", cwd=up.work).stdout.strip()
    finally:
        forge.close()
