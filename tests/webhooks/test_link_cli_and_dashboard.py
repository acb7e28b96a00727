"""The link from the command line (`spaceyard link`) and from the dashboard's settings page (forms, the secret
shown once, the delivery log with "redeliver", unlink), against a real platform and the tests' forge."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid

import httpx
import pytest

from tests.conftest import RunningPlatform
from tests.e2e.spaces import create
from tests.webhooks.forge import PUSH, deliver, static_files
from tests.webhooks.spaces import deliveries, wait_delivery, wait_serving

pytestmark = pytest.mark.docker
PASSWORD = "correct horse battery"


def cli(platform: RunningPlatform, owner: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **platform.env, "SPACEYARD_TOKEN": platform.user(owner)}
    return subprocess.run([sys.executable, "-m", "controlplane.cli", "link", *args], env=env, input=stdin,
                          capture_output=True, text=True, timeout=300)


def test_cli_links_shows_and_unlinks(linked_platform, forge):
    owner, name = "clilink", "app"
    space = f"{owner}/{name}"
    up = forge.create(name, static_files("from the cli"))
    create(linked_platform, owner, name, sdk="static")
    token = "tok_" + uuid.uuid4().hex
    out = cli(linked_platform, owner, space, up.url, "--branch", "main", "--credential-stdin", stdin=token + "\n")
    assert out.returncode == 0, out.stderr
    assert f"{space} follows {up.url} (main) with a credential" in out.stdout
    assert "sync: building" in out.stdout and "webhook secret (shown once): " in out.stdout
    assert f"/api/webhooks/github/{space}" in out.stdout and token not in out.stdout
    secret = re.search(r"shown once\): (\S+)", out.stdout).group(1)
    wait_serving(linked_platform, space, "from the cli")
    # The secret works for a push, and `link` alone shows the link without it.
    before, after = up.commit(static_files("pushed"), "pushed")
    assert deliver(linked_platform.url, "github", space, PUSH["github"](up, "main", before, after, "p"),
                   secret).status_code == 202
    wait_serving(linked_platform, space, "pushed")
    shown = cli(linked_platform, owner, space)
    assert shown.returncode == 0 and up.url in shown.stdout and secret not in shown.stdout
    refused = cli(linked_platform, owner, space, "ext::sh")
    assert refused.returncode != 0 and "only http:// and https://" in refused.stderr
    assert cli(linked_platform, owner, space, "--remove").returncode == 0
    gone = cli(linked_platform, owner, space)
    assert gone.returncode != 0 and "error 404" in gone.stderr and "not linked" in gone.stderr


class Browser:
    """A signed-in dashboard session posting the settings forms as a browser does (cookie + CSRF field)."""

    def __init__(self, platform: RunningPlatform, user: str) -> None:
        platform.user(user)  # created on first use
        subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "password", user, "--password", PASSWORD],
                       env={**os.environ, **platform.env}, check=True, capture_output=True)
        self.client = httpx.Client(base_url=platform.url, timeout=300, follow_redirects=True)
        resp = self.client.post("/login", data={"username": user, "password": PASSWORD, "csrf_token": self.csrf()})
        assert resp.status_code == 200 and "Sign in" not in resp.text, resp.text

    def csrf(self, path: str = "/login") -> str:
        return re.search(r'name="csrf_token" value="([0-9a-f]+)"', self.client.get(path).text).group(1)

    def post(self, path: str, data: dict, page: str) -> httpx.Response:
        return self.client.post(path, data={**data, "csrf_token": self.csrf(page)})


def test_dashboard_links_lists_deliveries_redelivers_and_unlinks(linked_platform, forge):
    owner, name = "dashlink", "app"
    space = f"{owner}/{name}"
    base = f"/spaces/{space}/settings"
    up = forge.create(name, static_files("from the dashboard"))
    create(linked_platform, owner, name, sdk="static")
    browser = Browser(linked_platform, owner)
    assert "Link and sync" in browser.client.get(base).text

    page = browser.post(f"{base}/link/set", {"url": up.url, "branch": "main"}, base)
    assert page.status_code == 200, page.text
    secret = re.search(r'<code id="new-webhook-secret">([^<]+)</code>', page.text).group(1)
    assert "building" in page.text and f"/api/webhooks/gitea/{space}" in page.text
    wait_serving(linked_platform, space, "from the dashboard")
    assert secret not in browser.client.get(base).text  # shown once

    before, after = up.commit(static_files("delivered"), "delivered")
    delivery = str(uuid.uuid4())
    deliver(linked_platform.url, "gitea", space, PUSH["gitea"](up, "main", before, after, "d"), secret,
            delivery=delivery)
    wait_delivery(linked_platform, owner, space, delivery)
    page = browser.client.get(base).text
    assert delivery[:18] in page and after[:7] in page and "building" in page

    row = next(d for d in deliveries(linked_platform, owner, space) if d["deliveryId"] == delivery)
    resp = browser.post(f"{base}/link/redeliver", {"delivery": str(row["id"])}, base)
    assert resp.status_code == 200 and f"Redelivery of {delivery}" in resp.text
    assert browser.post(f"{base}/link/redeliver", {"delivery": "99999"}, base).status_code == 404
    wait_serving(linked_platform, space, "delivered")

    # A stranger's session cannot change the link.
    stranger = Browser(linked_platform, "dashstranger")
    assert stranger.post(f"{base}/link/set", {"url": up.url}, "/").status_code == 403

    resp = browser.post(f"{base}/link/delete", {}, base)
    assert resp.status_code == 200 and "Link and sync" in resp.text and "Recent deliveries" not in resp.text
