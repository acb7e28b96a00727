"""The proxy (HAProxy) as a pure function of the installation and the route table: file contents, no I/O.

One HAProxy process holds the public port. Running public Spaces are data in runtime maps (host -> Space, path
prefix -> Space) that the pusher changes entry by entry through the runtime API: no reload, so no client
connection or WebSocket is ever cut. Every other request goes to the control plane (the activator and
authority): the API, dashboard and git, Spaces that are not running or are private, and any request carrying a
platform credential, which only the control plane may read and strip (docs/router.md).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from controlplane.router.headers import PLATFORM_COOKIES

_NAMES = sorted(c.decode() for c in PLATFORM_COOKIES)
# A request carrying one of the platform's cookies (any case, as headers.is_platform_cookie reads them).
COOKIE_PATTERN = r"(^|;)\s*(" + "|".join(_NAMES) + r")\s*="
# An app's answer setting one of them.
SET_COOKIE_PATTERN = r"^\s*(" + "|".join(_NAMES) + r")\s*="
VERSION_KEY = "version"
# Map values: "upstream|prefix|strip|instance" ("127.0.0.1:49153|/apps/o/n|1|2813417602").
SEP = "|"
# Stick tables: a client session (Gradio's session_hash) -> its instance, and the requests open per instance.
SESSIONS_TABLE, INSTANCES_TABLE = "sessions", "instances"
# The peers section that shares the sessions table between replicas (the Helm chart's proxy pods).
PEERS_SECTION = "replicas"
# Bodies to and from the control plane can be large (LFS objects, downloads, git packs): spliced, the kernel moves
# them from socket to socket through a pipe and HAProxy never copies them. Per 200 MiB download: HAProxy's CPU
# 0.14 s -> 0.03 s, the download 0.19-0.21 s -> 0.155-0.16 s (bench/lfs_throughput.py). Pipes of 256 KiB, not the
# kernel's 64: a quarter of the splice calls (HAProxy 0.06 s with 64 KiB ones).
SPLICE = "    option splice-request\n    option splice-response\n"
PIPE_SIZE = 256 * 1024


@dataclass(frozen=True)
class Route:
    """A running public Space the proxy serves directly."""

    space: str  # "owner/name"
    label: str  # host label: {label}.{apps_domain}
    upstream: str  # "127.0.0.1:49153"
    prefix: str  # "/apps/owner/name"
    strip_prefix: bool


@dataclass(frozen=True)
class Table:
    version: int  # increases with every table the control plane computes; the proxy never goes back
    routes: tuple[Route, ...]
    # Upstreams replaced by a redeploy that still serve the sessions pinned to them until they are stopped.
    draining: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Peers:
    """The replicas that share the `sessions` stick table (HAProxy `peers`): a session pinned through one
    replica is followed by the others, and a restarted replica learns every pin from them."""

    local: str  # this replica's peer name
    bind: str  # "10.0.0.5:9998": where it listens for the others
    others: tuple[tuple[str, str], ...]  # (name, "ip:port") of every other replica


@dataclass(frozen=True)
class Relay:
    """Every request of a Gradio session is served by one replica, its owner (the session's hash modulo the
    replica count); the others pass it on (PROXY protocol, so the owner sees the client's address). "A stream of
    the session is open", which decides where a join goes, is known only to the process that holds the stream: peers
    share pins, not that. An owner that is down, or refuses a connection, is replaced by the replica itself."""

    ordinal: int  # this replica's
    bind: str  # "10.0.0.5:9997": where this replica takes the requests the others pass on
    replicas: tuple[str, ...]  # every replica's relay address by ordinal (DNS names need `resolvers`)
    resolvers: bool = False  # resolve the names at run time through the pod's nameserver (they change)


@dataclass(frozen=True)
class Layout:
    """Where things are; fixed for one installation."""

    listen: str  # "127.0.0.1:8000": what users reach
    controlplane: str  # "127.0.0.1:8001"
    folder: str  # the config, maps and error pages (absolute)
    socket: str  # the runtime API's unix socket
    apps_domain: str
    path_urls: bool
    activity: str | None = None  # "127.0.0.1:8002": UDP, one log line per request served by an app
    peers: Peers | None = None  # replicas sharing the session pins (none for the one local proxy)
    ready: str | None = None  # "0.0.0.0:8081": answers 200 once a route table is loaded (a readiness probe)
    relay: Relay | None = None  # sessions served by one replica each (with peers)

    def path(self, name: str) -> str:
        return f"{self.folder}/{name}"


def maps(table: Table, layout: Layout) -> dict[str, dict[str, str]]:
    """The runtime maps' entries, by map file name; the version last, so that a proxy showing a version holds
    that version's routes."""
    out = {"hosts.map": {f"{r.label}.{layout.apps_domain}": _value(r) for r in table.routes}}
    if layout.path_urls:
        out["paths.map"] = {r.prefix: _value(r) for r in table.routes}
    live = {r.upstream for r in table.routes} | table.draining
    out["instances.map"] = {str(instance_key(u)): u for u in sorted(live)}
    out["version.map"] = {VERSION_KEY: str(table.version)}
    return out


def changes(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]], layout: Layout) -> list[str]:
    """The runtime API commands that turn the proxy's maps `before` into `after` (both as `maps` gives them),
    entry by entry."""
    commands = []
    for name, entries in after.items():
        path, previous = layout.path(name), before[name]
        for key, value in entries.items():
            if key not in previous:
                commands.append(f"add map {path} {key} {value}")
            elif previous[key] != value:
                commands.append(f"set map {path} {key} {value}")
        commands += [f"del map {path} {key}" for key in sorted(previous.keys() - entries.keys())]
    return commands


