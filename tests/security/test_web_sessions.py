"""Dashboard sessions end on the server (issue 12, item 6): a cookie copied before sign-out, password change,
"end session" or an admin disabling the account is worth nothing afterwards."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from controlplane.core.db import migrate
from tests.security.web_app import PASSWORD, Web, csrf, make_web, sign_in

COOKIE = "spaceyard_session"


@pytest.fixture
def web(tmp_path) -> Web:
    return make_web(tmp_path)


def replay(web: Web, cookie: str) -> int:
    """whoami from a fresh client holding only the copied cookie (an attacker's replay)."""
    thief = web.client()
    thief.cookies.set(COOKIE, cookie)
    return thief.get("/api/whoami-v2").status_code


def test_replayed_cookie_after_sign_out_is_refused(web: Web) -> None:
    browser = sign_in(web, "alice")
    stolen = browser.cookies[COOKIE]
    assert replay(web, stolen) == 200
    resp = browser.post("/logout", data={"csrf_token": csrf(browser, "/tokens")}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login"
    assert replay(web, stolen) == 401
    thief = web.client()
    thief.cookies.set(COOKIE, stolen)
    page = thief.get("/tokens", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"].startswith("/login")


def test_the_cookie_is_a_random_id_not_a_signed_user_id(web: Web) -> None:
    a, b = sign_in(web, "alice"), sign_in(web, "alice")
    assert a.cookies[COOKIE] != b.cookies[COOKIE]
    assert "alice" not in a.cookies[COOKIE] and len(a.cookies[COOKIE]) >= 40


def test_sessions_are_listed_and_another_can_be_ended(web: Web) -> None:
    laptop = sign_in(web, "alice", headers={"User-Agent": "Laptop/1.0"})
    phone = sign_in(web, "alice", headers={"User-Agent": "Phone/2.0"})
    page = laptop.get("/tokens").text
    assert "Laptop/1.0" in page and "Phone/2.0" in page
    # One list, under a plain title (the list once leaked into the page's <title> as well).
    assert page.count('id="sessions"') == 1 and "<title>Tokens and sessions · Spaceyard</title>" in page
    # The current one is marked.
    current = page.split("this browser")[0].rsplit("<tr", 1)[1]
    assert "Laptop/1.0" in current
    phone_id = page.split("Phone/2.0")[0].rsplit('data-session="', 1)[1].split('"')[0]
    resp = laptop.post(f"/sessions/{phone_id}/end", data={"csrf_token": csrf(laptop, "/tokens")},
                       follow_redirects=False)
    assert resp.status_code == 303
    assert phone.get("/api/whoami-v2").status_code == 401
    assert laptop.get("/api/whoami-v2").status_code == 200
    assert "Phone/2.0" not in laptop.get("/tokens").text
    # Someone else's session id is not yours to end.
    bob = sign_in(web, "bob")
    assert bob.post(f"/sessions/{phone_id}/end", data={"csrf_token": csrf(bob, "/tokens")}).status_code == 404


def test_password_change_ends_every_other_session(web: Web) -> None:
    here, elsewhere = sign_in(web, "alice"), sign_in(web, "alice")
    form = {"current": PASSWORD, "new": "a whole new password", "csrf_token": csrf(here, "/tokens")}
    resp = here.post("/password", data=form, follow_redirects=False)
    assert resp.status_code == 303
    assert elsewhere.get("/api/whoami-v2").status_code == 401
    assert here.get("/api/whoami-v2").json()["name"] == "alice"  # this browser got a fresh session
    wrong = {"current": "not it", "new": "another new password", "csrf_token": csrf(here, "/tokens")}
    assert here.post("/password", data=wrong).status_code == 400


def test_admin_disabling_a_user_ends_tokens_and_sessions(web: Web) -> None:
    session = sign_in(web, "bob")
    token = web.token("bob")
    assert web.api("bob").get("/api/whoami-v2").status_code == 200
    # Only an admin may, and not with a read token.
    assert web.api("alice").patch("/api/admin/users/bob", json={"disabled": True}).status_code == 403
    assert web.api("root", role="read").patch("/api/admin/users/bob", json={"disabled": True}).status_code == 403
    resp = web.api("root").patch("/api/admin/users/bob", json={"disabled": True})
    assert resp.status_code == 200 and resp.json()["disabled"] is True
    assert session.get("/api/whoami-v2").status_code == 401
    resp = web.client().get("/api/whoami-v2", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401 and "disabled" in resp.json()["error"]
    again = web.client()
    refused = again.post("/login", data={"username": "bob", "password": PASSWORD, "csrf_token": csrf(again)})
    assert refused.status_code == 401
    web.api("root").patch("/api/admin/users/bob", json={"disabled": False})
    assert web.client().get("/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_cli_disable_and_password(web: Web) -> None:
    settings = web.svc.settings
    env = {**os.environ, "SPACEYARD_DATA_DIR": str(settings.data_dir), "SPACEYARD_SECRET_KEY": "test-secret"}
    migrate(settings.sqlalchemy_url)
    session = sign_in(web, "bob")

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "controlplane.cli", "user", *args], env=env,
                              capture_output=True, text=True)

    assert cli("password", "bob", "--password", "changed by the operator").returncode == 0
    assert session.get("/api/whoami-v2").status_code == 401
    session = sign_in(web, "bob", password="changed by the operator")
    assert cli("disable", "bob").returncode == 0
    assert session.get("/api/whoami-v2").status_code == 401
    assert cli("enable", "bob").returncode == 0
    assert cli("disable", "nobody").returncode == 1


def test_migration_0003_keeps_the_case_insensitive_name_index(web: Web) -> None:
    """Adding users.disabled must not drop 0002's unique lower(name) index (a SQLite table copy would)."""
    import sqlalchemy as sa
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError), web.svc.db.engine.begin() as c:
        c.execute(sa.text("INSERT INTO users (name, is_admin, created_at) VALUES ('ALICE', 0, CURRENT_TIMESTAMP)"))
