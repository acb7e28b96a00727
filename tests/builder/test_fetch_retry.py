"""A build fetching its commit while the control plane restarts (issue 18): the repository server answering 502
(what the proxy says meanwhile) for a few seconds is waited out, not turned into a BUILD_ERROR; a commit the
server does not have still fails at once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from builder import tasks
from tests.webhooks.forge import Forge


class RestartingForge(Forge):
    """Answers 502 until `back_at`, as the proxy does while the control plane is down."""

    back_at = 0.0
    refused = 0

    def serve(self, req) -> None:
        if time.monotonic() < self.back_at:
            self.refused += 1
            req.send_response(502)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        super().serve(req)


@pytest.fixture
def forge(tmp_path: Path):
    f = RestartingForge(tmp_path / "forge")
    (tmp_path / "forge").mkdir()
    yield f
    f.close()


def test_a_fetch_waits_out_a_restarting_server(forge: RestartingForge, tmp_path: Path) -> None:
    up = forge.create("app", {"index.html": "<h1>hi</h1>\n"})
    _, commit = up.commit({"index.html": "<h1>v2</h1>\n"}, "v2")
    forge.back_at = time.monotonic() + 3
    lines: list[str] = []
    tasks.fetch(up.url, commit, tmp_path / "checkout", lines.append)
    assert forge.refused >= 1
    assert (tmp_path / "checkout" / "index.html").read_text() == "<h1>v2</h1>\n"
    assert "The repository server is not answering; retrying" in lines


def test_a_missing_commit_fails_at_once(forge: RestartingForge, tmp_path: Path) -> None:
    up = forge.create("app", {"index.html": "x\n"})
    started = time.monotonic()
    with pytest.raises(tasks.BuildFailed, match="could not fetch commit 0123456"):
        tasks.fetch(up.url, "0123456789" * 4, tmp_path / "checkout", lambda _line: None)
    # Not the minute a server that is away gets.
    assert time.monotonic() - started < tasks.FETCH_UNREACHABLE_SECONDS / 2
