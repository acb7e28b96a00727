"""A Docker-SDK Space's Dockerfile may not reach other Spaces' images, image ids, or URLs (ADD).

Before: `FROM spaceyard-<instance>/space-<id>:b1` (a name any tenant sees in its own build log) built on
another tenant's private image and printed its source; `ADD http://127.0.0.1:...` made the engine fetch
from the host's own loopback services.
"""

from __future__ import annotations

import re

import docker
import pytest

from builder.dockerpolicy import Refused, check, instructions
from tests.security.builder_spaces import DOCKER_README, SERVE, build_log, push_tree, settle

ALLOWED = ["python:*", "debian:*"]
OWN = "spaceyard-abc123"  # the instance's Space image namespace
ALICE = f"{OWN}/space-7:b1"


def refused(dockerfile: str, build_args: dict[str, str] | None = None) -> str:
    with pytest.raises(Refused) as info:
        check(dockerfile, build_args or {}, ALLOWED, OWN)
    return str(info.value)


def allowed(dockerfile: str, build_args: dict[str, str] | None = None) -> None:
    check(dockerfile, build_args or {}, ALLOWED, OWN)


@pytest.mark.parametrize(
    "dockerfile",
    [
        f"FROM {ALICE}\n",
        f"from {ALICE} as x\n",
        f"FROM --platform=linux/amd64 {ALICE}\n",
        f"FROM {OWN}/space-7@sha256:{'a' * 64}\n",
        f"FROM docker.io/{ALICE}\n",
        f"FROM registry.example:5000/{ALICE}\n",
        f"ARG BASE={ALICE}\nFROM $BASE\n",
        f"FROM python:3.11\nCOPY --from={ALICE} /home/user/app /stolen\n",
        f"FROM python:3.11\nCOPY \\\n    --from={ALICE} \\\n    /home/user/app /stolen\n",
        f"# escape=`\nFROM python:3.11\nCOPY `\n  --from={ALICE} /a /b\n",
        f"FROM python:3.11\nRUN --mount=type=bind,from={ALICE},target=/x cat /x/app.py\n",
        f"FROM python:3.11\nONBUILD COPY --from={ALICE} / /stolen\n",
        "FROM 6434a5f75918\n",
        "FROM sha256:6434a5f75918\n",
        f"FROM {'a' * 64}\n",
        "FROM python:3.11\nCOPY --from=6434a5f7 / /x\n",
        "FROM python:3.11 AS build\nCOPY --from=build /a /b\n",  # its own stage is not an earlier one
        "FROM python:3.11\nCOPY --from=1 /a /b\n",  # no stage 1 yet: an image id prefix to the engine
        "FROM alice/private:latest\n",
        'FROM "python:3.11"\n',
        "ARG BASE\nFROM $BASE\n",
        "FROM $UNDECLARED\n",
        "FROM ${BASE:?x}\n",
    ],
)
def test_images_beyond_the_allow_list_are_refused(dockerfile: str) -> None:
    assert refused(dockerfile).startswith("Dockerfile line ")


def test_a_space_variable_cannot_pick_another_spaces_image() -> None:
    # Space variables are build args, and a build arg overrides an ARG default used in FROM.
    assert ALICE in refused("ARG BASE=python:3.11\nFROM ${BASE}\n", {"BASE": ALICE})


def test_refusal_names_the_image_and_the_setting() -> None:
    message = refused("FROM alice/private:latest\n")
    assert "alice/private:latest" in message and "SPACEYARD_BUILD_ALLOWED_IMAGES" in message
    assert "line 1" in message
    message = refused(f"FROM python:3.11\n\nCOPY --from={ALICE} / /x\n")
    assert "line 3" in message and "Space's image" in message and "SPACEYARD_BUILD_ALLOWED_IMAGES" in message


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM spaceyard/base:py3.11\nRUN echo hi\n",
        "FROM spaceyard/sdk-gradio:6.31.0-py3.11\n",
        "FROM python:3.11-slim\n",
        "FROM python\n",
        "FROM docker.io/library/python:3.11\n",
        "FROM scratch\nCOPY a /a\n",
        "ARG BASE=python:3.11\nFROM $BASE\n",
        "ARG TAG=3.11\nFROM python:${TAG}-slim AS build\nFROM debian:bookworm\nCOPY --from=build /a /b\n",
        "FROM python:3.11 AS Build\nFROM build\nCOPY --from=0 /a /b\n",
        "FROM ${NOT_SET:-python:3.12}\n",
        "FROM python:3.11\nADD local.tar.gz /opt/\nADD [\"a b.txt\", \"/x/\"]\n",
        "FROM python:3.11\nENV F=data.zip\nADD $F /data/\n",
        "# syntax=docker/dockerfile:1\nfrom python:3.11\nrun echo hi\n",
    ],
)
def test_earlier_stages_base_images_and_allowed_images_pass(dockerfile: str) -> None:
    allowed(dockerfile)


