"""`list_spaces(sort="last_modified")` orders by main's last commit, the date `space_info().last_modified` shows:
builds and stage changes (a pause, a sleep) leave a Space where its last commit put it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from huggingface_hub import HfApi

from tests.conftest import git

pytestmark = pytest.mark.docker


def push_file(platform, space: str, user: str, path: str, content: str, workdir: Path) -> None:
    token = platform.user(user)
    url = platform.url.replace("http://", f"http://{user}:{token}@") + f"/spaces/{space}"
    git("clone", "-q", url, str(workdir))
    (workdir / path).write_text(content)
    git("add", "-A", cwd=workdir)
    git("commit", "-q", "-m", f"add {path}", cwd=workdir)
    git("push", "-q", "origin", "HEAD:main", cwd=workdir)


def test_last_modified_sort_follows_commits_not_stage_changes(platform, tmp_path):
    api, anon = HfApi(endpoint=platform.url, token=platform.user("sorter")), HfApi(endpoint=platform.url, token=False)
    for name in ("first", "second", "third"):
        api.create_repo(f"sorter/{name}", repo_type="space", space_sdk="static")

    def listed() -> list[str]:
        return [s.id for s in anon.list_spaces(author="sorter", sort="last_modified")]

    def ascending() -> list[str]:
        # huggingface_hub 2.x sends no `direction` (0.x does: tests/hub/test_old_clients_fresh_state.py); the Hub's
        # API takes direction=1 for ascending.
        params = {"author": "sorter", "sort": "lastModified", "direction": 1}
        return [s["id"] for s in httpx.get(f"{platform.url}/api/spaces", params=params).json()]

    # Created first..third: newest first by creation (each one's initial commit).
    assert listed() == ["sorter/third", "sorter/second", "sorter/first"]
    # Commits in another order, a second apart (git dates have one-second steps): an API commit, a git push, an
    # API commit. Each one is in the order at once, before its build starts.
    time.sleep(1.1)
    api.upload_file(path_or_fileobj=b"<p>3</p>", path_in_repo="index.html", repo_id="sorter/third", repo_type="space")
    assert listed()[0] == "sorter/third"
    time.sleep(1.1)
    push_file(platform, "sorter/first", "sorter", "index.html", "<p>1</p>", tmp_path / "first")
    assert listed()[0] == "sorter/first"
    time.sleep(1.1)
    api.upload_file(path_or_fileobj=b"<p>2</p>", path_in_repo="index.html", repo_id="sorter/second", repo_type="space")
    by_commit = ["sorter/second", "sorter/first", "sorter/third"]
    assert listed() == by_commit

    # Builds run and end, and the Space with the oldest commit changes stage last: it stays last.
    for name in ("third", "first", "second"):
        assert api.wait_for_space(f"sorter/{name}", timeout=300, poll_interval=0.5).stage == "RUNNING"
    api.pause_space("sorter/third")
    assert api.get_space_runtime("sorter/third").stage == "PAUSED"
    assert listed() == by_commit
    assert ascending() == by_commit[::-1]

    # The date each entry shows is the one space_info shows, and it is the commit's, not the pause's.
    entries = {s.id: s.last_modified for s in anon.list_spaces(author="sorter", sort="last_modified")}
    for space in by_commit:
        assert entries[space] == anon.space_info(space).last_modified, space
    third_commit = api.list_repo_commits("sorter/third", repo_type="space")[0].created_at
    assert entries["sorter/third"] == third_commit
