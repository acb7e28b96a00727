"""Repo settings with the real `huggingface_hub` clients (issue 15, item 4): visibility, moves (old URLs redirect,
the app runs on under its new name), secrets and variables given at creation, duplicate_repo(exist_ok=True)."""

from __future__ import annotations

import os
import subprocess
import time

import httpx
import pytest
import sqlalchemy
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.conftest import git
from tests.e2e.test_push_to_deploy import space_tags
from tests.hub.test_old_client import old_python  # noqa: F401 (the fixture: huggingface_hub 0.x in its own venv)

pytestmark = pytest.mark.docker
FINAL = {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}
# A Docker-SDK app (stdlib only, cached layers) that says which Space it thinks it is.
APP = """import http.server, json, os


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"space_id": os.environ["SPACE_ID"], "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", 7860), Handler).serve_forever()
"""
DOCKERFILE = 'FROM spaceyard/base:py3.11\nCOPY app.py /app.py\nCMD ["python3", "/app.py"]\n'
README = "---\ntitle: Who am I\nsdk: docker\napp_port: 7860\n---\n"


def hub(platform, user: str) -> HfApi:
    return HfApi(endpoint=platform.url, token=platform.user(user))


def anonymous(platform) -> HfApi:
    return HfApi(endpoint=platform.url, token=False)


def app_says(platform, path: str, timeout: float = 120) -> dict:
    """The app's answer at `path` (redirects followed), once it answers 200."""
    deadline = time.monotonic() + timeout
    while True:
        resp = httpx.get(f"{platform.url}{path}", follow_redirects=True, timeout=10)
        if resp.status_code == 200 and resp.headers.get("content-type") == "application/json":
            return resp.json()
        assert time.monotonic() < deadline, f"{path}: {resp.status_code} {resp.text[:300]}"
        time.sleep(0.5)


def usage(platform, prefix: str) -> list[tuple[str, bool]]:
    """(Space name, ended) of the usage intervals whose Space name starts with `prefix`, oldest first."""
    engine = sqlalchemy.create_engine(f"sqlite:///{platform.data_dir / 'spaceyard.db'}")
    query = sqlalchemy.text(
        "SELECT space_name, ended_at IS NOT NULL FROM usage_intervals WHERE space_name LIKE :p ORDER BY id"
    )
    with engine.connect() as conn:
        return [(name, bool(ended)) for name, ended in conn.execute(query, {"p": prefix + "%"})]


def test_update_repo_settings_switches_visibility(platform):
    api, anon = hub(platform, "setter"), anonymous(platform)
    api.create_repo("setter/vis", repo_type="space", space_sdk="static")
    assert anon.space_info("setter/vis").private is False

    api.update_repo_settings("setter/vis", repo_type="space", private=True)
    assert api.space_info("setter/vis").private is True
    with pytest.raises(RepositoryNotFoundError):
        anon.space_info("setter/vis")
    assert "setter/vis" not in {s.id for s in anon.list_spaces(author="setter")}

    api.update_repo_settings("setter/vis", repo_type="space", visibility="public")
    assert anon.space_info("setter/vis").private is False
    with pytest.raises(HfHubHTTPError) as err:
        api.update_repo_settings("setter/vis", repo_type="space", visibility="protected")
    assert err.value.response.status_code == 400 and "protected" in str(err.value)
    with pytest.raises(HfHubHTTPError) as err:
        hub(platform, "snoop").update_repo_settings("setter/vis", repo_type="space", private=True)
    assert err.value.response.status_code == 403
    assert anon.space_info("setter/vis").private is False


def test_create_repo_keeps_secrets_and_variables(platform):
    api = hub(platform, "setter")
    api.create_repo(
        "setter/configured",
        repo_type="space",
        space_sdk="static",
        space_secrets=[{"key": "API_KEY", "value": "s3cret", "description": "the key"}],
        space_variables=[{"key": "MODEL", "value": "tiny"}],
    )
    variables = api.get_space_variables("setter/configured")
    assert variables["MODEL"].value == "tiny"
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.user('setter')}"}) as client:
        secrets = client.get("/api/spaces/setter/configured/secrets").json()
    assert secrets["API_KEY"]["description"] == "the key" and "value" not in secrets["API_KEY"]
    # A bad item is refused before anything is created.
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo(
            "setter/broken", repo_type="space", space_sdk="static", space_variables=[{"key": "1BAD", "value": "x"}]
        )
    assert err.value.response.status_code == 400 and "1BAD" in str(err.value)
    with pytest.raises(RepositoryNotFoundError):
        api.space_info("setter/broken")


def test_duplicate_repo_onto_an_existing_space_with_exist_ok(platform):
    api = hub(platform, "setter")
    api.create_repo("setter/original", repo_type="space", space_sdk="static")
    api.create_repo("setter/copy", repo_type="space", space_sdk="static")
    url = api.duplicate_repo("setter/original", to_id="setter/copy", repo_type="space", exist_ok=True)
    assert url == f"{platform.url}/spaces/setter/copy"
    with pytest.raises(HfHubHTTPError) as err:
        api.duplicate_repo("setter/original", to_id="setter/copy", repo_type="space")
    assert err.value.response.status_code == 409


