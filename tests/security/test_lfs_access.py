"""LFS objects are stored once for all Spaces, so knowing an oid must not open them: a stranger cannot fetch a
private Space's object through its batch API, through their own Space (by pushing or committing a pointer to it,
or by asking the batch API to upload it without the bytes), nor with a forged, reused or expired transfer link;
a read token cannot upload.

Before: there was no LFS API at all, and a pushed pointer was accepted and served as the file's content.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

import httpx
import pytest

from builder import lfs as pointer
from tests.conftest import git
from tests.e2e.spaces import create

pytestmark = pytest.mark.docker
LFS_JSON = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}


def batch(platform, space: str, operation: str, oid: str, size: int, token: str | None) -> httpx.Response:
    headers = {**LFS_JSON, **({"Authorization": f"Bearer {token}"} if token else {})}
    body = {"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    return httpx.post(f"{platform.url}/spaces/{space}.git/info/lfs/objects/batch", json=body, headers=headers)


def upload(platform, space: str, content: bytes, token: str) -> str:
    """Upload `content` as an LFS object of `space` the way git-lfs does; returns its oid."""
    oid = hashlib.sha256(content).hexdigest()
    answer = batch(platform, space, "upload", oid, len(content), token).json()["objects"][0]
    put = httpx.put(answer["actions"]["upload"]["href"], content=content)
    assert put.status_code == 200, put.text
    assert httpx.post(answer["actions"]["verify"]["href"], json={"oid": oid, "size": len(content)}).status_code == 200
    return oid


@pytest.fixture(scope="module")
def secret_object(platform) -> tuple[str, bytes]:
    create(platform, "vault", "private", sdk="static", private=True)
    content = os.urandom(100_000)
    return upload(platform, "vault/private", content, platform.user("vault")), content


def test_the_owner_and_the_builder_may_download_a_stranger_may_not(platform, secret_object):
    oid, content = secret_object
    owner = batch(platform, "vault/private", "download", oid, len(content), platform.user("vault"))
    href = owner.json()["objects"][0]["actions"]["download"]["href"]
    assert httpx.get(href).content == content
    assert "vault" not in href.split("?")[1] and platform.user("vault") not in href  # a signed link, no token

    stranger = platform.user("stranger")
    assert batch(platform, "vault/private", "download", oid, len(content), stranger).status_code == 404
    assert batch(platform, "vault/private", "download", oid, len(content), None).status_code == 401
    # The link names its Space, object and operation: another object, Space or an upload with it is refused.
    base, query = href.split("?")
    other_oid = "f" * 64
    for forged in (
        f"{base[: -len(oid)]}{other_oid}?{query}",
        href.replace("/vault/private.git/", "/stranger/mine.git/"),
        f"{base}?{query.replace('sig=', 'sig=0')}",
        f"{base}?exp={int(time.time()) - 1}&{query.split('&')[1]}",
        base,
    ):
        assert httpx.get(forged).status_code in (403, 404), forged
    assert httpx.put(href, content=content).status_code == 403


def test_a_stranger_cannot_reach_the_object_through_their_own_space(platform, secret_object, tmp_path):
    oid, content = secret_object
    create(platform, "stranger", "mine", sdk="static")
    token = platform.user("stranger")
    # Asking their own Space: not there to download; an upload must bring the bytes, even though the store has them.
    answer = batch(platform, "stranger/mine", "download", oid, len(content), token).json()["objects"][0]
    assert answer["error"]["code"] == 404 and "actions" not in answer
    answer = batch(platform, "stranger/mine", "upload", oid, len(content), token).json()["objects"][0]
    href = answer["actions"]["upload"]["href"]
    assert httpx.put(href, content=os.urandom(len(content))).status_code == 400  # wrong bytes: not linked
    assert httpx.post(answer["actions"]["verify"]["href"], json={"oid": oid, "size": len(content)}).status_code == 404
    assert batch(platform, "stranger/mine", "download", oid, len(content), token).json()["objects"][0].get("error")

    # Pushing a pointer to it: refused by the pre-receive hook.
    url = platform.url.replace("http://", f"http://stranger:{token}@") + "/spaces/stranger/mine"
    repo = tmp_path / "mine"
    git("clone", "-q", url, str(repo))
    (repo / "stolen.bin").write_bytes(pointer.encode(oid, len(content)))
    git("add", "stolen.bin", cwd=repo)  # git-lfs keeps a file that already is a pointer as it is
    git("commit", "-q", "-m", "steal", cwd=repo)
    out = git("push", "--no-verify", "origin", "HEAD:main", cwd=repo, check=False)
    assert out.returncode != 0 and "remote: Push refused: stolen.bin" in out.stderr, out.stderr

    # Committing one through the Hub API: refused as well.
    line = {"key": "lfsFile", "value": {"path": "stolen.bin", "algo": "sha256", "oid": oid, "size": len(content)}}
    resp = httpx.post(
        f"{platform.url}/api/spaces/stranger/mine/commit/main",
        content=json.dumps(line) + "\n",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
    )
    assert resp.status_code == 422 and resp.headers["X-Error-Code"] == "LfsObjectMissing"
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {token}"}) as api:
        assert api.get("/spaces/stranger/mine/resolve/main/stolen.bin").status_code == 404


def test_a_read_token_cannot_upload_and_a_stranger_cannot_upload_to_others(platform):
    create(platform, "vault", "public", sdk="static")
    issue = (
        "from controlplane.core.config import Settings; from controlplane.core.db import Database;"
        "from controlplane.models import User; from controlplane.users import issue_token;"
        "from sqlalchemy import select\n"
        "with Database(Settings()).session() as s:\n"
        "    print(issue_token(s, s.scalar(select(User).where(User.name == 'vault')), 'ci', role='read'))"
    )
    env = {**os.environ, **platform.env}
    reader = subprocess.run([sys.executable, "-c", issue], env=env, capture_output=True, text=True, check=True)
    content = os.urandom(1000)
    oid = hashlib.sha256(content).hexdigest()
    refused = batch(platform, "vault/public", "upload", oid, len(content), reader.stdout.strip())
    assert refused.status_code == 403 and "read role" in refused.json()["message"]
    stranger = batch(platform, "vault/public", "upload", oid, len(content), platform.user("stranger"))
    assert stranger.status_code == 403 and "write access" in stranger.json()["message"]
    assert batch(platform, "vault/public", "upload", oid, len(content), None).status_code == 401
