"""The Like button in a real browser (issue 15, item 6): a signed-in user likes and unlikes a Space on its page;
the Spaces list and the API show the count."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.browser import chromium
from tests.conftest import RunningPlatform
from tests.dashboard.test_browser import add_user, shot, sign_in
from tests.e2e.spaces import create

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with chromium() as b:
        yield b


def likes(platform: RunningPlatform, space: str) -> int:
    return httpx.get(f"{platform.url}/api/spaces/{space}").json()["likes"]


def test_like_and_unlike_on_the_space_page(platform: RunningPlatform, browser) -> None:
    create(platform, "liked", "demo", sdk="static")
    add_user(platform, "liker")
    page = sign_in(browser, platform, "liker")
    page.goto(f"{platform.url}/spaces/liked/demo")
    button = page.get_by_role("button", name="♥ Like 0")
    assert button.get_attribute("aria-pressed") == "false"
    button.click()
    page.wait_for_url(f"{platform.url}/spaces/liked/demo")
    liked = page.get_by_role("button", name="♥ Liked 1")
    assert liked.get_attribute("aria-pressed") == "true" and likes(platform, "liked/demo") == 1
    shot(page, "space-liked")

    page.goto(f"{platform.url}/?show=public")
    row = page.locator("tr", has=page.get_by_text("liked/demo"))
    assert row.locator("td.likes").inner_text() == "♥ 1"

    page.goto(f"{platform.url}/spaces/liked/demo")
    page.get_by_role("button", name="♥ Liked 1").click()
    page.wait_for_url(f"{platform.url}/spaces/liked/demo")
    assert page.get_by_role("button", name="♥ Like 0").is_visible() and likes(platform, "liked/demo") == 0
