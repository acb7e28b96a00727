"""LFS throughput: upload and download of one large file through the Git LFS batch API, against `cp` of the same
file on the same disk.

    .venv/bin/python bench/lfs_throughput.py [--mb 200] [--runs 3]

On a private Spaceyard started for the run (its data dir and the file on the same disk, under one temp dir): each
run uploads a fresh random file (a new oid, so the store cannot skip it) as git-lfs does (batch call, PUT to the
signed href, verify), then downloads it (batch call, GET) to a file. The transfers use curl, a compiled client
like git-lfs, not a Python client (curl's own cost is the raw floor below). The upload includes the server's
sha256 check and rename; the download is written to disk. Goal: each >= 0.5x cp. Floors put the numbers in
context: curl PUT of the same file to a bare ASGI app on uvicorn that drops it (what any upload through this server
stack costs), curl GET of it from that app reading it from disk (the same for downloads), the same PUT and GET
against a raw server with no HTTP stack and no Python on the data path (GET by kernel sendfile, PUT read into one
buffer and dropped: what curl itself costs), and sha256 of the file in Python (what the upload's check costs). The
LFS transfers also pass the platform's edge proxy; the floors do not. Prints medians of --runs runs.

Measured (docs/hub-api.md, "Throughput"): 200 MiB, medians of 5, on 2 shared cores at 1-min load 2.4-5.1: cp
0.07-0.13 s; LFS upload 0.08-0.13x cp, download 0.10-0.19x; raw floors: PUT 0.40-0.54x, GET 0.18-0.22x (curl
writes the file in ~8 KiB pieces); sha256 0.36-0.46x. The goal is out of reach with curl here whatever the
server does: curl's own floor is about 0.5x for an upload before its sha256 check, and about 0.2x for a download.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controlplane.launcher import Platform, free_port  # noqa: E402

LFS_JSON = {"Accept": "application/vnd.git-lfs+json", "Content-Type": "application/vnd.git-lfs+json"}


def make_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as out:
        for _ in range(size // 2**20):
            block = os.urandom(2**20)
            digest.update(block)
            out.write(block)
    return digest.hexdigest()


def batch(api: httpx.Client, operation: str, oid: str, size: int) -> dict:
    body = {"operation": operation, "transfers": ["basic"], "objects": [{"oid": oid, "size": size}]}
    resp = api.post("/spaces/bench/lfs.git/info/lfs/objects/batch", json=body, headers=LFS_JSON)
    resp.raise_for_status()
    return resp.json()["objects"][0]["actions"]


def curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "--fail", "-o", "/dev/null", *args], check=True)


def upload(api: httpx.Client, path: Path, oid: str, size: int) -> float:
    start = time.perf_counter()
    actions = batch(api, "upload", oid, size)
    curl("-T", str(path), actions["upload"]["href"])
    httpx.post(actions["verify"]["href"], json={"oid": oid, "size": size}).raise_for_status()
    return time.perf_counter() - start


def download(api: httpx.Client, oid: str, size: int, dest: Path) -> float:
    start = time.perf_counter()
    href = batch(api, "download", oid, size)["download"]["href"]
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), href], check=True)
    elapsed = time.perf_counter() - start
    assert dest.stat().st_size == size
    return elapsed


# The floors of any transfer through this server stack: a bare ASGI app on uvicorn that reads a PUT's body and
# drops it, and answers a GET with the file named in the query, read from disk in 1 MiB pieces.
BARE_APP = """
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":
        path = scope["query_string"].decode()
        length = str(os.path.getsize(path)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", length)]})
        with open(path, "rb") as f:
            while piece := f.read(1 << 20):
                await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})
"""


def bare_server(root: Path) -> tuple[subprocess.Popen, str]:
    (root / "bare_app.py").write_text(BARE_APP)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port), "--log-level", "warning"], cwd=root
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.put(f"http://127.0.0.1:{port}/")  # a GET would ask for a file
            break
        except httpx.HTTPError:
            time.sleep(0.2)
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
            left, buf = int(headers["content-length"]) - len(body), bytearray(1 << 20)
            while left > 0 and (n := conn.recv_into(buf, min(left, len(buf)))):
                left -= n
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

    def accept() -> None:
        while True:
            conn, _ = listener.accept()
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return f"http://127.0.0.1:{listener.getsockname()[1]}/upload"


def timed_put(path: Path, url: str) -> float:
    start = time.perf_counter()
    curl("-T", str(path), url)
    return time.perf_counter() - start


def timed_get(path: Path, url: str, dest: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["curl", "-sS", "--fail", "-o", str(dest), f"{url}?{path}"], check=True)
    return time.perf_counter() - start


def sha256_of(path: Path) -> float:
    start = time.perf_counter()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(4 * 2**20):
            digest.update(block)
    return time.perf_counter() - start


def copy(src: Path, dest: Path) -> float:
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(dest)], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    size = args.mb * 2**20
    with tempfile.TemporaryDirectory(prefix="lfs-bench-") as tmp:
        root, port = Path(tmp), free_port()
        platform = Platform({"SPACEYARD_DATA_DIR": str(root / "data"), "SPACEYARD_PORT": str(port)}, root / "data")
        platform.start(base_images=False)
        bare, bare_url = bare_server(root)
        raw_url = raw_server()
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
            created = api.post("/api/repos/create", json={"type": "space", "name": "lfs", "sdk": "static"})
            created.raise_for_status()
            times: dict[str, list[float]] = {
                "cp": [],
                "LFS upload": [],
                "LFS download": [],
                "floor: bare PUT": [],
                "floor: bare GET": [],
                "floor: raw PUT": [],
                "floor: raw GET": [],
                "floor: sha256": [],
            }
            for run in range(args.runs):
                src = root / f"file-{run}"
                oid = make_file(src, size)
                times["cp"].append(copy(src, root / f"copy-{run}"))
                times["LFS upload"].append(upload(api, src, oid, size))
                times["LFS download"].append(download(api, oid, size, root / f"down-{run}"))
                times["floor: bare PUT"].append(timed_put(src, bare_url))
                times["floor: bare GET"].append(timed_get(src, bare_url, root / f"bare-{run}"))
                times["floor: raw PUT"].append(timed_put(src, raw_url))
                times["floor: raw GET"].append(timed_get(src, raw_url, root / f"raw-{run}"))
                times["floor: sha256"].append(sha256_of(src))
                for leftover in (src, *(root / f"{kind}-{run}" for kind in ("copy", "down", "bare", "raw"))):
                    leftover.unlink()
        finally:
            bare.terminate()
            bare.wait(10)
            platform.stop()
            platform.remove_engine_objects()
            shutil.rmtree(root / "data", ignore_errors=True)
    cp = statistics.median(times["cp"])
    print(f"{args.mb} MiB, median of {args.runs} runs, same disk\n")
    print(f"{'transfer':<16} {'median s':>9} {'MiB/s':>8} {'vs cp':>7}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<16} {median:>9.2f} {args.mb / median:>8.0f} {cp / median:>6.2f}x")


if __name__ == "__main__":
    main()
