"""The pure rules: per-SDK root path env, labels, and the in-memory resolver."""

from __future__ import annotations

import asyncio
import re

import pytest

from controlplane.router.apps import root_path_env
from controlplane.router.resolver import NotFound, StaticResolver, Target, space_label


def test_root_path_env_per_sdk() -> None:
    p = "/apps/o/n"
    assert root_path_env("gradio", p) == ({"SPACEYARD_ROOT_PATH": p, "GRADIO_ROOT_PATH": p}, True)
    assert root_path_env("streamlit", p) == ({"SPACEYARD_ROOT_PATH": p, "STREAMLIT_SERVER_BASE_URL_PATH": p}, False)
    assert root_path_env("docker", p) == ({"SPACEYARD_ROOT_PATH": p, "GRADIO_ROOT_PATH": p}, True)
    assert root_path_env("static", p) == ({"SPACEYARD_ROOT_PATH": p}, True)
    with pytest.raises(ValueError):
        root_path_env("flask", p)


def test_space_label_follows_the_hub() -> None:
    assert space_label("My_Org", "app.v2") == "my-org-app-v2"


def test_space_label_past_63_characters_is_a_dns_label_and_stays_distinct() -> None:
    a, b = space_label("org", "x" * 90 + "a"), space_label("org", "x" * 90 + "b")
    for label in (a, b):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", label) and len(label) <= 63, label
        assert label.startswith("org-xxxx")
    assert a != b
    assert space_label("org", "x" * 59) == "org-" + "x" * 59  # 63 characters: the Hub's label, unchanged


def test_static_resolver_maps_ambiguous_labels_to_the_space_it_knows() -> None:
    target = Target("a-b/c", "127.0.0.1:1", "/apps/a-b/c", True)
    resolver = StaticResolver({"a-b/c": target})
    found = asyncio.run(resolver.resolve(label="a-b-c", owner=None, name=None, request_headers={}))
    assert found == target
    missing = asyncio.run(resolver.resolve(label=None, owner="a", name="b-c", request_headers={}))
    assert missing == NotFound()
    with pytest.raises(ValueError, match="share the host label"):
        resolver.set("a/b-c", target)
