""".dockerignore matching: docker-py's semantics, without its regex backtracking."""

from __future__ import annotations

import random
import re
import time
import warnings
from pathlib import Path

import pytest
from docker.utils.fnmatch import fnmatch

from builder.dockerignore import BadPattern, TimeUp, included, match


def test_matches_exactly_like_docker_py_on_random_patterns() -> None:
    rng = random.Random(7)
    compared = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "possible nested set" from re, for both sides
        for _ in range(30_000):
            pattern = "".join(rng.choice("ab/*?[]!^-.\\") for _ in range(rng.randint(0, 7)))
            path = "".join(rng.choice("aAb/.-") for _ in range(rng.randint(0, 8)))
            try:
                expected = fnmatch(path, pattern)
            except re.error:
                continue
            assert match(path, pattern) == expected, (pattern, path)
            compared += 1
    assert compared > 25_000


def test_walk_keeps_docker_py_rules(tmp_path: Path) -> None:
    for name in ("app.py", "data/big.bin", "data/keep.txt", "notes/a.md", ".dockerignore", "src/x.pyc"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    files = included(str(tmp_path), "# comment\ndata/*\n!data/keep.txt\nnotes\n**/*.pyc\n.dockerignore\n")
    assert files == [".dockerignore", "app.py", "data", "data/keep.txt", "src"]


def test_invalid_class_is_bad_pattern(tmp_path: Path) -> None:
    with pytest.raises(BadPattern):
        included(str(tmp_path), "[z-a]\n")


def test_long_patterns_are_bad_and_matching_stops_at_the_deadline(tmp_path: Path) -> None:
    with pytest.raises(BadPattern, match="longer than"):
        included(str(tmp_path), "a" * 5000)
    (tmp_path / "f").write_text("x")
    with pytest.raises(TimeUp):
        included(str(tmp_path), "*.pyc\n", deadline=time.monotonic() - 1)
