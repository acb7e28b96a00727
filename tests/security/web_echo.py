"""An echo-headers Space for the web-surface tests: a Docker-SDK app on spaceyard/base:py3.11, stdlib only.

- any path: JSON {"path", "headers", "cookie"} of the request as the app received it;
- /set-cookie: also answers Set-Cookie for the platform's session and CSRF cookies (what a hostile app does)
  and one cookie of its own;
- a WebSocket handshake (any path): 101 with the same Set-Cookie headers, then one text message with the
  handshake's JSON, then a close frame.
"""

from __future__ import annotations

import time
from pathlib import Path

from tests.conftest import RunningPlatform
from tests.e2e.spaces import create, push, readme

APP = r'''import base64, hashlib, http.server, json, os

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
HOSTILE = ["spaceyard_session=planted-by-app; Path=/", "spaceyard_csrf=planted-by-app; Path=/",
           "__Host-spaceyard_session=planted-by-app; Path=/; Secure", "app_cookie=from-app; Path=/"]


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def seen(self):
        return {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
                "cookie": self.headers.get("Cookie")}

    def answer(self):
        if self.headers.get("Upgrade", "").lower() == "websocket":
            return self.websocket()
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = json.dumps(self.seen()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.path.rstrip("/").endswith("/set-cookie"):
            for cookie in HOSTILE:
                self.send_header("Set-Cookie", cookie)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def websocket(self):
        key = self.headers["Sec-WebSocket-Key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        for cookie in HOSTILE:
            self.send_header("Set-Cookie", cookie)
        self.end_headers()
        payload = json.dumps(self.seen()).encode()
        size = len(payload)
        head = bytes([0x81, size]) if size < 126 else bytes([0x81, 126]) + size.to_bytes(2, "big")
        self.wfile.write(head + payload + bytes([0x88, 2, 0x03, 0xE8]))
        self.wfile.flush()
        self.close_connection = True


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ.get("PORT", "7860"))), Handler).serve_forever()
'''
DOCKERFILE = '''FROM spaceyard/base:py3.11
COPY app.py /app.py
CMD ["python3", "/app.py"]
'''
OWNER, NAME = "wendy", "echo"
SPACE = f"{OWNER}/{NAME}"


def echo_space(platform: RunningPlatform, workdir: Path, name: str = NAME, private: bool = False) -> str:
    """wendy/{name}, RUNNING: built once per platform (the first test to ask builds it; a second Space with the
    same files builds from cached layers)."""
    space = f"{OWNER}/{name}"
    with platform.api(OWNER) as api:
        exists = api.get(f"/api/spaces/{space}/runtime").status_code == 200
    if not exists:
        create(platform, OWNER, name, sdk="docker", private=private)
        files = {"README.md": readme("docker", app_port="7860"), "Dockerfile": DOCKERFILE, "app.py": APP}
        push(platform, OWNER, name, files, workdir)
    runtime = platform.wait_stage(space, {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, OWNER)
    assert runtime["stage"] == "RUNNING", runtime
    return space


def host_header(platform: RunningPlatform, owner: str = OWNER, name: str = NAME) -> str:
    """The Host of the app's own URL on the test platform (apps domain `localhost`, the platform's port)."""
    port = platform.url.rsplit(":", 1)[1]
    return f"{owner}-{name}.localhost:{port}"


def wait_answering(platform: RunningPlatform, path: str, timeout: float = 30) -> None:
    """RUNNING is reported once the app listens; this also waits out a proxy cache warming up."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if httpx.get(f"{platform.url}{path}", timeout=10).status_code == 200:
            return
        assert time.monotonic() < deadline, f"{path} never answered 200"
        time.sleep(0.3)
