"""Generated Dockerfiles, read as text: layer order, CA bundle, pip index, start commands."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from builder import cacert
from builder.dockerfile import (
    UnavailablePython,
    app_dockerfile,
    python_image,
    python_version_for,
    sdk_base_dockerfile,
    sdk_image,
)
from builder.settings import BuilderSettings, debian_mirror_from_apt
from builder.spaceconfig import parse


def settings(**overrides: object) -> BuilderSettings:
    return BuilderSettings(_env_file=None, debian_mirror="http://mirror.test/debian", **overrides)


def lines(text: str) -> list[str]:
    return text.splitlines()


def index_of(text: str, prefix: str) -> int:
    return next(i for i, line in enumerate(lines(text)) if line.startswith(prefix))


def cmd_of(text: str) -> str:
    cmd = json.loads(next(line for line in lines(text) if line.startswith("CMD "))[4:])
    assert cmd[:2] == ["sh", "-c"]
    return cmd[2]


def test_dependency_layers_come_before_the_code() -> None:
    config = parse({"sdk": "gradio", "sdk_version": "5.0.1"})
    text = app_dockerfile(config, {"packages.txt", "pre-requirements.txt", "requirements.txt"}, "3.11")
    assert lines(text)[0] == "FROM spaceyard/sdk-gradio:5.0.1-py3.11"
    order = [
        index_of(text, "COPY packages.txt"),
        index_of(text, "RUN apt-get update"),
        index_of(text, "COPY pre-requirements.txt"),
        index_of(text, "RUN pip install -r /tmp/spaceyard-deps/pre-requirements.txt"),
        index_of(text, "COPY requirements.txt"),
        index_of(text, "RUN pip install -r /tmp/spaceyard-deps/requirements.txt gradio==5.0.1"),
        index_of(text, "COPY --chown=1000:1000 . /home/user/app"),
        index_of(text, "USER 1000"),
        index_of(text, "CMD "),
    ]
    assert order == sorted(order)
    # No step before the code COPY reads anything but the dependency files.
    before_code = lines(text)[: index_of(text, "COPY --chown")]
    assert not any(line.startswith(("COPY . ", "ADD ")) for line in before_code)


def test_absent_dependency_files_make_no_layers() -> None:
    text = app_dockerfile(parse({"sdk": "gradio"}), set(), "3.11")
    assert "requirements" not in text and "apt-get" not in text


def test_runtime_env_comes_before_the_code_so_it_is_cached() -> None:
    text = app_dockerfile(parse({"sdk": "streamlit"}), set(), "3.11")
    assert index_of(text, "ENV HOME=/home/user PORT=8501") < index_of(text, "COPY --chown")
    assert "EXPOSE 8501" in lines(text)


def test_gradio_command_listens_on_port_under_root_path() -> None:
    cmd = cmd_of(app_dockerfile(parse({"sdk": "gradio", "app_file": "demo/main.py"}), set(), "3.11"))
    assert 'GRADIO_SERVER_NAME=0.0.0.0 GRADIO_SERVER_PORT="$PORT"' in cmd
    assert 'GRADIO_ROOT_PATH="${GRADIO_ROOT_PATH:-$SPACEYARD_ROOT_PATH}"' in cmd
    assert cmd.endswith("exec python demo/main.py")


def test_streamlit_command() -> None:
    cmd = cmd_of(app_dockerfile(parse({"sdk": "streamlit", "app_file": "ui.py"}), set(), "3.11"))
    assert cmd.startswith('exec streamlit run ui.py --server.port "$PORT" --server.address 0.0.0.0')
    assert '--server.baseUrlPath "$SPACEYARD_ROOT_PATH"' in cmd
    assert "--server.headless true" in cmd
    assert "--server.enableXsrfProtection false --server.enableCORS false" in cmd


def test_static_serves_the_repo_without_dependency_layers() -> None:
    text = app_dockerfile(parse({"sdk": "static"}), {"requirements.txt", "packages.txt"}, "3.11")
    assert lines(text)[0] == "FROM spaceyard/sdk-static:py3.11"
    assert "pip" not in text and "apt-get" not in text
    assert cmd_of(text) == "exec python /opt/spaceyard/serve.py --dir /home/user/app --app-file index.html"


def test_ca_bundle_is_merged_and_exported_before_pip(tmp_path: Path) -> None:
    bundle = tmp_path / "proxy.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    text = sdk_base_dockerfile("gradio", "5.0.1", "3.11", settings(build_ca_bundle=bundle))
    path = cacert.BUNDLE_PATH
    assert f"COPY {cacert.CONTEXT_NAME} {cacert.EXTRA_PATH}" in lines(text)
    assert f"ENV PIP_CERT={path} REQUESTS_CA_BUNDLE={path} SSL_CERT_FILE={path}" in lines(text)
    assert index_of(text, "ENV PIP_CERT") < index_of(text, "RUN pip install gradio==5.0.1")
    cacert.add_to_context(settings(build_ca_bundle=bundle), tmp_path)
    assert (tmp_path / cacert.CONTEXT_NAME).read_text() == bundle.read_text()


def test_no_ca_bundle_no_ca_lines() -> None:
    text = sdk_base_dockerfile("gradio", "5.0.1", "3.11", settings())
    assert "PIP_CERT" not in text and cacert.CONTEXT_NAME not in text


def test_pip_index_url() -> None:
    text = sdk_base_dockerfile("streamlit", "1.40.0", "3.11", settings(pip_index_url="https://pypi.corp/simple"))
    assert 'PIP_INDEX_URL="https://pypi.corp/simple"' in text
    assert index_of(text, "ENV PYTHONUNBUFFERED") < index_of(text, "RUN pip install streamlit==1.40.0")
    assert "PIP_INDEX_URL" not in sdk_base_dockerfile("streamlit", "1.40.0", "3.11", settings())


def test_sdk_bases() -> None:
    gradio = sdk_base_dockerfile("gradio", "5.0.1", "3.11", settings())
    assert lines(gradio)[0] == "FROM spaceyard/base:py3.11"
    assert "RUN python3 -m venv /opt/venv" in gradio
    assert "COPY gradio/stubs /opt/spaceyard/python" in gradio  # the ZeroGPU stub
    static = sdk_base_dockerfile("static", None, "3.11", settings())
    assert "COPY static/serve.py /opt/spaceyard/serve.py" in static and "pip install" not in static
    registry = sdk_base_dockerfile("gradio", "5.0.1", "3.12", settings(base_image_source="registry"))
    assert lines(registry)[0] == "FROM python:3.12-slim"


def test_image_names() -> None:
    assert sdk_image("gradio", "5.0.1", "3.11") == "spaceyard/sdk-gradio:5.0.1-py3.11"
    assert sdk_image("static", None, "3.11") == "spaceyard/sdk-static:py3.11"
    assert python_image("3.11", settings()) == "spaceyard/base:py3.11"


def test_python_version_resolution() -> None:
    assert python_version_for(None, settings()) == "3.11"
    assert python_version_for("3.11.4", settings()) == "3.11"
    with pytest.raises(UnavailablePython, match=r"^python_version: 3.10 is not available.*3\.11"):
        python_version_for("3.10", settings())
    assert python_version_for("3.10", settings(base_image_source="registry")) == "3.10"


def test_debian_mirror_from_apt_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm\n"
    )
    assert debian_mirror_from_apt(tmp_path) == "http://mirror.example/debian"
    assert debian_mirror_from_apt(tmp_path / "nothing") == "http://deb.debian.org/debian"
    (tmp_path / "one").mkdir()
    (tmp_path / "one" / "sources.list").write_text("deb [arch=amd64] http://m.test/debian bookworm main\n")
    assert debian_mirror_from_apt(tmp_path / "one") == "http://m.test/debian"
