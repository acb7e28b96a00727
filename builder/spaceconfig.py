"""The Space config: README.md YAML front matter, read the way the Hugging Face Hub reads it.

Kept dependency-light (PyYAML, stdlib) because the control plane imports it too, to show cardData.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from builder import repofiles

SDKS = ("gradio", "streamlit", "docker", "static")
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
DEFAULT_PORTS = {"gradio": 7860, "streamlit": 8501, "docker": 7860, "static": 7860}
DEFAULT_APP_FILES = {"gradio": "app.py", "streamlit": "app.py", "docker": "Dockerfile", "static": "index.html"}
# Newest releases that install from PyPI here (checked with `pip index versions`).
DEFAULT_SDK_VERSIONS = {"gradio": "6.31.0", "streamlit": "1.67.0"}
DEFAULT_STARTUP_TIMEOUT = 30 * 60

_VERSION = re.compile(r"^[0-9]+(\.[0-9]+){0,3}([a-z]+[0-9]*)?$")
_PYTHON_VERSION = re.compile(r"^3\.[0-9]+(\.[0-9]+)?$")
_APP_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_DURATION_PART = re.compile(r"([0-9]+)\s*([smhd])")
# Front matter is small (the Hub's are a few hundred bytes); the caps keep a hostile README from costing
# the builder or the control plane (which parses it too, for validate-yaml) memory or recursion.
MAX_FRONT_MATTER = 64 * 1024  # characters between and including the --- lines
MAX_DEPTH = 32  # nested lists/mappings
MAX_SHOWN = 80  # characters of a user's value quoted back in a message
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ConfigError(ValueError):
    """The front matter is invalid; the message names the key (a CONFIG_ERROR)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key = key


class NoAppFile(Exception):
    """The file the SDK starts (app file, Dockerfile, index.html) is missing (NO_APP_FILE)."""

    def __init__(self, message: str, config: SpaceConfig) -> None:
        super().__init__(message)
        self.config = config  # the front matter was valid: the control plane can still show it


class _YamlFloat(float):
    """A float that remembers its source text: `python_version: 3.10` must stay "3.10", not 3.1."""

    text: str


class _Refused(yaml.MarkedYAMLError):
    """YAML the front matter may not use (anchors, aliases, deep nesting)."""


class _Loader(yaml.SafeLoader):
    """SafeLoader without anchors/aliases (a few hundred bytes of aliases expand to gigabytes) and depth-bound."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused(problem="YAML anchors and aliases (&x / *x) are not allowed", problem_mark=event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise _Refused(problem=f"nested deeper than {MAX_DEPTH} levels", problem_mark=event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    value = _YamlFloat(loader.construct_yaml_float(node))
    value.text = node.value
    return value


_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)


@dataclass(frozen=True)
class SpaceConfig:
    sdk: str
    sdk_version: str | None
    python_version: str | None
    app_file: str
    app_port: int
    title: str | None = None
    emoji: str | None = None
    colorFrom: str | None = None  # the Hub's key names
    colorTo: str | None = None
    base_path: str | None = None
    pinned: bool = False
    license: str | None = None
    short_description: str | None = None
    suggested_hardware: str | None = None
    models: list[str] = field(default_factory=list)
    datasets: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    preload_from_hub: list[str] = field(default_factory=list)
    startup_duration_timeout: int = DEFAULT_STARTUP_TIMEOUT
    custom_headers: dict[str, str] = field(default_factory=dict)
    card_data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The `config` of the build result event (docs/build-contract.md)."""
        return asdict(self)


