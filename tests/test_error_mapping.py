"""Domain errors and their one mapping per surface (issue 16, item 1): the Hub API keeps its statuses, codes and
bodies; a page shows an HTML error page; git gets what makes it ask for credentials or print the reason."""

from __future__ import annotations

import pytest

from controlplane import errors
from controlplane.api.errors import status_of
from tests.security.web_app import Web, csrf, make_web, sign_in


def every_error(cls: type[errors.DomainError] = errors.DomainError) -> list[type[errors.DomainError]]:
    return [cls] + [sub for direct in cls.__subclasses__() for sub in every_error(direct)]


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    return make_web(tmp_path_factory.mktemp("errors"))


def test_every_domain_error_has_a_status() -> None:
    kinds = [k for k in every_error() if k not in (errors.DomainError, errors.SpaceNotFound)]
    statuses = {k.__name__: status_of(k("x")) for k in kinds}
    assert statuses["QuotaExceeded"] == statuses["Forbidden"] == 403 and statuses["NameTaken"] == 409
    assert all(400 <= s < 600 for s in statuses.values()), statuses
    with pytest.raises(StopIteration):  # the base class is no answer: a domain error says what went wrong
        status_of(errors.DomainError("x"))


def test_the_hub_clients_see_the_same_answers(web: Web) -> None:
    alice, bob = web.api("alice"), web.api("bob")
    missing = alice.get("/api/spaces/alice/nope")
    assert missing.status_code == 404 and missing.headers["x-error-code"] == "RepoNotFound"
    assert missing.json() == {"error": missing.headers["x-error-message"]}
    again = alice.post("/api/repos/create", json={"type": "space", "name": "alice/demo", "sdk": "static"})
    assert again.status_code == 409 and again.headers["x-error-code"] == "RepoExists"
    assert again.json()["url"].endswith("/spaces/alice/demo")
    theirs = bob.post("/api/spaces/alice/demo/secrets", json={"key": "K", "value": "v"})
    assert theirs.status_code == 403 and theirs.headers["x-error-code"] == "Forbidden"
    bad_key = alice.post("/api/spaces/alice/demo/secrets", json={"key": "1BAD", "value": "v"})
    assert bad_key.status_code == 400 and "Invalid key '1BAD'" in bad_key.json()["error"]
    stranger = web.client(headers={"Authorization": "Bearer sy_not-a-token"}).get("/api/spaces/alice/demo")
    assert stranger.status_code == 401 and stranger.headers["www-authenticate"].startswith("Basic")


def test_a_domain_error_on_a_page_is_an_html_error_page(web: Web) -> None:
    browser = sign_in(web, "alice")
    token = csrf(browser, "/spaces/alice/demo/settings")
    resp = browser.post(
        "/spaces/alice/demo/settings/secrets/set",
        data={"csrf_token": token, "key": "1BAD", "value": "v"},
        follow_redirects=False,
    )
    assert resp.status_code == 400 and resp.headers["content-type"].startswith("text/html")
    assert "Invalid key &#39;1BAD&#39;" in resp.text


def test_git_gets_credentials_asked_not_found_or_the_reason(web: Web) -> None:
    refs = "/spaces/alice/{}.git/info/refs?service={}"
    anonymous = web.client().get(refs.format("secretapp", "git-upload-pack"))
    assert anonymous.status_code == 401 and anonymous.headers["www-authenticate"].startswith("Basic")
    bob = web.api("bob")
    assert bob.get(refs.format("secretapp", "git-upload-pack")).status_code == 404
    push = bob.get(refs.format("demo", "git-receive-pack"))
    assert push.status_code == 200 and b"ERR You (bob) don't have write access to alice/demo" in push.content
