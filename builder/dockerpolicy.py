"""What a Docker-SDK Space's Dockerfile may reach, checked before the engine sees it.

The engine resolves FROM, COPY --from and RUN --mount=from against every image it holds, other
tenants' private Space images included, and fetches `ADD <url>` itself on the host's network. So the
builder reads the Dockerfile the way the engine does (parser directives, line continuations, case-
insensitive instructions, ARG before FROM, stages) and allows images only from: earlier stages, the
builder's own base images, and the operator's allow-list (SPACEYARD_BUILD_ALLOWED_IMAGES). Whatever
it cannot resolve for certain (a variable it cannot expand, quotes, an odd form) is refused.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# The builder's own images, allowed whatever the operator's list says.
OWN_IMAGES = ("spaceyard/base:*", "spaceyard/sdk-*:*")
SETTING = "SPACEYARD_BUILD_ALLOWED_IMAGES"
MAX_SHOWN = 120

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.*?)\s*$")
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VARIABLE = re.compile(r"\$(?:(" + _NAME + r")|\{(" + _NAME + r")(?:(:[-+])([^{}$]*))?\})")
_SIMPLE_VALUE = re.compile(r"^[A-Za-z0-9._:/@+-]*$")
# An image id (or a prefix of one), which the engine resolves even with no name.
_IMAGE_ID = re.compile(r"^(sha256:)?[0-9a-f]{1,64}$", re.I)
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://|^git@|^github\.com/|://", re.I)
_SECRET_MOUNT = (
    "this Dockerfile reads build secrets (RUN --mount=type=secret), which needs BuildKit; "
    "Spaceyard builds with Docker's classic builder and never passes secrets to a build "
    "(a build arg would be stored in the image). Read the secret at run time instead: "
    "every secret is an environment variable of the running Space."
)


class Refused(ValueError):
    """The Dockerfile uses something a Space build may not (a BUILD_ERROR)."""


@dataclass(frozen=True)
class Instruction:
    line: int  # 1-based line where the instruction starts
    keyword: str  # upper case
    args: str


def _shown(text: str) -> str:
    return repr(text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN] + "...")


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions as the engine splits them (escape directive, continuations, comments)."""
    lines = text.splitlines()
    escape = "\\"
    start = 0
    while start < len(lines):  # parser directives: only at the very top, each once
        match = _DIRECTIVE.match(lines[start])
        if not match or match.group(1).lower() not in ("escape", "syntax"):
            break
        if match.group(1).lower() == "escape":
            escape = match.group(2)
            if escape not in ("\\", "`"):
                raise Refused(
                    f"Dockerfile line {start + 1}: the escape directive must be \\ or ` (got {_shown(escape)})"
                )
        start += 1
    result: list[Instruction] = []
    pending: list[str] = []
    first = 0
    for number, raw in enumerate(lines[start:], start + 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # comments and blank lines vanish, also inside a continued instruction
        if not pending:
            first = number
        body = raw.rstrip()
        if body.endswith(escape):
            pending.append(body[: -len(escape)])
            continue
        pending.append(body)
        result.append(_instruction(first, "".join(pending)))
        pending = []
    if pending:
        result.append(_instruction(first, "".join(pending)))
    return result


def _instruction(line: int, text: str) -> Instruction:
    match = re.match(r"(\S+)\s*(.*)", text.strip(), re.S)
    keyword, args = match.groups() if match else ("", "")
    return Instruction(line, keyword.upper(), args.strip())


def expand(word: str, env: Mapping[str, str | None], strict: bool = False) -> str:
    """`word` with $NAME, ${NAME}, ${NAME:-default}, ${NAME:+alt} replaced; Refused if it cannot be sure.

    `env` maps declared names to values (None: declared without a known value). Undeclared names are
    empty, as for FROM; `strict` refuses them instead (where the engine may know values the builder does not).
    """
    if any(c in word for c in "\"'\\`"):
        raise Refused("quotes and escapes are not supported here")

    def one(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        op, alt = match.group(3), match.group(4)
        value = env.get(name)
        if strict and value is None:
            raise Refused(f"${name} is not set by an ENV earlier in this stage")
        if op == ":-":
            return value if value else alt
        if op == ":+":
            return alt if value else ""
        if value is None:
            raise Refused(f"${name} has no value (declare it with ARG {name}=<value> before the first FROM)")
        return value

    if "$" in _VARIABLE.sub("", word):
        raise Refused("a variable form the builder cannot resolve")
    return _VARIABLE.sub(one, word)


def _arg_values(args: str, env: dict[str, str | None], build_args: Mapping[str, str]) -> None:
    """Record ARG NAME[=default] ... into env: a build arg wins; a default it cannot resolve is None."""
    try:
        words = shlex.split(args)
    except ValueError:
        words = []
    for word in words:
        name, has_value, default = word.partition("=")
        if name in build_args:
            env[name] = build_args[name]
        elif not has_value:
            env.setdefault(name, None)
        else:
            try:
                env[name] = default if _SIMPLE_VALUE.match(default) else expand(default, env)
            except Refused:
                env[name] = None


def image_problem(ref: str, allowed: Sequence[str], denied_namespace: str | None) -> str | None:
    """Why `ref` may not be used as an image, or None when it may."""
    if not ref or any(c.isspace() or c in "\"'$\\`" for c in ref):
        return "is not a plain image reference"
    if _IMAGE_ID.match(ref):
        return "looks like an image id (images are used by name)"
    name_tag, _, digest = ref.partition("@")
    name, tag = name_tag, ""
    if ":" in name_tag.rsplit("/", 1)[-1]:
        name, _, tag = name_tag.rpartition(":")
    for prefix in ("docker.io/", "index.docker.io/", "registry-1.docker.io/"):
        name = name.removeprefix(prefix)
    name = name.removeprefix("library/")
    if denied_namespace and denied_namespace in name.split("/"):
        return "is a Space's image, which no other build may use"
    canonical = name + (f":{tag}" if tag else "" if digest else ":latest") + (f"@{digest}" if digest else "")
    if any(fnmatch.fnmatchcase(canonical, pattern) for pattern in (*OWN_IMAGES, *allowed)):
        return None
    return "is not an allowed image"


class _Checker:
    def __init__(self, build_args: Mapping[str, str], allowed: Sequence[str], denied_namespace: str | None) -> None:
        self.build_args = build_args
        self.allowed = allowed
        self.denied_namespace = denied_namespace
        self.global_env: dict[str, str | None] = {}  # ARGs before the first FROM: what FROM sees
        self.stage_env: dict[str, str | None] = {}  # what ADD sources may use: ENV/ARG set in this stage
        self.stages: list[str] = []  # lower-cased names ("" for unnamed), the current one last

    def refuse(self, ins: Instruction, problem: str) -> Refused:
        return Refused(f"Dockerfile line {ins.line}: {ins.keyword} {problem}")

    def image(self, ins: Instruction, ref: str, what: str, stages: Sequence[str]) -> None:
        """Allow an earlier stage (by name, or by index for a flag `what`) or an allowed image."""
        if ref.lower() in [s for s in stages if s] or (what and ref.isdigit() and int(ref) < len(stages)):
            return
        problem = image_problem(ref, self.allowed, self.denied_namespace)
        if problem:
            allowed = ", ".join((*OWN_IMAGES, *self.allowed))
            raise self.refuse(
                ins,
                f"{what}{' ' if what else ''}{_shown(ref)} {problem}; a Space may build on earlier stages and "
                f"these images: {allowed} (the operator's {SETTING})",
            )

    def check(self, ins: Instruction, stages: Sequence[str]) -> None:
        handler = getattr(self, f"_{ins.keyword.lower()}", None)
        if handler is not None:
            handler(ins, stages)

    def _from(self, ins: Instruction, stages: Sequence[str]) -> None:
        words = [w for w in ins.args.split() if not w.startswith("--")]  # --platform=...
        if not (len(words) == 1 or (len(words) == 3 and words[1].lower() == "as")):
            raise self.refuse(ins, "must be FROM <image> [AS <name>]")
        try:
            ref = expand(words[0], self.global_env)
        except Refused as exc:
            raise self.refuse(ins, f"{_shown(words[0])}: {exc}") from None
        if ref != "scratch":
            self.image(ins, ref, "", self.stages)
        self.stages.append(words[2].lower() if len(words) == 3 else "")
        self.stage_env = {}

    def _arg(self, ins: Instruction, stages: Sequence[str]) -> None:
        if not self.stages:
            _arg_values(ins.args, self.global_env, self.build_args)
            return
        # An ENV of the same name in the stage's base image wins over an ARG: its value is unknown here.
        declared: dict[str, str | None] = {}
        _arg_values(ins.args, declared, {})
        for name in declared:
            self.stage_env.setdefault(name, None)

    def _env(self, ins: Instruction, stages: Sequence[str]) -> None:
        try:
            words = shlex.split(ins.args)
        except ValueError:
            words = []
        pairs = [w.partition("=") for w in words]
        if words and all(sep for _, sep, _ in pairs):
            for name, _, value in pairs:
                self.stage_env[name] = value if _SIMPLE_VALUE.match(value) else None
        elif words:  # ENV NAME value with spaces
            self.stage_env[words[0]] = None

    @staticmethod
    def _flags(ins: Instruction) -> tuple[list[tuple[str, str]], str]:
        """The leading --name=value flags (names lower-cased) and the rest of the arguments."""
        flags: list[tuple[str, str]] = []
        rest = ins.args
        while rest.startswith("--"):
            flag, _, rest = rest.partition(" ")
            name, _, value = flag[2:].partition("=")
            flags.append((name.lower(), value))
            rest = rest.lstrip()
        return flags, rest

    def _copy(self, ins: Instruction, stages: Sequence[str]) -> None:
        for name, value in self._flags(ins)[0]:
            if name == "from":
                self.image(ins, value, "--from", stages[:-1])

    def _add(self, ins: Instruction, stages: Sequence[str]) -> None:
        rest = self._flags(ins)[1]
        try:
            words = json.loads(rest) if rest.startswith("[") else rest.split()
        except ValueError:
            words = rest.split()
        for source in [str(w) for w in words][:-1] if isinstance(words, list) else []:
            try:
                resolved = expand(source, self.stage_env, strict=True) if "$" in source else source
            except Refused as exc:
                raise self.refuse(
                    ins, f"source {_shown(source)}: {exc}; ADD may only copy files of the repository"
                ) from None
            if _REMOTE.search(resolved):
                raise self.refuse(
                    ins,
                    f"{_shown(resolved)}: ADD of a URL is not allowed (the engine would "
                    "fetch it from the build host's network); download it in a RUN step",
                )

    def _run(self, ins: Instruction, stages: Sequence[str]) -> None:
        for name, value in self._flags(ins)[0]:
            if name in ("network", "security"):
                raise self.refuse(ins, f"--{name} is not allowed in a Space build")
            if name == "mount":
                options = dict(o.partition("=")[::2] for o in value.split(","))
                if options.get("type") == "secret":
                    raise Refused(_SECRET_MOUNT)
                if "from" in options:
                    self.image(ins, options["from"], "--mount=from", stages[:-1])

    def _onbuild(self, ins: Instruction, stages: Sequence[str]) -> None:
        # The trigger runs in a later build whose stages are unknown here: images only.
        self.check(_instruction(ins.line, ins.args), stages=())


def check(text: str, build_args: Mapping[str, str], allowed: Sequence[str], denied_namespace: str | None) -> None:
    """Raise Refused naming the line and the image or URL when the Dockerfile reaches beyond what it may.

    `build_args` are those the build gets (they can change FROM); `denied_namespace` is the first part
    of Space image names (spaceyard-<instance>), refused even if an allow-list pattern would match.
    """
    checker = _Checker(build_args, allowed, denied_namespace)
    for ins in instructions(text):
        checker.check(ins, checker.stages)
