"""Attackers against the redirect of a moved Space's old app host (`http://{old-owner}-{old-name}.{apps_domain}/`):
it can only send a browser to the Space's current host (built from the stored names, whatever the request's Host,
path or forwarding headers say), and a moved private Space's old host stays a plain 404 to anyone who may not see
it, as its old path-based URLs do (test_repo_moves.py).

In-process app (tests/security/web_app.py): the Spaces here never run; the redirect comes before any app would.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.security.web_app import Web, make_web

APPS = "localhost"


@pytest.fixture
def web(tmp_path) -> Web:
    web = make_web(tmp_path)
    web.svc.deployer = None  # nothing runs: a move restarts nothing
    return web


def move(web: Web, user: str, src: str, dst: str) -> None:
    resp = web.api(user).post("/api/repos/move", json={"fromRepo": src, "toRepo": dst, "type": "space"})
    assert resp.status_code == 200, resp.text


def on_host(web: Web, label: str, path: str, user: str | None = None, **headers: str):
    client = web.api(user)
    return client.get(f"http://{label}.{APPS}:8000{path}", headers=headers, follow_redirects=False)


def test_the_old_host_redirects_to_the_new_one_with_path_and_query(web: Web) -> None:
    move(web, "alice", "alice/demo", "alice/renamed")
    resp = on_host(web, "alice-demo", "/x/y?q=1&r=%2F")
    assert resp.status_code == 307
    assert resp.headers["location"] == "http://alice-renamed.localhost:8000/x/y?q=1&r=%2F"
    # POST keeps its method and body through a 307.
    post = web.api().post("http://alice-demo.localhost:8000/run", json={"a": 1}, follow_redirects=False)
    assert post.status_code == 307 and post.headers["location"] == "http://alice-renamed.localhost:8000/run"
    # A host that never was a Space's stays a 404.
    assert on_host(web, "alice-nothing", "/").status_code == 404


@pytest.mark.parametrize(
    "path",
    ["//evil.example/x", "/\\evil.example/", "/@evil.example/", "/%2F%2Fevil.example/", "/..//evil.example"],
)
def test_the_target_is_always_the_new_spaces_own_host(web: Web, path: str) -> None:
    move(web, "alice", "alice/demo", "alice/renamed")
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example"}
    resp = on_host(web, "alice-demo", path, **forwarded)
    assert resp.status_code == 307, resp.text
    target = urlsplit(resp.headers["location"])
    assert (target.scheme, target.netloc) == ("http", "alice-renamed.localhost:8000"), resp.headers["location"]
    assert "\r" not in resp.headers["location"] and "\n" not in resp.headers["location"]


def test_hosts_that_only_look_like_the_old_one_are_not_redirected(web: Web) -> None:
    move(web, "alice", "alice/demo", "alice/renamed")
    for host in ("alice-demo.localhost.evil.example", "evil.example", "x.alice-demo.localhost:8000"):
        resp = web.api().get("http://127.0.0.1:8000/", headers={"Host": host}, follow_redirects=False)
        assert "alice-renamed" not in resp.headers.get("location", ""), (host, resp.headers)


def test_a_moved_private_spaces_old_host_discloses_nothing(web: Web) -> None:
    move(web, "alice", "alice/secretapp", "alice/hidden")
    for who in (None, "bob"):
        resp = on_host(web, "alice-secretapp", "/", who)
        assert resp.status_code == 404 and "location" not in resp.headers, (who, resp.headers)
        assert "hidden" not in resp.text
        # The same as a host that never existed, so the answer tells nothing.
        never = on_host(web, "alice-neverwas", "/", who)
        assert (resp.status_code, resp.text) == (never.status_code, never.text.replace("neverwas", "secretapp"))
    # A bad token is no one, not its owner.
    bad = web.client().get(
        "http://alice-secretapp.localhost:8000/", headers={"Authorization": "Bearer sy_forged"}, follow_redirects=False
    )
    assert bad.status_code == 404 and "location" not in bad.headers
    # Its owner (and an admin) are sent on.
    for who in ("alice", "root"):
        resp = on_host(web, "alice-secretapp", "/p?x=1", who)
        assert resp.status_code == 307 and resp.headers["location"] == "http://alice-hidden.localhost:8000/p?x=1"


def test_a_space_that_takes_the_old_label_ends_the_redirect(web: Web) -> None:
    move(web, "alice", "alice/demo", "alice/renamed")
    assert on_host(web, "alice-demo", "/").status_code == 307
    created = web.api("alice").post("/api/repos/create", json={"type": "space", "name": "alice/demo", "sdk": "static"})
    assert created.status_code == 200, created.text
    resp = on_host(web, "alice-demo", "/")
    assert resp.status_code != 307 and "location" not in resp.headers, resp.headers
