"""Revisions and ref names an attacker sends: never an option or a revision expression to git, never a ref outside
refs/heads and refs/tags; branches and tags are changed only by the Space's owner with a write token; private
Spaces' history is hidden; a broken repo is a 500 with a message, not a "not found"."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.e2e.spaces import create, push, readme
from tests.security.web_app import make_web

pytestmark = pytest.mark.docker
MARKER = Path("/tmp/spaceyard-revision-pwned")
HOSTILE = [
    f"--upload-pack=touch {MARKER}",
    f"--output={MARKER}",
    "--all",
    "../../../etc/passwd",
    "..",
    "HEAD",
    "HEAD@{0}",
    "main@{1}",
    "main~1",
    "main^",
    "@",
    "refs/remotes/origin/main",
    "refs/heads/../heads/main",
    "x" * 10_000,
]


@pytest.fixture(scope="module")
def space(platform, tmp_path_factory) -> tuple[str, str]:
    """revver/site with one commit on main, a ref outside heads and tags (refs/remotes/origin/main) and a note."""
    create(platform, "revver", "site", sdk="static")
    sha = push(
        platform, "revver", "site", {"README.md": readme("static"), "index.html": "hi"}, tmp_path_factory.mktemp("r")
    )
    repo = platform.data_dir / "repos" / "revver" / "site.git"
    subprocess.run(["git", "update-ref", "refs/remotes/origin/main", sha], cwd=repo, check=True)
    return "revver/site", sha


def reads(space: str, rev: str) -> list[tuple[str, str]]:
    r = quote(rev, safe="").replace(".", "%2E")  # or the HTTP client resolves `..` before sending
    return [
        ("GET", f"/api/spaces/{space}/tree/{r}"),
        ("GET", f"/api/spaces/{space}/tree/{r}/docs"),
        ("GET", f"/spaces/{space}/resolve/{r}/index.html"),
        ("HEAD", f"/spaces/{space}/resolve/{r}/index.html"),
        ("GET", f"/api/spaces/{space}/commits/{r}"),
        ("GET", f"/api/spaces/{space}/revision/{r}"),
        ("POST", f"/api/spaces/{space}/paths-info/{r}"),
    ]


@pytest.mark.parametrize("rev", HOSTILE, ids=lambda r: r[:30])
def test_hostile_revisions_are_not_found_on_every_read(platform, space, rev):
    owner_space, _ = space
    with platform.api("revver") as api:
        for method, url in reads(owner_space, rev):
            resp = api.request(method, url, data={"paths": ["index.html"]} if method == "POST" else None)
            assert resp.status_code == 404, (method, url[:120], resp.status_code, resp.text[:300])
            assert resp.headers.get("x-error-code") == "RevisionNotFound", (method, url[:120])
    assert not MARKER.exists()


def test_refs_outside_heads_and_tags_and_short_shas_are_not_revisions(platform, space):
    owner_space, sha = space
    with platform.api("revver") as api:
        refs = api.get(f"/api/spaces/{owner_space}/refs").json()
        assert [b["ref"] for b in refs["branches"]] == ["refs/heads/main"] and refs["tags"] == []
        assert api.get(f"/api/spaces/{owner_space}/tree/{sha}").status_code == 200  # a full sha reads
        assert api.get(f"/api/spaces/{owner_space}/tree/{sha[:7]}").status_code == 404
        assert api.get(f"/api/spaces/{owner_space}/tree/{'0' * 40}").status_code == 404


@pytest.mark.parametrize(
    "name",
    [
        "--upload-pack=x",
        "-b",
        "../x",
        "a/../b",
        "HEAD",
        "x@{1}",
        "a..b",
        "a b",
        "x.lock",
        "refs/heads/x",
        "a:b",
        "a~1",
        "a^",
        "a\\b",
        "a*",
        "x" * 10_000,
    ],
)
def test_bad_branch_and_tag_names_are_refused(platform, space, name):
    owner_space, _ = space
    with platform.api("revver") as api:
        resp = api.post(f"/api/spaces/{owner_space}/branch/{quote(name, safe='')}", json={})
        assert resp.status_code in (400, 404), (name[:40], resp.status_code, resp.text[:200])
        resp = api.post(f"/api/spaces/{owner_space}/tag/main", json={"tag": name})
        assert resp.status_code == 400, (name[:40], resp.status_code, resp.text[:200])
        names = [
            r["name"] for kind in ("branches", "tags") for r in api.get(f"/api/spaces/{owner_space}/refs").json()[kind]
        ]
    assert names == ["main"]


def test_hostile_starting_points_and_deletions_are_not_found(platform, space):
    owner_space, _ = space
    with platform.api("revver") as api:
        for rev in ("--orphan", f"--upload-pack=touch {MARKER}", "HEAD@{0}", "refs/remotes/origin/main"):
            resp = api.post(f"/api/spaces/{owner_space}/branch/ok", json={"startingPoint": rev})
            assert resp.status_code == 404 and resp.headers["x-error-code"] == "RevisionNotFound", resp.text
            resp = api.post(f"/api/spaces/{owner_space}/tag/{quote(rev, safe='')}", json={"tag": "ok"})
            assert resp.status_code == 404, resp.text
        for path in ("branch/..%2Fheads%2Fmain", "branch/-d", "tag/..%2Fheads%2Fmain", "branch/origin%2Fmain"):
            assert api.delete(f"/api/spaces/{owner_space}/{path}").status_code == 404, path
        # refs/remotes/origin/main is not a branch: deleting "../remotes/origin/main" finds nothing either.
        assert api.delete(f"/api/spaces/{owner_space}/branch/..%2Fremotes%2Forigin%2Fmain").status_code == 404
    repo = platform.data_dir / "repos" / "revver" / "site.git"
    assert subprocess.run(["git", "rev-parse", "--verify", "-q", "refs/remotes/origin/main"], cwd=repo).returncode == 0
    assert not MARKER.exists()


def test_only_the_owner_changes_refs(platform, space):
    owner_space, _ = space
    platform.user("intruder")
    with platform.api("intruder") as other:
        assert other.post(f"/api/spaces/{owner_space}/branch/evil", json={}).status_code == 403
        assert other.post(f"/api/spaces/{owner_space}/tag/main", json={"tag": "evil"}).status_code == 403
        assert other.delete(f"/api/spaces/{owner_space}/branch/main").status_code == 403
        # A public Space's files are readable by anyone, paths-info included.
        resp = other.post(f"/api/spaces/{owner_space}/paths-info/main", data={"paths": ["index.html"]})
        assert resp.status_code == 200 and [e["path"] for e in resp.json()] == ["index.html"]
    with platform.api() as anonymous:
        assert anonymous.post(f"/api/spaces/{owner_space}/branch/evil", json={}).status_code == 401
    with platform.api("revver") as api:
        assert [r["name"] for r in api.get(f"/api/spaces/{owner_space}/refs").json()["branches"]] == ["main"]


def test_a_read_token_reads_paths_info_and_changes_no_ref(tmp_path):
    web = make_web(tmp_path)
    reader = web.api("alice", role="read")
    resp = reader.post("/api/spaces/alice/demo/paths-info/main", data={"paths": ["README.md"]})
    assert resp.status_code == 200 and [e["path"] for e in resp.json()] == ["README.md"]
    for method, url in [
        ("POST", "/api/spaces/alice/demo/branch/x"),
        ("DELETE", "/api/spaces/alice/demo/branch/x"),
        ("POST", "/api/spaces/alice/demo/tag/main"),
        ("DELETE", "/api/spaces/alice/demo/tag/v1"),
    ]:
        resp = reader.request(method, url, json={"tag": "v1"})
        assert resp.status_code == 403 and "'read' role" in resp.json()["error"], (method, url)


def test_private_history_is_hidden_from_others(platform, tmp_path):
    create(platform, "revver", "hidden", sdk="static", private=True)
    push(platform, "revver", "hidden", {"README.md": readme("static"), "index.html": "secret"}, tmp_path)
    with platform.api("revver") as owner:
        assert owner.get("/api/spaces/revver/hidden/refs").status_code == 200
        # The owner, who may see it, is told what the body lacks; others below only that there is no such Space.
        resp = owner.post("/api/spaces/revver/hidden/tag/main")
        assert resp.status_code == 400 and "tag" in resp.json()["error"]
    for user in ("intruder", None):
        with platform.api(user) as api:
            for method, url in [
                ("GET", "/api/spaces/revver/hidden/refs"),
                ("GET", "/api/spaces/revver/hidden/commits/main"),
                ("POST", "/api/spaces/revver/hidden/paths-info/main"),
                ("GET", "/api/spaces/revver/hidden/tree/main?expand=true"),
                ("POST", "/api/spaces/revver/hidden/branch/x"),
                ("POST", "/api/spaces/revver/hidden/tag/main"),
            ]:
                resp = api.request(method, url, data={"paths": ["index.html"]} if "paths-info" in url else None)
                assert resp.status_code in ((404,) if user else (401, 404)), (user, url, resp.status_code)
                assert "secret" not in resp.text and "index.html" not in resp.text


def test_a_broken_repo_is_an_error_not_a_missing_revision(platform, tmp_path):
    create(platform, "revver", "broken", sdk="static")
    push(platform, "revver", "broken", {"README.md": readme("static")}, tmp_path)
    repo = platform.data_dir / "repos" / "revver" / "broken.git"
    (repo / "packed-refs").write_text("this is not a packed-refs file\n")
    with platform.api("revver") as api:
        for method, url in [
            ("GET", "/api/spaces/revver/broken/refs"),
            ("GET", "/api/spaces/revver/broken/tree/main"),
            ("GET", "/api/spaces/revver/broken/commits/main"),
            ("POST", "/api/spaces/revver/broken/branch/x"),
        ]:
            resp = api.request(method, url, json={} if method == "POST" else None)
            assert resp.status_code == 500, (url, resp.status_code, resp.text[:200])
            assert "git failed on revver/broken" in resp.json()["error"]
            assert str(platform.data_dir) not in resp.text  # the server's paths stay in its log
    (repo / "packed-refs").unlink()
