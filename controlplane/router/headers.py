"""Which headers cross the proxy, and the X-Forwarded-* headers it adds."""

from __future__ import annotations

import base64
from collections.abc import Iterable

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1: meaningful for one connection only, never forwarded.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Set by the router from what it saw; a client's own values would let it spoof them to the app.
SET_BY_ROUTER = frozenset({b"x-forwarded-proto", b"x-forwarded-host", b"x-forwarded-prefix"})
# The upstream WebSocket handshake is the websockets library's own; the client's cannot be reused.
WS_HANDSHAKE = frozenset(
    {
        b"host",
        b"origin",
        b"content-length",
        b"sec-websocket-key",
        b"sec-websocket-version",
        b"sec-websocket-extensions",
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
    }
)


# Spaceyard's own credentials let a visitor into a private Space; the app itself must never see them.
PLATFORM_TOKEN_PREFIX = b"sy_"
# The session and CSRF cookies (both names of the session cookie: with and without the __Host- prefix), and the
# access grant a private app's own origin keeps (see SPACE_ACCESS_COOKIE).
PLATFORM_COOKIES = frozenset(
    {b"spaceyard_session", b"__host-spaceyard_session", b"spaceyard_csrf", b"spaceyard_space_access"}
)
# A private Space's own origin never sees the dashboard's session cookie. The dashboard hands its frame (or a new
# tab) a signed grant in the `__sign` query parameter, as the Hub does; the router turns it into this cookie.
SPACE_ACCESS_COOKIE = "spaceyard_space_access"
SPACE_ACCESS_PARAM = b"__sign"
# The Hub's clients (gradio_client) send the visitor's token for a Space in this header.
HF_AUTHORIZATION = b"x-hf-authorization"


def is_platform_credential(value: bytes, secrets: frozenset[bytes] = frozenset()) -> bool:
    """A Spaceyard token (users' and the builder's carry the sy_ prefix) or one of the configured service
    secrets (GPU agent, metrics scraper)."""
    value = value.strip()
    return value.startswith(PLATFORM_TOKEN_PREFIX) or value in secrets


def _authorization_is_platform(value: bytes, secrets: frozenset[bytes]) -> bool:
    # Any scheme (or none: a bare token) holding a platform token is the visitor's credential.
    if any(is_platform_credential(part, secrets) for part in value.split()):
        return True
    scheme, _, credential = value.strip().partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        user, _, password = base64.b64decode(credential.strip(), validate=True).partition(b":")
    except ValueError:
        return False
    # The platform reads the password; a token pasted as the user name is a credential all the same.
    return is_platform_credential(password, secrets) or is_platform_credential(user, secrets)


def without_platform_credentials(key: bytes, value: bytes, secrets: frozenset[bytes] = frozenset()) -> bytes | None:
    """The header as the app may see it (None: drop it). Spaceyard tokens in Authorization (Bearer or Basic),
    x-hf-authorization whatever it holds (it exists only to carry the visitor's Hub token), and the
    platform's cookies are removed; an app's own Authorization (not a platform credential) passes."""
    name = key.lower()
    if name == HF_AUTHORIZATION:
        return None
    if name == b"authorization":
        return None if _authorization_is_platform(value, secrets) else value
    if name == b"cookie":
        kept = [c.strip() for c in value.split(b";") if c.strip() and not is_platform_cookie(c.partition(b"=")[0])]
        return b"; ".join(kept) or None
    return value


def is_platform_cookie(name: bytes) -> bool:
    return name.strip().lower() in PLATFORM_COOKIES


def response_headers(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """An app's response headers as the client may see them: end-to-end only, and no Set-Cookie for the
    platform's cookies (on a path-based URL, or a parent domain of the apps domain, it would replace the
    visitor's dashboard session)."""
    return [
        (key, value)
        for key, value in end_to_end(headers)
        if not (key.lower() == b"set-cookie" and is_platform_cookie(value.partition(b"=")[0]))
    ]


def end_to_end(headers: Iterable[tuple[bytes, bytes]], drop: frozenset[bytes] = frozenset()) -> Headers:
    """Headers minus hop-by-hop ones, those the Connection header names, and `drop` (lower-case names)."""
    headers = list(headers)
    named = {
        token.strip().lower() for key, value in headers if key.lower() == b"connection" for token in value.split(b",")
    }
    excluded = HOP_BY_HOP | named | drop
    return [(key, value) for key, value in headers if key.lower() not in excluded]


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def upstream_request_headers(
    scope: dict, prefix: str | None, drop: frozenset[bytes] = frozenset(), secrets: frozenset[bytes] = frozenset()
) -> Headers:
    """The client's end-to-end headers (Host kept: apps build absolute URLs and check Origin against it)
    plus X-Forwarded-For/-Proto/-Host, and X-Forwarded-Prefix when the client used the path-based URL."""
    raw = scope["headers"]
    headers = [
        (key, kept)
        for key, value in end_to_end(raw, SET_BY_ROUTER | {b"x-forwarded-for"} | drop)
        if (kept := without_platform_credentials(key, value, secrets)) is not None
    ]
    client = scope.get("client")
    chain = [v for k, v in raw if k.lower() == b"x-forwarded-for"]
    peer = client[0].encode("latin-1") if client else None
    # Behind a trusted proxy uvicorn has already replaced the client with the chain's last address.
    if peer and not (chain and chain[-1].rsplit(b",", 1)[-1].strip() == peer):
        chain.append(peer)
    if chain:
        headers.append((b"x-forwarded-for", b", ".join(chain)))
    secure = scope.get("scheme") in ("https", "wss")
    headers.append((b"x-forwarded-proto", b"https" if secure else b"http"))
    host = header(raw, b"host")
    if host:
        headers.append((b"x-forwarded-host", host.encode("latin-1")))
    if prefix:
        headers.append((b"x-forwarded-prefix", prefix.encode("latin-1")))
    return headers
