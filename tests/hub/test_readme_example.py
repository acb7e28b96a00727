"""The README's quickstart works as written: its app, pushed with git, then its Python example, taken from the
README itself, run against a real platform with the Hub's clients."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from tests.conftest import ROOT, git

pytestmark = pytest.mark.docker
README = ROOT / "README.md"


def readme_parts() -> tuple[str, str]:
    """(the quickstart's app.py, the Python example) as the README has them."""
    text = README.read_text()
    app = re.search(r"cat > app\.py <<'PY'\n(.*?)\nPY\n", text, re.DOTALL)
    example = re.search(r"```python\n(.*?)```", text, re.DOTALL)
    assert app and example, "the README lost its quickstart app or its Python example"
    return app.group(1) + "\n", example.group(1)


def for_platform(code: str, url: str) -> str:
    """The README's names and URL on this test platform (the shared platform has its own alice)."""
    return code.replace("http://127.0.0.1:8000", url).replace("alice/", "reader/")


def test_readme_quickstart_and_python_example_work(platform, tmp_path: Path):
    app, example = readme_parts()
    assert 'api_name="/predict"' not in example and "lambda" not in app
    token = platform.user("reader")
    api = HfApi(endpoint=platform.url, token=token)
    api.create_repo("reader/hello", repo_type="space", space_sdk="gradio")
    url = platform.url.replace("http://", f"http://reader:{token}@") + "/spaces/reader/hello"
    repo = tmp_path / "hello"
    git("clone", "-q", url, str(repo))
    (repo / "app.py").write_text(app)
    git("add", "app.py", cwd=repo)
    git("commit", "-q", "-m", "hello", cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    runtime = api.wait_for_space("reader/hello", timeout=600, poll_interval=0.5)
    assert runtime.stage == "RUNNING", runtime.raw

    env = {**os.environ, "SPACEYARD_TOKEN": token, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1"}
    out = subprocess.run(
        [sys.executable, "-c", for_platform(example, platform.url)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    printed = out.stdout.splitlines()  # gradio_client adds a "Loaded as API" line
    assert (printed[0], printed[-1]) == ("RUNNING", "Hello World!"), out.stdout
    assert api.repo_exists("reader/demo", repo_type="space")
