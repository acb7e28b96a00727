"""README front matter cannot cost the builder or the control plane memory, recursion or a crash.

Before: 348 bytes of YAML aliases grew to 26 MB of JSON in the builder (one level more OOM-killed the
control plane through validate-yaml, which parses with the same front_matter()), and 20,000 `[` raised
RecursionError (a 500).
"""

from __future__ import annotations

import time

import pytest

from builder.spaceconfig import MAX_FRONT_MATTER, ConfigError, front_matter, parse
from tests.security.builder_spaces import build_log, push_tree, settle

LOL = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
BILLION_LAUGHS = "---\nsdk: docker\na: &a " + LOL + "\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
) + "---\n"


def config_error(readme: str) -> str:
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        front_matter(readme)
    assert time.monotonic() - started < 2
    message = str(info.value)
    assert message.startswith("README.md: ") and len(message) < 400
    return message


def test_alias_bomb_is_refused_before_it_expands() -> None:
    assert len(BILLION_LAUGHS) < 700
    assert "anchors and aliases" in config_error(BILLION_LAUGHS)


@pytest.mark.parametrize(
    "yaml_text",
    [
        "title: &t hello\nshort_description: *t\n",
        "tags: &t [a]\n",
        "base: &b {a: 1}\nother:\n  <<: *b\n",
        "x: *undefined\n",
    ],
)
def test_any_anchor_or_alias_is_refused(yaml_text: str) -> None:
    assert "anchors and aliases" in config_error(f"---\nsdk: gradio\n{yaml_text}---\n")


@pytest.mark.parametrize(
    "body",
    [
        "x: " + "[" * 20_000 + "]" * 20_000,  # the reported one: RecursionError, a 500
        "x: " + "{a: " * 10_000 + "1" + "}" * 10_000,
        "x:\n" + "".join("  " * i + "-\n" for i in range(1, 100)),
    ],
)
def test_deep_nesting_is_a_config_error_not_a_recursion_error(body: str) -> None:
    assert "nested deeper" in config_error(f"---\n{body}\n---\n")


def test_front_matter_over_the_cap_is_refused_but_a_long_readme_body_is_fine() -> None:
    big = "---\nsdk: gradio\n" + "k: v\n" * (MAX_FRONT_MATTER // 5) + "---\n"
    assert "longer than 64 KiB" in config_error(big)
    assert front_matter("---\nsdk: gradio\n---\n" + "body " * 2_000_000) == {"sdk": "gradio"}


def test_huge_numbers_are_a_config_error() -> None:
    config_error("---\nsdk: gradio\napp_port: " + "9" * 5000 + "\n---\n")


def test_values_quoted_back_in_messages_are_bounded() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"sdk": "gradio", "app_port": "x" * 50_000})
    assert len(str(info.value)) < 300
    with pytest.raises(ConfigError) as info:
        parse({"sdk": "gradio", "tags": [["x" * 1000] * 1000]})
    assert len(str(info.value)) < 300


@pytest.mark.docker
def test_pushed_alias_bomb_is_config_error_in_the_runtime_api(platform, tmp_path) -> None:
    push_tree(platform, "yamlbomber", "lol", {"README.md": BILLION_LAUGHS, "Dockerfile": "FROM scratch\n"}, tmp_path)
    runtime = settle(platform, "yamlbomber/lol", "yamlbomber")
    assert runtime["stage"] == "CONFIG_ERROR", runtime
    assert "README.md" in runtime["errorMessage"] and "anchors and aliases" in runtime["errorMessage"]
    assert len(build_log(platform, "yamlbomber/lol", "yamlbomber")) < 5000
