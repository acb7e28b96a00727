""".dockerignore matching in linear time, for a tenant's patterns.

docker-py matches .dockerignore patterns with Python regular expressions, which backtrack: a pattern
like `*a*a*a*b` against one long file name ran for minutes here (Docker's own Go matcher is linear).
This keeps docker-py's pattern semantics (its Pattern/PatternMatcher: `!` exceptions, parent folders,
`**`, `*`, `?`, `[...]`, case-insensitive) but matches by walking all pattern positions at once.
"""

from __future__ import annotations

import re
import time

from docker.utils.build import Pattern, PatternMatcher, normalize_slashes

Token = tuple[str, "str | re.Pattern[str] | None"]


MAX_PATTERN = 1024  # characters of one pattern: bounds one match to O(4096 * MAX_PATTERN) steps


class BadPattern(ValueError):
    """A .dockerignore line that is not a valid pattern (a CONFIG_ERROR)."""


class TimeUp(Exception):
    """Matching ran past its deadline (a huge repo times many patterns)."""


def tokens(pattern: str) -> list[Token]:
    """The pattern as docker.utils.fnmatch.translate reads it, one token per regex piece."""
    out: list[Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(("rest", None) if i >= n else ("dirs", None))  # .* at the end, else (.*/)?
            else:
                out.append(("star", None))  # [^/]*
        elif c == "?":
            out.append(("one", None))  # [^/]
        elif c == "[":
            j = i + (i < n and pattern[i] == "!")
            j += j < n and pattern[j] == "]"
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out.append(("lit", "["))
                continue
            body = pattern[i:j].replace("\\", "\\\\")
            body = "^" + body[1:] if body[0] == "!" else "\\" + body if body[0] == "^" else body
            try:
                out.append(("class", re.compile(f"[{body}]")))  # one character: no backtracking
            except re.error as exc:
                raise BadPattern(f"{pattern[:80]!r} is not a valid pattern ({exc})") from None
            i = j + 1
        else:
            out.append(("lit", c))
    return out


def _closure(states: set[int | tuple[str, int]], toks: list[Token]) -> set[int | tuple[str, int]]:
    """Add the positions reachable by matching nothing (after *, ** and **/ tokens)."""
    stack = [s for s in states if isinstance(s, int)]
    while stack:
        s = stack.pop()
        if s < len(toks) and toks[s][0] in ("star", "rest", "dirs") and s + 1 not in states:
            states.add(s + 1)
            stack.append(s + 1)
    return states


def match(path: str, pattern: str) -> bool:
    """Whether `path` matches `pattern` as docker.utils.fnmatch.fnmatch would; O(len(path) * len(pattern))."""
    return _match(path, tokens(pattern.lower()))


def _match(path: str, toks: list[Token]) -> bool:
    states = _closure({0}, toks)
    for ch in path.lower():
        following: set[int | tuple[str, int]] = set()
        for s in states:
            if isinstance(s, tuple):  # inside (.*/)?: anything, and may leave after a /
                following.add(s)
                if ch == "/":
                    following.add(s[1] + 1)
                continue
            if s >= len(toks):
                continue
            kind, arg = toks[s]
            one_char = kind == "class" and isinstance(arg, re.Pattern) and arg.fullmatch(ch)
            if kind == "lit" and ch == arg or kind == "one" and ch != "/" or one_char:
                following.add(s + 1)
            elif kind == "star" and ch != "/" or kind == "rest":
                following.add(s)
            elif kind == "dirs":
                following.add(("in", s))
                if ch == "/":
                    following.add(s + 1)
        states = _closure(following, toks)
        if not states:
            return False
    return len(toks) in states


class _Pattern(Pattern):
    def __init__(self, pattern_str: str, deadline: float | None) -> None:
        if len(pattern_str) > MAX_PATTERN:
            raise BadPattern(f"{pattern_str[:80]!r}... is longer than {MAX_PATTERN} characters")
        super().__init__(pattern_str)
        self.tokens = tokens(self.cleaned_pattern.lower())  # now: a bad pattern fails even if nothing is walked
        self.deadline = deadline

    def match(self, filepath: str) -> bool:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeUp()
        return _match(normalize_slashes(filepath), self.tokens)


class Matcher(PatternMatcher):
    """docker-py's PatternMatcher (walk, exceptions) over linear-time patterns."""

    def __init__(self, patterns: list[str], deadline: float | None = None) -> None:
        self.patterns = [p for p in (_Pattern(text, deadline) for text in patterns) if p.dirs]
        self.patterns.append(_Pattern("!.dockerignore", deadline))


def included(root: str, ignore: str, deadline: float | None = None) -> list[str]:
    """Paths under `root` (relative, files and folders) that a .dockerignore text does not exclude.

    Raises TimeUp once time.monotonic() passes `deadline`.
    """
    patterns = [p for p in (line.strip() for line in ignore.splitlines()) if p and not p.startswith("#")]
    return sorted(Matcher(patterns, deadline).walk(root))
