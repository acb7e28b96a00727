"""Git LFS on Space repos with the real clients: git-lfs push and clone, huggingface_hub upload and download, a
pointer-only push refused, identical objects stored once, a build that gets the real content, and uploads that go
wrong (corrupted bytes, a client cut off midway, a control plane killed mid-upload) leaving nothing behind."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import sqlalchemy

from tests.conftest import git, launch
from tests.e2e.spaces import create, readme

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs is not installed (scripts/setup.sh)"),
]
MB = 1000 * 1000
LFS_JSON = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}


def clone(platform, owner: str, name: str, dest: Path, user: str | None = None) -> Path:
    token = platform.user(user or owner)
    url = platform.url.replace("http://", f"http://{user or owner}:{token}@") + f"/spaces/{owner}/{name}"
    git("clone", "-q", url, str(dest))
    git("lfs", "install", "--local", cwd=dest)  # the pre-push hook that uploads objects, whatever the host has
    return dest


def commit_file(repo: Path, path: str, content: bytes) -> None:
    (repo / path).parent.mkdir(parents=True, exist_ok=True)
    (repo / path).write_bytes(content)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", f"add {path}", cwd=repo)


def objects_on_disk(platform) -> list[Path]:
    return [p for p in (platform.data_dir / "lfs" / "objects").rglob("*") if p.is_file()]


def test_git_lfs_push_and_clone_are_byte_equal_and_stored_once(platform, tmp_path):
    create(platform, "lfsuser", "weights", sdk="static")
    create(platform, "lfsuser", "weights2", sdk="static")
    blob = os.urandom(60 * MB)
    oid = hashlib.sha256(blob).hexdigest()
    repo = clone(platform, "lfsuser", "weights", tmp_path / "up")
    # The new Space's .gitattributes is the Hub's: *.bin goes to LFS, and no `* text=auto`.
    attributes = (repo / ".gitattributes").read_text()
    assert "*.bin filter=lfs diff=lfs merge=lfs -text" in attributes and "text=auto" not in attributes
    commit_file(repo, "model.bin", blob)
    assert git("show", "HEAD:model.bin", cwd=repo).stdout.startswith("version https://git-lfs.github.com/spec/v1")
    git("push", "-q", "origin", "HEAD:main", cwd=repo)

    down = clone(platform, "lfsuser", "weights", tmp_path / "down")
    assert (down / "model.bin").read_bytes() == blob
    del blob

    stored = platform.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    assert stat.S_IMODE(stored.stat().st_mode) == 0o600
    assert stat.S_IMODE(stored.parent.stat().st_mode) == 0o700
    repo_dir = platform.data_dir / "repos" / "lfsuser" / "weights.git"
    assert sum(f.stat().st_size for f in repo_dir.rglob("*") if f.is_file()) < 5 * MB  # not in the git repo

    # The same object in a second Space: uploaded again (proof of possession), stored once.
    other = clone(platform, "lfsuser", "weights2", tmp_path / "other")
    shutil.copy(down / "model.bin", other / "copy.bin")
    git("add", "-A", cwd=other)
    git("commit", "-q", "-m", "same weights", cwd=other)
    git("push", "-q", "origin", "HEAD:main", cwd=other)
    assert [p.name for p in objects_on_disk(platform)].count(oid) == 1
    assert (clone(platform, "lfsuser", "weights2", tmp_path / "other2") / "copy.bin").stat().st_size == 60 * MB

    # A duplicated Space serves the objects of the history it copied.
    with platform.api("lfsuser") as api:
        resp = api.post("/api/spaces/lfsuser/weights/duplicate", json={"repository": "lfsuser/weights-copy"})
        assert resp.status_code == 200, resp.text
        head = api.head("/spaces/lfsuser/weights-copy/resolve/main/model.bin")
        assert head.status_code == 200 and head.headers["X-Linked-Etag"] == f'"{oid}"'


def test_a_push_of_pointers_without_their_objects_is_refused(platform, tmp_path):
    create(platform, "lfsuser", "pointers", sdk="static")
    repo = clone(platform, "lfsuser", "pointers", tmp_path / "repo")
    commit_file(repo, "weights.bin", os.urandom(200_000))
    # --no-verify skips git-lfs's pre-push hook: the pointer travels, its object stays behind.
    out = git("push", "--no-verify", "origin", "HEAD:main", cwd=repo, check=False)
    assert out.returncode != 0
    assert "remote: Push refused: weights.bin (sha256:" in out.stderr, out.stderr
    assert "git lfs install" in out.stderr
    # A client without git-lfs filters: same refusal. Then with git-lfs, the same commit goes through.
    out = git("-c", "core.hooksPath=/dev/null", "push", "origin", "HEAD:main", cwd=repo, check=False)
    assert out.returncode != 0 and "git lfs install" in out.stderr
    git("push", "-q", "origin", "HEAD:main", cwd=repo)


def test_hub_client_uploads_large_files_through_lfs_and_downloads_them(platform, tmp_path):
    create(platform, "lfsuser", "hubfiles", sdk="static")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(60 * MB))
    oid = hashlib.sha256(big.read_bytes()).hexdigest()
    # huggingface_hub 2.x sends "lfs" files to Xet unless told not to (docs/hub-api.md).
    script = f"""
