"""README front matter -> SpaceConfig: defaults as on the Hub, unknown keys kept, every bad input named."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder import spaceconfig
from builder.spaceconfig import ConfigError, NoAppFile, front_matter, parse, parse_duration


def readme(body: str) -> str:
    return f"---\n{body}---\n\n# My Space\n"


@pytest.mark.parametrize(
    ("sdk", "port", "app_file", "version"),
    [
        ("gradio", 7860, "app.py", spaceconfig.DEFAULT_SDK_VERSIONS["gradio"]),
        ("streamlit", 8501, "app.py", spaceconfig.DEFAULT_SDK_VERSIONS["streamlit"]),
        ("docker", 7860, "Dockerfile", None),
        ("static", 7860, "index.html", None),
    ],
)
def test_defaults_per_sdk(sdk: str, port: int, app_file: str, version: str | None) -> None:
    config = parse({"sdk": sdk})
    assert (config.app_port, config.app_file, config.sdk_version) == (port, app_file, version)
    assert config.startup_duration_timeout == 30 * 60
    assert config.python_version is None  # the builder resolves it to its base image's Python


def test_full_hub_front_matter_and_unknown_keys_kept() -> None:
    card = front_matter(
        readme(
            "title: Demo\nemoji: 🚀\ncolorFrom: blue\ncolorTo: pink\nsdk: gradio\nsdk_version: 4.44.1\n"
            'python_version: "3.11"\napp_file: src/main.py\npinned: true\nlicense: mit\n'
            "short_description: hi\nsuggested_hardware: t4-small\nmodels: [gpt2]\ndatasets:\n  - squad\n"
            "tags: [a, b]\npreload_from_hub:\n  - gpt2 config.json\nstartup_duration_timeout: 1h\n"
            "custom_headers:\n  cross-origin-opener-policy: same-origin\nhf_oauth: true\nfullWidth: true\n"
        )
    )
    config = parse(card)
    assert config.title == "Demo" and config.emoji == "🚀"
    assert (config.colorFrom, config.colorTo) == ("blue", "pink")
    assert (config.sdk_version, config.python_version, config.app_file) == ("4.44.1", "3.11", "src/main.py")
    assert config.pinned and config.license == "mit" and config.suggested_hardware == "t4-small"
    assert (config.models, config.datasets, config.tags) == (["gpt2"], ["squad"], ["a", "b"])
    assert config.preload_from_hub == ["gpt2 config.json"]
    assert config.startup_duration_timeout == 3600
    assert config.custom_headers == {"cross-origin-opener-policy": "same-origin"}
    data = config.to_dict()
    assert data["card_data"]["hf_oauth"] is True and data["card_data"]["fullWidth"] is True


def test_unquoted_versions_keep_their_text() -> None:
    # YAML reads 3.10 as the float 3.1; the Hub's users write it unquoted anyway.
    config = parse(front_matter(readme("sdk: gradio\nsdk_version: 4.44\npython_version: 3.10\n")))
    assert (config.sdk_version, config.python_version) == ("4.44", "3.10")


def test_docker_app_port() -> None:
    assert parse({"sdk": "docker", "app_port": 8080}).app_port == 8080


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30m", 1800), ("1h", 3600), ("90s", 90), ("1h30m", 5400), ("2d", 172800), (600, 600), ("45", 45)],
)
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "30x", "", "-5m", 0, True, 1.5, "m30"])
def test_bad_durations(value: object) -> None:
    with pytest.raises(ConfigError, match="^startup_duration_timeout: "):
        parse_duration(value)


@pytest.mark.parametrize(
    ("card", "key", "detail"),
    [
        ({"sdk": "flask"}, "sdk", "must be one of gradio, streamlit, docker, static (got 'flask')"),
        ({}, "sdk", "missing"),
        ({"sdk": "gradio", "sdk_version": "latest; rm -rf /"}, "sdk_version", "must be a version"),
        ({"sdk": "gradio", "python_version": "2.7"}, "python_version", "must be a version"),
        ({"sdk": "gradio", "python_version": ["3.11"]}, "python_version", "must be a version"),
        ({"sdk": "gradio", "app_file": "../etc/passwd"}, "app_file", "relative path"),
        ({"sdk": "gradio", "app_file": "/app.py"}, "app_file", "relative path"),
        ({"sdk": "gradio", "app_file": "app.py; reboot"}, "app_file", "relative path"),
        ({"sdk": "docker", "app_port": "8080"}, "app_port", "port number"),
        ({"sdk": "docker", "app_port": 70000}, "app_port", "port number"),
        ({"sdk": "docker", "app_port": True}, "app_port", "port number"),
        ({"sdk": "gradio", "colorFrom": "orange"}, "colorFrom", "must be one of red"),
        ({"sdk": "gradio", "colorTo": 3}, "colorTo", "must be one of"),
        ({"sdk": "gradio", "title": ["x"]}, "title", "must be a string"),
        ({"sdk": "gradio", "pinned": "yes please"}, "pinned", "true or false"),
        ({"sdk": "gradio", "base_path": "docs"}, "base_path", "must start with /"),
        ({"sdk": "gradio", "models": [1, 2]}, "models", "list of strings"),
        ({"sdk": "gradio", "tags": {"a": 1}}, "tags", "list of strings"),
        ({"sdk": "gradio", "custom_headers": ["x"]}, "custom_headers", "mapping"),
        ({"sdk": "gradio", "startup_duration_timeout": "soon"}, "startup_duration_timeout", "duration"),
    ],
)
def test_invalid_values_name_the_key(card: dict, key: str, detail: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(card)
    assert info.value.key == key
    assert str(info.value).startswith(f"{key}: ")
    assert detail in str(info.value)


def test_sdk_from_create_time_when_readme_has_none() -> None:
    assert parse({}, default_sdk="streamlit").sdk == "streamlit"
    assert parse({"sdk": "gradio"}, default_sdk="streamlit").sdk == "gradio"


def test_malformed_yaml_gives_the_readme_line() -> None:
    with pytest.raises(ConfigError) as info:
        front_matter(readme("sdk: gradio\ntitle: [unclosed\nemoji: x\n"))
    assert info.value.key == "README.md"
    assert "not valid YAML" in str(info.value) and "line " in str(info.value)


def test_malformed_yaml_line_number_is_the_readme_line() -> None:
    with pytest.raises(ConfigError, match=r"line 4:"):
        front_matter("---\nsdk: gradio\ntitle: ok\nemoji: : :\n---\n")


@pytest.mark.parametrize("text", ["# no front matter\n", "", "---\n---\nbody\n", "text\n---\nsdk: gradio\n---\n"])
def test_no_front_matter_is_empty(text: str) -> None:
    assert front_matter(text) == {}


def test_front_matter_must_be_a_mapping_and_closed() -> None:
    with pytest.raises(ConfigError, match="mapping"):
        front_matter("---\n- a\n- b\n---\n")
    with pytest.raises(ConfigError, match="never ends"):
        front_matter("---\nsdk: gradio\n")


def test_load_checks_the_app_file(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text(readme("sdk: gradio\n"))
    with pytest.raises(NoAppFile, match="app.py not found"):
        spaceconfig.load(tmp_path)
    (tmp_path / "app.py").write_text("print('hi')\n")
    assert spaceconfig.load(tmp_path).sdk == "gradio"


@pytest.mark.parametrize(("sdk", "needed"), [("docker", "Dockerfile"), ("static", "index.html")])
def test_load_needs_dockerfile_or_index(tmp_path: Path, sdk: str, needed: str) -> None:
    (tmp_path / "README.md").write_text(readme(f"sdk: {sdk}\n"))
    with pytest.raises(NoAppFile, match=needed):
        spaceconfig.load(tmp_path)
    (tmp_path / needed).write_text("x")
    assert spaceconfig.load(tmp_path).sdk == sdk


def test_load_without_readme_uses_default_sdk(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    assert spaceconfig.load(tmp_path, default_sdk="gradio").sdk == "gradio"
    with pytest.raises(ConfigError, match="^sdk: missing"):
        spaceconfig.load(tmp_path)
