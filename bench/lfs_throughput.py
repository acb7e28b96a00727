"""LFS throughput: upload and download of one large file through the Git LFS batch API, against `cp` of the same
file on the same disk, and against a kept file server behind the same edge.

    .venv/bin/python bench/lfs_throughput.py [--mb 200] [--runs 5]

On a private Spaceyard started for the run (its data dir and the file on the same disk, under one temp dir), each
run uploads a fresh random file (a new oid, so the store cannot skip it) as git-lfs does (batch call, PUT to the
signed href, verify), then downloads it (batch call, GET) to a file. Goal: each >= 0.5x cp.

Rows, all measured in each run, interleaved:
- Spaceyard through its edge proxy (the platform's public port) and straight to the control plane's internal port
  (what the edge costs), with curl (a compiled client, like git-lfs) and, for downloads, with a client that reads and
  writes 1 MiB at a time (curl writes in 8 KiB pieces, and that alone caps it).
- The real huggingface_hub client: `upload_file` (its own sha256 of the file, preupload, batch, PUT, verify, commit;
  on a branch, so no build runs during the bench) and `hf_hub_download` (metadata, GET).
- A kept tool doing the download's job: Caddy's `file_server` (sendfile), straight and behind an HAProxy with the
  edge's own body settings (`SPLICE`, `PIPE_SIZE`), read by the 1 MiB client. Skipped, saying so, without caddy.
- Floors: curl PUT to a bare ASGI app on uvicorn that drops the body (any upload through this server stack), curl
  PUT and GET against a server with no HTTP stack and no Python on the data path (GET by sendfile, PUT read and
  dropped: curl's own cost), and sha256 of the file (an upload's check: its oid must be verified before it is stored).

Prints medians of --runs runs, in seconds and as a multiple of cp's speed. Measured: docs/hub-api.md, "Throughput".
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controlplane.core.config import Settings  # noqa: E402
from controlplane.launcher import Platform, free_port  # noqa: E402
from controlplane.lfs.store import LfsStore  # noqa: E402
from controlplane.proxy.config import PIPE_SIZE, SPLICE  # noqa: E402

LFS_JSON = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}
PIECE = 1 << 20


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // 2**20):
            block = os.urandom(2**20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", *args], check=True)


def fetch(url: str, dest: Path) -> None:
    """GET url into dest, reading and writing 1 MiB at a time (http.client: no buffering of its own past a read)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    conn.request("GET", f"{parts.path}?{parts.query}" if parts.query else parts.path)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"GET {url}: {resp.status} {resp.read()[:200]!r}")
    buf = bytearray(PIECE)
    view = memoryview(buf)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        while n := resp.readinto(buf):
            os.write(fd, view[:n])
    finally:
        os.close(fd)
        conn.close()


