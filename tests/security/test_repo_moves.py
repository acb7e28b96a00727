"""Attackers against repo settings and moves (issue 15, item 4): bob changes nothing of alice's, a move onto a taken
name is refused, and moving a private Space discloses neither its new name nor that it still exists.

In-process app (tests/security/web_app.py): the Spaces here never run, so a move restarts nothing.
"""

from __future__ import annotations

import pytest

from tests.security.web_app import BASE, Web, csrf, make_web, sign_in


@pytest.fixture
def web(tmp_path) -> Web:
    web = make_web(tmp_path)
    # No background loops here: a move asks the deployer to restart only a running app, and none runs.
    web.svc.deployer = None
    return web


def move(web: Web, user: str, src: str, dst: str):
    return web.api(user).post("/api/repos/move", json={"fromRepo": src, "toRepo": dst, "type": "space"})


def error(resp) -> str:
    return resp.headers.get("x-error-message", "")


def test_bob_cannot_change_or_move_alices_spaces(web: Web) -> None:
    settings = web.api("bob").put("/api/spaces/alice/demo/settings", json={"visibility": "private"})
    assert settings.status_code == 403 and "write access" in error(settings)
    assert web.api().get("/api/spaces/alice/demo").json()["private"] is False

    assert move(web, "bob", "alice/demo", "bob/demo").status_code == 403
    # Into his own namespace only: alice's is not his to write to, even for his own Space.
    web.api("bob").post("/api/repos/create", json={"type": "space", "name": "bob/mine", "sdk": "static"})
    into_alice = move(web, "bob", "bob/mine", "alice/mine")
    assert into_alice.status_code == 403 and "can't move Spaces to 'alice'" in error(into_alice)
    assert web.api().get("/api/spaces/alice/mine").status_code == 404
    assert web.api().get("/api/spaces/alice/demo").json()["id"] == "alice/demo"
    # A read token moves nothing, even one's own Space.
    assert (
        web.api("bob", role="read")
        .post("/api/repos/move", json={"fromRepo": "bob/mine", "toRepo": "bob/other", "type": "space"})
        .status_code
        == 403
    )


def test_private_spaces_of_others_are_missing_for_settings_and_moves(web: Web) -> None:
    for resp in (
        web.api("bob").put("/api/spaces/alice/secretapp/settings", json={"visibility": "public"}),
        move(web, "bob", "alice/secretapp", "bob/secretapp"),
    ):
        assert resp.status_code == 404 and resp.headers["x-error-code"] == "RepoNotFound"
    assert web.api("alice").get("/api/spaces/alice/secretapp").json()["private"] is True


def test_moving_onto_a_taken_name_is_refused_whatever_its_case(web: Web) -> None:
    web.api("alice").post("/api/repos/create", json={"type": "space", "name": "alice/other", "sdk": "static"})
    for target in ("alice/other", "alice/OTHER", "alice/secretapp"):
        resp = move(web, "alice", "alice/demo", target)
        assert resp.status_code == 409 and resp.headers["x-error-code"] == "RepoExists", target
    assert web.api().get("/api/spaces/alice/demo").status_code == 200
    assert web.api().get("/api/spaces/alice/other").status_code == 200


def test_bad_moves_and_settings_are_clear_400s(web: Web) -> None:
    alice = web.api("alice")
    cases = [
        ({"fromRepo": "alice/demo", "toRepo": "nonsense", "type": "space"}, "toRepo"),
        ({"fromRepo": "alice/demo", "toRepo": "alice/a/b", "type": "space"}, "toRepo"),
        ({"toRepo": "alice/x", "type": "space"}, "fromRepo"),
        ({"fromRepo": "alice/demo", "toRepo": "alice/x"}, "Spaces only"),
        ({"fromRepo": "alice/demo", "toRepo": "alice/bad--name", "type": "space"}, "Invalid Space name"),
        ({"fromRepo": "alice/demo", "toRepo": "alice/demo", "type": "space"}, "already has this name"),
    ]
    for payload, words in cases:
        resp = alice.post("/api/repos/move", json=payload)
        assert resp.status_code == 400 and words in error(resp), (payload, resp.text)
        assert resp.json()["error"] == error(resp)
    for payload, words in [
        ({"visibility": "protected"}, "'protected'"),
        ({"private": "yes"}, '"private" must be true or false'),
        ({"gated": "auto"}, "cannot be gated"),
        ({"xetEnabled": True}, "Xet"),
        ({"discussionsDisabled": True}, "Unsupported setting"),
        ({}, "Nothing to change"),
    ]:
        resp = alice.put("/api/spaces/alice/demo/settings", json=payload)
        assert resp.status_code == 400 and words in error(resp), (payload, resp.text)