def _bounded(text: str, limit: int = MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _shown(value: Any) -> str:
    """A user's value for a message: repr, cut to MAX_SHOWN characters."""
    return _bounded(repr(value))


def front_matter(readme: str) -> dict[str, Any]:
    """The YAML mapping between the leading `---` lines of a README ({} when there is none).

    Every problem (invalid YAML, anchors/aliases, nesting deeper than MAX_DEPTH, front matter over
    MAX_FRONT_MATTER characters) is a ConfigError naming README.md.
    """
    head = readme[: MAX_FRONT_MATTER + 2].lstrip("\ufeff")  # only the front matter is ever parsed
    lines = head.splitlines()
    if not lines or lines[0].strip() != "---":
        return {}
    end = next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), None)
    if end is None or sum(len(line) + 1 for line in lines[: end + 1]) > MAX_FRONT_MATTER:
        if len(head) > MAX_FRONT_MATTER:
            raise ConfigError("README.md", f"front matter is longer than {MAX_FRONT_MATTER // 1024} KiB")
        raise ConfigError("README.md", "front matter starts with --- but never ends with ---")
    try:
        data = yaml.load("\n".join(lines[1:end]), Loader=_Loader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 2}: " if mark else ""  # +2: 0-based, and the opening --- line
        problem = _bounded(str(exc.problem), 200)
        if isinstance(exc, _Refused):
            raise ConfigError("README.md", f"front matter {where}{problem}") from None
        raise ConfigError("README.md", f"front matter is not valid YAML ({where}{problem})") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:  # ValueError: e.g. a 5,000-digit number
        raise ConfigError("README.md", f"front matter is not valid YAML ({_bounded(str(exc), 200)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("README.md", "front matter must be a YAML mapping of keys to values")
    return {str(k): v for k, v in data.items()}


def parse_duration(value: Any, key: str = "startup_duration_timeout") -> int:
    """Seconds from the Hub's duration forms: 3600, "90s", "30m", "1h", "1h30m", "2d"."""
    if isinstance(value, bool):
        raise ConfigError(key, f"must be a duration like 30m or 1h (got {_shown(value)})")
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if text.isdigit() and int(text) > 0:
            return int(text)
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            seconds = sum(int(n) * _UNITS[u] for n, u in parts)
            if seconds > 0:
                return seconds
    raise ConfigError(key, f"must be a duration like 30m or 1h (got {_shown(value)})")


def _text(value: Any) -> Any:
    """Numbers written unquoted (`sdk_version: 4.44`) as the text the author wrote."""
    if isinstance(value, _YamlFloat):
        return value.text
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


def _opt_str(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string (got {_shown(value)})")
    return value


def _str_list(data: dict[str, Any], key: str) -> list[str]:
    value = data.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(key, f"must be a list of strings (got {_shown(value)})")
    return list(value)


def _choice(data: dict[str, Any], key: str, choices: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)} (got {_shown(value)})")
    return value


def parse(card: dict[str, Any], default_sdk: str | None = None) -> SpaceConfig:
    """Validate front matter into a SpaceConfig; unknown keys stay in card_data.

    `default_sdk` is the SDK chosen when the Space was created, used when the README names none.
    """
    data = dict(card)
    if data.get("sdk") is None and default_sdk is not None:
        data["sdk"] = default_sdk
    if data.get("sdk") is None:
        raise ConfigError("sdk", f"missing; add `sdk: <one of {', '.join(SDKS)}>` to README.md front matter")
    sdk = _choice(data, "sdk", SDKS)
    assert sdk is not None

    sdk_version = _text(data.get("sdk_version"))
    if sdk_version is not None and (not isinstance(sdk_version, str) or not _VERSION.match(sdk_version)):
        raise ConfigError("sdk_version", f"must be a version like 4.44.1 (got {_shown(data['sdk_version'])})")
    # docker and static have no SDK package to pin
    sdk_version = (sdk_version or DEFAULT_SDK_VERSIONS[sdk]) if sdk in DEFAULT_SDK_VERSIONS else None

    python_version = _text(data.get("python_version"))
    if python_version is not None and (
        not isinstance(python_version, str) or not _PYTHON_VERSION.match(python_version)
    ):
        raise ConfigError("python_version", f'must be a version like "3.11" (got {_shown(data["python_version"])})')

    app_file = data.get("app_file", DEFAULT_APP_FILES[sdk])
    if not isinstance(app_file, str) or not _APP_FILE.match(app_file) or ".." in app_file.split("/"):
        raise ConfigError("app_file", f"must be a relative path inside the repo (got {_shown(app_file)})")

    app_port = data.get("app_port", DEFAULT_PORTS[sdk])
    if isinstance(app_port, bool) or not isinstance(app_port, int) or not 1 <= app_port <= 65535:
        raise ConfigError("app_port", f"must be a port number from 1 to 65535 (got {_shown(app_port)})")

    base_path = _opt_str(data, "base_path")
    if base_path is not None and not base_path.startswith("/"):
        raise ConfigError("base_path", f"must start with / (got {_shown(base_path)})")

    pinned = data.get("pinned", False)
    if not isinstance(pinned, bool):
        raise ConfigError("pinned", f"must be true or false (got {_shown(pinned)})")

    headers = data.get("custom_headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise ConfigError("custom_headers", f"must be a mapping of header names to strings (got {_shown(headers)})")

    timeout = data.get("startup_duration_timeout")
    return SpaceConfig(
        sdk=sdk,
        sdk_version=sdk_version,
        python_version=python_version,
        app_file=app_file,
        app_port=app_port,
        title=_opt_str(data, "title"),
        emoji=_opt_str(data, "emoji"),
        colorFrom=_choice(data, "colorFrom", COLORS),
        colorTo=_choice(data, "colorTo", COLORS),
        base_path=base_path,
        pinned=pinned,
        license=_opt_str(data, "license"),
        short_description=_opt_str(data, "short_description"),
        suggested_hardware=_opt_str(data, "suggested_hardware"),
        models=_str_list(data, "models"),
        datasets=_str_list(data, "datasets"),
        tags=_str_list(data, "tags"),
        preload_from_hub=_str_list(data, "preload_from_hub"),
        startup_duration_timeout=DEFAULT_STARTUP_TIMEOUT if timeout is None else parse_duration(timeout),
        custom_headers=dict(headers),
        card_data=card,
    )


def load(repo_dir: Path, default_sdk: str | None = None) -> SpaceConfig:
    """Read README.md of a checkout (missing README = empty front matter) and check the app file exists.

    Neither is followed through a symlink (repofiles.UnsafeFile).
    """
    # Enough UTF-8 bytes for front_matter's head (the cap plus one character) and no more.
    text = repofiles.read_text(repo_dir, "README.md", 4 * (MAX_FRONT_MATTER + 2), truncate=True) or ""
    config = parse(front_matter(text), default_sdk)
    if not repofiles.is_regular_file(repo_dir, config.app_file):
        what = {"docker": "a Dockerfile", "static": "the page to serve"}.get(config.sdk, "the app file")
        raise NoAppFile(
            f"{config.app_file} not found in the repository: a {config.sdk} Space needs {what}"
            + ("" if config.sdk == "docker" else " (set app_file in README.md to use another file)"),
            config,
        )
    return config
