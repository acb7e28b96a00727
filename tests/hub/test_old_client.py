"""An older `huggingface_hub` (0.x: `private: bool`, its own commit and download code) in its own venv."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.hub.old_clients import HUB_0X, hub_0x

pytestmark = pytest.mark.docker
SCRIPT = """
import os, tempfile
from pathlib import Path
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, hf_hub_download
from huggingface_hub.utils import EntryNotFoundError, RepositoryNotFoundError

endpoint, token = os.environ["ENDPOINT"], os.environ["TOKEN"]
api = HfApi(endpoint=endpoint, token=token)
api.create_repo("oldie/demo", repo_type="space", space_sdk="static", private=True)
api.create_repo("oldie/demo", repo_type="space", space_sdk="static", private=True, exist_ok=True)
assert api.space_info("oldie/demo").private is True
folder = Path(tempfile.mkdtemp())
(folder / "index.html").write_text("<p>old</p>")
(folder / "docs").mkdir()
(folder / "docs" / "a.md").write_text("a")
api.upload_folder(repo_id="oldie/demo", repo_type="space", folder_path=folder)
info = api.create_commit(repo_id="oldie/demo", repo_type="space", commit_message="ops", operations=[
    CommitOperationAdd(path_in_repo="b.txt", path_or_fileobj=b"b"),
    CommitOperationDelete(path_in_repo="docs/", is_folder=True),
])
files = set(api.list_repo_files("oldie/demo", repo_type="space"))
assert files == {".gitattributes", "README.md", "index.html", "b.txt"}, files
got = hf_hub_download("oldie/demo", "index.html", repo_type="space", endpoint=endpoint, token=token,
                      cache_dir=tempfile.mkdtemp())
assert Path(got).read_text() == "<p>old</p>"
assert api.space_info("oldie/demo").sha == info.oid
# Over the 10 MB threshold: preupload answers "lfs"; 0.x offers "xet" to the batch API, which answers "basic".
big = os.urandom(12_000_000)
api.upload_file(path_or_fileobj=big, path_in_repo="weights.bin", repo_id="oldie/demo", repo_type="space")
entry = next(e for e in api.list_repo_tree("oldie/demo", repo_type="space") if e.path == "weights.bin")
assert entry.lfs is not None and entry.lfs.size == len(big), entry
got = hf_hub_download("oldie/demo", "weights.bin", repo_type="space", endpoint=endpoint, token=token,
                      cache_dir=tempfile.mkdtemp())
assert Path(got).read_bytes() == big
try:
    api.delete_file("docs/a.md", repo_id="oldie/demo", repo_type="space")
    raise AssertionError("deleting a missing file succeeded")
except EntryNotFoundError:
    pass
api.delete_repo("oldie/demo", repo_type="space")
api.delete_repo("oldie/demo", repo_type="space", missing_ok=True)
try:
    api.space_info("oldie/demo")
    raise AssertionError("a deleted Space is still there")
except RepositoryNotFoundError:
    pass
print("ok")
"""


@pytest.fixture(scope="module")
def old_python() -> Path:
    python = hub_0x()
    if python is None:
        pytest.skip(f"could not install huggingface_hub 0.x in {HUB_0X} (pip needs the network once)")
    return python


def test_huggingface_hub_0x_uploads_downloads_and_manages(platform, old_python, tmp_path):
    # 0.x parses commitUrl against HF_ENDPOINT, not HfApi(endpoint=): users of old clients set it too.
    env = {
        **os.environ,
        "ENDPOINT": platform.url,
        "HF_ENDPOINT": platform.url,
        "TOKEN": platform.user("oldie"),
        "HF_HOME": str(tmp_path),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run([str(old_python), "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
