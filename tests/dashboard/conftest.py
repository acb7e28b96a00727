"""Dashboard pages on the control plane's ASGI app with a migrated SQLite database, no background loops.

Enough for every page that does not start or stop an app (those run against the real platform in
test_browser.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controlplane.app import create_app
from controlplane.core.config import Settings
from controlplane.core.db import migrate
from controlplane.services import Services
from controlplane.users import add_user

PASSWORD = "correct horse battery"


@dataclass
class Dashboard:
    svc: Services
    client: TestClient

    def csrf(self, path: str = "/login") -> str:
        page = self.client.get(path)
        match = re.search(r'name="csrf_token" value="([0-9a-f]+)"', page.text)
        assert match, f"no CSRF field on {path}: {page.status_code} {page.text[:300]}"
        return match.group(1)

    def login(self, name: str) -> None:
        resp = self.client.post("/login", data={"username": name, "password": PASSWORD, "csrf_token": self.csrf()},
                                follow_redirects=False)
        assert resp.status_code == 303, resp.text

    def post(self, path: str, data: dict, page: str = "/") -> object:
        return self.client.post(path, data={**data, "csrf_token": self.csrf(page)}, follow_redirects=False)


@pytest.fixture
def dash(tmp_path: Path) -> Iterator[Dashboard]:
    settings = Settings(data_dir=tmp_path / "data", secret_key="test-secret", port=8000)
    # No `with`: the lifespan (Redis, runtime, loops) does not run; pages read the database and repos only.
    app = create_app(settings)
    migrate(settings.sqlalchemy_url)
    svc: Services = app.state.services
    with svc.db.session() as s:
        add_user(s, "alice", password=PASSWORD)
        add_user(s, "bob", password=PASSWORD)
        add_user(s, "root", admin=True, password=PASSWORD)
    yield Dashboard(svc, TestClient(app, base_url="http://127.0.0.1:8000"))
