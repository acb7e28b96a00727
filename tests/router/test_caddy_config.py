"""The proxy's config as a pure function of the route table (no Caddy here), and the route table as the pusher
reads it from the database: only running public Spaces with an endpoint are ever served directly."""

from __future__ import annotations

import json
from pathlib import Path

from controlplane.core.config import Settings
from controlplane.core.db import Database, migrate
from controlplane.models import Space
from controlplane.proxy.config import UPSTREAM, Layout, Route, Table, build
from controlplane.proxy.pusher import running_routes
from controlplane.stages import SLEEPING

LAYOUT = Layout(listen="127.0.0.1:9003", controlplane="127.0.0.1:9001", admin_socket="/x/admin.sock",
                storage_dir="/x/storage", apps_domain="apps.example", path_urls=True, activity="127.0.0.1:9002")


def handlers(config: dict) -> list[dict]:
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if "handler" in node:
                found.append(node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config)
    return found


def routes(n: int) -> tuple[Route, ...]:
    return tuple(Route(f"u{i}/s{i}", f"u{i}-s{i}", f"127.0.0.1:{20000 + i}", f"/apps/u{i}/s{i}", i % 2 == 0)
                 for i in range(n))


def test_config_grows_by_a_map_line_per_space_not_by_a_route() -> None:
    small, large = build(Table(1, routes(1)), LAYOUT), build(Table(2, routes(10_000)), LAYOUT)
    assert len(handlers(small)) == len(handlers(large))  # same handlers: the Spaces are data in two maps
    assert len(json.dumps(large)) < 3_000_000
    maps = [h for h in handlers(large) if h["handler"] == "map"]
    assert sorted(len(m["mappings"]) for m in maps) == [10_000, 10_000]
    host_map = next(m for m in maps if m["source"] == "{http.request.host}")
    assert host_map["mappings"][3] == {"input": "u3-s3.apps.example",
                                       "outputs": ["127.0.0.1:20003", "/apps/u3/s3", "0"]}


def test_path_urls_off_means_no_path_lookup() -> None:
    off = build(Table(1, routes(3)), Layout(**{**LAYOUT.__dict__, "path_urls": False}))
    assert [h["source"] for h in handlers(off) if h["handler"] == "map"] == ["{http.request.host}"]


def test_every_app_proxy_refuses_platform_set_cookies_and_credentials_go_first() -> None:
    config = build(Table(1, routes(2)), LAYOUT)
    to_apps = [h for h in handlers(config) if h["handler"] == "reverse_proxy" and h["upstreams"][0]["dial"] == UPSTREAM]
    assert to_apps and all(h["handle_response"][0]["match"]["headers"]["Set-Cookie"] for h in to_apps)
    server = config["apps"]["http"]["servers"]["spaceyard"]
    first = server["routes"][1]  # after the version route, before any lookup
    assert {"header": {"Authorization": []}} in first["match"] and {"query": {"__sign": ["*"]}} in first["match"]
    assert first["handle"][0]["upstreams"] == [{"dial": LAYOUT.controlplane}] and first["terminal"]


def test_the_table_holds_only_running_public_spaces(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'routes.db'}"
    migrate(url)
    db = Database(Settings(database_url=url, data_dir=tmp_path))
    rows = [
        ("alice", "up-x", "RUNNING", False, "127.0.0.1:1001", None),
        ("alice", "new-version-starting", "RUNNING_APP_STARTING", False, "127.0.0.1:1002", None),
        ("alice", "secret", "RUNNING", True, "127.0.0.1:1003", None),
        ("alice", "asleep", "STOPPED", False, None, SLEEPING),
        ("alice", "starting", "APP_STARTING", False, None, None),
        ("alice", "paused", "PAUSED", False, "127.0.0.1:1004", None),
        ("alice", "up_x", "RUNNING", False, "127.0.0.1:1005", None),  # same label as alice/up-x, created later
    ]
    with db.session() as s:
        for owner, name, stage, private, endpoint, detail in rows:
            s.add(Space(owner=owner, name=name, stage=stage, private=private, endpoint=endpoint, detail=detail,
                        hardware_requested="cpu-basic", strip_prefix=True))
    table = running_routes(db)
    assert [(r.space, r.upstream) for r in table] == [
        ("alice/up-x", "127.0.0.1:1001"), ("alice/new-version-starting", "127.0.0.1:1002")]
