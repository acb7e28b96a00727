"""Dashboard pages through the ASGI app: sign-in, CSRF, forms, write-only secrets, usage, admin, git paths."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select

from controlplane.dashboard.usage import daily_usage
from controlplane.metering.billing import month_of
from controlplane.models import Space, SpaceSecret, UsageInterval
from tests.dashboard.conftest import PASSWORD, Dashboard


def new_space(dash: Dashboard, name: str, **form: str) -> object:
    data = {"name": name, "sdk": "gradio", "visibility": "public", "hardware": "cpu-basic", **form}
    return dash.post("/new", data, page="/new")


def test_anonymous_sees_public_list_and_is_sent_to_login(dash: Dashboard) -> None:
    assert dash.client.get("/").status_code == 200
    resp = dash.client.get("/new", follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/login?next=/new"


def test_sign_in_checks_password_and_returns_to_next(dash: Dashboard) -> None:
    token = dash.csrf()
    bad = dash.client.post("/login", data={"username": "alice", "password": "nope", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    good = dash.client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": token,
                                            "next": "/usage"}, follow_redirects=False)
    assert good.status_code == 303 and good.headers["location"] == "/usage"
    assert "alice" in dash.client.get("/").text
    # An absolute URL in `next` is not followed: no open redirect.
    dash.client.cookies.clear()
    resp = dash.client.post("/login", data={"username": "alice", "password": PASSWORD, "csrf_token": dash.csrf(),
                                            "next": "//evil.example/"}, follow_redirects=False)
    assert resp.headers["location"] == "/"


def test_posts_without_a_valid_csrf_token_are_refused(dash: Dashboard) -> None:
    dash.login("alice")
    missing = dash.client.post("/new", data={"name": "x", "sdk": "gradio"})
    assert missing.status_code == 403
    forged = dash.client.post("/new", data={"name": "x", "sdk": "gradio", "csrf_token": "0" * 64})
    assert forged.status_code == 403
    # The token is bound to the session: one from before signing in no longer works after.
    dash.client.cookies.clear()
    before = dash.csrf()
    dash.login("alice")
    stale = dash.client.post("/new", data={"name": "x", "sdk": "gradio", "csrf_token": before})
    assert stale.status_code == 403
    with dash.svc.db.session() as s:
        assert s.scalar(select(Space).where(Space.name == "x")) is None


def test_new_space_form_creates_it_on_the_chosen_tier(dash: Dashboard) -> None:
    dash.login("alice")
    page = dash.client.get("/new").text
    assert "cpu-upgrade" in page and "$0.03/hour" in page and "8 vCPU" in page and "1× A100 80 GB" in page
    # This host has no GPU: GPU tiers are listed, not pickable.
    assert 'value="a100-large"  disabled' in page and "not offered here" in page
    resp = new_space(dash, "demo", hardware="cpu-upgrade", visibility="private")
    assert resp.status_code == 303 and resp.headers["location"] == "/spaces/alice/demo"
    with dash.svc.db.session() as s:
        space = s.scalar(select(Space).where(Space.name == "demo"))
        assert (space.hardware_requested, space.private) == ("cpu-upgrade", True)
    page = dash.client.get("/spaces/alice/demo").text
    assert "git clone http://alice@127.0.0.1:8000/spaces/alice/demo" in page
    assert "sy_" not in page  # no token on the page
    assert "README.md" in page
    listing = dash.client.get("/?show=mine").text
    assert "alice/demo" in listing and "NO_APP_FILE" in listing and "🚀" in listing


def test_new_space_form_shows_errors(dash: Dashboard) -> None:
    dash.login("alice")
    resp = new_space(dash, "bad name!")
    assert resp.status_code == 400 and "Invalid Space name" in resp.text and 'value="bad name!"' in resp.text
    assert new_space(dash, "twice").status_code == 303
    assert "already created" in new_space(dash, "twice").text


def test_private_spaces_of_others_look_missing(dash: Dashboard) -> None:
    dash.login("alice")
    new_space(dash, "secretive", visibility="private")
    dash.client.cookies.clear()
    dash.login("bob")
    assert dash.client.get("/spaces/alice/secretive").status_code == 404
    assert "alice/secretive" not in dash.client.get("/?show=public").text
    new_space(dash, "open")
    dash.client.cookies.clear()
    dash.login("alice")
    assert dash.client.get("/spaces/bob/open/settings").status_code == 403


def test_tokens_are_shown_once_and_can_be_revoked(dash: Dashboard) -> None:
    dash.login("alice")
    resp = dash.post("/tokens", {"name": "laptop", "role": "write"}, page="/tokens")
    token = resp.text.split('id="new-token">')[1].split("<")[0]
    assert token.startswith("sy_")
    assert dash.client.get("/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).json()["name"] == "alice"
    page = dash.client.get("/tokens").text
    assert "laptop" in page and token not in page
    ids = [int(p.split("/")[0]) for p in page.split('action="/tokens/')[1:]]
    assert dash.post(f"/tokens/{ids[0]}/revoke", {}, page="/tokens").status_code == 303
    assert dash.client.get("/api/whoami-v2", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_secrets_are_write_only_and_variables_listed(dash: Dashboard) -> None:
    dash.login("alice")
    new_space(dash, "cfg")
    base = "/spaces/alice/cfg/settings"
    assert dash.post(f"{base}/secrets/set", {"key": "API_KEY", "value": "s3cret-value"}, base).status_code == 303
    assert dash.post(f"{base}/variables/set", {"key": "MODEL", "value": "tiny-model"}, base).status_code == 303
    page = dash.client.get(base).text
    assert "<code>API_KEY</code>" in page and "s3cret-value" not in page
    assert "MODEL" in page and "tiny-model" in page
    with dash.svc.db.session() as s:
        stored = s.scalar(select(SpaceSecret)).value_encrypted
    assert "s3cret-value" not in stored and dash.svc.secret_box.decrypt(stored) == "s3cret-value"
    assert dash.post(f"{base}/secrets/set", {"key": "1BAD", "value": "x"}, base).status_code == 400
    assert dash.post(f"{base}/secrets/delete", {"key": "API_KEY"}, base).status_code == 303
    assert "<code>API_KEY</code>" not in dash.client.get(base).text


def test_visibility_and_sleep_time(dash: Dashboard) -> None:
    dash.login("alice")
    new_space(dash, "vis")
    base = "/spaces/alice/vis/settings"
    assert dash.post(f"{base}/visibility/set", {"visibility": "private"}, base).status_code == 303
    assert dash.post(f"{base}/sleep", {"sleep_time": "3600"}, base).status_code == 303
    assert dash.post(f"{base}/sleep", {"sleep_time": "7"}, base).status_code == 400
    with dash.svc.db.session() as s:
        space = s.scalar(select(Space).where(Space.name == "vis"))
        assert (space.private, space.sleep_time) == (True, 3600)
    assert dash.client.get("/spaces/alice/vis/stage").text.count("NO_APP_FILE") == 2  # data-stage and badge


def test_delete_needs_the_exact_name(dash: Dashboard) -> None:
    dash.login("alice")
    new_space(dash, "keep")
    base = "/spaces/alice/keep/settings"
    resp = dash.post(f"{base}/delete/confirm", {"confirm": "keep"}, base)
    assert resp.status_code == 400 and "alice/keep" in resp.text


def test_usage_page_csv_and_limit(dash: Dashboard) -> None:
    dash.login("alice")
    now = datetime.now(UTC)
    day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    with dash.svc.db.session() as s:
        s.add(UsageInterval(space_name="alice/gpu", owner="alice", tier="t4-small", gpu_model="T4", gpu_count=1,
                            unit_cost=0.40, started_at=day, ended_at=day.replace(hour=0, minute=30)))
    page = dash.client.get("/usage").text
    assert "alice/gpu" in page and "t4-small" in page and "$0.20" in page and "<rect" in page
    csv = dash.client.get("/usage.csv").text.splitlines()
    assert csv[0].startswith("month,owner,space") and ",alice/gpu,t4-small," in csv[1] and "0.2000" in csv[1]
    assert dash.post("/usage/limit", {"limit": "12.5"}, "/usage").status_code == 303
    assert "$12.50" in dash.client.get("/usage").text
    assert dash.post("/usage/limit", {"limit": "lots"}, "/usage").status_code == 400


def test_daily_usage_splits_intervals_at_midnight(dash: Dashboard) -> None:
    start = datetime(2024, 3, 1, 23, 0, tzinfo=UTC)
    with dash.svc.db.session() as s:
        s.add(UsageInterval(space_name="alice/x", owner="alice", tier="cpu-upgrade", unit_cost=0.03,
                            started_at=start, ended_at=datetime(2024, 3, 2, 2, 0, tzinfo=UTC)))
        s.add(UsageInterval(space_name="alice/y", owner="alice", tier="cpu-basic", unit_cost=0.0,
                            started_at=datetime(2024, 3, 31, 23, 0, tzinfo=UTC), ended_at=None))
    with dash.svc.db.session() as s:
        days = daily_usage(s, "alice", "2024-03", now=datetime(2024, 4, 2, tzinfo=UTC))
    assert len(days) == 31
    assert [d.seconds for d in days[:3]] == [3600, 7200, 0]
    assert days[30].seconds == 3600  # the open interval stops at the month's end
    assert abs(sum(d.cost for d in days) - 0.09) < 1e-9
    assert month_of(start) == "2024-03"


def test_admin_page_is_for_admins(dash: Dashboard) -> None:
    dash.login("alice")
    assert dash.client.get("/admin").status_code == 403
    dash.client.cookies.clear()
    dash.login("root")
    page = dash.client.get("/admin").text
    assert "local-cpu" in page and "a100-large" in page and "alice" in page and "bob" in page


def test_git_paths_are_not_shadowed(dash: Dashboard) -> None:
    dash.login("alice")
    new_space(dash, "gitty")
    dash.client.cookies.clear()
    resp = dash.client.get("/spaces/alice/gitty/info/refs", params={"service": "git-upload-pack"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-git-upload-pack-advertisement"
