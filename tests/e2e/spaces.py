"""Helpers for end-to-end tests: create a Space and push files to it with the real git client."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import RunningPlatform, git

GRADIO_APP = '''import gradio as gr


def greet(name):
    return "Hello " + name + "!"


demo = gr.Interface(fn=greet, inputs="text", outputs="text", api_name="greet")
demo.launch()
'''

STREAMLIT_APP = '''import streamlit as st

st.title("Hello from Streamlit")
st.write("counter", 1 + 1)
'''


def readme(sdk: str, **extra: str) -> str:
    lines = ["---", "title: Test", f"sdk: {sdk}", *(f"{k}: {v}" for k, v in extra.items()), "---", "", "# test", ""]
    return "\n".join(lines)


def create(platform: RunningPlatform, owner: str, name: str, sdk: str = "gradio", private: bool = False) -> None:
    with platform.api(owner) as api:
        resp = api.post("/api/repos/create", json={"type": "space", "name": name, "organization": owner, "sdk": sdk,
                                                   "visibility": "private" if private else "public"})
        assert resp.status_code == 200, resp.text


def push(platform: RunningPlatform, owner: str, name: str, files: dict[str, str], workdir: Path,
         message: str = "update", user: str | None = None) -> str:
    """Clone (or reuse) the Space repo under workdir, write files, commit and push; returns the commit sha."""
    token = platform.user(user or owner)
    repo = workdir / f"{owner}-{name}"
    url = platform.url.replace("http://", f"http://{user or owner}:{token}@") + f"/spaces/{owner}/{name}"
    if not repo.exists():
        git("clone", "-q", url, str(repo))
    for path, content in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "--allow-empty", "-m", message, cwd=repo)
    git("push", "-q", "origin", "HEAD:main", cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).stdout.strip()
