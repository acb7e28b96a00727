"""Attackers against likes and listings (issue 15, item 6): private Spaces stay out of every listing but their
owner's, their likes and likers are not disclosed, and bad listing parameters are clear 400s."""

from __future__ import annotations

import pytest

from tests.security.web_app import Web, make_web


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    web = make_web(tmp_path_factory.mktemp("likes"))
    # alice likes her own private Space and her public one; bob likes the public one.
    for user, space in (("alice", "secretapp"), ("alice", "demo"), ("bob", "demo")):
        assert web.api(user).post(f"/api/spaces/alice/{space}/like").status_code == 200
    return web


def test_bob_cannot_like_or_see_the_likers_of_a_private_space(web: Web) -> None:
    for who in ("bob", None):
        client = web.api(who)
        for resp in (
            client.post("/api/spaces/alice/secretapp/like"),
            client.delete("/api/spaces/alice/secretapp/like"),
            client.get("/api/spaces/alice/secretapp/likers"),
            client.post("/api/spaces/alice/nosuch/like"),
        ):
            # Anonymous writes stop at authentication; everything else looks missing, like a Space that isn't.
            anonymous_write = who is None and resp.request.method != "GET"
            assert resp.status_code == (401 if anonymous_write else 404), (who, resp.request.url, resp.text)
    likers = web.api("alice").get("/api/spaces/alice/secretapp/likers").json()
    assert [u["user"] for u in likers] == ["alice"]


def test_a_users_likes_show_only_spaces_the_viewer_can_see(web: Web) -> None:
    seen = {
        who: [lk["repo"]["name"] for lk in web.api(who).get("/api/users/alice/likes").json()]
        for who in (None, "bob", "alice", "root")
    }
    assert seen[None] == seen["bob"] == ["alice/demo"]
    assert sorted(seen["alice"]) == sorted(seen["root"]) == ["alice/demo", "alice/secretapp"]
    missing = web.api().get("/api/users/nobody/likes")
    assert missing.status_code == 404 and "nobody" in missing.headers["x-error-message"]


def test_listings_never_show_private_spaces_of_others(web: Web) -> None:
    for params in (
        {},
        {"sort": "likes"},
        {"sort": "createdAt", "direction": "1"},
        {"search": "secret"},
        {"author": "ALICE"},
        {"filter": "static"},
        {"search": "alice/"},
        {"limit": "1"},
    ):
        for who in (None, "bob"):
            ids = {s["id"] for s in web.api(who).get("/api/spaces", params=params).json()}
            assert "alice/secretapp" not in ids, (who, params)
        # Every one of these matches it: its owner (and only she) sees it.
        mine = {s["id"] for s in web.api("alice").get("/api/spaces", params={**params, "limit": "50"}).json()}
        assert "alice/secretapp" in mine, (params, mine)


def test_likes_counts_are_the_likes_of_visible_spaces(web: Web) -> None:
    listed = web.api("bob").get("/api/spaces", params={"sort": "likes"}).json()
    assert [(s["id"], s["likes"]) for s in listed] == [("alice/demo", 2)]
    assert web.api().get("/api/spaces/alice/demo").json()["likes"] == 2


def test_bad_listing_parameters_are_clear_400s(web: Web) -> None:
    for params, words in [
        ({"sort": "trendingScore"}, "Unsupported sort"),
        ({"sort": "likes", "direction": "2"}, "Invalid direction"),
        ({"sort": "likes", "direction": "down"}, "direction"),
        ({"filter": "region:us"}, "Unsupported filter"),
        ({"limit": "0"}, "limit"),
        ({"cursor": "-5"}, "cursor"),
    ]:
        resp = web.api().get("/api/spaces", params=params)
        assert resp.status_code == 400 and words in resp.headers["x-error-message"], (params, resp.text)


def test_a_read_token_neither_likes_nor_unlikes(web: Web) -> None:
    for method in ("POST", "DELETE"):
        resp = web.api("bob", role="read").request(method, "/api/spaces/alice/demo/like")
        assert resp.status_code == 403 and "'read' role" in resp.headers["x-error-message"]
    assert web.api().get("/api/spaces/alice/demo").json()["likes"] == 2
