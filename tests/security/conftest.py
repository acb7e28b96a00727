"""The echo-headers Space the web-surface tests share (built once per platform)."""

from __future__ import annotations

import pytest

from tests.conftest import RunningPlatform
from tests.security.web_echo import echo_space, wait_answering


@pytest.fixture(scope="module")
def echo(platform: RunningPlatform, tmp_path_factory) -> str:
    space = echo_space(platform, tmp_path_factory.mktemp("echo"))
    wait_answering(platform, f"/apps/{space}/")
    return space
