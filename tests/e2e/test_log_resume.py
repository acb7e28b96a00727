"""Log streams resume from the client's last event (`Last-Event-ID`, what a browser's EventSource sends when it
reconnects) instead of replaying the whole log."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from tests.e2e.spaces import create, push, readme

pytestmark = pytest.mark.docker

# The run's own token makes the RUN step new to the engine: a cached step prints nothing, and an engine that built
# this file before (an earlier test run) would leave the build log without its lines.
CHATTY_DOCKERFILE = """FROM spaceyard/base:py3.11
RUN for i in 1 2 3 4 5 6; do echo build line $i; done  # {token}
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""
CHATTY_APP = """import http.server
for i in range(1, 21):
    print("run line", i, flush=True)
http.server.test(http.server.SimpleHTTPRequestHandler, port=7860)
"""


def events(
    platform, space: str, kind: str, last_event_id: str | None = None, *, in_query: bool = False
) -> list[tuple[str, str]]:
    """(id, line) of every event of a finished (no follow) log stream; `in_query`: the id as ?last_event_id=."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id and not in_query else {}
    params = {"follow": "false", **({"last_event_id": last_event_id} if last_event_id and in_query else {})}
    url = f"{platform.url}/api/spaces/{space}/logs/{kind}"
    out, event_id = [], None
    with httpx.stream("GET", url, params=params, headers=headers, timeout=60) as resp:
        assert resp.status_code == 200
        for line in resp.iter_lines():
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                assert event_id, "an event without an id"
                out.append((event_id, json.loads(line[6:])["data"].rstrip("\n")))
                event_id = None
    return out


@pytest.fixture(scope="module")
def chatty(platform, tmp_path_factory) -> str:
    create(platform, "lena", "chatty", sdk="docker")
    dockerfile = CHATTY_DOCKERFILE.format(token=uuid.uuid4().hex)
    files = {"README.md": readme("docker"), "Dockerfile": dockerfile, "app.py": CHATTY_APP}
    push(platform, "lena", "chatty", files, tmp_path_factory.mktemp("chatty"))
    assert platform.wait_stage("lena/chatty", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"})["stage"] == "RUNNING"
    return "lena/chatty"


def test_build_log_resumes_after_the_last_event(platform, chatty):
    full = events(platform, chatty, "build")
    index = next(i for i, (_id, line) in enumerate(full) if line.endswith("build line 3"))
    resumed = events(platform, chatty, "build", last_event_id=full[index][0])
    assert resumed == full[index + 1 :]
    # A page that opens a new stream after the browser gave up passes the id in the query.
    assert events(platform, chatty, "build", last_event_id=full[index][0], in_query=True) == resumed
    assert [line for _id, line in resumed if "build line" in line][:3] == [f"build line {i}" for i in (4, 5, 6)]
    # An id of another (older) build: the latest build's log from its start.
    other = str(int(full[0][0].split("|")[0]) - 1) + "|" + full[0][0].split("|", 1)[1]
    assert events(platform, chatty, "build", last_event_id=other) == full


def test_run_log_resumes_after_the_last_event(platform, chatty):
    full = events(platform, chatty, "run")
    lines = [line for _id, line in full]
    assert [f"run line {i}" for i in range(1, 21)] == [line for line in lines if line.startswith("run line")]
    index = lines.index("run line 7")
    resumed = events(platform, chatty, "run", last_event_id=full[index][0])
    assert resumed[: len(full) - index - 1] == full[index + 1 :]
    assert [line for _id, line in resumed if line.startswith("run line")] == [f"run line {i}" for i in range(8, 21)]
    # A stale instance's id (before a redeploy): everything.
    assert events(platform, chatty, "run", last_event_id="gone|2026-01-01T00:00:00Z|0")[: len(full)] == full
