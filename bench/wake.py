"""Wake-up benchmark: first request to a sleeping Space -> first byte of the app's answer, through the router,
against the floor: `docker start` of the same stopped container -> first HTTP 200 from it directly.

    .venv/bin/python bench/wake.py [--sdk docker|gradio] [--runs 5]

Starts a throwaway platform (Redis, builder, control plane; the sleeper checks every 0.5 s), builds one Space
with a 2 s sleep time, then alternates: wait until it sleeps, time a wake through the router (an API client,
held until the app answers); wait until it sleeps, time the floor on the kept container. Goal: median wake
<= median floor + 1 s. Needs Docker and the base images (`python -m builder.baseimages`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import docker
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from controlplane.core.config import Settings  # noqa: E402
from controlplane.launcher import Platform, free_port  # noqa: E402

GOAL_SECONDS = 1.0
DOCKER_APP = {
    "README.md": "---\nsdk: docker\napp_port: 7860\n---\n",
    "Dockerfile": 'FROM spaceyard/base:py3.11\nCMD ["python3", "-m", "http.server", "7860"]\n',
}
GRADIO_APP = {
    "README.md": "---\nsdk: gradio\n---\n",
    "app.py": 'import gradio as gr\n\ngr.Interface(fn=lambda s: s, inputs="text", outputs="text").launch()\n',
}


def git(*args: str, cwd: Path | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x", "GIT_TERMINAL_PROMPT": "0"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


class Bench:
    def __init__(self, tmp: Path, sdk: str) -> None:
        self.data_dir, self.port, self.sdk = tmp / "data", free_port(), sdk
        self.url = f"http://127.0.0.1:{self.port}"
        self.space = f"bench/wake-{sdk}"
        # The whole wake to the app's first byte: the request is held until the app answers, not only the 4 s
        # a Hub client is held by default (SPACEYARD_WAKE_TIMEOUT).
        env = {"SPACEYARD_DATA_DIR": str(self.data_dir), "SPACEYARD_PORT": str(self.port),
               "SPACEYARD_SLEEP_CHECK_INTERVAL": "0.5", "SPACEYARD_WAKE_TIMEOUT": "120"}
        self.platform = Platform(env, self.data_dir)
        self.engine = docker.from_env()

    def setup(self, tmp: Path) -> None:
        self.platform.start()
        out = subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", "bench"],
                             env=self.platform.env, capture_output=True, text=True, check=True)
        token = out.stdout.strip()
        self.http = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)
        created = self.http.post("/api/repos/create", json={"type": "space", "name": self.space, "sdk": self.sdk})
        created.raise_for_status()
        repo = tmp / "repo"
        git("clone", "-q", self.url.replace("http://", f"http://bench:{token}@") + f"/spaces/{self.space}", str(repo))
        for path, text in (DOCKER_APP if self.sdk == "docker" else GRADIO_APP).items():
            (repo / path).write_text(text)
        git("add", "-A", cwd=repo)
        git("commit", "-qm", "app", cwd=repo)
        git("push", "-q", "origin", "HEAD:main", cwd=repo)
        self.wait(lambda rt: rt["stage"] == "RUNNING", 600, "the first build and start")
        self.http.post(f"/api/spaces/{self.space}/sleeptime", json={"seconds": 2}).raise_for_status()

    def runtime(self) -> dict:
        return self.http.get(f"/api/spaces/{self.space}/runtime").json()

    def wait(self, done, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done(rt := self.runtime()):
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out waiting for {what}: {rt}")
            time.sleep(0.2)

    def wait_asleep(self) -> docker.models.containers.Container:
        self.wait(lambda rt: (rt.get("spaceyard") or {}).get("detail") == "sleeping", 60, "sleep")
        instance = Settings(data_dir=self.data_dir).instance
        labels = [f"spaceyard.instance={instance}", f"spaceyard.space={self.space}"]
        while True:  # the sleeper commits STOPPED first, then stops the container
            (box,) = self.engine.containers.list(all=True, filters={"label": labels})
            if box.status == "exited":
                return box
            time.sleep(0.1)

    def wake(self) -> float:
        self.wait_asleep()
        start = time.perf_counter()
        with httpx.stream("GET", f"{self.url}/apps/{self.space}/", headers={"Accept": "*/*"}, timeout=120) as r:
            next(r.iter_raw())
            elapsed = time.perf_counter() - start
            if r.status_code != 200:
                raise SystemExit(f"wake answered {r.status_code}")
        return elapsed

    def floor(self) -> float:
        box = self.wait_asleep()
        start = time.perf_counter()
        box.start()
        box.reload()
        port = next(b[0]["HostPort"] for b in box.attrs["NetworkSettings"]["Ports"].values() if b)
        while True:
            try:
                with httpx.stream("GET", f"http://127.0.0.1:{port}/", timeout=5) as r:
                    if r.status_code == 200:
                        next(r.iter_raw())
                        elapsed = time.perf_counter() - start
                        break
            except httpx.HTTPError:
                pass
            time.sleep(0.01)
        box.kill()  # back to the sleeping state the control plane recorded
        return elapsed

    def close(self) -> None:
        self.platform.stop()
        self.platform.remove_engine_objects()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdk", choices=("docker", "gradio"), default="docker")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spaceyard-wake-") as tmp:
        bench = Bench(Path(tmp), args.sdk)
        try:
            bench.setup(Path(tmp))
            rows = [(bench.wake(), bench.floor()) for _ in range(args.runs)]
        finally:
            bench.close()
    print(f"\nsdk={args.sdk}, {args.runs} runs, seconds")
    print("| run | wake via router | floor (docker start -> 200) | added |")
    print("|---|---|---|---|")
    for i, (wake, floor) in enumerate(rows, 1):
        print(f"| {i} | {wake:.3f} | {floor:.3f} | {wake - floor:+.3f} |")
    wake_med = statistics.median(r[0] for r in rows)
    floor_med = statistics.median(r[1] for r in rows)
    verdict = "meets" if wake_med <= floor_med + GOAL_SECONDS else "misses"
    print(f"| median | {wake_med:.3f} | {floor_med:.3f} | {wake_med - floor_med:+.3f} |")
    print(f"\n{verdict} the goal: median wake <= median floor + {GOAL_SECONDS:.0f} s")


if __name__ == "__main__":
    main()
