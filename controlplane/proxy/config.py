"""The proxy's whole configuration as a pure function of the route table: Caddy JSON, no I/O.

Running public Spaces get a route straight to their container; every other request goes to the control plane
(the activator and authority): the API, dashboard and git, Spaces that are not running or are private, and any
request carrying a platform credential, which only the control plane may read and strip (docs/router.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.router.headers import PLATFORM_COOKIES

# The route that carries the table's version: the pusher reads it back (GET /id/...) to learn what is loaded.
VERSION_ID = "spaceyard-version"
# Never a real host name (RFC 2606): the route answers no visitor.
VERSION_HOST = "spaceyard-proxy.invalid"
ACCESS_LOGGER = "spaceyard"
_NAMES = sorted(c.decode() for c in PLATFORM_COOKIES)
# A request carrying one of the platform's cookies (any case, as headers.is_platform_cookie reads them).
COOKIE_PATTERN = r"(?i)(^|;)\s*(" + "|".join(_NAMES) + r")\s*="
# An app's Set-Cookie for one of them (the session cookie's __Host- prefix as browsers spell it).
SET_COOKIE_MATCH = sorted({f"{n}=*" for n in _NAMES} | {f"{n.replace('__host-', '__Host-')}=*" for n in _NAMES})
_IDLE_4S = 4_000_000_000  # Caddy durations in JSON are nanoseconds


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


@dataclass(frozen=True)
class Layout:
    """Where things listen; fixed for one installation. Two Caddy processes: the edge holds the public port and
    never reloads; it forwards everything to the routing tier, which takes the pushed route tables (every load
    closes a Caddy server's idle client connections, and a client reusing one at that moment fails; the edge's
    own connections to the routing tier are retried by Go's transport instead)."""

    listen: str  # "127.0.0.1:8003": the routing tier (loopback)
    controlplane: str  # "127.0.0.1:8001"
    admin_socket: str  # path of the admin API's unix socket
    storage_dir: str
    apps_domain: str
    path_urls: bool
    activity: str | None = None  # "127.0.0.1:8002": UDP, the access log (None: no access log)
    edge: str | None = None  # "127.0.0.1:8000": what users reach (None: the routing tier alone, for tests)


# No "flush_interval": -1. Caddy 2.6 then ends every proxied request in flight when a new config loads; without
# it, requests finish across a reload, and Caddy still flushes streaming answers (SSE, chunked bodies) as they
# come. Upgraded connections (WebSockets) are closed on every reload in 2.6 (docs/router.md).
def _transport() -> dict:
    # No Accept-Encoding the client never sent; idle upstream connections expire before uvicorn's 5 s.
    return {"protocol": "http", "compression": False, "keep_alive": {"idle_timeout": _IDLE_4S}}


# The edge's X-Forwarded-For/-Proto/-Host are kept (Caddy appends the edge's address to X-Forwarded-For, which the
# control plane's uvicorn skips as a trusted proxy); anyone else's are replaced.
_TRUSTED = ["127.0.0.1/32"]


def to_controlplane(layout: Layout) -> dict:
    return {"handler": "reverse_proxy", "upstreams": [{"dial": layout.controlplane}], "transport": _transport(),
            "trusted_proxies": _TRUSTED}


def _back_to_controlplane(layout: Layout) -> list[dict]:
    """The request as the client sent it (an app route may have rewritten its path), to the control plane."""
    return [{"handler": "rewrite", "uri": "{http.request.orig_uri}"}, to_controlplane(layout)]


# What the lookup of a request's Space sets (Caddy `map` destinations, read back as placeholders).
UPSTREAM, PREFIX, STRIP = "{sy_upstream}", "{sy_prefix}", "{sy_strip}"


def _to_app(layout: Layout, forwarded_prefix: bool) -> dict:
    request: dict = {"delete": ["X-Forwarded-Prefix"]}
    if forwarded_prefix:
        request = {"set": {"X-Forwarded-Prefix": [PREFIX]}}
    return {
        "handler": "reverse_proxy",
        # One handler for every Space: the dial address is the looked-up upstream.
        "upstreams": [{"dial": UPSTREAM}],
        "transport": _transport(),
        "trusted_proxies": _TRUSTED,
        "headers": {"request": request},
        # An app setting a platform cookie: its answer is dropped and the request re-run through the control
        # plane, whose router removes those Set-Cookie values and keeps the app's own.
        "handle_response": [{"match": {"headers": {"Set-Cookie": SET_COOKIE_MATCH}},
                             "routes": [{"handle": _back_to_controlplane(layout)}]}],
    }


def _strip(strip: bool) -> dict:
    return {"vars": {STRIP: ["1" if strip else "0"]}}


def _serve(layout: Layout) -> dict:
    """A request whose Space was found: the per-SDK prefix rule (docs/router.md), then the app."""
    under = f"{PREFIX}/*"
    return {
        "match": [{"not": [{"vars": {UPSTREAM: [""]}}]}],
        "handle": [{"handler": "subroute", "routes": [
            # /apps/o/n without the slash (on the app's host): the control plane redirects.
            {"match": [{"path": [PREFIX]}], "handle": [to_controlplane(layout)], "terminal": True},
            # /apps/o/n/... (path-based, or an app's own absolute links on its host): as path-based.
            {"match": [{"path": [under], **_strip(True)}], "terminal": True, "handle": [
                {"handler": "rewrite", "strip_path_prefix": PREFIX}, _to_app(layout, forwarded_prefix=True)]},
            {"match": [{"path": [under]}], "terminal": True, "handle": [_to_app(layout, forwarded_prefix=True)]},
            # Host-based without the prefix: added back for apps that serve under it (Streamlit).
            {"match": [_strip(False)], "terminal": True, "handle": [
                {"handler": "rewrite", "uri": PREFIX + "{http.request.uri}"}, _to_app(layout, forwarded_prefix=False)]},
            {"handle": [_to_app(layout, forwarded_prefix=False)]},
        ]}],
        "terminal": True,
    }


def _lookup(source: str, mappings: list[tuple[str, Route]]) -> dict:
    return {
        "handler": "map",
        "source": source,
        "destinations": [UPSTREAM, PREFIX, STRIP],
        "mappings": [{"input": key, "outputs": [r.upstream, r.prefix, "1" if r.strip_prefix else "0"]}
                     for key, r in mappings],
        "defaults": ["", "", ""],
    }


def _lookups(table: Table, layout: Layout) -> list[dict]:
    """Find the request's Space, if it is in the table: by host (`{label}.{apps_domain}`, exact, lower case; other
    spellings take the control plane's path), else by path `/apps/{owner}/{name}/` on any other host. One map
    per kind, whatever the number of Spaces: the config grows by a line per Space, not by a route."""
    apps = f"*.{layout.apps_domain}"
    routes = [{"match": [{"host": [apps]}], "handle": [
        _lookup("{http.request.host}", [(f"{r.label}.{layout.apps_domain}", r) for r in table.routes])]}]
    if layout.path_urls:
        routes.append({
            "match": [{"path_regexp": {"name": "sy", "pattern": "^/apps/([^/]+)/([^/]+)/"}, "not": [{"host": [apps]}]}],
            "handle": [_lookup("{http.regexp.sy.1}/{http.regexp.sy.2}", [(r.space, r) for r in table.routes])],
        })
    return routes


def _credentials_route(layout: Layout) -> dict:
    """Any request carrying a platform credential goes to the control plane: it decides what the credential
    opens and strips it before any app sees it. An app's own Authorization takes that path too (kept there)."""
    return {
        "match": [
            {"header": {"Authorization": []}},
            {"header": {"X-Hf-Authorization": []}},
            {"header_regexp": {"Cookie": {"pattern": COOKIE_PATTERN}}},
            {"query": {"__sign": ["*"]}},
        ],
        "handle": [to_controlplane(layout)],
        "terminal": True,
    }


def _version_route(version: int) -> dict:
    return {
        "@id": VERSION_ID,
        "match": [{"host": [VERSION_HOST]}],
        "handle": [{"handler": "static_response", "status_code": 404, "body": str(version)}],
        "terminal": True,
    }


def loaded_version(version_route: dict) -> int:
    """The version in the route `GET /id/spaceyard-version` returns."""
    return int(version_route["handle"][0]["body"])


def build(table: Table, layout: Layout) -> dict:
    """The Caddy config serving `table`. A request to an app's own host is never path-based, as in the Python
    router."""
    routes = [_version_route(table.version), _credentials_route(layout), *_lookups(table, layout), _serve(layout),
              {"handle": [to_controlplane(layout)]}]
    server: dict = {
        "listen": [layout.listen],
        "automatic_https": {"disable": True},
        "routes": routes,
        # An app route whose container stopped answering (a route not yet updated): the activator answers.
        "errors": {"routes": [{"match": [{"expression": "{http.error.status_code} == 502"}],
                               "handle": _back_to_controlplane(layout)}]},
    }
    config: dict = {
        # Over the unix socket Caddy checks the Host header against `origins`: the pusher sends "localhost".
        "admin": {"listen": f"unix/{layout.admin_socket}", "origins": ["localhost"], "config": {"persist": False}},
        "storage": {"module": "file_system", "root": layout.storage_dir},
        "apps": {"http": {"servers": {"spaceyard": server}}},
    }
    if layout.activity:
        server["logs"] = {"default_logger_name": ACCESS_LOGGER}
        config["logging"] = {"logs": {
            "default": {"exclude": [f"http.log.access.{ACCESS_LOGGER}"]},
            ACCESS_LOGGER: {
                "writer": {"output": "net", "address": f"udp/{layout.activity}"},
                "encoder": {"format": "json"},
                "include": [f"http.log.access.{ACCESS_LOGGER}"],
            },
        }}
    return config


def edge(layout: Layout) -> dict:
    """The edge's config: the public listener. App traffic (app hosts, /apps/) goes to the routing tier; the rest
    (API, git, dashboard) straight to the control plane, so route-table loads never touch it (a clone running
    across a load once broke off mid-pack). Static: written once at start and never reloaded, so client
    connections live across route changes."""
    assert layout.edge is not None
    to_routing = [{"handler": "reverse_proxy", "upstreams": [{"dial": layout.listen}], "transport": _transport()}]
    # No trusted_proxies: the edge is the first proxy, and clients' own X-Forwarded-* are replaced.
    direct = [{"handler": "reverse_proxy", "upstreams": [{"dial": layout.controlplane}], "transport": _transport()}]
    return {
        "admin": {"disabled": True, "config": {"persist": False}},
        "storage": {"module": "file_system", "root": layout.storage_dir + "-edge"},
        "apps": {"http": {"servers": {"edge": {
            "listen": [layout.edge],
            "automatic_https": {"disable": True},
            "routes": [
                {"match": [{"host": [f"*.{layout.apps_domain}"]}, {"path": ["/apps/*"]}], "handle": to_routing},
                {"handle": direct},
            ],
        }}}},
    }
