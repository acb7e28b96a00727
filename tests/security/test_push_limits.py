"""Pushes over the limits are refused inside the git protocol, with a sentence naming the limit, and leave
nothing on disk; a read-only token cannot push.

Before: an oversize push was cut mid-stream (`bad band #35`, `remote end hung up`) and each try left a
tmp_pack_* behind; a repo could grow without bound; a read token pushed like a write token.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import git, launch
from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker

MIB = 1024 * 1024


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    env = {"SPACEYARD_MAX_PUSH_BYTES": str(MIB), "SPACEYARD_MAX_REPO_BYTES": str(3 * MIB // 2)}
    running = launch(tmp_path_factory.mktemp("limited"), extra_env=env)
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


def repo_state(platform, owner: str, name: str) -> tuple[int, list[str]]:
    """Bytes on disk of the Space's bare repo, and any leftovers of a push (quarantine dirs, tmp packs)."""
    repo = platform.data_dir / "repos" / owner / f"{name}.git"
    files = [f for f in repo.rglob("*") if f.is_file()]
    leftovers = [str(p) for p in repo.rglob("*") if p.name.startswith(("tmp_pack_", "tmp_idx_", "incoming-"))]
    return sum(f.stat().st_size for f in files), leftovers


def push_blob(platform, owner: str, name: str, size: int, workdir: Path) -> subprocess.CompletedProcess:
    """Commit `size` incompressible bytes and push them with the real git client (not quiet: we read its output)."""
    repo = workdir / f"{owner}-{name}"
    (repo / f"blob-{size}-{os.urandom(4).hex()}.dat").write_bytes(os.urandom(size))
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "blob", cwd=repo)
    return git("push", "origin", "HEAD:main", cwd=repo, check=False)


def test_push_over_the_push_limit_is_refused_cleanly(limited, tmp_path):
    create(limited, "pusher", "big", sdk="static")
    push(limited, "pusher", "big", {"README.md": readme("static"), "index.html": "<p>hi</p>\n"}, tmp_path)
    before, _ = repo_state(limited, "pusher", "big")

    out = push_blob(limited, "pusher", "big", 3 * MIB, tmp_path)
    assert out.returncode != 0
    # git's own refusal (receive.maxInputSize), naming the limit, relayed as a `remote:` line.
    assert "remote: fatal: pack exceeds maximum allowed size (1024.00 KiB)" in out.stderr, out.stderr
    assert "bad band" not in out.stderr and "hung up" not in out.stderr, out.stderr
    after, leftovers = repo_state(limited, "pusher", "big")
    assert leftovers == [] and after <= before, (before, after, leftovers)

    git("reset", "-q", "--hard", "HEAD~1", cwd=tmp_path / "pusher-big")
    push(limited, "pusher", "big", {"index.html": "<p>still pushable</p>\n"}, tmp_path)


def test_push_over_the_repo_quota_is_refused_cleanly(limited, tmp_path):
    create(limited, "pusher", "growing", sdk="static")
    push(limited, "pusher", "growing", {"README.md": readme("static"), "index.html": "<p>hi</p>\n"}, tmp_path)
    assert push_blob(limited, "pusher", "growing", 900_000, tmp_path).returncode == 0
    before, _ = repo_state(limited, "pusher", "growing")

    out = push_blob(limited, "pusher", "growing", 900_000, tmp_path)  # under the push limit, over the repo quota
    assert out.returncode != 0
    assert "remote: Push refused: this Space repository would grow to" in out.stderr, out.stderr
    assert f"over its limit of {3 * MIB // 2} bytes (1.50 MiB)" in out.stderr, out.stderr
    assert "pre-receive hook declined" in out.stderr
    after, leftovers = repo_state(limited, "pusher", "growing")
    assert leftovers == [] and after <= before, (before, after, leftovers)

    git("reset", "-q", "--hard", "HEAD~1", cwd=tmp_path / "pusher-growing")
    push(limited, "pusher", "growing", {"index.html": "<p>small change</p>\n"}, tmp_path)


def test_stray_quarantine_of_an_interrupted_push_is_cleaned(limited, tmp_path):
    create(limited, "pusher", "strays", sdk="static")
    stray = limited.data_dir / "repos" / "pusher" / "strays.git" / "objects" / "incoming-Abc123" / "pack"
    stray.mkdir(parents=True)
    (stray / "tmp_pack_Xyz").write_bytes(b"\0" * 1000)
    old = 1_000_000_000  # 2001: what a receive-pack killed long ago left
    for path in (stray / "tmp_pack_Xyz", stray, stray.parent):
        os.utime(path, (old, old))
    push(limited, "pusher", "strays", {"README.md": readme("static"), "index.html": "<p>hi</p>\n"}, tmp_path)
    assert repo_state(limited, "pusher", "strays")[1] == []


def test_read_token_cannot_push(limited, tmp_path):
    create(limited, "reader", "ro", sdk="static")
    issue = ("from controlplane.core.config import Settings; from controlplane.core.db import Database;"
             "from controlplane.models import User; from controlplane.users import issue_token;"
             "from sqlalchemy import select\n"
             "with Database(Settings()).session() as s:\n"
             "    print(issue_token(s, s.scalar(select(User).where(User.name == 'reader')), 'ci', role='read'))")
    token = subprocess.run([sys.executable, "-c", issue], env={**os.environ, **limited.env}, capture_output=True,
                           text=True, check=True).stdout.strip()
    url = limited.url.replace("http://", f"http://reader:{token}@") + "/spaces/reader/ro"
    repo = tmp_path / "ro"
    git("clone", "-q", url, str(repo))  # reading works
    (repo / "index.html").write_text("<p>nope</p>\n")
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "try", cwd=repo)
    out = git("push", "origin", "HEAD:main", cwd=repo, check=False)
    assert out.returncode != 0
    assert "This token has the read role; pushing needs a write token." in out.stderr, out.stderr


def test_api_commit_over_the_repo_quota_is_refused(limited):
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    api = HfApi(endpoint=limited.url, token=limited.user("pusher"))
    api.create_repo("pusher/uploaded", repo_type="space", space_sdk="static")
    with pytest.raises(HfHubHTTPError) as refused:
        api.upload_file(path_or_fileobj=os.urandom(2 * MIB), path_in_repo="big.bin", repo_id="pusher/uploaded",
                        repo_type="space")
    assert "over the limit of 1572864 bytes per Space repository" in str(refused.value), refused.value
    api.upload_file(path_or_fileobj=b"<p>small</p>\n", path_in_repo="index.html", repo_id="pusher/uploaded",
                    repo_type="space")
