"""History and refs with the unchanged `huggingface_hub` client: commits, branches, tags, reads at a revision,
commits to a branch (which never deploys), paths-info and copies, expanded trees, files metadata, lastModified."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from datetime import datetime, timedelta

import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, HfApi, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RevisionNotFoundError

from tests.conftest import git
from tests.e2e.spaces import readme
from tests.hub import test_old_client
from tests.hub.test_hub_client import FINAL, builds_of, wait_deployed, write_tree
from tests.hub.test_lfs import clone, commit_file

old_python = test_old_client.old_python  # the fixture with huggingface_hub 0.x in its own venv
pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed (scripts/setup.sh)"),
]


def hub(platform, user: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=platform.user(user))


def download(platform, space: str, path: str, revision: str, tmp_path) -> bytes:
    got = hf_hub_download(
        space,
        path,
        repo_type="space",
        revision=revision,
        endpoint=platform.url,
        token=platform.user(space.split("/")[0]),
        cache_dir=tmp_path / f"cache-{time.monotonic_ns()}",
    )
    with open(got, "rb") as f:
        return f.read()


@pytest.fixture(scope="module")
def deployed(platform, tmp_path_factory) -> tuple[str, str]:
    """A static Space deployed from main: (its id, the deployed commit)."""
    api = hub(platform, "historian")
    api.create_repo("historian/site", repo_type="space", space_sdk="static")
    folder = write_tree(
        tmp_path_factory.mktemp("site"),
        {"README.md": readme("static").encode(), "index.html": b"<p>main</p>\n", "docs/a.md": b"a\n"},
    )
    info = api.upload_folder(repo_id="historian/site", repo_type="space", folder_path=folder, commit_message="Site")
    runtime = wait_deployed(platform, "historian/site", info.oid)
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")
    return "historian/site", info.oid


def test_branches_and_tags_are_created_listed_read_and_deleted(platform, deployed, tmp_path):
    space, main_sha = deployed
    api = hub(platform, "historian")
    refs = api.list_repo_refs(space, repo_type="space")
    assert [(b.name, b.ref, b.target_commit) for b in refs.branches] == [("main", "refs/heads/main", main_sha)]
    assert refs.tags == [] and refs.converts == []
    assert api.list_repo_refs(space, repo_type="space", include_pull_requests=True).pull_requests == []

    api.create_branch(space, repo_type="space", branch="dev")
    api.create_branch(space, repo_type="space", branch="dev", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_branch(space, repo_type="space", branch="dev")
    assert err.value.response.status_code == 409

    # A commit to dev: readable at dev, main unchanged, and no build (only main deploys).
    builds_before = builds_of(platform, space)
    dev = api.create_commit(
        space,
        repo_type="space",
        revision="dev",
        commit_message="Try a page",
        commit_description="only on dev",
        operations=[CommitOperationAdd(path_in_repo="index.html", path_or_fileobj=b"<p>dev</p>\n")],
    )
    assert download(platform, space, "index.html", "dev", tmp_path) == b"<p>dev</p>\n"
    assert download(platform, space, "index.html", "main", tmp_path) == b"<p>main</p>\n"
    assert api.space_info(space, revision="dev").sha == dev.oid
    assert api.space_info(space).sha == main_sha
    head = api.list_repo_commits(space, repo_type="space", revision="dev")[0]
    assert (head.commit_id, head.title, head.message, head.authors) == (
        dev.oid,
        "Try a page",
        "only on dev",
        ["historian"],
    )
    time.sleep(3)  # past the API commits' build delay
    assert builds_of(platform, space) == builds_before
    assert platform.wait_stage(space, FINAL)["stage"] == "RUNNING"

    # A tag with a message on main's first commit; a branch started from the tag.
    api.create_tag(space, repo_type="space", tag="v1", revision=main_sha, tag_message="first site")
    api.create_tag(space, repo_type="space", tag="v1", exist_ok=True)
    with pytest.raises(HfHubHTTPError) as err:
        api.create_tag(space, repo_type="space", tag="v1")
    assert err.value.response.status_code == 409
    api.create_branch(space, repo_type="space", branch="feature/from-tag", revision="v1")
    refs = api.list_repo_refs(space, repo_type="space")
    assert {(b.name, b.target_commit) for b in refs.branches} == {
        ("main", main_sha),
        ("dev", dev.oid),
        ("feature/from-tag", main_sha),
    }
    assert [(t.name, t.ref, t.target_commit) for t in refs.tags] == [("v1", "refs/tags/v1", main_sha)]
    # Reads at the tag and at a branch whose name has a slash (the client sends it as %2F).
    assert download(platform, space, "index.html", "v1", tmp_path) == b"<p>main</p>\n"
    assert download(platform, space, "docs/a.md", "feature/from-tag", tmp_path) == b"a\n"
    assert [f.path for f in api.list_repo_tree(space, "docs", repo_type="space", revision="feature/from-tag")] == [
        "docs/a.md"
    ]
    assert api.space_info(space, revision="v1").sha == main_sha
    assert api.file_exists(space, "index.html", repo_type="space", revision="v1")

    # git sees the same refs.
    remote = platform.url.replace("http://", f"http://historian:{platform.user('historian')}@") + f"/spaces/{space}"
    listed = git("ls-remote", remote).stdout
    assert f"{dev.oid}\trefs/heads/dev" in listed and "refs/tags/v1" in listed

    with pytest.raises(HfHubHTTPError) as err:
        api.delete_branch(space, repo_type="space", branch="main")
    assert err.value.response.status_code == 403
    api.delete_tag(space, repo_type="space", tag="v1")
    api.delete_branch(space, repo_type="space", branch="dev")
    api.delete_branch(space, repo_type="space", branch="feature/from-tag")
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree(space, repo_type="space", revision="dev"))
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(space, repo_type="space", tag="v1")
    with pytest.raises(RevisionNotFoundError):
        api.create_commit(
            space,
            repo_type="space",
            revision="dev",
            commit_message="gone",
            operations=[CommitOperationAdd(path_in_repo="x.txt", path_or_fileobj=b"x")],
        )
    assert [b.name for b in api.list_repo_refs(space, repo_type="space").branches] == ["main"]


def test_commits_are_listed_newest_first_across_pages(platform, deployed, tmp_path):
    space, main_sha = deployed
    api = hub(platform, "historian")
    # 60 commits pushed to a branch with git (a branch: no builds).
    repo = clone(platform, "historian", "site", tmp_path / "clone")
    for i in range(60):
        git("commit", "-q", "--allow-empty", "-m", f"step {i}", "-m", f"body {i}", cwd=repo)
    git("push", "-q", "origin", "HEAD:refs/heads/long", cwd=repo)
    commits = api.list_repo_commits(space, repo_type="space", revision="long")
    assert len(commits) == 60 + len(api.list_repo_commits(space, repo_type="space"))
    assert [c.title for c in commits[:3]] == ["step 59", "step 58", "step 57"]
    assert commits[0].message == "body 59" and commits[0].authors == ["Test"]
    assert commits[60].commit_id == main_sha
    assert all(a.created_at >= b.created_at for a, b in zip(commits, commits[1:], strict=False))
    formatted = api.list_repo_commits(space, repo_type="space", revision="long", formatted=True)[0]
    assert formatted.formatted_title == "step 59"
    api.delete_branch(space, repo_type="space", branch="long")


def test_paths_info_copies_expanded_tree_and_files_metadata(platform, tmp_path):
    api = hub(platform, "historian")
    api.create_repo("historian/files", repo_type="space", space_sdk="static")
    repo = clone(platform, "historian", "files", tmp_path / "clone")
    weights = os.urandom(300_000)
    commit_file(repo, "model.bin", weights)  # *.bin is in Git LFS (the Hub's .gitattributes)
    commit_file(repo, "docs/guide.md", b"# guide\n")
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    last = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    first_lfs = git("log", "-1", "--format=%H", "--", "model.bin", cwd=repo).stdout.strip()

    infos = api.get_paths_info("historian/files", ["model.bin", "docs", "missing.txt", "README.md"], repo_type="space")
    by_path = {i.path: i for i in infos}
    assert set(by_path) == {"model.bin", "docs", "README.md"}  # a missing path is left out
    assert by_path["model.bin"].size == len(weights) and by_path["model.bin"].lfs.size == len(weights)
    assert by_path["docs"].tree_id and by_path["docs"].last_commit is None
    expanded = api.get_paths_info("historian/files", ["model.bin"], repo_type="space", expand=True)[0]
    assert expanded.last_commit.oid == first_lfs and expanded.last_commit.title == "add model.bin"

    copied = api.create_commit(
        "historian/files",
        repo_type="space",
        commit_message="Copies",
        operations=[
            CommitOperationCopy(src_path_in_repo="docs/guide.md", path_in_repo="docs/copy.md"),
            CommitOperationCopy(src_path_in_repo="model.bin", path_in_repo="backup/model.bin"),
        ],
    )
    assert download(platform, "historian/files", "docs/copy.md", "main", tmp_path) == b"# guide\n"
    assert download(platform, "historian/files", "backup/model.bin", "main", tmp_path) == weights

    tree = {e.path: e for e in api.list_repo_tree("historian/files", repo_type="space", expand=True)}
    assert tree["backup"].last_commit.oid == copied.oid and tree["backup"].last_commit.title == "Copies"
    assert tree["docs"].last_commit.oid == copied.oid
    assert tree["model.bin"].last_commit.oid == first_lfs and tree["model.bin"].lfs.sha256
    assert tree["README.md"].last_commit.oid not in (last, copied.oid)
    assert abs(tree["model.bin"].last_commit.date - datetime.now(tree["model.bin"].last_commit.date.tzinfo)) < (
        timedelta(minutes=10)
    )
    recursive = list(api.list_repo_tree("historian/files", repo_type="space", recursive=True, expand=True))
    assert {e.path for e in recursive if e.last_commit is None} == set()

    info = api.space_info("historian/files", files_metadata=True)
    siblings = {s.rfilename: s for s in info.siblings}
    assert siblings["backup/model.bin"].size == len(weights) and siblings["backup/model.bin"].lfs.size == len(weights)
    assert siblings["backup/model.bin"].lfs.sha256 == tree["model.bin"].lfs.sha256
    assert siblings["docs/copy.md"].size == 8
    assert siblings["docs/copy.md"].blob_id == siblings["docs/guide.md"].blob_id
    assert api.space_info("historian/files").siblings[0].size is None  # only when asked for


def test_last_modified_is_main_last_commit_not_a_stage_change(platform, deployed, tmp_path):
    space, main_sha = deployed
    api = hub(platform, "historian")
    before = api.space_info(space).last_modified
    assert before == api.list_repo_commits(space, repo_type="space")[0].created_at
    api.restart_space(space)
    platform.wait_stage(space, FINAL)
    assert api.space_info(space).last_modified == before
    api.create_branch(space, repo_type="space", branch="side", exist_ok=True)
    api.upload_file(path_or_fileobj=b"side", path_in_repo="side.txt", repo_id=space, repo_type="space", revision="side")
    assert api.space_info(space).last_modified == before
    time.sleep(1)  # commit dates have whole seconds
    moved = api.upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id=space, repo_type="space")
    after = api.space_info(space).last_modified
    assert after > before and after == api.list_repo_commits(space, repo_type="space")[0].created_at
    assert [s.last_modified for s in api.list_spaces(author="historian") if s.id == space] == [after]
    wait_deployed(platform, space, moved.oid)
    api.delete_branch(space, repo_type="space", branch="side")


OLD_CLIENT = """
import os, tempfile
from pathlib import Path
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, HfApi, hf_hub_download
from huggingface_hub.utils import RevisionNotFoundError

