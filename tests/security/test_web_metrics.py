"""/metrics names every Space, private ones too: it answers the scraper's token or an admin, no one else
(issue 12, item 5)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controlplane.models import UsageInterval, utcnow
from tests.security.web_app import Web, make_web, sign_in

SCRAPER = "prometheus-scrape-secret"


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Web:
    web = make_web(tmp_path_factory.mktemp("metrics"), metrics_token=SCRAPER)
    now = utcnow()
    with web.svc.db.session() as s:  # alice's private Space has run for an hour
        s.add(UsageInterval(space_name="alice/secretapp", owner="alice", tier="cpu-basic",
                            started_at=now - timedelta(hours=1), ended_at=now))
    return web


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer wrong-secret"},
    {"Authorization": "Bearer sy_not-a-token"},
    {"Authorization": "Basic cHJvbWV0aGV1czp3cm9uZw=="},
])
def test_anonymous_or_wrong_credentials_learn_nothing(web: Web, headers) -> None:
    resp = web.client().get("/metrics", headers=headers)
    assert resp.status_code == 401
    assert "secretapp" not in resp.text and "alice" not in resp.text
    assert resp.headers["www-authenticate"].startswith("Bearer")


def test_users_who_are_not_admins_are_refused(web: Web) -> None:
    assert web.api("alice").get("/metrics").status_code == 401
    assert sign_in(web, "bob").get("/metrics").status_code == 401


def test_the_scraper_token_and_admins_read_metrics(web: Web) -> None:
    for client in (web.client(headers={"Authorization": f"Bearer {SCRAPER}"}), web.api("root", role="read"),
                   sign_in(web, "root")):
        resp = client.get("/metrics")
        assert resp.status_code == 200
        assert 'space="alice/secretapp"' in resp.text