def instance_key(upstream: str) -> int:
    """The number a session's stick-table entry keeps for its instance (stick tables store integers only); 0 is
    HAProxy's "none"."""
    return zlib.crc32(upstream.encode()) or 1


def _value(r: Route) -> str:
    return SEP.join((r.upstream, r.prefix, "1" if r.strip_prefix else "0", str(instance_key(r.upstream))))


def map_text(entries: dict[str, str]) -> str:
    return "".join(f"{k} {v}\n" for k, v in entries.items())


def _lua() -> str:
    names = ", ".join(f'["{n}"] = true' for n in _NAMES)
    return f"""-- Apps cannot set the platform's cookies: their Set-Cookie headers go, the app's own stay.
local platform = {{{names}}}
core.register_action("strip_platform_cookies", {{"http-res"}}, function(txn)
  local values = txn.http:res_get_headers()["set-cookie"] or {{}}
  txn.http:res_del_header("set-cookie")
  for i = 0, #values do
    local v = values[i]
    if v ~= nil then
      local name = v:match("^%s*([^=]*)"):gsub("%s+$", ""):lower()
      if not platform[name] then txn.http:res_add_header("set-cookie", v) end
    end
  end
end)
"""


def _page(status: str, message: str) -> str:
    body = f"<!doctype html><title>{status}</title><h1>{message}</h1>\n"
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        f"Cache-Control: no-store\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}"
    )