def test_a_space_variable_can_pick_an_allowed_image() -> None:
    allowed("ARG BASE=python:3.11\nFROM $BASE\n", {"BASE": "debian:bookworm"})


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM python:3.11\nADD http://127.0.0.1:8000/api/health /x\n",
        "FROM python:3.11\nadd https://example.com/a.tar.gz /x/\n",
        'FROM python:3.11\nADD ["http://127.0.0.1:6379/", "/x"]\n',
        "FROM python:3.11\nADD --chown=1000 HTTP://127.0.0.1/ /x\n",
        "FROM python:3.11\nADD git@github.com:a/b.git /x\n",
        "FROM python:3.11\nADD ftp://host/file /x\n",
        "FROM python:3.11\nENV U=http://127.0.0.1:8000/\nADD $U /x\n",
        "FROM python:3.11\nARG U=http://127.0.0.1:8000/\nADD $U /x\n",
        "FROM python:3.11\nARG U\nADD ${U} /x\n",
        # An ENV of the base (here an earlier stage) would win over the default: refused, not guessed.
        "FROM python:3.11 AS a\nENV U=http://127.0.0.1/\nFROM a\nADD ${U:-local.txt} /x\n",
        "FROM python:3.11\nONBUILD ADD http://127.0.0.1/ /x\n",
    ],
)
def test_remote_add_is_refused(dockerfile: str) -> None:
    message = refused(dockerfile)
    assert "ADD" in message


def test_run_flags_that_escape_the_build_are_refused() -> None:
    assert "--network" in refused("FROM python:3.11\nRUN --network=host echo\n")
    assert "secret" in refused("FROM python:3.11\nRUN --mount=type=secret,id=t cat /run/secrets/t\n")


def test_parser_joins_continuations_and_drops_comments() -> None:
    text = "# escape=`\nFROM python:3.11\nRUN echo a `\n# a comment inside\n\n  b\ncopy x y\n"
    parsed = instructions(text)
    assert [(i.line, i.keyword) for i in parsed] == [(2, "FROM"), (3, "RUN"), (7, "COPY")]
    assert parsed[1].args == "echo a   b"


def test_messages_quote_user_values_bounded() -> None:
    message = refused("FROM " + "a/" * 5000 + "b\n")
    assert len(message) < 1000


# --- end to end: a real push, the real engine ----------------------------------------------------------------

SECRET = "alice-private-source-4b1d"


@pytest.mark.docker
def test_space_cannot_build_on_another_spaces_private_image(platform, tmp_path) -> None:
    app = f"{SECRET}\n"
    push_tree(platform, "alicedf", "secretapp", {"README.md": DOCKER_README, "secret.txt": app, "Dockerfile":
              f"FROM spaceyard/base:py3.11\nCOPY secret.txt /secret.txt\n{SERVE}"}, tmp_path, private=True)
    runtime = settle(platform, "alicedf/secretapp", "alicedf")
    assert runtime["stage"] in {"APP_STARTING", "RUNNING"}, runtime
    image = re.search(r"Building image (\S+)", build_log(platform, "alicedf/secretapp", "alicedf")).group(1)
    image_id = docker.from_env().images.get(image).id  # sha256:...

    attempts = {
        "byname": f"FROM {image}\nRUN cat /secret.txt\n",
        "byid": f"FROM {image_id.split(':')[1][:12]}\nRUN cat /secret.txt\n",
        "copyfrom": f"FROM spaceyard/base:py3.11\nCOPY --from={image} /secret.txt /s\nRUN cat /s\n",
        "add": f"FROM spaceyard/base:py3.11\nADD {platform.url}/api/health /h\nRUN cat /h\n",
    }
    for name, dockerfile in attempts.items():
        push_tree(platform, "mallorydf", name, {"README.md": DOCKER_README, "Dockerfile": dockerfile + SERVE}, tmp_path)
    for name in attempts:
        runtime = settle(platform, f"mallorydf/{name}", "mallorydf")
        assert runtime["stage"] == "BUILD_ERROR", (name, runtime)
        log = build_log(platform, f"mallorydf/{name}", "mallorydf")
        assert SECRET not in log and SECRET not in runtime["errorMessage"]
        assert "Dockerfile line" in runtime["errorMessage"], runtime
        if name != "add":
            assert "SPACEYARD_BUILD_ALLOWED_IMAGES" in runtime["errorMessage"]
        if name == "add":
            assert "URL" in runtime["errorMessage"]
        elif name == "byid":
            assert "image id" in runtime["errorMessage"]
        else:
            assert image in runtime["errorMessage"]


PROBE = '''\
import socket, struct, sys
# The build container's default gateway is the host's side of its bridge.
routes = [line.split() for line in open("/proc/net/route").read().splitlines()[1:]]
gateway = socket.inet_ntoa(struct.pack("<L", int(next(r[2] for r in routes if r[1] == "00000000"), 16)))
try:
    socket.create_connection((gateway, int(sys.argv[1])), timeout=5).close()
    print("PROBE connected", gateway)
except OSError as exc:
    print("PROBE blocked", gateway, type(exc).__name__)
'''


@pytest.mark.docker
def test_build_run_steps_cannot_reach_the_hosts_loopback_services(platform, tmp_path) -> None:
    """The control plane listens on the host's 127.0.0.1; a RUN step tries it through the bridge gateway."""
    port = int(platform.url.rsplit(":", 1)[1])
    dockerfile = f"FROM spaceyard/base:py3.11\nCOPY probe.py /p.py\nRUN timeout 20 python3 /p.py {port}\n{SERVE}"
    push_tree(platform, "prober", "net", {"README.md": DOCKER_README, "Dockerfile": dockerfile, "probe.py": PROBE},
              tmp_path)
    runtime = settle(platform, "prober/net", "prober")
    assert runtime["stage"] in {"APP_STARTING", "RUNNING"}, runtime
    log = build_log(platform, "prober/net", "prober")
    assert "PROBE blocked" in log, log
    assert "PROBE connected" not in log
