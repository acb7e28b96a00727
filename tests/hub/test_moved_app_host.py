"""`move_repo` and the host-based app URL, over real HTTP through the platform's edge proxy: the old
`{owner}-{name}.{apps_domain}` host answers 307 to the new Space's host with the same path and query (the edge hands
a host it has no route for to the control plane's router, which knows former names); a moved private Space's old
host redirects its owner only. Attacker cases: tests/security/test_moved_app_hosts.py."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import httpx
import pytest
from huggingface_hub import HfApi

pytestmark = pytest.mark.docker


def host_of(api: HfApi, space: str) -> str:
    """The app's own host (and port), as the runtime gives it."""
    return urlsplit(api.get_space_runtime(space).raw["spaceyard"]["hostUrl"]).netloc


def get(platform, host: str, path: str, token: str | None = None) -> httpx.Response:
    # *.localhost need not resolve here: the request goes to the platform's address with the app's Host.
    headers = {"Host": host, **({"Authorization": f"Bearer {token}"} if token else {})}
    return httpx.get(f"{platform.url}{path}", headers=headers, follow_redirects=False, timeout=30)


def test_the_old_app_host_of_a_moved_space_redirects_to_its_new_host(platform):
    token = platform.user("hostmover")
    api = HfApi(endpoint=platform.url, token=token)
    api.create_repo("hostmover/page", repo_type="space", space_sdk="static")
    api.upload_file(
        path_or_fileobj=b"<p>the page</p>", path_in_repo="index.html", repo_id="hostmover/page", repo_type="space"
    )
    assert api.wait_for_space("hostmover/page", timeout=300, poll_interval=0.5).stage == "RUNNING"
    old_host = host_of(api, "hostmover/page")
    assert "the page" in get(platform, old_host, "/index.html").text

    api.move_repo("hostmover/page", "hostmover/renamed", repo_type="space")
    new_host = host_of(api, "hostmover/renamed")
    assert new_host != old_host
    # The route table reaches the edge a moment after the move.
    deadline = time.monotonic() + 30
    while (old := get(platform, old_host, "/index.html?x=1&y=%2F")).status_code != 307:
        assert time.monotonic() < deadline, (old.status_code, old.headers, old.text[:300])
        time.sleep(0.3)
    assert old.headers["location"] == f"http://{new_host}/index.html?x=1&y=%2F"
    assert api.wait_for_space("hostmover/renamed", timeout=300, poll_interval=0.5).stage == "RUNNING"
    deadline = time.monotonic() + 60
    while "the page" not in (new := get(platform, new_host, "/index.html?x=1&y=%2F")).text:
        assert time.monotonic() < deadline, (new.status_code, new.text[:300])
        time.sleep(0.3)

    # Private: the old host leads its owner on, and is a plain 404 to everyone else (no Location, no new name).
    api.update_repo_settings("hostmover/renamed", repo_type="space", private=True)
    deadline = time.monotonic() + 30
    while (anon := get(platform, old_host, "/")).status_code != 404:
        assert time.monotonic() < deadline, (anon.status_code, anon.headers)
        time.sleep(0.3)
    assert "location" not in anon.headers and "renamed" not in anon.text
    other = get(platform, old_host, "/", platform.user("hostsnoop"))
    assert other.status_code == 404 and "location" not in other.headers
    owner = get(platform, old_host, "/a?b=c", token)
    assert owner.status_code == 307 and owner.headers["location"] == f"http://{new_host}/a?b=c"

    # A Space created under the old name takes the host back: no redirect any more.
    api.create_repo("hostmover/page", repo_type="space", space_sdk="static")
    deadline = time.monotonic() + 10
    while (taken := get(platform, old_host, "/", token)).status_code == 307:
        assert time.monotonic() < deadline, taken.headers
        time.sleep(0.3)
    assert "location" not in taken.headers