endpoint, token = os.environ["ENDPOINT"], os.environ["TOKEN"]
api = HfApi(endpoint=endpoint, token=token)
space = "oldhist/site"
api.create_repo(space, repo_type="space", space_sdk="static")
big = os.urandom(12_000_000)  # over the 10 MB threshold: 0.x uploads it through the LFS batch API
main = api.create_commit(space, repo_type="space", commit_message="weights", operations=[
    CommitOperationAdd(path_in_repo="weights.bin", path_or_fileobj=big),
    CommitOperationAdd(path_in_repo="index.html", path_or_fileobj=b"<p>old</p>"),
])

def get(path, revision):
    return Path(hf_hub_download(space, path, repo_type="space", revision=revision, endpoint=endpoint, token=token,
                                cache_dir=tempfile.mkdtemp())).read_bytes()

api.create_branch(space, repo_type="space", branch="dev")
api.create_branch(space, repo_type="space", branch="dev", exist_ok=True)
dev = api.create_commit(space, repo_type="space", revision="dev", commit_message="dev page",
                        operations=[CommitOperationAdd(path_in_repo="index.html", path_or_fileobj=b"<p>dev</p>")])
assert get("index.html", "dev") == b"<p>dev</p>" and get("index.html", "main") == b"<p>old</p>"
assert [c.commit_id for c in api.list_repo_commits(space, repo_type="space", revision="dev")][:2] == [dev.oid, main.oid]
api.create_tag(space, repo_type="space", tag="v1", revision=main.oid, tag_message="first")
refs = api.list_repo_refs(space, repo_type="space")
assert {b.name for b in refs.branches} == {"main", "dev"} and [t.target_commit for t in refs.tags] == [main.oid]
assert get("index.html", "v1") == b"<p>old</p>"

