"""Dockerfile text for SDK base images and Space apps: pure functions of (config, settings), one per layer.

Docker 20.10 through docker-py builds with the classic builder (no BuildKit), so there are no cache
or secret mounts: dependency reuse comes from layer order (dependency files are copied and installed
before the code), and pip runs with --no-cache-dir to keep layers small.
"""

from __future__ import annotations

import json
import shlex

from builder import cacert
from builder.settings import BuilderSettings
from builder.spaceconfig import SpaceConfig

VENV = "/opt/venv"
STUBS_DIR = "/opt/spaceyard/python"
SERVE_PY = "/opt/spaceyard/serve.py"
APP_DIR = "/home/user/app"
DEPS_DIR = "/tmp/spaceyard-deps"
# Debian bookworm ships Python 3.11; other suites are listed so a mirror switch only edits this table.
SUITE_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}


class UnavailablePython(ValueError):
    """python_version asks for a Python the configured base image source cannot provide."""


def python_version_for(requested: str | None, settings: BuilderSettings) -> str:
    """The major.minor Python a build uses: the requested one if the base source offers it."""
    if settings.base_image_source == "registry":
        return ".".join((requested or SUITE_PYTHON["bookworm"]).split(".")[:2])
    available = SUITE_PYTHON.get(settings.debian_suite)
    if available is None:
        raise UnavailablePython(f"debian_suite {settings.debian_suite!r} has no known Python version")
    if requested is not None and ".".join(requested.split(".")[:2]) != available:
        raise UnavailablePython(
            f"python_version: {requested} is not available; this builder's base images offer Python "
            f'{available} (Debian {settings.debian_suite}). Set python_version: "{available}" or remove it.'
        )
    return available


def python_image(python: str, settings: BuilderSettings) -> str:
    if settings.base_image_source == "registry":
        return f"python:{python}-slim"
    return f"spaceyard/base:py{python}"


def sdk_image(sdk: str, sdk_version: str | None, python: str) -> str:
    """Tag of the SDK base image: spaceyard/sdk-gradio:6.31.0-py3.11, spaceyard/sdk-static:py3.11."""
    return f"spaceyard/sdk-{sdk}:{sdk_version}-py{python}" if sdk_version else f"spaceyard/sdk-{sdk}:py{python}"


# --- SDK base image layers ---------------------------------------------------------------------------


def _from(image: str) -> list[str]:
    return [f"FROM {image}"]


def _pip_env(settings: BuilderSettings) -> list[str]:
    env = ["PYTHONUNBUFFERED=1", "PIP_DISABLE_PIP_VERSION_CHECK=1", "PIP_NO_CACHE_DIR=1"]
    if settings.pip_index_url:
        env.append(f"PIP_INDEX_URL={json.dumps(settings.pip_index_url)}")
    return ["ENV " + " ".join(env)]


def _venv() -> list[str]:
    return [f"RUN python3 -m venv {VENV}", f"ENV VIRTUAL_ENV={VENV} PATH={VENV}/bin:$PATH"]


def _user() -> list[str]:
    # Spaces run as uid 1000 named "user" with the app in /home/user/app (Hub convention, and what
    # Docker SDK Dockerfiles written for the Hub expect).
    return [f"RUN useradd -m -u 1000 user && mkdir -p {APP_DIR} && chown -R 1000:1000 /home/user"]


def _sdk_package(sdk: str, sdk_version: str | None) -> list[str]:
    if sdk in ("gradio", "streamlit"):
        return [f"RUN pip install {sdk}=={sdk_version}"]
    return []


def _sdk_helpers(sdk: str) -> list[str]:
    if sdk == "gradio":
        # A .pth file appends the stub dir to sys.path, so a real `spaces` installed by requirements wins. The
        # dist-info gives the stub a version (Gradio checks it before it asks for `spaces.reloading`); pip then
        # counts a bare `spaces` requirement as met, and installs the real one only for `spaces>0.43`.
        return [
            f"COPY gradio/stubs {STUBS_DIR}",
            f'RUN echo {STUBS_DIR} > "$(python -c \'import sysconfig; print(sysconfig.get_path("purelib"))\')'
            '/spaceyard-stubs.pth"',
        ]
    if sdk == "static":
        return [f"COPY static/serve.py {SERVE_PY}"]
    return []


