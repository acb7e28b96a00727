"""Private Spaces are authorised from memory (controlplane/access_cache.py): a repeated request reads no database,
and a revoked token, an ended session, a disabled account or a changed admin flag count at once, not after the
cache's lifetime."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import event, select

from controlplane import sessions
from controlplane.models import Token, User
from controlplane.router.resolver import NotFound
from controlplane.routing import SpaceResolver
from tests.security.web_app import Web, csrf, make_web, sign_in


@pytest.fixture
def web(tmp_path) -> Web:
    return make_web(tmp_path)


class Statements:
    """SQL statements the database got."""

    def __init__(self, web: Web) -> None:
        self.count = 0
        event.listen(web.svc.db.engine, "before_cursor_execute", self._seen)

    def _seen(self, *_args) -> None:
        self.count += 1


def opens(resolver: SpaceResolver, headers: dict[str, str]) -> bool:
    found = asyncio.run(resolver.resolve(label=None, owner="alice", name="secretapp", request_headers=headers))
    return not isinstance(found, NotFound)


def test_a_repeated_request_reads_no_database_and_a_revoked_token_counts_at_once(web: Web) -> None:
    resolver = SpaceResolver(web.svc)
    owner = {"authorization": f"Bearer {web.token('alice')}"}
    assert opens(resolver, owner)
    statements = Statements(web)
    for _ in range(5):
        assert opens(resolver, owner)
    assert statements.count == 0
    assert not opens(resolver, {}) and not opens(resolver, {"authorization": f"Bearer {web.token('bob')}"})
    with web.svc.db.session() as s:
        s.scalar(select(Token).where(Token.name == "alice:write")).revoked = True
    assert not opens(resolver, owner)


def test_an_ended_session_a_disabled_account_and_an_admin_flag_count_at_once(web: Web) -> None:
    resolver = SpaceResolver(web.svc)
    browser = sign_in(web, "alice")
    cookie = {"cookie": f"{sessions.cookie_name(web.svc.settings)}={browser.cookies['spaceyard_session']}"}
    assert opens(resolver, cookie)
    browser.post("/logout", data={"csrf_token": csrf(browser, "/tokens")})
    assert not opens(resolver, cookie)

    bob = {"authorization": f"Bearer {web.token('bob')}"}
    assert not opens(resolver, bob)
    with web.svc.db.session() as s:
        s.scalar(select(User).where(User.name == "bob")).is_admin = True
    assert opens(resolver, bob)
    assert web.api("root").patch("/api/admin/users/bob", json={"disabled": True}).status_code == 200
    assert not opens(resolver, bob)


def test_a_space_made_private_is_judged_afresh(web: Web) -> None:
    resolver = SpaceResolver(web.svc)
    bob = {"authorization": f"Bearer {web.token('bob')}"}
    assert not opens(resolver, bob)
    owner = web.api("alice")
    assert owner.put("/api/spaces/alice/secretapp/settings", json={"private": False}).status_code == 200
    assert opens(resolver, bob)
    assert owner.put("/api/spaces/alice/secretapp/settings", json={"private": True}).status_code == 200
    assert not opens(resolver, bob)