class Lfs:
    """The batch API of one Space, as git-lfs calls it; `direct` swaps the edge's port for the control plane's."""

    def __init__(self, api: httpx.Client, edge: int, controlplane: int) -> None:
        self.api, self.edge, self.controlplane = api, edge, controlplane

    def actions(self, operation: str, oid: str, size: int) -> dict:
        body = {"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
        resp = self.api.post("/spaces/bench/lfs.git/info/lfs/objects/batch", json=body, headers=LFS_JSON)
        resp.raise_for_status()
        return resp.json()["objects"][0]["actions"]

    def href(self, action: dict, direct: bool) -> str:
        return action["href"].replace(f":{self.edge}/", f":{self.controlplane}/") if direct else action["href"]

    def upload(self, path: Path, oid: str, size: int, direct: bool) -> float:
        start = time.perf_counter()
        actions = self.actions("upload", oid, size)
        curl("-o", "/dev/null", "-T", str(path), self.href(actions["upload"], direct))
        httpx.post(self.href(actions["verify"], direct), json={"oid": oid, "size": size}).raise_for_status()
        return time.perf_counter() - start

    def download(self, oid: str, size: int, dest: Path, direct: bool, client: str) -> float:
        start = time.perf_counter()
        href = self.href(self.actions("download", oid, size)["download"], direct)
        if client == "curl":
            curl("-o", str(dest), href)
        else:
            fetch(href, dest)
        elapsed = time.perf_counter() - start
        if dest.stat().st_size != size:
            raise RuntimeError(f"downloaded {dest.stat().st_size} bytes, not {size}")
        dest.unlink()
        return elapsed


# The floor of any upload through this server stack: a bare ASGI app on uvicorn that reads a PUT's body and drops it.
BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def wait_listening(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def bare_server(root: Path) -> tuple[subprocess.Popen, str]:
    (root / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning"], cwd=root
    )
    wait_listening(port)
    return proc, f"http://127.0.0.1:{port}/upload"


def raw_server() -> str:
    """The floor of the client itself: an HTTP/1.1 server with no HTTP stack and no Python on the data path, in a
    thread. A GET gets the file named in the query by sendfile (page cache to socket in the kernel); a PUT's body
    is read into one reused buffer and dropped. One request per connection."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve(conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(65536)
            head, body = head.split(b"\r\n\r\n", 1)
            lines = head.decode("latin-1").split("\r\n")
            headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
            if lines[0].startswith("GET "):
                path = Path(lines[0].split(" ")[1].split("?", 1)[1])
                size = path.stat().st_size
                conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n".encode())
                with path.open("rb") as f:
                    conn.sendfile(f)
                return
            if headers.get("expect", "").lower() == "100-continue":
                conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            left, buf = int(headers["content-length"]) - len(body), bytearray(PIECE)
            while left > 0 and (n := conn.recv_into(buf, min(left, len(buf)))):
                left -= n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/upload"


def kept_servers(root: Path, files: Path) -> tuple[list[subprocess.Popen], str, str] | None:
    """Caddy's file_server on `files`, and an HAProxy in front of it with the edge's body settings; their base URLs.
    None without caddy (the rows then say so)."""
    if shutil.which("caddy") is None:
        return None
    caddy_port, haproxy_port = free_port(), free_port()
    (root / "Caddyfile").write_text(f"{{\n\tadmin off\n}}\n:{caddy_port} {{\n\troot * {files}\n\tfile_server\n}}\n")
    (root / "kept-haproxy.cfg").write_text(
        f"global\n    tune.pipesize {PIPE_SIZE}\ndefaults\n    mode http\n    timeout connect 10s\n"
        f"    timeout client 1h\n    timeout server 1h\nlisten kept\n    bind 127.0.0.1:{haproxy_port}\n"
        f"{SPLICE}    server caddy 127.0.0.1:{caddy_port}\n"
    )
    logs = (root / "kept.log").open("wb")
    procs = [
        subprocess.Popen(
            ["caddy", "run", "--config", str(root / "Caddyfile"), "--adapter", "caddyfile"], stdout=logs, stderr=logs
        ),
        subprocess.Popen(["haproxy", "-db", "-f", str(root / "kept-haproxy.cfg")], stdout=logs, stderr=logs),
    ]
    wait_listening(caddy_port)
    wait_listening(haproxy_port)
    return procs, f"http://127.0.0.1:{caddy_port}", f"http://127.0.0.1:{haproxy_port}"


def sha256_of(path: Path) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * 2**20):
            digest.update(block)


def hub_client(port: int, token: str):  # noqa: ANN201 - huggingface_hub is optional here
    """huggingface_hub's HfApi on this platform, on a branch (no builds), or None when it is not installed."""
    # Read when huggingface_hub is imported. Without Xet the 2.x client uploads through the LFS batch API
    # (docs/hub-api.md: it never asks the server whether it offers Xet).
    os.environ.update({"HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_XET": "1"})
    try:
        from huggingface_hub import HfApi
    except ImportError:
        return None
    hub = HfApi(endpoint=f"http://127.0.0.1:{port}", token=token)
    hub.create_branch("bench/lfs", repo_type="space", branch="bench")
    return hub


@dataclass
class Bench:
    size: int
    root: Path
    files: Path
    lfs: Lfs
    store: LfsStore
    hub: object  # HfApi, or None without huggingface_hub
    kept: tuple[list[subprocess.Popen], str, str] | None
    bare_url: str
    raw_url: str
    times: dict[str, list[float]] = field(default_factory=dict)

    def row(self, name: str, seconds: float) -> None:
        self.times.setdefault(name, []).append(seconds)

    def run(self, n: int) -> None:
        size, row = self.size, self.row
        src, out = self.files / f"file-{n}", self.root / f"out-{n}"
        oid = make_file(src, size)
        row("cp", timed(lambda: subprocess.run(["cp", str(src), str(out)], check=True)))
        out.unlink()
        # Straight to the control plane first, then its object removed so that the edge's upload is a real one too
        # (the batch API offers no upload of a stored object).
        row("upload, curl, no edge", self.lfs.upload(src, oid, size, direct=True))
        self.store.path(oid).unlink()
        row("upload, curl", self.lfs.upload(src, oid, size, direct=False))
        for client in ("curl", "1 MiB"):
            row(f"download, {client}", self.lfs.download(oid, size, out, direct=False, client=client))
        row("download, 1 MiB, no edge", self.lfs.download(oid, size, out, direct=True, client="1 MiB"))
        if self.hub is not None:
            self.store.path(oid).unlink()  # or the client would find it stored and skip the upload
            self.hub_rows(src, out, n)
        if self.kept is not None:
            _, caddy_url, haproxy_url = self.kept
            for name, url in (("kept: Caddy, 1 MiB", haproxy_url), ("kept: Caddy, 1 MiB, no edge", caddy_url)):
                row(name, timed(lambda: fetch(f"{url}/{src.name}", out)))  # noqa: B023 - called at once
                out.unlink()
        row("floor: uvicorn PUT", timed(lambda: curl("-o", "/dev/null", "-T", str(src), self.bare_url)))
        row("floor: raw PUT", timed(lambda: curl("-o", "/dev/null", "-T", str(src), self.raw_url)))
        row("floor: raw GET", timed(lambda: curl("-o", str(out), f"{self.raw_url}?{src}")))
        out.unlink()
        row("floor: sha256", timed(lambda: sha256_of(src)))
        src.unlink()

    def hub_rows(self, src: Path, out: Path, n: int) -> None:
        from huggingface_hub.file_download import http_get

        path, dest = f"hub-{n}.bin", self.root / "hub"
        upload = self.hub.upload_file  # type: ignore[attr-defined]
        download = self.hub.hf_hub_download  # type: ignore[attr-defined]
        space = {"repo_id": "bench/lfs", "repo_type": "space", "revision": "bench"}
        self.row("hub upload_file", timed(lambda: upload(path_or_fileobj=str(src), path_in_repo=path, **space)))
        self.row("hub hf_hub_download", timed(lambda: download(filename=path, local_dir=dest, **space)))
        if (dest / path).stat().st_size != self.size:
            raise RuntimeError("hf_hub_download wrote a file of the wrong size")
        shutil.rmtree(dest)

        def client_only() -> None:
            with out.open("wb") as f:
                http_get(f"{self.raw_url}?{src}", f, expected_size=self.size)

        self.row("floor: hub's http_get, raw GET", timed(client_only))
        out.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="lfs-bench-") as tmp:
        root, port, cp_port = Path(tmp), free_port(), free_port()
        files = root / "files"
        files.mkdir()
        env = {"SPACEYARD_DATA_DIR": str(root / "data"), "SPACEYARD_PORT": str(port)}
        platform = Platform({**env, "SPACEYARD_CONTROLPLANE_PORT": str(cp_port)}, root / "data")
        platform.start(base_images=False)
        bare, bare_url = bare_server(root)
        kept = kept_servers(root, files)
        try:
            token = subprocess.run(
                [sys.executable, "-m", "controlplane.cli", "user", "add", "bench"],
                env=platform.env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            api = httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}, timeout=60
            )
            api.post("/api/repos/create", json={"type": "space", "name": "lfs", "sdk": "static"}).raise_for_status()
            hub = hub_client(port, token)
            if hub is None:
                skipped["huggingface_hub"] = "not installed (pip install huggingface_hub)"
            if kept is None:
                skipped["Caddy"] = "caddy is not installed (apt-get install caddy)"
            bench = Bench(
                size=args.mb * 2**20,
                root=root,
                files=files,
                lfs=Lfs(api, port, cp_port),
                store=LfsStore(Settings(data_dir=root / "data").repos_dir.parent / "lfs"),
                hub=hub,
                kept=kept,
                bare_url=bare_url,
                raw_url=raw_server(),
            )
            for n in range(args.runs):
                bench.run(n)
        finally:
            for proc in [bare, *(kept[0] if kept else [])]:
                proc.terminate()
                proc.wait(10)
            platform.stop()
            platform.remove_engine_objects()
            shutil.rmtree(root / "data", ignore_errors=True)
    cp = statistics.median(bench.times["cp"])
    print(f"{args.mb} MiB, median of {args.runs} runs, same disk; 'no edge': the control plane's internal port\n")
    print(f"{'transfer':<30} {'median s':>9} {'MiB/s':>8} {'vs cp':>7}")
    for name, values in bench.times.items():
        median = statistics.median(values)
        print(f"{name:<30} {median:>9.3f} {args.mb / median:>8.0f} {cp / median:>6.2f}x")
    for what, why in skipped.items():
        print(f"skipped: {what}: {why}")


if __name__ == "__main__":
    main()