import sys
from huggingface_hub import HfApi, hf_hub_download
api = HfApi(endpoint={platform.url!r}, token={platform.user("lfsuser")!r})
api.upload_file(path_or_fileobj={str(big)!r}, path_in_repo="data/big.bin", repo_id="lfsuser/hubfiles",
                repo_type="space")
path = hf_hub_download("lfsuser/hubfiles", "data/big.bin", repo_type="space", endpoint={platform.url!r},
                       token={platform.user("lfsuser")!r}, cache_dir={str(tmp_path / "cache")!r})
print(path)
"""
    env = {**os.environ, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert Path(out.stdout.strip().splitlines()[-1]).read_bytes() == big.read_bytes()

    with platform.api("lfsuser") as api:
        head = api.head("/spaces/lfsuser/hubfiles/resolve/main/data/big.bin")
        assert head.status_code == 200
        assert head.headers["ETag"] == f'"{oid}"' and head.headers["X-Linked-Etag"] == f'"{oid}"'
        assert head.headers["X-Linked-Size"] == str(60 * MB) and head.headers["Content-Length"] == str(60 * MB)
        tree = api.get("/api/spaces/lfsuser/hubfiles/tree/main/data").json()
        assert tree[0]["lfs"] == {"oid": oid, "size": 60 * MB, "pointerSize": tree[0]["lfs"]["pointerSize"]}
        assert tree[0]["size"] == 60 * MB
        # The pointer in git is what git-lfs writes.
        assert 120 < tree[0]["lfs"]["pointerSize"] < 200

    # The default 2.x client (hf_xet installed) goes to Xet without asking: our token endpoint refuses it (hf_xet
    # shows only the status and URL; the body, in X-Error-Message, says to set HF_HUB_DISABLE_XET=1).
    script = script.replace("data/big.bin", "data/again.bin", 1)
    env = {k: v for k, v in env.items() if k != "HF_HUB_DISABLE_XET"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "501 Not Implemented" in out.stderr and "xet-write-token" in out.stderr
    with platform.api("lfsuser") as api:
        assert "HF_HUB_DISABLE_XET=1" in api.get("/api/spaces/lfsuser/hubfiles/xet-write-token/main").json()["error"]

    # ... while an open file object never goes to Xet: LFS without the setting (the object is there already, so
    # the batch API asks for no upload and the commit just adds the pointer).
    as_file = script.replace(f"path_or_fileobj={str(big)!r}", f"path_or_fileobj=open({str(big)!r}, 'rb')")
    out = subprocess.run([sys.executable, "-c", as_file], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    with platform.api("lfsuser") as api:
        head = api.head("/spaces/lfsuser/hubfiles/resolve/main/data/again.bin")
        assert head.status_code == 200 and head.headers["X-Linked-Etag"] == f'"{oid}"'


def test_a_space_with_an_lfs_file_builds_with_its_real_content(platform, tmp_path):
    create(platform, "lfsuser", "served", sdk="static")
    repo = clone(platform, "lfsuser", "served", tmp_path / "repo")
    blob = os.urandom(300_000)
    (repo / "README.md").write_text(readme("static"))
    (repo / "index.html").write_text("<p>lfs</p>\n")
    commit_file(repo, "data/table.parquet", blob)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    runtime = platform.wait_stage("lfsuser/served", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})
    assert runtime["stage"] == "RUNNING", runtime.get("errorMessage")
    served = httpx.get(f"{platform.url}/apps/lfsuser/served/data/table.parquet", timeout=30)
    assert served.status_code == 200 and served.content == blob

    # The object lost from the store: the next build fails naming the file, instead of shipping a pointer.
    oid = hashlib.sha256(blob).hexdigest()
    (platform.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).unlink()
    (repo / "index.html").write_text("<p>again</p>\n")
    git("commit", "-qam", "again", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    status, message = build_result(platform, "lfsuser/served", git("rev-parse", "HEAD", cwd=repo).stdout.strip())
    assert status == "FAILED", (status, message)
    assert "data/table.parquet" in message and "git lfs" in message, message
    assert httpx.get(f"{platform.url}/apps/lfsuser/served/", timeout=30).text == "<p>lfs</p>\n"  # still the old one


def test_a_corrupted_object_is_refused_with_its_reason_and_nothing_is_stored(platform, tmp_path):
    # The store is shared by all Spaces: bytes that do not hash to their oid must never land under that oid.
    create(platform, "lfsuser", "rotten", sdk="static")
    repo = clone(platform, "lfsuser", "rotten", tmp_path / "repo")
    blob = os.urandom(6 * MB)
    oid = hashlib.sha256(blob).hexdigest()
    commit_file(repo, "model.bin", blob)
    # The client's own copy rots after `git add` (same size, other bytes): git-lfs sends it as it is.
    local = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    local.chmod(0o644)
    local.write_bytes(os.urandom(len(blob)))
    out = git("push", "origin", "HEAD:main", cwd=repo, check=False)
    assert out.returncode != 0
    assert f"not the announced oid {oid}" in out.stderr, out.stderr
    assert oid not in [p.name for p in objects_on_disk(platform)]
    assert not list((platform.data_dir / "lfs" / "tmp").glob(f"{oid}.*"))
    with platform.api("lfsuser") as api:
        tree = api.get("/api/spaces/lfsuser/rotten/tree/main").json()
        assert "model.bin" not in [entry["path"] for entry in tree]  # the push did not go through either


def slow_upload(platform, name: str, tmp_path: Path) -> tuple[bytes, str, dict, subprocess.Popen, Path]:
    """A new static Space `lfsuser/name` and a 20 MB object sent to it slowly by curl, once part of the body is in
    the store's temp dir: (content, oid, the batch answer's actions, curl, the temp dir)."""
    create(platform, "lfsuser", name, sdk="static")
    blob = os.urandom(20 * MB)
    oid = hashlib.sha256(blob).hexdigest()
    (tmp_path / "blob").write_bytes(blob)
    body = {"operation": "upload", "transfers": ["basic"], "objects": [{"oid": oid, "size": len(blob)}]}
    with platform.api("lfsuser") as api:
        answer = api.post(f"/spaces/lfsuser/{name}.git/info/lfs/objects/batch", json=body, headers=LFS_JSON)
    actions = answer.json()["objects"][0]["actions"]
    slow = ["--limit-rate", "2M", "-T", str(tmp_path / "blob"), actions["upload"]["href"]]
    curl = subprocess.Popen(["curl", "-sS", "-o", "/dev/null", *slow], stderr=subprocess.DEVNULL)
    temps = platform.data_dir / "lfs" / "tmp"
    deadline = time.monotonic() + 30
    while not any(p.stat().st_size > 0 for p in temps.glob(f"{oid}.*")):
        assert curl.poll() is None and time.monotonic() < deadline, "the upload never reached the store"
        time.sleep(0.05)
    return blob, oid, actions, curl, temps


def test_an_upload_cut_off_midway_leaves_no_temp_file_and_no_object(platform, tmp_path):
    # curl is killed once the server has stored part of the body (a client that died).
    blob, oid, actions, curl, temps = slow_upload(platform, "cutoff", tmp_path)
    curl.kill()
    curl.wait()
    deadline = time.monotonic() + 30
    while list(temps.glob(f"{oid}.*")):
        assert time.monotonic() < deadline, "the cut-off upload's temp file stayed"
        time.sleep(0.1)
    assert oid not in [p.name for p in objects_on_disk(platform)]
    assert httpx.post(actions["verify"]["href"], json={"oid": oid, "size": len(blob)}).status_code == 404
    # The client tries again: the whole upload goes through.
    assert httpx.put(actions["upload"]["href"], content=blob, timeout=60).status_code == 200
    assert httpx.post(actions["verify"]["href"], json={"oid": oid, "size": len(blob)}).status_code == 200
    assert (platform.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid).read_bytes() == blob
    # A client going away is no server error: no traceback in the control plane's log.
    assert "ClientDisconnect" not in (platform.data_dir / "logs" / "controlplane.log").read_text()


def test_a_control_plane_killed_mid_upload_leaves_no_temp_file_for_long(tmp_path):
    # SIGKILL runs no cleanup: the temp file stays until a sweep finds it older than any live upload's. The sweep
    # runs when a control plane starts; a temp file that is still being written (another control plane's) stays.
    running = launch(tmp_path)
    try:
        _, oid, _, curl, temps = slow_upload(running, "killed", tmp_path)
        running.platform.stop_process("controlplane", signal.SIGKILL)
        curl.wait(30)
        [orphan] = temps.glob(f"{oid}.*")
        # Two hours pass: the orphan is older than any live upload's temp file. A fresh one is being written.
        old = time.time() - 2 * 3600 - 60
        os.utime(orphan, (old, old))
        live = temps / f"{'0' * 64}.1.1"
        live.write_bytes(b"still arriving")
        running.platform.start_controlplane()
        deadline = time.monotonic() + 30
        while orphan.exists():
            assert time.monotonic() < deadline, "the killed upload's temp file stayed after a restart"
            time.sleep(0.1)
        assert live.read_bytes() == b"still arriving"
        assert "Removed 1 temp file(s) of LFS uploads" in running.log_tail(200)
        assert oid not in [p.name for p in objects_on_disk(running)]
    finally:
        running.platform.stop()
        running.platform.remove_engine_objects()


def build_result(platform, space: str, commit: str, timeout: float = 120) -> tuple[str, str]:
    """Status and message of the build of `commit` once it has finished (read from the platform's database)."""
    owner, name = space.split("/")
    engine = sqlalchemy.create_engine(f"sqlite:///{platform.data_dir / 'spaceyard.db'}")
    query = sqlalchemy.text(
        "SELECT b.status, b.error_message FROM builds b JOIN spaces s ON s.id = b.space_id "
        "WHERE s.owner = :o AND s.name = :n AND b.commit_sha = :c ORDER BY b.id DESC LIMIT 1"
    )
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            row = conn.execute(query, {"o": owner, "n": name, "c": commit}).first()
        if row is not None and row[0] not in ("QUEUED", "RUNNING"):
            return row[0], row[1] or ""
        assert time.monotonic() < deadline, f"no finished build of {commit} for {space}: {row}"
        time.sleep(0.5)
