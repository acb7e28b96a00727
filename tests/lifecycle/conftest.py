"""A platform of its own for lifecycle tests: the sleeper checks every half second, so sleep times of a few
seconds can be tested; one Docker-SDK Space that reports its env is shared (builds cost the most time)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from huggingface_hub import HfApi

from controlplane.launcher import docker_ok
from tests.conftest import RunningPlatform, launch
from tests.e2e.spaces import push, readme

# Reports (as JSON) a hash of the secret, the variable, the build arg it was built with, and how many times
# its container started; prints the secret, which the run log must mask.
APP = '''import hashlib, http.server, json, os
with open("/tmp/starts", "a") as f:
    f.write("x\\n")
secret = os.environ.get("MY_SECRET")
print("MY_SECRET is", secret, flush=True)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # a WebSocket client reads only HTTP/1.1 answers (the upgrade tests)

    def do_GET(self):
        body = json.dumps({
            "secret_sha256": hashlib.sha256(secret.encode()).hexdigest() if secret is not None else None,
            "variable": os.environ.get("MY_VAR"),
            "greeting": open("/greeting").read().strip(),
            "starts": len(open("/tmp/starts").read().split()),
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("0.0.0.0", int(os.environ["PORT"])), Handler).serve_forever()
'''
DOCKERFILE = '''FROM spaceyard/base:py3.11
ARG GREETING
RUN echo "$GREETING" > /greeting
COPY app.py /app.py
CMD ["python3", "/app.py"]
'''
SECRET = "s3cr3t-value-do-not-leak"


@pytest.fixture(scope="package")
def life(tmp_path_factory) -> Iterator[RunningPlatform]:
    if not docker_ok():
        pytest.skip("no Docker engine reachable (./dev.sh test starts one)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPACEYARD_SLEEP_CHECK_INTERVAL", "0.5")
        mp.setenv("SPACEYARD_WAKE_TIMEOUT", "60")
        running = launch(tmp_path_factory.mktemp("lifecycle"))
    yield running
    running.platform.stop()
    running.platform.remove_engine_objects()


@pytest.fixture(scope="package")
def env_space(life: RunningPlatform, tmp_path_factory) -> str:
    """alice/env: a secret and variables set before the first push, then built and RUNNING."""
    api = HfApi(endpoint=life.url, token=life.user("alice"))
    api.create_repo("alice/env", repo_type="space", space_sdk="docker")
    api.add_space_secret("alice/env", "MY_SECRET", SECRET, description="a test secret")
    api.add_space_variable("alice/env", "MY_VAR", "one")
    api.add_space_variable("alice/env", "GREETING", "built-with-arg")
    files = {"README.md": readme("docker", app_port="7860"), "Dockerfile": DOCKERFILE, "app.py": APP}
    push(life, "alice", "env", files, tmp_path_factory.mktemp("work"))
    runtime = life.wait_stage("alice/env", {"RUNNING", "BUILD_ERROR", "RUNTIME_ERROR"}, user="alice")
    assert runtime["stage"] == "RUNNING", runtime
    return "alice/env"