def test_a_moved_private_space_discloses_nothing(web: Web) -> None:
    assert move(web, "alice", "alice/secretapp", "alice/hidden").status_code == 200
    for who in (None, "bob"):
        client = web.api(who)
        for path in (
            "/api/spaces/alice/secretapp",
            "/api/spaces/alice/secretapp/tree/main",
            "/spaces/alice/secretapp",
            "/apps/alice/secretapp/",
            "/api/spaces/alice/hidden",
        ):
            resp = client.get(path, follow_redirects=False)
            assert resp.status_code == 404, (who, path, resp.status_code)
            assert "location" not in resp.headers
            assert "hidden" not in resp.text or path.endswith("/hidden"), resp.text
        # git: an anonymous clone is asked for credentials, as for any name; bob's get "not found".
        refs = client.get("/spaces/alice/secretapp.git/info/refs?service=git-upload-pack", follow_redirects=False)
        assert refs.status_code == (401 if who is None else 404) and "location" not in refs.headers
        listed = client.get("/api/spaces", params={"search": "alice/"}).json()
        assert {s["id"] for s in listed} == {"alice/demo"}
    # Its owner is sent on.
    resp = web.api("alice").get("/api/spaces/alice/secretapp/tree/main?recursive=1", follow_redirects=False)
    assert resp.status_code == 307 and resp.headers["location"] == "/api/spaces/alice/hidden/tree/main?recursive=1"


def test_case_only_renames_and_moves_after_them_keep_every_old_url(web: Web) -> None:
    assert move(web, "alice", "alice/demo", "alice/Demo").status_code == 200
    assert move(web, "alice", "alice/Demo", "alice/final").status_code == 200
    for old in ("demo", "Demo"):
        resp = web.api().get(f"/api/spaces/alice/{old}", follow_redirects=False)
        assert resp.status_code == 307 and resp.headers["location"] == "/api/spaces/alice/final", old
    assert web.api().get("/api/spaces/alice/final").json()["id"] == "alice/final"


def test_a_transfer_by_an_admin_hands_the_space_over(web: Web) -> None:
    assert move(web, "root", "alice/demo", "bob/demo").status_code == 200
    assert web.api("bob").put("/api/spaces/bob/demo/settings", json={"visibility": "private"}).status_code == 200
    # Private and bob's now: alice's old URL no longer leads anywhere for her.
    old = web.api("alice").get("/api/spaces/alice/demo", follow_redirects=False)
    assert old.status_code == 404 and "location" not in old.headers
    assert web.api("alice").get("/api/spaces/bob/demo").status_code == 404
    assert (
        web.api("bob").get("/api/spaces/alice/demo", follow_redirects=False).headers["location"]
        == "/api/spaces/bob/demo"
    )


def test_the_old_name_can_be_taken_again_and_then_stops_redirecting(web: Web) -> None:
    assert move(web, "alice", "alice/demo", "alice/renamed").status_code == 200
    assert web.api().get("/api/spaces/alice/demo", follow_redirects=False).status_code == 307
    # On an app's own origin the paths are the app's: its 404s never turn into the platform's redirects.
    on_app = web.api().get("http://nobody-x.localhost:8000/api/spaces/alice/demo", follow_redirects=False)
    assert on_app.status_code == 404 and "location" not in on_app.headers
    created = web.api("alice").post("/api/repos/create", json={"type": "space", "name": "alice/demo", "sdk": "gradio"})
    assert created.status_code == 200, created.text
    fresh = web.api().get("/api/spaces/alice/demo", follow_redirects=False)
    assert fresh.status_code == 200 and fresh.json()["sdk"] == "gradio"
    assert web.api().get("/api/spaces/alice/renamed").json()["sdk"] == "static"


def test_the_dashboard_like_button_needs_its_form_token(web: Web) -> None:
    browser = sign_in(web, "bob")
    forged = browser.post("/spaces/alice/demo/likes/mine", data={"action": "like"}, follow_redirects=False)
    assert forged.status_code == 403
    token = csrf(browser, "/spaces/alice/demo")
    assert (
        browser.post(
            "/spaces/alice/secretapp/likes/mine", data={"action": "like", "csrf_token": token}, follow_redirects=False
        ).status_code
        == 404
    )
    liked = browser.post(
        "/spaces/alice/demo/likes/mine", data={"action": "like", "csrf_token": token}, follow_redirects=False
    )
    assert liked.status_code == 303 and liked.headers["location"] == "/spaces/alice/demo"
    assert web.api().get("/api/spaces/alice/demo").json()["likes"] == 1
    page = browser.get("/spaces/alice/demo").text
    assert 'value="unlike"' in page and '<span class="like-count">1</span>' in page
    assert "♥ 1" in web.client().get("/?show=public").text
    # A cross-site page cannot send a browser session's like through the API either.
    assert browser.post("/api/spaces/alice/demo/like", headers={"Origin": BASE}).status_code == 403
