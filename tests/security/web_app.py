"""The control plane's ASGI app on a migrated SQLite database, without its background loops (no Docker): enough
for every check of the web surface that does not need a running app. Users sign in over HTTP as browsers do."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.services import Services
from controlplane.spaces import create_space
from controlplane.users import add_user, issue_token

PASSWORD = "correct horse battery"
BASE = "http://127.0.0.1:8000"


@dataclass
class Web:
    svc: Services
    app: object
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, **kwargs) -> TestClient:
        """A fresh browser (own cookie jar); server errors come back as 500s, not exceptions."""
        return TestClient(self.app, base_url=kwargs.pop("base_url", BASE), raise_server_exceptions=False, **kwargs)

    def token(self, user: str, role: str = "write") -> str:
        key = f"{user}:{role}"
        if key not in self.tokens:
            with self.svc.db.session() as s:
                from sqlalchemy import select

                from controlplane.models import User

                self.tokens[key] = issue_token(s, s.scalar(select(User).where(User.name == user)), key, role)
        return self.tokens[key]

    def api(self, user: str | None = None, role: str = "write") -> TestClient:
        client = self.client()
        if user:
            client.headers["Authorization"] = f"Bearer {self.token(user, role)}"
        return client


def csrf(client: TestClient, path: str = "/login") -> str:
    page = client.get(path)
    match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
    assert match, f"no CSRF field on {path}: {page.status_code} {page.text[:300]}"
    return match.group(1)


def sign_in(web: Web, name: str, password: str = PASSWORD, **client_kwargs) -> TestClient:
    browser = web.client(**client_kwargs)
    resp = browser.post("/login", data={"username": name, "password": password, "csrf_token": csrf(browser)},
                        follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return browser


def make_web(tmp_path: Path, **settings) -> Web:
    settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret", port=8000, **settings)
    app = create_app(settings)  # no `with`: the lifespan (Redis, runtime, loops) does not run
    migrate(settings.sqlalchemy_url)
    svc: Services = app.state.services
    with svc.db.session() as s:
        add_user(s, "alice", password=PASSWORD)
        add_user(s, "bob", password=PASSWORD)
        add_user(s, "root", admin=True, password=PASSWORD)
        create_space(svc, s, owner="alice", name="demo", sdk="static", private=False, hardware=None)
        create_space(svc, s, owner="alice", name="secretapp", sdk="static", private=True, hardware=None)
    return Web(svc, app)
