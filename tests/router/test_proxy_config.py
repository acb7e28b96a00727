"""The proxy's files as a pure function of the route table (no HAProxy here), the entry-by-entry changes between
two tables, and the route table as the pusher reads it from the database: only running public Spaces with an
endpoint are ever served directly."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from controlplane.core.config import Settings
from controlplane.core.db import Database, migrate
from controlplane.models import Space
from controlplane.proxy.config import Layout, Route, Table, changes, config, files, instance_key, maps
from controlplane.proxy.routes import RunningRoutes
from controlplane.stages import SLEEPING

LAYOUT = Layout(
    listen="127.0.0.1:9000",
    controlplane="127.0.0.1:9001",
    folder="/x/proxy",
    socket="/x/proxy/admin.sock",
    apps_domain="apps.example",
    path_urls=True,
    activity="127.0.0.1:9002",
)


def routes(n: int) -> tuple[Route, ...]:
    return tuple(
        Route(f"u{i}/s{i}", f"u{i}-s{i}", f"127.0.0.1:{20000 + i}", f"/apps/u{i}/s{i}", i % 2 == 0) for i in range(n)
    )


def value(upstream: str, prefix: str, strip: int) -> str:
    return f"{upstream}|{prefix}|{strip}|{instance_key(upstream)}"


def test_the_config_is_static_and_the_spaces_are_map_entries() -> None:
    small, large = files(Table(1, routes(1)), LAYOUT), files(Table(2, routes(10_000)), LAYOUT)
    assert small["haproxy.cfg"] == large["haproxy.cfg"] == config(LAYOUT)
    assert large["hosts.map"].count("\n") == large["paths.map"].count("\n") == 10_000
    assert f"u3-s3.apps.example {value('127.0.0.1:20003', '/apps/u3/s3', 0)}\n" in large["hosts.map"]
    assert f"/apps/u4/s4 {value('127.0.0.1:20004', '/apps/u4/s4', 1)}\n" in large["paths.map"]
    assert large["version.map"] == "version 2\n"


def test_path_urls_off_means_no_path_lookup() -> None:
    off = Layout(**{**LAYOUT.__dict__, "path_urls": False})
    assert "paths.map" not in config(off) and "paths.map" not in maps(Table(1, routes(3)), off)


def test_credentials_go_to_the_control_plane_before_any_lookup_and_platform_set_cookies_are_dropped() -> None:
    text = config(LAYOUT)
    for rule in (
        "req.hdr_cnt(authorization) gt 0",
        "req.hdr_cnt(x-hf-authorization) gt 0",
        "urlp(__sign)",
        "req.hdr(cookie) -m reg -i",
    ):
        assert f"acl credential {rule}" in text
    lookups = [line for line in text.splitlines() if "http-request set-var(txn.sy)" in line]
    assert lookups and all(line.endswith("!credential") or "!credential {" in line for line in lookups)
    assert "lua.strip_platform_cookies if { res.hdr(set-cookie)" in text


def test_a_change_is_a_few_entries_and_the_version_comes_last() -> None:
    a, b, c = routes(3)
    moved = Route(b.space, b.label, "127.0.0.1:1", b.prefix, b.strip_prefix)
    commands = changes(maps(Table(1, (a, b)), LAYOUT), maps(Table(2, (moved, c)), LAYOUT), LAYOUT)
    key = {u: instance_key(u) for u in ("127.0.0.1:1", "127.0.0.1:20000", "127.0.0.1:20001", "127.0.0.1:20002")}
    assert commands == [
        f"set map /x/proxy/hosts.map u1-s1.apps.example {value('127.0.0.1:1', '/apps/u1/s1', 0)}",
        f"add map /x/proxy/hosts.map u2-s2.apps.example {value('127.0.0.1:20002', '/apps/u2/s2', 1)}",
        "del map /x/proxy/hosts.map u0-s0.apps.example",
        f"set map /x/proxy/paths.map /apps/u1/s1 {value('127.0.0.1:1', '/apps/u1/s1', 0)}",
        f"add map /x/proxy/paths.map /apps/u2/s2 {value('127.0.0.1:20002', '/apps/u2/s2', 1)}",
        "del map /x/proxy/paths.map /apps/u0/s0",
        f"add map /x/proxy/instances.map {key['127.0.0.1:1']} 127.0.0.1:1",
        f"add map /x/proxy/instances.map {key['127.0.0.1:20002']} 127.0.0.1:20002",
        *sorted(f"del map /x/proxy/instances.map {key[u]}" for u in ("127.0.0.1:20000", "127.0.0.1:20001")),
        "set map /x/proxy/version.map version 2",
    ]


def test_instances_being_drained_stay_in_the_instance_map() -> None:
    a, b = routes(2)
    live = maps(Table(1, (a, b), frozenset({"127.0.0.1:5"})), LAYOUT)["instances.map"]
    assert live == {str(instance_key(u)): u for u in ("127.0.0.1:20000", "127.0.0.1:20001", "127.0.0.1:5")}


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="HAProxy is not installed (scripts/setup.sh)")
def test_haproxy_accepts_the_config(tmp_path: Path) -> None:
    layout = Layout(**{**LAYOUT.__dict__, "folder": str(tmp_path), "socket": str(tmp_path / "admin.sock")})
    for name, text in files(Table(1, routes(2)), layout).items():
        (tmp_path / name).write_text(text)
    check = subprocess.run(["haproxy", "-c", "-f", str(tmp_path / "haproxy.cfg")], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[WARNING]" not in check.stdout + check.stderr


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
            s.add(
                Space(
                    owner=owner,
                    name=name,
                    stage=stage,
                    private=private,
                    endpoint=endpoint,
                    detail=detail,
                    hardware_requested="cpu-basic",
                    strip_prefix=True,
                )
            )
    running = RunningRoutes(db)
    table = running()
    assert [(r.space, r.upstream) for r in table] == [
        ("alice/up-x", "127.0.0.1:1001"),
        ("alice/new-version-starting", "127.0.0.1:1002"),
    ]

    # Announced changes are read Space by Space: the label's first Space deleted (the later one takes its label),
    # a paused one resumed, one renamed, one made private.
    with db.session() as s:
        s.delete(s.query(Space).filter_by(name="up-x").one())
        s.query(Space).filter_by(name="paused").one().stage = "RUNNING"
        s.query(Space).filter_by(name="new-version-starting").one().name = "renamed"
        s.query(Space).filter_by(name="up_x").one().private = True
    assert running() is table  # nothing announced yet: nothing read
    for name in ("alice/up-x", "alice/paused", "alice/renamed", "alice/new-version-starting"):
        running.changed(name)
    # alice/up_x's change is not announced yet: it is still routed, now under the label its elder left.
    assert [(r.space, r.label, r.upstream) for r in running()] == [
        ("alice/renamed", "alice-renamed", "127.0.0.1:1002"),
        ("alice/paused", "alice-paused", "127.0.0.1:1004"),
        ("alice/up_x", "alice-up-x", "127.0.0.1:1005"),
    ]
    running.changed("alice/up_x")
    assert [r.space for r in running()] == ["alice/renamed", "alice/paused"]
    # A change that names no Space reads them all again, and gives the same table.
    running.changed()
    assert [r.space for r in running()] == ["alice/renamed", "alice/paused"]
