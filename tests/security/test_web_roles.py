"""A "read" token changes nothing (issue 12, item 4).

Table-driven over the app's own route table: every state-changing route under /api, and every dashboard form,
refuses alice's read token with 403 and a message naming the role, on alice's own Space (so nothing but the
role stands in the way). A write route added later without the check fails here.
"""

from __future__ import annotations

import re

import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.security.web_app import Web, csrf, make_web, sign_in

SAFE = {"GET", "HEAD", "OPTIONS"}
# State-changing methods that read tokens may call, and why.
ALLOWED = {
    # A stateless check of README text: huggingface_hub calls it before a commit; it reads and writes nothing.
    ("POST", "/api/validate-yaml"),
    # Not a user's call at all: only the GPU agent's own credential is accepted (a read token gets 401).
    ("POST", "/api/metering/gpu-samples"),
    # get_paths_info: a read sent as a POST (a form of paths), as on the Hub (history.py).
    ("POST", "/api/spaces/{owner}/{name}/paths-info/{rev:path}"),
    # A forge's push webhook: no token is read at all, only the forge's signature (a read token gets 401).
    ("POST", "/api/webhooks/{provider}/{owner}/{name}"),
}
# The git server and its LFS API (their own rule: pushes and uploads with read tokens are refused there, see
# test_push_limits.py and test_lfs_access.py; a batch POST may be a download) and signing in.
LFS = "/spaces/{owner}/{repo}/info/lfs/objects"
NOT_DASHBOARD = {"/spaces/{owner}/{repo}/{service}", f"{LFS}/batch", f"{LFS}/{{oid}}", f"{LFS}/{{oid}}/verify",
                 "/login"}
PARAMS = {"owner": "alice", "name": "demo", "rev": "main", "token_id": "1", "session_id": "1", "action": "pause",
          "branch": "dev", "tag": "v1", "kind": "secrets", "op": "set", "service": "git-receive-pack",
          "delivery": "1", "provider": "github"}


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    return make_web(tmp_path_factory.mktemp("roles"))


def write_routes(web: Web, api: bool) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves (included routers walked), minus safe methods."""
    out = []
    for route in iter_route_contexts(web.app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path.startswith("/api") != api:
            continue
        out.extend((method, route.path) for method in sorted(route.methods - SAFE))
    return out


def concrete(path: str) -> str:
    return re.sub(r"{(\w+)(?::\w+)?}", lambda m: PARAMS[m.group(1)], path)


def test_the_table_is_not_empty(web: Web) -> None:
    # The walk must find the writes the issue named: commit, create, secret, delete.
    api = write_routes(web, api=True)
    for wanted in ("/api/spaces/{owner}/{name}/commit/{rev:path}", "/api/repos/create", "/api/repos/delete",
                   "/api/spaces/{owner}/{name}/secrets"):
        assert any(path == wanted for _, path in api), wanted
    assert len(write_routes(web, api=False)) >= 8


def test_every_api_write_refuses_a_read_token(web: Web) -> None:
    reader = web.api("alice", role="read")
    body = {"type": "space", "name": "alice/demo", "key": "K", "value": "v", "flavor": "cpu-basic", "seconds": 300,
            "limit": 1, "files": [], "repository": "alice/demo", "max_gpus": 1, "disabled": True, "content": "x"}
    problems = []
    for method, path in write_routes(web, api=True):
        if (method, path) in ALLOWED:
            continue
        resp = reader.request(method, concrete(path), json=body)
        if resp.status_code != 403 or "'read' role" not in resp.json().get("error", ""):
            problems.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not problems, "writes a read token got through:\n" + "\n".join(problems)


def test_the_allowed_writes_are_harmless_for_a_read_token(web: Web) -> None:
    reader = web.api("alice", role="read")
    assert reader.post("/api/validate-yaml", json={"repoType": "space", "content": "---\nsdk: static\n---\n"}
                       ).status_code == 200
    assert reader.post("/api/metering/gpu-samples", json={"samples": []}).status_code == 401
    # The token is not what a webhook is judged by: an unlinked Space is unknown to it, whoever calls.
    assert reader.post("/api/webhooks/github/alice/demo", json={}).status_code == 404


def test_every_dashboard_form_refuses_a_read_token(web: Web) -> None:
    """The pages accept tokens too; with a valid CSRF pair (fetched with the same token) only the role stops it."""
    reader = web.api("alice", role="read")
    token = csrf(reader, "/new")
    problems = []
    for method, path in write_routes(web, api=False):
        if path in NOT_DASHBOARD:
            continue
        resp = reader.request(method, concrete(path), data={"csrf_token": token, "name": "x", "confirm": "alice/demo"},
                              follow_redirects=False)
        if resp.status_code != 403 or "&#39;read&#39; role" not in resp.text:
            problems.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not problems, "dashboard forms a read token got through:\n" + "\n".join(problems)


def test_the_refusal_names_the_role_as_the_hub_clients_show_it(web: Web) -> None:
    resp = web.api("alice", role="read").post("/api/repos/create", json={"type": "space", "name": "new"})
    assert resp.status_code == 403
    assert resp.headers["x-error-message"].startswith("This token has the 'read' role")
    # Reading still works with it.
    assert web.api("alice", role="read").get("/api/spaces/alice/secretapp").status_code == 200


def test_write_tokens_and_sessions_keep_full_rights(web: Web) -> None:
    assert web.api("alice").put("/api/billing/limit", json={"limit": 3}).status_code == 200
    browser = sign_in(web, "alice")
    resp = browser.post("/new", data={"csrf_token": csrf(browser, "/new"), "name": "fromform", "sdk": "static"},
                        follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/spaces/alice/fromform"


def test_a_browser_session_cannot_write_through_the_api(web: Web) -> None:
    """A page on a same-site apps domain (o-n.apps.example.com next to spaceyard.example.com) gets the
    SameSite=Lax session cookie sent with a no-cors POST, which needs no preflight (text/plain, or no body).
    The API reads no CSRF token, so a session never changes state through it; GETs (the log streams) work."""
    browser = sign_in(web, "alice")
    problems = []
    for method, path in write_routes(web, api=True):
        if (method, path) in ALLOWED:
            continue
        resp = browser.request(method, concrete(path), content=b'{"key": "K", "value": "v"}',
                               headers={"Content-Type": "text/plain"})
        if resp.status_code != 403:
            problems.append(f"{method} {path}: {resp.status_code} {resp.text[:200]}")
    assert not problems, "writes a cookie-only request got through:\n" + "\n".join(problems)
    assert browser.get("/api/spaces/alice/secretapp").status_code == 200