def test_move_repo_redirects_old_urls_and_the_app_runs_under_its_new_name(platform, tmp_path):
    api = hub(platform, "mover")
    api.create_repo("mover/before", repo_type="space", space_sdk="docker")
    folder = tmp_path / "app"
    folder.mkdir()
    for path, content in (("README.md", README), ("Dockerfile", DOCKERFILE), ("app.py", APP)):
        (folder / path).write_text(content)
    api.upload_folder(repo_id="mover/before", repo_type="space", folder_path=folder)
    assert platform.wait_stage("mover/before", FINAL)["stage"] == "RUNNING"
    assert app_says(platform, "/apps/mover/before/")["space_id"] == "mover/before"
    # Likes move with the Space (liked through the call the Hub's pages make: the client has no `like`).
    with httpx.Client(base_url=platform.url, headers={"Authorization": f"Bearer {platform.user('fan')}"}) as fan:
        assert fan.post("/api/spaces/mover/before/like").status_code == 200

    api.move_repo("mover/before", "mover/after", repo_type="space")

    # The client follows the API's redirect; the Space keeps its likes and history.
    info = api.space_info("mover/before")
    assert info.id == "mover/after" and info.likes == 1
    assert {f.rfilename for f in info.siblings} >= {"app.py", "Dockerfile"}
    # The app is started again under the new name: its env says so; the old path-based URL leads there.
    assert platform.wait_stage("mover/after", FINAL)["stage"] == "RUNNING"
    deadline = time.monotonic() + 120
    while app_says(platform, "/apps/mover/after/")["space_id"] != "mover/after":
        assert time.monotonic() < deadline, "the app never restarted under its new name"
        time.sleep(0.5)
    # Usage from the move on is billed under the new name: the interval under the old one ended at the move.
    assert usage(platform, "mover/") == [("mover/before", True), ("mover/after", False)]
    old = httpx.get(f"{platform.url}/apps/mover/before/x?q=1")
    assert old.status_code == 307 and old.headers["location"] == "/apps/mover/after/x?q=1"
    assert app_says(platform, "/apps/mover/before/x?q=1") == {"space_id": "mover/after", "path": "/x?q=1"}
    # git: a clone of the old remote works (git follows the redirect).
    token = platform.user("mover")
    remote = platform.url.replace("http://", f"http://mover:{token}@") + "/spaces/mover/before"
    git("clone", "-q", remote, str(tmp_path / "clone"))
    assert (tmp_path / "clone" / "app.py").read_text() == APP

    # Names are unique regardless of case (taking the old name over: tests/security/test_repo_moves.py).
    api.create_repo("mover/taken", repo_type="space", space_sdk="static")
    with pytest.raises(HfHubHTTPError) as err:
        api.move_repo("mover/after", "mover/TAKEN", repo_type="space")
    assert err.value.response.status_code == 409
    with pytest.raises(HfHubHTTPError) as err:
        anonymous(platform).move_repo("mover/after", "mover/stolen", repo_type="space")
    assert err.value.response.status_code == 401

    # Made private, its app is its owner's alone: the proxy's public route goes with the next route push.
    api.update_repo_settings("mover/after", repo_type="space", private=True)
    deadline = time.monotonic() + 10
    while httpx.get(f"{platform.url}/apps/mover/after/").status_code != 404:
        assert time.monotonic() < deadline, "the app of a Space made private still answers anyone"
        time.sleep(0.1)
    assert httpx.get(f"{platform.url}/apps/mover/before/").status_code == 404  # nor does its old name lead there
    as_owner = httpx.get(f"{platform.url}/apps/mover/after/", headers={"Authorization": f"Bearer {token}"})
    assert as_owner.status_code == 200 and as_owner.json()["space_id"] == "mover/after"

    # Its image was built under the old name (the label says so): deleting the Space removes it too.
    assert space_tags(platform, "mover/before")
    api.delete_repo("mover/after", repo_type="space")
    assert not space_tags(platform, "mover/before") and not platform.containers("mover/after")


OLD_SCRIPT = """
import os
from huggingface_hub import HfApi
from huggingface_hub.utils import RepositoryNotFoundError
api = HfApi(endpoint=os.environ["ENDPOINT"], token=os.environ["TOKEN"])
api.create_repo("oldset/vis", repo_type="space", space_sdk="static")
api.update_repo_settings("oldset/vis", repo_type="space", private=True)
assert api.space_info("oldset/vis").private is True
try:
    HfApi(endpoint=os.environ["ENDPOINT"], token=False).space_info("oldset/vis")
    raise AssertionError("a private Space is visible to anyone")
except RepositoryNotFoundError:
    pass
api.update_repo_settings("oldset/vis", repo_type="space", private=False)
assert api.space_info("oldset/vis").private is False
api.move_repo("oldset/vis", "oldset/moved", repo_type="space")
assert api.space_info("oldset/vis").id == "oldset/moved"
api.create_repo("oldset/target", repo_type="space", space_sdk="static")
url = api.duplicate_space("oldset/moved", to_id="oldset/target", exist_ok=True)
assert url.endswith("/spaces/oldset/target"), url
# 0.x sends direction=-1 with a sort; a like through the API the Hub's pages use, then the old client's unlike.
listed = [s.id for s in api.list_spaces(author="oldset", sort="created_at", direction=-1)]
assert listed == ["oldset/target", "oldset/moved"], listed
import urllib.request
urllib.request.urlopen(urllib.request.Request(os.environ["ENDPOINT"] + "/api/spaces/oldset/moved/like", method="POST",
                                              headers={"Authorization": "Bearer " + os.environ["TOKEN"]}))
assert [s.id for s in api.list_spaces(author="oldset", sort="likes", direction=-1)][0] == "oldset/moved"
assert api.list_liked_repos("oldset").spaces == ["oldset/moved"]
api.unlike("oldset/moved", repo_type="space")
assert api.space_info("oldset/moved").likes == 0
print("ok")
"""


def test_huggingface_hub_0x_settings_and_moves(platform, old_python, tmp_path):  # noqa: F811
    env = {
        **os.environ,
        "ENDPOINT": platform.url,
        "HF_ENDPOINT": platform.url,
        "TOKEN": platform.user("oldset"),
        "HF_HOME": str(tmp_path),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    out = subprocess.run([str(old_python), "-c", OLD_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-3000:]
