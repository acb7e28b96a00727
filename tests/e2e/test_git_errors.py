"""Git failures are errors, not 404s: only a missing repo or revision is "not found"."""

from __future__ import annotations

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from controlplane.core.config import Settings
from controlplane.repos import RepoError, Repos
from tests.e2e.spaces import create


def test_head_is_none_only_for_a_missing_repo_or_revision(tmp_path):
    repos = Repos(tmp_path / "repos")
    assert repos.head("ann", "absent") is None
    repos.create("ann", "demo")
    assert repos.head("ann", "demo") is None  # no commit yet
    sha = repos.commit("ann", "demo", {"a.txt": b"a"}, "first")
    assert repos.head("ann", "demo") == sha
    assert repos.head("ann", "demo", "no-such-branch") is None
    (repos.path("ann", "demo") / "HEAD").unlink()  # a broken repo: git refuses it
    with pytest.raises(RepoError) as failed:
        repos.head("ann", "demo")
    assert failed.value.returncode == 128 and "not a git repository" in str(failed.value)


@pytest.mark.docker
def test_a_broken_repo_answers_500_with_a_message_not_404(platform):
    create(platform, "gita", "broken", sdk="static")
    repo = Settings(data_dir=platform.data_dir).repos_dir / "gita" / "broken.git"
    (repo / "HEAD").rename(repo / "HEAD.saved")
    try:
        with platform.api("gita") as api:
            resp = api.get("/api/spaces/gita/broken/tree/main")
            assert resp.status_code == 500, resp.text
            assert "git failed" in resp.json()["error"]
        hub = HfApi(endpoint=platform.url, token=platform.user("gita"))
        with pytest.raises(HfHubHTTPError) as failed:
            hub.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="gita/broken", repo_type="space")
        assert failed.value.response.status_code == 500
        assert "git failed" in failed.value.response.json()["error"]
    finally:
        (repo / "HEAD.saved").rename(repo / "HEAD")
    with platform.api("gita") as api:
        assert api.get("/api/spaces/gita/broken/tree/main").status_code == 200
