"""The unchanged `huggingface_hub` client against a real platform: upload, download, manage Spaces; git sees it all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.conftest import git
from tests.e2e.spaces import GRADIO_APP, readme

pytestmark = pytest.mark.docker
FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR", "CONFIG_ERROR", "NO_APP_FILE"}
MAX_FILE_BYTES = 50 * 1024 * 1024  # SPACEYARD_MAX_FILE_BYTES' default, which the shared platform uses


def hub(platform, user: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=platform.user(user))


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for path, content in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    return root


def builds_of(platform, space: str) -> list[str]:
    """Commits built for a Space, oldest first (read from the platform's SQLite database)."""
    owner, name = space.split("/")
    engine = sqlalchemy.create_engine(f"sqlite:///{platform.data_dir / 'spaceyard.db'}")
    query = sqlalchemy.text(
        "SELECT b.commit_sha FROM builds b JOIN spaces s ON s.id = b.space_id "
        "WHERE s.owner = :o AND s.name = :n ORDER BY b.id"
    )
    with engine.connect() as conn:
        return [row[0] for row in conn.execute(query, {"o": owner, "n": name})]


def wait_deployed(platform, space: str, commit: str) -> dict:
    """The final runtime once `commit` was built (API commits start their build about a second later)."""
    deadline = time.monotonic() + 30
    while builds_of(platform, space)[-1:] != [commit]:
        assert time.monotonic() < deadline, f"no build of {commit} for {space}: {builds_of(platform, space)}"
        time.sleep(0.3)
    return platform.wait_stage(space, FINAL)


def test_upload_folder_deploys_and_gradio_client_finds_the_space_by_id(platform, tmp_path):
    api = hub(platform, "hubber")
    url = api.create_repo("hubber/demo", repo_type="space", space_sdk="gradio")
    assert url == f"{platform.url}/spaces/hubber/demo"
    assert api.create_repo("hubber/demo", repo_type="space", space_sdk="gradio", exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("hubber/demo", repo_type="space", space_sdk="gradio")
    assert err.value.response.status_code == 409

    folder = write_tree(tmp_path / "app", {"app.py": GRADIO_APP.encode(), "README.md": readme("gradio").encode()})
    info = api.upload_folder(repo_id="hubber/demo", repo_type="space", folder_path=folder, commit_message="Deploy")
    runtime = wait_deployed(platform, "hubber/demo", info.oid)
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")

    space = api.space_info("hubber/demo")
    assert space.sha == info.oid and space.host == f"{platform.url}/apps/hubber/demo/"
    assert {s.rfilename for s in space.siblings} >= {"app.py", "README.md", ".gitattributes"}
    assert space.card_data.sdk == "gradio"

    # gradio_client resolves "owner/name" through huggingface_hub.space_info, whose endpoint is read from
    # HF_ENDPOINT when huggingface_hub is imported: hence a fresh interpreter.
    script = (
        "from gradio_client import Client\n"
        "client = Client('hubber/demo', verbose=False, analytics_enabled=False)\n"
        "print(client.predict('World', api_name='/greet'))\n"
    )
    env = {
        **os.environ,
        "HF_ENDPOINT": platform.url,
        "HF_TOKEN": platform.user("hubber"),
        "HF_HOME": str(tmp_path / "hf"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "Hello World!"


def test_commits_downloads_and_git_share_one_history(platform, tmp_path):
    api = hub(platform, "hubber")
    api.create_repo("hubber/files", repo_type="space", space_sdk="static")
    blob = os.urandom(300_000)
    files = {
        "README.md": readme("static").encode(),
        "data/a.txt": b"alpha\n",
        "data/blob.bin": blob,
        "docs/guide.md": b"# guide\n",
        "docs/deep/more.md": b"more\n",
    }
    first = api.upload_folder(repo_id="hubber/files", repo_type="space", folder_path=write_tree(tmp_path / "up", files))
    single = api.upload_file(
        path_or_fileobj=b"<h1>hi</h1>\n", path_in_repo="index.html", repo_id="hubber/files", repo_type="space"
    )
    assert single.oid != first.oid and single.commit_url.endswith(f"/spaces/hubber/files/commit/{single.oid}")

    several = api.create_commit(
        repo_id="hubber/files",
        repo_type="space",
        operations=[
            CommitOperationAdd(path_in_repo="new/one.txt", path_or_fileobj=b"one\n"),
            CommitOperationDelete(path_in_repo="data/a.txt"),
            CommitOperationDelete(path_in_repo="docs/", is_folder=True),
        ],
        commit_message="Several operations",
        commit_description="add, delete a file, delete a folder",
        parent_commit=single.oid,
    )
    expected = {
        ".gitattributes": None,
        "README.md": files["README.md"],
        "data/blob.bin": blob,
        "index.html": b"<h1>hi</h1>\n",
        "new/one.txt": b"one\n",
    }
    tree = list(api.list_repo_tree("hubber/files", repo_type="space", recursive=True))
    assert {e.path for e in tree} == set(expected) | {"data", "new"}
    sizes = {e.path: e.size for e in tree if hasattr(e, "size")}
    assert sizes["data/blob.bin"] == len(blob)
    assert {e.path for e in api.list_repo_tree("hubber/files", repo_type="space")} == {
        ".gitattributes",
        "README.md",
        "data",
        "index.html",
        "new",
    }
    assert [e.path for e in api.list_repo_tree("hubber/files", path_in_repo="new", repo_type="space")] == [
        "new/one.txt"
    ]

    cache = tmp_path / "cache"
    got = hf_hub_download(
        "hubber/files",
        "data/blob.bin",
        repo_type="space",
        endpoint=platform.url,
        token=platform.user("hubber"),
        cache_dir=cache,
    )
    assert Path(got).read_bytes() == blob
    snap = Path(
        snapshot_download(
            "hubber/files", repo_type="space", endpoint=platform.url, token=platform.user("hubber"), cache_dir=cache
        )
    )
    for path, content in expected.items():
        if content is not None:
            assert (snap / path).read_bytes() == content, path
    assert not (snap / "docs").exists() and not (snap / "data/a.txt").exists()

    with pytest.raises(EntryNotFoundError):
        hf_hub_download(
            "hubber/files",
            "docs/guide.md",
            repo_type="space",
            endpoint=platform.url,
            token=platform.user("hubber"),
            cache_dir=cache,
        )
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(
            "hubber/files",
            "README.md",
            repo_type="space",
            revision="no-such-branch",
            endpoint=platform.url,
            token=platform.user("hubber"),
            cache_dir=cache,
        )

    # A stale parent is refused: nothing is written.
    with pytest.raises(HfHubHTTPError) as err:
        api.upload_file(
            path_or_fileobj=b"late",
            path_in_repo="late.txt",
            repo_id="hubber/files",
            repo_type="space",
            parent_commit=single.oid,
        )
    assert err.value.response.status_code == 412 and "not the head" in str(err.value)

    api.delete_file("new/one.txt", repo_id="hubber/files", repo_type="space")
    with pytest.raises(EntryNotFoundError):
        api.delete_file("new/one.txt", repo_id="hubber/files", repo_type="space")

    token = platform.user("hubber")
    clone = tmp_path / "clone"
    git("clone", "-q", platform.url.replace("http://", f"http://hubber:{token}@") + "/spaces/hubber/files", str(clone))
    log = git("log", "--format=%H %an %s", cwd=clone).stdout.splitlines()
    assert log[1] == f"{several.oid} hubber Several operations"
    assert "add, delete a file, delete a folder" in git("log", "-1", "--format=%b", several.oid, cwd=clone).stdout
    assert (clone / "data/blob.bin").read_bytes() == blob and not (clone / "new").exists()
    assert not (clone / "late.txt").exists()

    # A git push and an API commit build on each other.
    (clone / "pushed.txt").write_text("from git\n")
    git("add", "pushed.txt", cwd=clone)
    git("commit", "-q", "-m", "from git", cwd=clone)
    git("push", "-q", "origin", "HEAD:main", cwd=clone)
    after = api.upload_file(path_or_fileobj=b"api\n", path_in_repo="api.txt", repo_id="hubber/files", repo_type="space")
    assert {"pushed.txt", "api.txt"} <= set(api.list_repo_files("hubber/files", repo_type="space"))
    assert api.space_info("hubber/files").sha == after.oid


def test_a_burst_of_commits_builds_once_for_the_last(platform):
    api = hub(platform, "hubber")
    api.create_repo("hubber/burst", repo_type="space", space_sdk="static")
    before = builds_of(platform, "hubber/burst")
    last = None
    for i in range(4):
        last = api.upload_file(
            path_or_fileobj=f"<p>{i}</p>".encode(), path_in_repo="index.html", repo_id="hubber/burst", repo_type="space"
        )
    runtime = wait_deployed(platform, "hubber/burst", last.oid)
    assert runtime["stage"] == "RUNNING", (runtime.get("errorMessage"), platform.log_tail())
    assert builds_of(platform, "hubber/burst")[len(before) :] == [last.oid]
    assert httpx.get(f"{platform.url}/apps/hubber/burst/", timeout=30).text == "<p>3</p>"


def test_limits_and_bad_uploads_are_refused_before_writing(platform, tmp_path):
    api = hub(platform, "hubber")
    api.create_repo("hubber/limits", repo_type="space", space_sdk="static")
    head = api.space_info("hubber/limits").sha

    # Preupload: large files go to LFS ("lfs"), at the Hub's 10 MB for clients that negotiate the transfer (0.x), over
    # the regular-file limit for 1.x+ (which would take "lfs" to Xet storage); past the LFS object limit, 413.
    def modes(user_agent: str, *sizes: int) -> list[str]:
        files = [{"path": f"f{i}.bin", "size": size, "sample": ""} for i, size in enumerate(sizes)]
        with platform.api("hubber") as client:
            resp = client.post(
                "/api/spaces/hubber/limits/preupload/main", json={"files": files}, headers={"User-Agent": user_agent}
            )
        assert resp.status_code == 200, resp.text
        return [f["uploadMode"] for f in resp.json()["files"]]

    assert modes("unknown/None; hf_hub/0.36.2; python/3.11", 1000, 20_000_000) == ["regular", "lfs"]
    assert modes("unknown/None; hf_hub/2.4.0; python/3.11", 20_000_000, MAX_FILE_BYTES + 1) == ["regular", "lfs"]
    with platform.api("hubber") as client:
        resp = client.post(
            "/api/spaces/hubber/limits/preupload/main", json={"files": [{"path": "huge.bin", "size": 11 * 1024**3}]}
        )
    assert resp.status_code == 413 and "SPACEYARD_MAX_LFS_OBJECT_BYTES" in resp.json()["error"]

    # The commit call checks too, for clients that skip preupload.
    line = json.dumps(
        {
            "key": "file",
            "value": {"path": "big.bin", "encoding": "base64", "content": "A" * ((MAX_FILE_BYTES + 3) // 3 * 4)},
        }
    )
    body = json.dumps({"key": "header", "value": {"summary": "big"}}) + "\n" + line + "\n"
    with platform.api("hubber") as client:
        resp = client.post(
            "/api/spaces/hubber/limits/commit/main", content=body, headers={"Content-Type": "application/x-ndjson"}
        )
        assert resp.status_code == 413 and resp.headers["X-Error-Code"] == "FileTooLarge"
        assert str(MAX_FILE_BYTES) in resp.json()["error"]
        # An lfsFile whose object was never uploaded to this Space is refused: no pointer without its object.
        lfs = json.dumps({"key": "lfsFile", "value": {"path": "m.bin", "algo": "sha256", "oid": "0" * 64, "size": 5}})
        resp = client.post("/api/spaces/hubber/limits/commit/main", content=lfs + "\n")
        assert resp.status_code == 422 and resp.headers["X-Error-Code"] == "LfsObjectMissing", resp.text

    with pytest.raises(ValueError, match="colorFrom"):
        api.upload_file(
            path_or_fileobj=readme("static", colorFrom="chartreuse").encode(),
            path_in_repo="README.md",
            repo_id="hubber/limits",
            repo_type="space",
        )
    assert api.space_info("hubber/limits").sha == head


def test_private_spaces_missing_repos_and_listing(platform):
    owner = hub(platform, "hubber")
    owner.create_repo("hubber/hidden", repo_type="space", space_sdk="static", private=True)
    owner.upload_file(path_or_fileobj=b"secret", path_in_repo="s.txt", repo_id="hubber/hidden", repo_type="space")
    assert owner.space_info("hubber/hidden").private is True

    other = hub(platform, "snoop")
    for call in (
        lambda: other.space_info("hubber/hidden"),
        lambda: list(other.list_repo_tree("hubber/hidden", repo_type="space")),
        lambda: hf_hub_download(
            "hubber/hidden", "s.txt", repo_type="space", endpoint=platform.url, token=platform.user("snoop")
        ),
        lambda: other.upload_file(path_or_fileobj=b"x", path_in_repo="x", repo_id="hubber/hidden", repo_type="space"),
    ):
        with pytest.raises(RepositoryNotFoundError):
            call()
    assert "hubber/hidden" not in {s.id for s in other.list_spaces(author="hubber")}
    assert "hubber/hidden" in {s.id for s in owner.list_spaces(author="hubber")}

    owner.delete_repo("hubber/never", repo_type="space", missing_ok=True)
    with pytest.raises(RepositoryNotFoundError):
        owner.delete_repo("hubber/never", repo_type="space")
    owner.delete_repo("hubber/hidden", repo_type="space")
    with pytest.raises(RepositoryNotFoundError):
        owner.space_info("hubber/hidden")