def config(layout: Layout) -> str:
    """haproxy.cfg: static (the Spaces live in the maps), so it is written once and never reloaded."""
    hosts, paths, version, lua, instances = (
        layout.path(n) for n in ("hosts.map", "paths.map", "version.map", "cookies.lua", "instances.map")
    )
    app_down, cp_down = layout.path("app-down.http"), layout.path("cp-down.http")
    log = f"    log {layout.activity} len 1024 format raw local0\n" if layout.activity else ""
    local_peer, peers, shared = "", "", ""
    if layout.peers:
        local_peer = f"    localpeer {layout.peers.local}\n"
        lines = [(layout.peers.local, layout.peers.bind), *layout.peers.others]
        peers = f"peers {PEERS_SECTION}\n" + "".join(f"    peer {n} {a}\n" for n, a in lines) + "\n"
        shared = f" peers {PEERS_SECTION}"
    relay_bind, relay_rules, relay_use, relay_backends, resolvers = _relay(layout.relay)
    path_lookup = ""
    if layout.path_urls:
        # /apps/{owner}/{name}/ on any host that is not an app's: its prefix is the key.
        path_lookup = (
            f"    http-request set-var(txn.sy) path,field(1,/,4),map({paths}) "
            "if !app_host !credential { path -m reg ^/apps/[^/]+/[^/]+/ }\n"
        )
    return f"""# Written by Spaceyard (controlplane/proxy/config.py); the Spaces are in the maps beside it.
global
    stats socket {layout.socket} mode 600 level admin
    tune.pipesize {PIPE_SIZE}
{log}{local_peer}    lua-load {lua}

{peers}{resolvers}defaults
    mode http
{"    log global" if layout.activity else "    no log"}
    # The activity line: the prefix of the Space that served the request (nothing is logged for the rest).
    log-format "%[var(txn.prefix)]"
    timeout connect 10s
    timeout http-request 30s
    timeout http-keep-alive 5m
    # No read timeout to speak of: SSE streams and long generations may be silent for minutes.
    timeout client 1h
    timeout server 1h
    timeout tunnel 1h
    # A kept-alive connection the app closed at the moment it was reused: sent again on a new one.
    retry-on conn-failure empty-response
    retries 2

frontend spaceyard
    bind {layout.listen}
{relay_bind}    # The first proxy: clients' own X-Forwarded-* are replaced.
    http-request del-header X-Forwarded-For
    option forwardfor
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request del-header X-Forwarded-Prefix

    # Any platform credential: the control plane decides what it opens and strips it before an app sees it.
    acl credential req.hdr_cnt(authorization) gt 0
    acl credential req.hdr_cnt(x-hf-authorization) gt 0
    acl credential req.hdr(cookie) -m reg -i {COOKIE_PATTERN}
    acl credential urlp(__sign) -m found
    # The Space, by host ({{label}}.{layout.apps_domain}) or by path; never path-based on an app's own host.
    acl app_host req.hdr(host),field(1,:),lower -m end .{layout.apps_domain}
    http-request set-var(txn.sy) req.hdr(host),field(1,:),lower,map({hosts}) if app_host !credential
{path_lookup}    acl found var(txn.sy) -m found
    http-request set-var(txn.prefix) var(txn.sy),field(2,|) if found
    # /apps/o/n without the slash: the control plane redirects.
    http-request unset-var(txn.sy) if found {{ path,strcmp(txn.prefix) eq 0 }}
    http-request unset-var(txn.prefix) if !found
    # Sessions survive redeploys (docs/router.md): Gradio's queue/join (session_hash in the JSON body) and the
    # queue/data stream that follows (in the query) go to the instance the session is on while that one lives.
    acl join method POST
    acl join path -m end /queue/join
    acl data path -m end /queue/data
    http-request wait-for-body time 5s if found join
    http-request set-var(txn.session) req.body,json_query('$.session_hash') if found join
    http-request set-var(txn.session) url_param(session_hash) if found data
    # Per Space: a session hash pinned on one Space never steers requests to another.
    http-request set-var(txn.session) var(txn.session),concat(@,txn.prefix,) if {{ var(txn.session) -m found }}
{relay_rules}    # The per-SDK prefix rule (docs/router.md), decided before the path changes.
    acl under path,field(1,/,4),strcmp(txn.prefix) eq 0
    acl strip var(txn.sy),field(3,|) -m str 1
    http-request set-var(txn.rule) str(strip) if found under strip
    http-request set-var(txn.rule) str(under) if found under !strip
    http-request set-var(txn.rule) str(prepend) if found !under !strip
    http-request set-header X-Forwarded-Prefix %[var(txn.prefix)] if {{ var(txn.rule) -m str strip under }}
    http-request replace-path ^/apps/[^/]+/[^/]+(/.*)$ \\1 if {{ var(txn.rule) -m str strip }}
    http-request set-path %[var(txn.prefix)]%[path] if {{ var(txn.rule) -m str prepend }}
    http-request track-sc1 var(txn.session) table {SESSIONS_TABLE} if {{ var(txn.session) -m found }}
    http-request set-var(txn.upstream) var(txn.sy),field(1,|) if found
    http-request set-var(txn.instance) var(txn.sy),field(4,|) if found
    # A join moves to the current instance unless a stream of its session is open (it counts itself).
    acl pinned sc_get_gpt0(1),map({instances}) -m found
    http-request set-var(txn.stay) bool(1) if pinned data || pinned join {{ sc_trackers(1) gt 1 }}
    acl stay var(txn.stay) -m bool
    http-request set-var(txn.instance) sc_get_gpt0(1) if stay
    http-request set-var(txn.upstream) var(txn.instance),map({instances}) if stay
    http-request sc-set-gpt0(1) var(txn.instance) if found join {{ var(txn.session) -m found }}
    # What is open on each instance (not Gradio's endless heartbeat): a redeploy stops the old one once it is 0.
    http-request track-sc2 var(txn.upstream) table {INSTANCES_TABLE} if found !{{ path -m sub /heartbeat/ }}
    # Straight to the Space's container: the looked-up address becomes the connection's destination.
    http-request set-dst var(txn.upstream),field(1,:) if found
    http-request set-dst-port var(txn.upstream),field(2,:) if found
    http-request set-log-level silent if !found
    # The table's version: read by the pusher through the runtime API only.
    http-request set-var(txn.version) str({VERSION_KEY}),map({version}) if FALSE
{relay_use}    use_backend app if found
    default_backend controlplane

backend app
    server app 0.0.0.0:0
    http-response lua.strip_platform_cookies if {{ res.hdr(set-cookie) -m reg -i {SET_COOKIE_PATTERN} }}
    errorfile 503 {app_down}

backend controlplane
{SPLICE}    server controlplane {layout.controlplane}
    errorfile 503 {cp_down}

backend {SESSIONS_TABLE}
    stick-table type string len 200 size 1m expire 1h store gpt0{shared}

backend {INSTANCES_TABLE}
    stick-table type string len 64 size 100k expire 1h
{relay_backends}{_ready(layout)}"""