# paths-info as 0.x sends it (requests, form-encoded, expand=False/True), and copies that need it.
infos = {i.path: i for i in api.get_paths_info(space, ["weights.bin", "index.html", "nope"], repo_type="space")}
assert set(infos) == {"weights.bin", "index.html"} and infos["weights.bin"].lfs.size == len(big)
assert api.get_paths_info(space, ["index.html"], repo_type="space", expand=True)[0].last_commit.oid == main.oid
copied = api.create_commit(space, repo_type="space", commit_message="copies", operations=[
    CommitOperationCopy(src_path_in_repo="weights.bin", path_in_repo="backup/weights.bin"),
    CommitOperationCopy(src_path_in_repo="index.html", path_in_repo="old.html", src_revision="v1"),
])
assert get("backup/weights.bin", "main") == big and get("old.html", "main") == b"<p>old</p>"
tree = {e.path: e for e in api.list_repo_tree(space, repo_type="space", expand=True)}
assert tree["backup"].last_commit.oid == copied.oid and tree["weights.bin"].last_commit.oid == main.oid
siblings = {s.rfilename: s for s in api.space_info(space, files_metadata=True).siblings}
assert siblings["backup/weights.bin"].lfs.size == len(big) and siblings["old.html"].size == len(b"<p>old</p>")
api.delete_tag(space, repo_type="space", tag="v1")
api.delete_branch(space, repo_type="space", branch="dev")
try:
    get("index.html", "dev")
    raise AssertionError("a deleted branch still reads")
except RevisionNotFoundError:
    pass
print("ok")
"""


def test_huggingface_hub_0x_history_refs_and_copies(platform, old_python, tmp_path):
    env = {
        **os.environ,
        "ENDPOINT": platform.url,
        "HF_ENDPOINT": platform.url,  # 0.x parses commitUrl against it (test_old_client.py)
        "TOKEN": platform.user("oldhist"),
        "HF_HOME": str(tmp_path),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run([str(old_python), "-c", OLD_CLIENT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
