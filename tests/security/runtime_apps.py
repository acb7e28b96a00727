"""A tiny Docker-SDK Space that plays the attacker from inside a running container (tests/security/test_runtime_*).

GET /probe?url=U fetches U with a 3 s timeout and reports what came back; GET /whoami reports the uid it runs
as and whether it may open a raw socket; anything else answers {"space": SPACE_ID}. Its Dockerfile says
`USER root`, which the docker runtime must not honour.
"""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
from huggingface_hub import HfApi

from controlplane.core.config import Settings
from tests.conftest import RunningPlatform
from tests.e2e.spaces import create, push, readme

PROBE_APP = '''import http.server, json, os, socket, urllib.parse, urllib.request


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return {"answered": True, "status": resp.status, "body": resp.read(200).decode(errors="replace")}
    except urllib.error.HTTPError as e:  # an HTTP error is still an answer
        return {"answered": True, "status": e.code, "body": ""}
    except Exception as e:
        return {"answered": False, "error": f"{type(e).__name__}: {e}"}


def raw_socket():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP).close()
        return "opened"
    except OSError as e:
        return f"refused: {e}"


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        url = urllib.parse.urlparse(self.path)
        if url.path.endswith("/probe"):
            body = fetch(urllib.parse.parse_qs(url.query)["url"][0])
        elif url.path.endswith("/whoami"):
            body = {"uid": os.getuid(), "gid": os.getgid(), "raw_socket": raw_socket()}
        else:
            body = {"space": os.environ.get("SPACE_ID")}
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''
PROBE_DOCKERFILE = """FROM spaceyard/base:py3.11
USER root
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""
PROBE_FILES = {"README.md": readme("docker", app_port="7860"), "Dockerfile": PROBE_DOCKERFILE, "app.py": PROBE_APP}


def running_probe(platform: RunningPlatform, owner: str, name: str, workdir: Path) -> str:
    """owner/name running the probe app (created unless it exists)."""
    space = f"{owner}/{name}"
    with platform.api(owner) as api:
        if api.get(f"/api/spaces/{space}/runtime").status_code == 404:
            create(platform, owner, name, sdk="docker")
            push(platform, owner, name, PROBE_FILES, workdir)
    runtime = platform.wait_stage(space, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, user=owner)
    assert runtime["stage"] == "RUNNING", runtime
    return space


def delete_spaces(platform: RunningPlatform, *spaces: str) -> None:
    """Free what a module's Spaces hold on the shared platform (its memory is reserved while they run)."""
    for space in spaces:
        owner = space.split("/")[0]
        HfApi(endpoint=platform.url, token=platform.user(owner)).delete_repo(space, repo_type="space", missing_ok=True)


def app_get(platform: RunningPlatform, space: str, path: str = "", **params: str) -> dict:
    """The app's JSON through the router's path URL."""
    resp = httpx.get(f"{platform.url}/apps/{space}/{path}", params=params, timeout=30,
                     headers={"Accept": "application/json"})
    assert resp.status_code == 200, resp.text
    return resp.json()


def space_container(platform: RunningPlatform, space: str) -> docker.models.containers.Container:
    found = platform.containers(space)
    assert len(found) == 1, [c.name for c in found]
    return found[0]


def space_network(platform: RunningPlatform) -> str:
    return f"spaceyard-{Settings(data_dir=platform.data_dir).instance}-spaces"
