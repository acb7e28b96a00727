"""Push-to-live benchmark: seconds from `git push` to the app's first answer through the router.

    .venv/bin/python bench/push_to_live.py [--runs 3]

Measures, on a private Spaceyard started for the run (base images must exist: `python -m builder.baseimages`):
  (a) new Space: create + first push of a Gradio app, until the app answers HTTP 200 through the router;
  (b) code-only change: push an edited app.py, until the new version answers;
  floor: `docker run` of the same image until its first HTTP 200 (no build, no router).
Goal: (b) <= floor + 3 s. Prints medians of --runs runs.
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
from controlplane.launcher import Platform, free_port  # noqa: E402

APP = '''import gradio as gr

gr.Interface(fn=lambda name: "Hello " + name, inputs="text", outputs="text", title="{marker}").launch()
'''
README = "---\ntitle: bench\nsdk: gradio\n---\n"


def git(*args: str, cwd: Path) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b"}
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


def wait_for_marker(url: str, marker: str, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5) as client:
        while time.monotonic() < deadline:
            try:
                resp = client.get(url)
                if resp.status_code == 200 and marker in resp.text:
                    return time.monotonic()
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"{url} never showed {marker}")


def floor(image: str, port: int) -> float:
    client = docker.from_env()
    start = time.monotonic()
    container = client.containers.run(image, detach=True, ports={f"{port}/tcp": ("127.0.0.1", None)},
                                      environment={"GRADIO_SERVER_NAME": "0.0.0.0"})
    try:
        container.reload()
        host_port = container.attrs["NetworkSettings"]["Ports"][f"{port}/tcp"][0]["HostPort"]
        return wait_for_marker(f"http://127.0.0.1:{host_port}/", "gradio") - start
    finally:
        container.remove(force=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[float]] = {"new Space (create + first push)": [], "code-only change": [],
                                       "floor: docker run to first 200": []}
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        data = Path(tmp) / "data"
        platform = Platform({"SPACEYARD_DATA_DIR": str(data), "SPACEYARD_PORT": str(port)}, data)
        platform.start(base_images=False)
        base = f"http://127.0.0.1:{port}"
        try:
            token = subprocess.run([sys.executable, "-m", "controlplane.cli", "user", "add", "bench"],
                                   env=platform.env, capture_output=True, text=True, check=True).stdout.strip()
            api = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=60)
            for run in range(args.runs):
                name = f"bench{run}"
                repo = Path(tmp) / name
                start = time.monotonic()
                api.post("/api/repos/create", json={"type": "space", "name": name, "sdk": "gradio"}).raise_for_status()
                clone_url = f"http://bench:{token}@127.0.0.1:{port}/spaces/bench/{name}"
                git("clone", "-q", clone_url, str(repo), cwd=Path(tmp))
                (repo / "README.md").write_text(README)
                (repo / "app.py").write_text(APP.format(marker=f"v0-{run}"))
                git("add", "-A", cwd=repo)
                git("commit", "-qm", "v0", cwd=repo)
                git("push", "-q", "origin", "HEAD:main", cwd=repo)
                url = f"{base}/apps/bench/{name}/"
                results["new Space (create + first push)"].append(wait_for_marker(url, f"v0-{run}") - start)

                (repo / "app.py").write_text(APP.format(marker=f"v1-{run}"))
                git("commit", "-qam", "v1", cwd=repo)
                start = time.monotonic()
                git("push", "-q", "origin", "HEAD:main", cwd=repo)
                results["code-only change"].append(wait_for_marker(url, f"v1-{run}") - start)

                image = api.get(f"/api/spaces/bench/{name}/runtime").json()
                # Images are named by Space id; the label names the Space. The newest build is the code-only one.
                images = docker.from_env().images.list(filters={"label": f"spaceyard.space=bench/{name}"})
                newest = max(images, key=lambda i: int(i.labels["spaceyard.build"]))
                results["floor: docker run to first 200"].append(floor(newest.tags[0], 7860))
                assert image["stage"] == "RUNNING"
        finally:
            platform.stop()
            platform.remove_engine_objects()
    print(f"\n{'measure':40} {'median s':>9} {'min s':>7} {'max s':>7}  runs")
    for label, values in results.items():
        print(f"{label:40} {statistics.median(values):9.2f} {min(values):7.2f} {max(values):7.2f}  {len(values)}")
    gap = statistics.median(results["code-only change"]) - statistics.median(results["floor: docker run to first 200"])
    print(f"\ncode-only change - floor = {gap:+.2f} s (goal: <= +3 s)")


if __name__ == "__main__":
    main()