def sdk_base_dockerfile(sdk: str, sdk_version: str | None, python: str, settings: BuilderSettings) -> str:
    """Base for every app of one SDK version: Python, CA bundle, pip settings, venv, the SDK, helpers.

    Its build context is runtime-images/ plus the CA bundle (cacert.add_to_context).
    """
    lines = [
        *_from(python_image(python, settings)),
        *cacert.ca_layer(settings),
        *_pip_env(settings),
        *_venv(),
        *_user(),
        *_sdk_package(sdk, sdk_version),
        *_sdk_helpers(sdk),
        f"WORKDIR {APP_DIR}",
    ]
    return "\n".join(lines) + "\n"


# --- App image layers --------------------------------------------------------------------------------


def _packages(files: set[str]) -> list[str]:
    if "packages.txt" not in files:
        return []
    return [
        f"COPY packages.txt {DEPS_DIR}/",
        "RUN apt-get update"
        f" && sed -e 's/#.*//' {DEPS_DIR}/packages.txt | xargs -r apt-get install -y --no-install-recommends"
        " && rm -rf /var/lib/apt/lists/*",
    ]


def _requirements(config: SpaceConfig, files: set[str]) -> list[str]:
    lines = []
    if "pre-requirements.txt" in files:
        lines += [
            f"COPY pre-requirements.txt {DEPS_DIR}/",
            f"RUN pip install -r {DEPS_DIR}/pre-requirements.txt",
        ]
    if "requirements.txt" in files:
        # The SDK pin goes into the same resolve, so requirements cannot silently swap the SDK version.
        pin = f" {config.sdk}=={config.sdk_version}" if config.sdk_version else ""
        lines += [f"COPY requirements.txt {DEPS_DIR}/", f"RUN pip install -r {DEPS_DIR}/requirements.txt{pin}"]
    return lines


def _runtime_env(config: SpaceConfig) -> list[str]:
    return [
        f"ENV HOME=/home/user PORT={config.app_port} SPACEYARD_ROOT_PATH= SYSTEM=spaces",
        f"EXPOSE {config.app_port}",
    ]


def _code() -> list[str]:
    return [f"COPY --chown=1000:1000 . {APP_DIR}", "USER 1000", f"WORKDIR {APP_DIR}"]


def _start_command(config: SpaceConfig) -> str:
    app = shlex.quote(config.app_file)
    if config.sdk == "gradio":
        # GRADIO_ROOT_PATH set by the runtime wins; otherwise Gradio serves under Spaceyard's root path.
        return (
            'export GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT="$PORT"'
            ' GRADIO_ROOT_PATH="${GRADIO_ROOT_PATH:-$SPACEYARD_ROOT_PATH}"; '
            f"exec python {app}"
        )
    if config.sdk == "streamlit":
        # XSRF and CORS checks compare the browser's Origin with the host Streamlit sees; behind the
        # router (another host name, another scheme) they reject the app's own WebSocket and uploads.
        return (
            f'exec streamlit run {app} --server.port "$PORT" --server.address 0.0.0.0'
            ' --server.baseUrlPath "$SPACEYARD_ROOT_PATH" --server.headless true'
            " --server.enableXsrfProtection false --server.enableCORS false"
            " --browser.gatherUsageStats false"
        )
    if config.sdk == "static":
        return f"exec python {SERVE_PY} --dir {APP_DIR} --app-file {app}"
    raise ValueError(f"a {config.sdk} Space brings its own Dockerfile")


def _cmd(config: SpaceConfig) -> list[str]:
    return ["CMD " + json.dumps(["sh", "-c", _start_command(config)])]


def app_dockerfile(config: SpaceConfig, files: set[str], python: str) -> str:
    """Dockerfile of a gradio/streamlit/static Space; `files` = names present at the repo root."""
    lines = [
        *_from(sdk_image(config.sdk, config.sdk_version, python)),
        *(_packages(files) if config.sdk != "static" else []),
        *(_requirements(config, files) if config.sdk != "static" else []),
        *_runtime_env(config),
        *_code(),
        *_cmd(config),
    ]
    return "\n".join(lines) + "\n"