def _relay(relay: Relay | None) -> tuple[str, str, str, str, str]:
    """The frontend's extra bind, its rules, its use_backend lines, the relay backends and the resolvers section."""
    if relay is None:
        return "", "", "", "", ""
    n, own = len(relay.replicas), relay.ordinal
    bind = (
        f"    bind {relay.bind} accept-proxy name relay\n"
        # The relay servers' health checks: connections with no request, not activity.
        "    option dontlognull\n"
    )
    rules = f"""    # One replica per session (docs/router.md, "On Kubernetes"): the others pass its requests on as is.
    acl relayed so_name relay
    http-request set-var(txn.owner) var(txn.session),crc32,mod({n}) if {{ var(txn.session) -m found }} !relayed
    http-request set-var(txn.relay) var(txn.owner) if {{ var(txn.owner) -m found }} !{{ var(txn.owner) -m int {own} }}
    # Not tracked here (an empty entry would reach the owner through the peers), not routed, not logged.
    http-request unset-var(txn.session) if {{ var(txn.relay) -m found }}
    http-request unset-var(txn.sy) if {{ var(txn.relay) -m found }}
"""
    others = [i for i in range(n) if i != own]
    use = "".join(f"    use_backend relay-{i} if {{ var(txn.relay) -m int {i} }}\n" for i in others)
    # A refused connection marks the owner down at once, and the retry goes to the backup: this replica.
    check = "check check-send-proxy inter 1s fall 2 rise 1 observe layer4 error-limit 1 on-error mark-down"
    if relay.resolvers:
        check += " resolvers cluster init-addr none resolve-prefer ipv4"
    backends = "".join(
        f"""
backend relay-{i}
    # The session's owner; when it is down or refuses the connection, this replica itself (through its relay port).
    option redispatch 1
    timeout connect 2s
    server owner {relay.replicas[i]} send-proxy-v2 {check}
    server self {relay.bind} send-proxy-v2 backup
"""
        for i in others
    )
    resolvers = ""
    if relay.resolvers:
        resolvers = "resolvers cluster\n    parse-resolv-conf\n    hold valid 5s\n\n"
    return bind, rules, use, backends, resolvers


def _ready(layout: Layout) -> str:
    """A replica is ready once the pusher has loaded a table into it: before, it would hand every request to the
    control plane. The files it starts from hold version 0; every table the pusher sends has a later one."""
    if not layout.ready:
        return ""
    version = layout.path("version.map")
    return f"""
frontend ready
    bind {layout.ready}
    # Probes are not activity (the log line names no Space).
    http-request set-log-level silent
    acl loaded str({VERSION_KEY}),map({version},0) -m int gt 0
    http-request return status 200 content-type text/plain string "route table loaded" if loaded
    http-request return status 503 content-type text/plain string "no route table yet"
"""


def files(table: Table, layout: Layout) -> dict[str, str]:
    """Every file the proxy starts from, by name in `layout.folder`."""
    out = {
        "haproxy.cfg": config(layout),
        "cookies.lua": _lua(),
        "app-down.http": _page("502 Bad Gateway", "The app is not answering"),
        "cp-down.http": _page("502 Bad Gateway", "Spaceyard is not answering; try again in a moment"),
    }
    for name, entries in maps(table, layout).items():
        out[name] = map_text(entries)
    out.setdefault("paths.map", "")
    return out
