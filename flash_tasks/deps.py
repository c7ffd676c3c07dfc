"""Python dependencies of a Flash app: collect, lock per resource group, install.

A Runpod worker runs Linux x86_64 CPython 3.10-3.12 and imports the app's
dependencies from the artifact root (``.flash/.build``). Whatever machine runs
the build, the wheels put there must be the worker's, so every resolution and
install here targets an explicit Python version and manylinux platform and
refuses to build anything from source (a locally compiled extension would be for
the wrong machine).

The work is split into steps that a build graph can skip independently:

1. ``collect_app_requirements`` / ``parse_endpoint_dependencies`` / ``plan_groups``
   read what the user asked for and say which files were read.
2. ``lock_group`` resolves one resource group into ``<group>.txt``. The lock
   carries a digest of its inputs, so re-running it with unchanged inputs is a
   no-op that never touches the network, even without the graph's own check.
3. ``combine_locks`` merges the group locks into the one set of distributions the
   artifact can hold, and names the two groups (and requirements) that clash.
4. ``install`` makes the build folder match that lock: it removes what left the
   lock (exactly the files in their RECORD), installs only what is new, and keeps
   a state file with per-distribution sizes and content hashes for the archiver.
5. ``bundle_runpod_flash`` ships the SDK's own package folder; ``check_size``
   explains an oversized artifact.

uv does the resolving and installing. Its messages are mapped to
``DependencyError`` (exit code 3) for what the index cannot satisfy and to
``BuildError`` for requirement files that cannot be read.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from flash_tasks.errors import BuildError, DependencyError, FlashError, UsageError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

__all__ = [
    "ALWAYS_EXCLUDED",
    "DEFAULT_PLATFORM",
    "LOCK_FORMAT",
    "MAX_ARCHIVE_MB",
    "RUNPOD_FLASH_VERSION",
    "SDK_NAMES",
    "CollectedRequirements",
    "DepsSettings",
    "ExcludedPackage",
    "GroupSpec",
    "IndexSettings",
    "InstallResult",
    "InstallState",
    "InstalledDistribution",
    "LockEntry",
    "LockFile",
    "LockLayout",
    "LockResult",
    "RequirementSpec",
    "SizeReport",
    "bundle_runpod_flash",
    "check_size",
    "collect_app_requirements",
    "combine_locks",
    "distribution_files",
    "install",
    "load_install_state",
    "lock_group",
    "lock_inputs_digest",
    "normalize_name",
    "parse_endpoint_dependencies",
    "parse_exclude_option",
    "parse_requirement",
    "plan_groups",
    "read_lock",
    "read_pyproject_dependencies",
    "read_requirements_file",
]

# ---------------------------------------------------------------------------
# Constants
# ---------------------------------------------------------------------------

#: Shipped by the GPU worker images and far too large for an artifact.
ALWAYS_EXCLUDED: tuple[str, ...] = ("torch", "torchvision", "torchaudio", "triton")
#: The Flash SDK: the worker image already has it and its dependency tree.
SDK_NAMES: tuple[str, ...] = ("runpod-flash",)
RUNPOD_FLASH_VERSION = "1.21.0"
#: uv's target for the worker: accepts manylinux_2_28 down to manylinux2014/_2_17 wheels.
DEFAULT_PLATFORM = "x86_64-manylinux_2_28"
#: Runpod refuses artifacts above this many MiB.
MAX_ARCHIVE_MB = 1500
#: Bumped whenever the lock or state layout changes, so old files are redone.
LOCK_FORMAT = 1

PythonVersion = Literal["3.10", "3.11", "3.12"]
ExclusionReason = Literal["always", "user", "sdk"]

_NAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_GROUP_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_PLATFORM_RE = re.compile(r"x86_64-(?:manylinux(?:2014|_2_\d+)|unknown-linux-gnu)")


def normalize_name(name: str) -> str:
    """PEP 503 form of a project name, so ``Foo_Bar`` and ``foo-bar`` compare equal."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class IndexSettings(_Model):
    """Where distributions come from; ``None``/empty means uv's own defaults (PyPI)."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    #: Local folders or URLs of flat wheel listings. A local folder is read live
    #: on every resolution; a URL listing is cached by uv and so works offline.
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    def uv_args(self) -> list[str]:
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--default-index", self.index_url]
        if not self.no_index:
            for url in self.extra_index_urls:
                args += ["--index", url]
        for location in self.find_links:
            # uv runs in a scratch folder: make local paths absolute first.
            args += ["--find-links", location if "://" in location else str(Path(location).resolve())]
        return args


class DepsSettings(_Model):
    """Everything that decides which distributions end up in the artifact.

    ``resolution_key`` is the part that changes a lock; the rest (cache, link
    mode, progress) only changes how the work is done.
    """

    python_version: PythonVersion = "3.12"
    python_platform: str = DEFAULT_PLATFORM
    #: The user's ``--exclude`` names, on top of ``ALWAYS_EXCLUDED``.
    exclude: tuple[str, ...] = ()
    no_deps: bool = False
    index: IndexSettings = Field(default_factory=IndexSettings)
    generate_hashes: bool = True
    #: uv's cache (``UV_CACHE_DIR``); ``None`` keeps uv's default location.
    cache_dir: Path | None = None
    #: ``copy`` keeps the build folder independent of the cache (no shared inodes
    #: that a later in-place edit could corrupt) and never warns about a failed
    #: clone on filesystems without reflinks.
    link_mode: Literal["copy", "clone", "hardlink"] = "copy"
    #: ``auto``: show uv's progress on a terminal unless ``CI`` is set.
    progress: Literal["auto", "show", "quiet"] = "auto"

    @field_validator("exclude", mode="before")
    @classmethod
    def _split_exclude(cls, value: object) -> object:
        return tuple(value.split(",")) if isinstance(value, str) else value

    @field_validator("exclude")
    @classmethod
    def _normalize_exclude(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return _normalized_names(value)

    @field_validator("python_platform")
    @classmethod
    def _linux_x86_64_only(cls, value: str) -> str:
        if not _PLATFORM_RE.fullmatch(value):
            raise ValueError(f"workers run Linux x86_64; {value!r} is not an x86_64 manylinux target of uv")
        return value

    def excluded(self) -> dict[str, ExclusionReason]:
        """Normalised name -> why it never enters a resolution."""
        reasons: dict[str, ExclusionReason] = {name: "user" for name in self.exclude}
        reasons.update({name: "always" for name in ALWAYS_EXCLUDED})
        reasons.update({name: "sdk" for name in SDK_NAMES})
        return reasons

    def resolution_key(self) -> dict[str, object]:
        return {
            "format": LOCK_FORMAT,
            "python_version": self.python_version,
            "python_platform": self.python_platform,
            "excluded": sorted(self.excluded()),
            "no_deps": self.no_deps,
            "index": self.index.model_dump(mode="json"),
            "generate_hashes": self.generate_hashes,
        }

    def target_label(self) -> str:
        return f"CPython {self.python_version} on {self.python_platform}"


def _normalized_names(parts: Iterable[str]) -> tuple[str, ...]:
    names: set[str] = set()
    for raw in (part.strip() for part in parts):
        if not raw:
            continue
        if not _NAME_RE.fullmatch(raw):
            raise ValueError(f"{raw!r} is not a package name")
        names.add(normalize_name(raw))
    return tuple(sorted(names))


def parse_exclude_option(value: str | None) -> tuple[str, ...]:
    """``--exclude a,B_c`` -> ``("a", "b-c")``; a malformed name is a usage error."""
    try:
        return _normalized_names((value or "").split(","))
    except ValueError as exc:
        raise UsageError(
            f"--exclude: {exc}",
            hint="give comma-separated distribution names, e.g. --exclude transformers,scipy",
        ) from None


# ---------------------------------------------------------------------------
# Requirements (PEP 508, checked without third-party parsers)
# ---------------------------------------------------------------------------


class RequirementSpec(_Model):
    """One requirement as the user wrote it, and where."""

    text: str
    name: str
    origin: str

    def location(self) -> tuple[str | None, int | None]:
        return _split_origin(self.origin)


def _split_origin(origin: str) -> tuple[str | None, int | None]:
    path, sep, line = origin.rpartition(":")
    if sep and line.isdigit():
        return path, int(line)
    return (origin or None), None


def _origin_error(message: str, origin: str, hint: str | None = None) -> BuildError:
    path, line = _split_origin(origin)
    return BuildError(message, path=path, line=line, hint=hint)


_SPEC_OP_RE = re.compile(r"\s*(~=|===|==|!=|<=|>=|<|>)\s*")
_VERSION_RE = re.compile(
    r"v?(?:\d+!)?\d+(?:\.\d+)*"
    r"(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
    r"(?:-\d+|[-_.]?(?:post|rev|r)[-_.]?\d*)?"
    r"(?:[-_.]?dev[-_.]?\d*)?"
    r"(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?",
    re.IGNORECASE,
)
_MARKER_VARS = frozenset(
    "python_version python_full_version os_name sys_platform platform_release platform_system"
    " platform_version platform_machine platform_python_implementation implementation_name"
    " implementation_version extra extras dependency_groups os.name sys.platform platform.version"
    " platform.machine platform.python_implementation python_implementation".split()
)
_MARKER_TOKEN_RE = re.compile(
    r"\s*(?:(?P<paren>[()])|(?P<string>'[^']*'|\"[^\"]*\")"
    r"|(?P<op>not\s+in\b|in\b|===|==|!=|<=|>=|~=|<|>)"
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*))"
)


class _MarkerSyntaxError(ValueError):
    pass


def _marker_tokens(marker: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    marker = marker.rstrip()
    while pos < len(marker):
        match = _MARKER_TOKEN_RE.match(marker, pos)
        if not match or match.end() == pos:
            raise _MarkerSyntaxError(f"unexpected {marker[pos:].strip()[:20]!r} in marker")
        kind = match.lastgroup or ""
        value = match.group(kind)
        if kind == "word" and value in ("and", "or"):
            kind = value
        tokens.append((kind, value))
        pos = match.end()
    return tokens


def _check_marker(marker: str) -> None:
    """Recursive descent over PEP 508's marker grammar; raises on the first error."""
    tokens = _marker_tokens(marker)
    pos = 0

    def value() -> None:
        nonlocal pos
        if pos >= len(tokens):
            raise _MarkerSyntaxError("marker ends early")
        kind, text = tokens[pos]
        if kind == "string" or (kind == "word" and text in _MARKER_VARS):
            pos += 1
            return
        raise _MarkerSyntaxError(f"expected a marker variable or quoted string, got {text!r}")

    def atom() -> None:
        nonlocal pos
        if pos < len(tokens) and tokens[pos] == ("paren", "("):
            pos += 1
            disjunction()
            if pos >= len(tokens) or tokens[pos] != ("paren", ")"):
                raise _MarkerSyntaxError("missing ')' in marker")
            pos += 1
            return
        value()
        if pos >= len(tokens) or tokens[pos][0] != "op":
            raise _MarkerSyntaxError("expected a comparison operator in marker")
        pos += 1
        value()

    def conjunction() -> None:
        nonlocal pos
        atom()
        while pos < len(tokens) and tokens[pos][0] == "and":
            pos += 1
            atom()

    def disjunction() -> None:
        nonlocal pos
        conjunction()
        while pos < len(tokens) and tokens[pos][0] == "or":
            pos += 1
            conjunction()

    if not tokens:
        raise _MarkerSyntaxError("empty marker after ';'")
    disjunction()
    if pos != len(tokens):
        raise _MarkerSyntaxError(f"unexpected {tokens[pos][1]!r} in marker")


def _check_specifiers(spec: str) -> None:
    spec = spec.strip()
    if spec.startswith("(") and spec.endswith(")"):
        spec = spec[1:-1]
    for clause in spec.split(","):
        match = _SPEC_OP_RE.match(clause)
        if not match:
            raise ValueError(f"expected a version specifier like '>=1.0', got {clause.strip()!r}")
        op, version = match.group(1), clause[match.end() :].strip()
        if not version:
            raise ValueError(f"missing version after {op!r}")
        if op == "===":
            continue
        if op in ("==", "!=") and version.endswith(".*"):
            version = version[:-2]
        if not _VERSION_RE.fullmatch(version):
            raise ValueError(f"invalid version {version!r}")


def _parse_pep508(text: str) -> str:
    """Check ``text`` is a PEP 508 requirement and return its project name."""
    match = _NAME_RE.match(text)
    if not match:
        raise ValueError("a requirement must start with a project name")
    name = match.group(0)
    rest = text[match.end() :].lstrip()
    if rest.startswith("["):
        close = rest.find("]")
        if close < 0:
            raise ValueError("missing ']' after extras")
        for extra in filter(None, (e.strip() for e in rest[1:close].split(","))):
            if not _NAME_RE.fullmatch(extra):
                raise ValueError(f"invalid extra {extra!r}")
        rest = rest[close + 1 :].lstrip()
    marker: str | None = None
    if rest.startswith("@"):
        url_and_more = rest[1:].strip()
        if not url_and_more:
            raise ValueError("missing URL after '@'")
        url, _, after = url_and_more.partition(" ")
        if ";" in url and not after:
            raise ValueError("a ';' after a URL needs a space before it")
        after = after.strip()
        if after:
            if not after.startswith(";"):
                raise ValueError(f"unexpected {after!r} after URL")
            marker = after[1:]
    else:
        spec, sep, marker_text = rest.partition(";")
        if spec.strip():
            _check_specifiers(spec)
        if sep:
            marker = marker_text
    if marker is not None:
        _check_marker(marker)
    return name


def parse_requirement(text: str, origin: str) -> RequirementSpec:
    """Validate one requirement; ``BuildError`` at ``origin`` (``file:line``) if it is not PEP 508."""
    text = text.strip()
    try:
        name = _parse_pep508(text)
    except ValueError as exc:
        looks_like_path = text.startswith((".", "/", "~")) or "://" in text.split("@")[0] or text.endswith(".whl")
        hint = (
            "refer to a file or URL as 'name @ url'"
            if looks_like_path
            else "write it as 'name', 'name==1.2', 'name[extra]>=1,<2' or 'name; python_version >= \"3.11\"'"
        )
        raise _origin_error(f"invalid requirement {text!r}: {exc}", origin, hint) from None
    return RequirementSpec(text=text, name=normalize_name(name), origin=origin)


# ---------------------------------------------------------------------------
# Collecting requirements
# ---------------------------------------------------------------------------


class CollectedRequirements(_Model):
    """Requirements, constraints, notes for the user, and every file that was read."""

    requirements: tuple[RequirementSpec, ...] = ()
    constraints: tuple[RequirementSpec, ...] = ()
    #: Lines that were understood but deliberately not applied, with ``file:line``.
    warnings: tuple[str, ...] = ()
    #: Absolute paths of every file read: declare them as the task's file inputs.
    files: tuple[Path, ...] = ()

    def merged(self, other: CollectedRequirements) -> CollectedRequirements:
        return CollectedRequirements(
            requirements=self.requirements + other.requirements,
            constraints=self.constraints + other.constraints,
            warnings=self.warnings + other.warnings,
            files=self.files + tuple(f for f in other.files if f not in self.files),
        )


_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_INCLUDE_RE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?<=-r)|(?<=-c))(\S.*)$")
_HASH_OPTION_RE = re.compile(r"\s+--hash(?:=|\s+)\S+")
#: pip options that select indexes or wheel policy: reported, not applied.
_IGNORED_OPTIONS = frozenset(
    "-i --index-url --extra-index-url -f --find-links --no-index --trusted-host --pre"
    " --prefer-binary --only-binary --no-binary --require-hashes --use-feature".split()
)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined; numbered from the first."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not _COMMENT_RE.search(raw):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = _COMMENT_RE.sub("", "".join(pending)).strip()
        pending = []
        if line:
            yield start, line
    if pending:
        line = _COMMENT_RE.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _relative_origin(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()


def read_requirements_file(path: Path, *, root: Path) -> CollectedRequirements:
    """Parse a pip requirements file with its ``-r``/``-c`` includes (relative to the includer).

    Origins are ``file:line`` relative to ``root``. Index and resolver options
    are reported in ``warnings`` rather than applied: indexes come from the
    build settings so every group resolves against the same ones.
    """
    requirements: list[RequirementSpec] = []
    constraints: list[RequirementSpec] = []
    warnings: list[str] = []
    files: list[Path] = []

    def visit(file: Path, *, as_constraints: bool, included_from: str | None) -> None:
        file = file.resolve()
        if file in files:
            return
        try:
            text = file.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            where = included_from or _relative_origin(file, root)
            raise _origin_error(f"cannot read requirements file {file}: {exc}", where) from None
        files.append(file)
        label = _relative_origin(file, root)
        for number, line in _logical_lines(text):
            origin = f"{label}:{number}"
            include = _INCLUDE_RE.match(line)
            if include:
                option, target = include.groups()
                nested = file.parent / target.strip().strip("'\"")
                visit(nested, as_constraints=as_constraints or option in ("-c", "--constraint"), included_from=origin)
                continue
            if line.startswith("-"):
                option = re.split(r"[\s=]", line, maxsplit=1)[0]
                if option in ("-e", "--editable"):
                    raise _origin_error(
                        "editable requirements cannot be shipped to a worker",
                        origin,
                        "install it as a regular requirement ('name' or 'name @ url')",
                    )
                if option in _IGNORED_OPTIONS:
                    warnings.append(
                        f"{origin}: ignored {line!r}; indexes and wheel policy come from the build settings"
                    )
                    continue
                raise _origin_error(f"unsupported option {option!r} in a requirements file", origin)
            line = _HASH_OPTION_RE.sub("", line)
            spec = parse_requirement(line, origin)
            (constraints if as_constraints else requirements).append(spec)

    visit(path, as_constraints=False, included_from=None)
    return CollectedRequirements(
        requirements=tuple(requirements),
        constraints=tuple(constraints),
        warnings=tuple(warnings),
        files=tuple(files),
    )


_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def read_pyproject_dependencies(path: Path, *, root: Path) -> CollectedRequirements:
    """``[project].dependencies`` of ``pyproject.toml`` (optional extras are not the app's)."""
    label = _relative_origin(path.resolve(), root)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        position = _TOML_POSITION_RE.search(str(exc))
        line, col = (int(position.group(1)), int(position.group(2))) if position else (None, None)
        raise BuildError(f"pyproject.toml is not valid TOML: {exc}", path=label, line=line, col=col) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read pyproject.toml: {exc}", path=label) from None
    project = data.get("project", {})
    deps = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError("[project].dependencies must be a list of strings", path=label)
    lines = raw.decode("utf-8").splitlines()
    specs = []
    for dep in deps:
        quoted = (f'"{dep}"', f"'{dep}'")
        number = next((i for i, text in enumerate(lines, 1) if any(q in text for q in quoted)), None)
        origin = f"{label}:{number}" if number else label
        specs.append(parse_requirement(dep, origin))
    return CollectedRequirements(requirements=tuple(specs), files=(path.resolve(),))


def collect_app_requirements(app_dir: Path) -> CollectedRequirements:
    """Requirements of the app itself: ``requirements.txt`` (with includes) and ``pyproject.toml``.

    Missing files contribute nothing; ``files`` lists what existed and was read.
    """
    root = app_dir.resolve()
    collected = CollectedRequirements()
    req_file = root / "requirements.txt"
    if req_file.is_file():
        collected = collected.merged(read_requirements_file(req_file, root=root))
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        collected = collected.merged(read_pyproject_dependencies(pyproject, root=root))
    return collected


def parse_endpoint_dependencies(
    endpoints: Mapping[str, Sequence[tuple[str, str]]],
) -> dict[str, tuple[RequirementSpec, ...]]:
    """Validate each group's ``dependencies=[...]`` (``(text, "file.py:line")`` pairs)."""
    return {
        group: tuple(parse_requirement(text, origin) for text, origin in items)
        for group, items in sorted(endpoints.items())
    }


class GroupSpec(_Model):
    """The direct requirements one resource group needs: the app's plus its endpoints'."""

    name: str
    requirements: tuple[RequirementSpec, ...]
    constraints: tuple[RequirementSpec, ...] = ()


def _dedupe(specs: Iterable[RequirementSpec]) -> tuple[RequirementSpec, ...]:
    seen: set[str] = set()
    unique = []
    for spec in specs:
        if spec.text not in seen:
            seen.add(spec.text)
            unique.append(spec)
    return tuple(unique)


def plan_groups(
    app: CollectedRequirements,
    endpoints: Mapping[str, Sequence[tuple[str, str]]],
    *,
    default_group: str = "default",
) -> tuple[GroupSpec, ...]:
    """One ``GroupSpec`` per resource group (or ``default_group`` when there are none)."""
    parsed = parse_endpoint_dependencies(endpoints) or {default_group: ()}
    return tuple(
        GroupSpec(name=name, requirements=_dedupe(app.requirements + specs), constraints=_dedupe(app.constraints))
        for name, specs in parsed.items()
    )


# ---------------------------------------------------------------------------
# Running uv
# ---------------------------------------------------------------------------

#: Environment settings that would silently change what we resolve or install.
_UV_ENV_OVERRIDES = frozenset(
    "UV_CONSTRAINT UV_OVERRIDE UV_EXCLUDE UV_BUILD_CONSTRAINT UV_TORCH_BACKEND UV_PYTHON"
    " UV_SYSTEM_PYTHON UV_OFFLINE UV_NO_CACHE UV_PRERELEASE UV_RESOLUTION UV_NO_BUILD_ISOLATION"
    " UV_COMPILE_BYTECODE UV_LINK_MODE UV_NO_PROGRESS UV_REQUIRE_HASHES".split()
)


@dataclass(frozen=True)
class _UvRun:
    returncode: int
    stdout: str
    stderr: str


@cache
def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise DependencyError("uv is not installed", hint="pip install uv") from None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        raise DependencyError(
            "the uv binary could not be found", hint="reinstall it: pip install --force-reinstall uv"
        ) from None


def _uv_env(settings: DepsSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UV_ENV_OVERRIDES}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    if settings.cache_dir is not None:
        env["UV_CACHE_DIR"] = str(settings.cache_dir.resolve())  # uv runs in a scratch folder
    return env


def _show_progress(settings: DepsSettings) -> bool:
    if settings.progress != "auto":
        return settings.progress == "show"
    ci = os.environ.get("CI", "").strip().lower()
    return sys.stderr.isatty() and ci in ("", "0", "false")


def _target_args(settings: DepsSettings) -> list[str]:
    return [
        "--no-python-downloads",
        "--python",
        sys.executable,
        "--python-version",
        settings.python_version,
        "--python-platform",
        settings.python_platform,
        "--only-binary",
        ":all:",
        *settings.index.uv_args(),
    ]


def _run_uv(args: Sequence[str], settings: DepsSettings, *, cwd: Path, quiet: bool = False) -> _UvRun:
    """Run uv, always capturing its messages; on a terminal also echo them live.

    The echo goes through a pseudo-terminal so uv still draws its progress bars
    while we keep the text to explain a failure.
    """
    command = [_uv_binary(), *args, "--color", "never"]
    env = _uv_env(settings)
    if not quiet and _show_progress(settings) and os.name == "posix":
        return _run_on_terminal(command, env=env, cwd=cwd)
    proc = subprocess.run(
        [*command, "--no-progress"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    return _UvRun(proc.returncode, proc.stdout, proc.stderr)


def _run_on_terminal(command: list[str], *, env: dict[str, str], cwd: Path) -> _UvRun:
    import pty

    master, slave = pty.openpty()
    _copy_window_size(slave)
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    stdout_parts: list[bytes] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(proc.stdout.read() if proc.stdout else b""))
    reader.start()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    seen: list[str] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: uv closed its end of the terminal
                break
            if not data:
                break
            text = decoder.decode(data)
            sys.stderr.write(text)
            sys.stderr.flush()
            seen.append(text)
    finally:
        os.close(master)
        reader.join()
        returncode = proc.wait()
        if proc.stdout:
            proc.stdout.close()
    stderr = _ANSI_RE.sub("", "".join(seen)).replace("\r\n", "\n")
    return _UvRun(returncode, b"".join(stdout_parts).decode("utf-8", "replace"), stderr)


def _copy_window_size(fd: int) -> None:
    """Give the pseudo-terminal our terminal's width so uv's bars fit on one line."""
    try:
        import fcntl
        import struct
        import termios

        size = shutil.get_terminal_size()
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.lines, size.columns, 0, 0))
    except (ImportError, OSError):
        pass


# ---------------------------------------------------------------------------
# Mapping uv's failures to user errors
# ---------------------------------------------------------------------------

_OFFLINE_MISS_RE = re.compile(r"network (?:was|is) disabled|not found in the cache|Network connectivity is disabled")
_NETWORK_RE = re.compile(
    r"error sending request|dns error|failed to lookup address|Connection refused|"
    r"tcp connect error|operation timed out|Failed to fetch|Could not connect",
    re.IGNORECASE,
)
_NO_WHEEL_RES = (
    re.compile(r"Wheels are required for `(?P<name>[^`]+)`"),
    re.compile(
        r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:[=<>!~]=?\S*)? (?:has|have) no "
        r"(?:usable wheels|wheels with a matching)"
    ),
    re.compile(r"we only found wheels for `(?P<name>[^`]+)`"),
    re.compile(r"Wheels are available for `(?P<name>[^`]+)`"),
)
_NOT_FOUND_RE = re.compile(
    r"Because (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) was not found in the (?:package registry|provided package locations)"
)
_NO_VERSION_RE = re.compile(r"there is no version of (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>[^\s,]*)")
_REQUIRES_PYTHON_RE = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==\S+)? (?:requires|depends on) Python\s*(?P<spec>[^\s,]+)"
)
_PARSE_ERROR_RE = re.compile(r"Couldn't parse requirement in `(?P<file>[^`]+)` at position (?P<pos>\d+)")


def _uv_key_lines(stderr: str) -> str:
    """uv's own explanation: everything from its ``error:`` line on, without the chatter before."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            return "\n".join(lines[index:])
    return "\n".join(lines[-20:])


def _first_cause(stderr: str) -> str:
    for line in stderr.splitlines():
        stripped = line.strip()
        if stripped.startswith("cause:"):
            return stripped[len("cause:") :].strip()
    for line in stderr.splitlines():
        if line.strip().startswith("error:"):
            return line.strip()[len("error:") :].strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "uv failed without a message"


def _locate(name: str, specs: Sequence[RequirementSpec]) -> tuple[str | None, int | None]:
    wanted = normalize_name(name)
    for spec in specs:
        if spec.name == wanted:
            return spec.location()
    return None, None


def _dependency_error(run: _UvRun, settings: DepsSettings, specs: Sequence[RequirementSpec], action: str) -> FlashError:
    """Turn a failed uv run into the error a user can act on."""
    stderr = run.stderr
    key = _uv_key_lines(stderr)
    cause = _first_cause(stderr)
    parse = _PARSE_ERROR_RE.search(stderr)
    if parse:
        return BuildError(f"uv could not parse a requirement: {cause}\n  uv: {key}")
    for pattern in _NO_WHEEL_RES:
        match = pattern.search(stderr)
        if match:
            name = match.group("name")
            path, line = _locate(name, specs)
            return DependencyError(
                f"{name} has no Linux x86_64 wheel for Python {settings.python_version} "
                f"({settings.python_platform}); Flash never builds packages from source\n  uv: {cause}",
                path=path,
                line=line,
                hint=(
                    f"pin a version of {name} that publishes manylinux x86_64 wheels for CPython "
                    f"{settings.python_version}, use a different package, or leave it out with --exclude {name}"
                ),
            )
    match = _NOT_FOUND_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"package {name} does not exist on the configured index\n  uv: {cause}",
            path=path,
            line=line,
            hint="check the spelling of the name in your requirements",
        )
    match = _NO_VERSION_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"no release of {name} matches {match.group('spec') or 'the requirement'}\n  uv: {cause}",
            path=path,
            line=line,
            hint="relax the version specifier or pick a published version",
        )
    match = _REQUIRES_PYTHON_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"{name} does not support Python {settings.python_version} "
            f"(it needs Python {match.group('spec')})\n  uv: {cause}",
            path=path,
            line=line,
            hint=f"pin an older {name} that supports Python {settings.python_version}",
        )
    if _NETWORK_RE.search(stderr):
        return DependencyError(
            f"could not reach the package index while {action}\n  uv: {cause}",
            hint="check the network connection and index settings; a rebuild with unchanged locks works offline",
        )
    if "No space left on device" in stderr or "os error 28" in stderr:
        return BuildError(
            f"no space left on device while {action}\n  uv: {cause}",
            hint="free some disk space and build again; the previous artifact was left as it was",
        )
    if "Building source distributions is disabled" in stderr or "source distribution" in stderr.lower():
        name = next((s.name for s in specs if s.name and s.name in stderr), None)
        path, line = _locate(name, specs) if name else (None, None)
        return DependencyError(
            f"a requirement would have to be built from source while {action}; Flash installs wheels only\n  uv: {cause}",
            path=path,
            line=line,
            hint="depend on a published wheel instead of a local project or source archive "
            "(code of your own can live in the app folder, which ships as it is)",
        )
    return DependencyError(
        f"{action} failed\n  uv: {key}",
        hint="run with -v for details; 'flash build --upgrade' resolves from scratch",
    )


# ---------------------------------------------------------------------------
# Lock files
# ---------------------------------------------------------------------------


class LockEntry(_Model):
    """One pinned distribution of a lock: ``pin`` is ``name==version`` or ``name @ url``."""

    name: str
    pin: str
    hashes: tuple[str, ...] = ()

    @property
    def version(self) -> str | None:
        _, sep, version = self.pin.partition("==")
        return version.strip() if sep else None

    def line(self) -> str:
        return " \\\n    ".join([self.pin, *(f"--hash={h}" for h in self.hashes)])


class LockFile(_Model):
    digest: str | None
    entries: dict[str, LockEntry]


_LOCK_DIGEST_RE = re.compile(r"^# inputs: (sha256:[0-9a-f]{64})$", re.MULTILINE)


def read_lock(path: Path) -> LockFile:
    """Parse a lock written by ``lock_group``/``combine_locks`` (uv's requirements format)."""
    text = path.read_text(encoding="utf-8")
    digest_match = _LOCK_DIGEST_RE.search(text)
    entries: dict[str, LockEntry] = {}
    for number, line in _logical_lines(text):
        parts = line.split("--hash=")
        pin = parts[0].strip()
        hashes = tuple(sorted(p.strip() for p in parts[1:]))
        spec = parse_requirement(pin, f"{path.name}:{number}")
        entries[spec.name] = LockEntry(name=spec.name, pin=pin, hashes=hashes)
    return LockFile(digest=digest_match.group(1) if digest_match else None, entries=entries)


def _digest(payload: object) -> str:
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def lock_inputs_digest(group: GroupSpec, settings: DepsSettings) -> str:
    """What a group's lock depends on: requirement texts and resolution settings.

    Origins and order are left out on purpose: moving a line must not re-lock.
    Usable directly as a build-graph ``config_changed`` value.
    """
    return _digest(
        {
            "requirements": sorted({s.text for s in group.requirements}),
            "constraints": sorted({s.text for s in group.constraints}),
            "settings": settings.resolution_key(),
        }
    )


def _render_lock(digest: str, title: str, settings: DepsSettings, body: str) -> str:
    header = (
        f"# flash-tasks lock v{LOCK_FORMAT}: {title}\n"
        f"# inputs: {digest}\n"
        f"# target: {settings.target_label()}\n"
        "# Regenerated by the build when requirements or settings change; do not edit.\n"
    )
    return header + body.lstrip("\n")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)  # only left over if something failed


class LockLayout(_Model):
    """Conventional lock paths under ``.flash/locks`` (group file names are made filesystem-safe)."""

    root: Path

    def group(self, name: str) -> Path:
        if _GROUP_FILE_RE.fullmatch(name):
            return self.root / f"{name}.txt"
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "group"
        return self.root / f"{safe}-{hashlib.sha256(name.encode()).hexdigest()[:8]}.txt"

    @property
    def combined(self) -> Path:
        return self.root / "install.lock"


class ExcludedPackage(_Model):
    """A package kept out of the artifact, why, and what wanted it."""

    name: str
    reason: ExclusionReason
    required_by: tuple[str, ...] = ()


class LockResult(_Model):
    path: Path
    digest: str
    entries: dict[str, LockEntry]
    #: Directly requested packages that were left out (origins in ``required_by``).
    excluded: tuple[ExcludedPackage, ...]
    #: True when an up-to-date lock was kept without running uv.
    reused: bool


def _excluded_requests(specs: Iterable[RequirementSpec], settings: DepsSettings) -> tuple[ExcludedPackage, ...]:
    reasons = settings.excluded()
    found: dict[str, list[str]] = {}
    for spec in specs:
        if spec.name in reasons:
            found.setdefault(spec.name, []).append(spec.origin)
    return tuple(
        ExcludedPackage(name=name, reason=reasons[name], required_by=tuple(origins))
        for name, origins in sorted(found.items())
    )


def _write_inputs(
    workdir: Path,
    stem: str,
    specs: Sequence[RequirementSpec],
    constraints: Sequence[RequirementSpec],
    settings: DepsSettings,
) -> list[str]:
    """Write uv's input files into ``workdir``; return the compile arguments that use them."""
    (workdir / f"{stem}.in").write_text("".join(f"{s.text}\n" for s in specs), encoding="utf-8")
    (workdir / "excludes.txt").write_text("".join(f"{n}\n" for n in sorted(settings.excluded())), encoding="utf-8")
    args = [f"{stem}.in", "--excludes", "excludes.txt"]
    if constraints:
        (workdir / "constraints.txt").write_text("".join(f"{s.text}\n" for s in constraints), encoding="utf-8")
        args += ["--constraints", "constraints.txt"]
    return args


def _compile(
    stem: str,
    specs: Sequence[RequirementSpec],
    constraints: Sequence[RequirementSpec],
    settings: DepsSettings,
    *,
    preferences: str = "",
    quiet: bool = False,
) -> str | _UvRun:
    """Resolve with ``uv pip compile``; the lock body on success, the failed run otherwise."""
    with tempfile.TemporaryDirectory(prefix="flash-lock-") as tmp:
        workdir = Path(tmp)
        args = ["pip", "compile", *_write_inputs(workdir, stem, specs, constraints, settings)]
        output = workdir / "out.txt"
        # uv prefers the versions already pinned in an existing output file.
        output.write_text(preferences, encoding="utf-8")
        args += ["--output-file", str(output.resolve()), "--no-header", *_target_args(settings)]
        if settings.generate_hashes:
            args.append("--generate-hashes")
        if settings.no_deps:
            args.append("--no-deps")
        run = _run_uv(args, settings, cwd=workdir, quiet=quiet)
        if run.returncode != 0:
            return run
        return output.read_text(encoding="utf-8")


def _map_parse_error(run: _UvRun, specs: Sequence[RequirementSpec], constraints: Sequence[RequirementSpec]) -> None:
    """Raise ``BuildError`` at the user's ``file:line`` for a requirement uv refused to parse."""
    match = _PARSE_ERROR_RE.search(run.stderr)
    if not match:
        return
    source = constraints if match.group("file").endswith("constraints.txt") else specs
    offset = int(match.group("pos"))
    consumed = 0
    for spec in source:
        consumed += len((spec.text + "\n").encode())
        if offset < consumed:
            path, line = spec.location()
            raise BuildError(f"invalid requirement {spec.text!r}: {_first_cause(run.stderr)}", path=path, line=line)


def lock_group(group: GroupSpec, settings: DepsSettings, lock_path: Path, *, upgrade: bool = False) -> LockResult:
    """Resolve one resource group into ``lock_path`` (written atomically).

    Task inputs: the files from ``CollectedRequirements.files``, the endpoint
    sources, and ``lock_inputs_digest(group, settings)`` as a value. Output:
    ``lock_path``. If the existing lock was made from the same inputs it is kept
    as it is and uv is not run, so a rebuild needs no network. Otherwise the old
    pins are offered to uv as preferences, so unrelated packages do not move;
    ``upgrade`` drops both shortcuts.
    """
    digest = lock_inputs_digest(group, settings)
    excluded = _excluded_requests(group.requirements, settings)
    previous = read_lock(lock_path) if lock_path.is_file() else None
    if previous is not None and previous.digest == digest and not upgrade:
        return LockResult(path=lock_path, digest=digest, entries=previous.entries, excluded=excluded, reused=True)
    # Versions only: uv would carry hashes of a preferred pin over unchanged,
    # which is wrong when the target Python or platform changed.
    preferences = "" if previous is None or upgrade else "".join(f"{e.pin}\n" for e in previous.entries.values())
    outcome = _compile(lock_path.stem, group.requirements, group.constraints, settings, preferences=preferences)
    if isinstance(outcome, _UvRun):
        _map_parse_error(outcome, group.requirements, group.constraints)
        action = f"resolving dependencies of group {group.name!r}"
        raise _dependency_error(outcome, settings, group.requirements, action)
    _write_atomic(lock_path, _render_lock(digest, f"group {group.name}", settings, outcome))
    return LockResult(
        path=lock_path, digest=digest, entries=read_lock(lock_path).entries, excluded=excluded, reused=False
    )


def _combined_digest(groups: Sequence[GroupSpec], locks: Mapping[str, LockFile], settings: DepsSettings) -> str:
    return _digest(
        {
            "groups": {g.name: lock_inputs_digest(g, settings) for g in groups},
            "locks": {name: sorted(e.line() for e in lock.entries.values()) for name, lock in sorted(locks.items())},
            "settings": settings.resolution_key(),
        }
    )


def combine_locks(
    groups: Sequence[GroupSpec],
    settings: DepsSettings,
    group_locks: Mapping[str, Path],
    output: Path,
) -> LockResult:
    """Merge the groups' locks into the one lock the artifact is installed from.

    Task inputs: every path in ``group_locks`` (they must be current: run after
    the ``lock_group`` tasks) plus ``settings``. Output: ``output``.

    When the groups agree on every shared pin their union already is a valid
    environment and uv is not run. Otherwise all groups' direct requirements are
    resolved together with the group pins as preferences; if that is impossible,
    the clashing pair of groups and requirements is found and reported.
    """
    if not groups:
        raise ValueError("combine_locks needs at least one group")
    locks: dict[str, LockFile] = {}
    for group in groups:
        path = group_locks[group.name]
        if not path.is_file():
            raise ValueError(f"lock of group {group.name!r} is missing: {path}; run lock_group first")
        lock = read_lock(path)
        if lock.digest != lock_inputs_digest(group, settings):
            raise ValueError(f"lock of group {group.name!r} is out of date: {path}; run lock_group first")
        locks[group.name] = lock

    all_specs = _dedupe(s for g in groups for s in g.requirements)
    excluded = _excluded_requests(all_specs, settings)
    digest = _combined_digest(groups, locks, settings)
    if output.is_file():
        previous = read_lock(output)
        if previous.digest == digest:
            return LockResult(path=output, digest=digest, entries=previous.entries, excluded=excluded, reused=True)

    merged: dict[str, LockEntry] = {}
    consistent = True
    for name in sorted(locks):
        for entry in locks[name].entries.values():
            existing = merged.setdefault(entry.name, entry)
            if existing.pin != entry.pin:
                consistent = False
    if consistent:
        body = "".join(f"{merged[name].line()}\n" for name in sorted(merged))
    else:
        preferences = "".join(f"{merged[name].pin}\n" for name in sorted(merged))
        constraints = _dedupe(s for g in groups for s in g.constraints)
        outcome = _compile("all-groups", all_specs, constraints, settings, preferences=preferences)
        if isinstance(outcome, _UvRun):
            if "No solution found" in outcome.stderr and len(groups) > 1:
                raise _explain_conflict(groups, constraints, settings, outcome)
            raise _dependency_error(outcome, settings, all_specs, "combining the groups' dependencies")
        body = outcome
    names = ", ".join(g.name for g in groups)
    _write_atomic(output, _render_lock(digest, f"all groups ({names})", settings, body))
    return LockResult(path=output, digest=digest, entries=read_lock(output).entries, excluded=excluded, reused=False)


def _probe(
    specs: Sequence[RequirementSpec], constraints: Sequence[RequirementSpec], settings: DepsSettings
) -> _UvRun | None:
    """Resolve quietly without hashes; ``None`` if it works, the failed run if not."""
    probe_settings = settings.model_copy(update={"generate_hashes": False})
    outcome = _compile("probe", specs, constraints, probe_settings, quiet=True)
    return outcome if isinstance(outcome, _UvRun) else None


_ONE_VERSION_HINT = "the artifact holds one version of each package: "


def _explain_conflict(
    groups: Sequence[GroupSpec],
    constraints: Sequence[RequirementSpec],
    settings: DepsSettings,
    joint: _UvRun,
) -> DependencyError:
    """Find two groups that cannot share one environment, and the requirement of each that clashes.

    Each group resolves on its own, so any clash needs something only the first
    group asks for and something only the second does: test those one by one.
    """
    for i, first in enumerate(groups):
        for second in groups[i + 1 :]:
            pair_failure = _probe(_dedupe(first.requirements + second.requirements), constraints, settings)
            if pair_failure is None:
                continue
            second_texts = {s.text for s in second.requirements}
            first_texts = {s.text for s in first.requirements}
            shared = tuple(s for s in first.requirements if s.text in second_texts)
            first_only = [s for s in first.requirements if s.text not in second_texts]
            second_only = [s for s in second.requirements if s.text not in first_texts]
            for a in first_only:
                if _probe(_dedupe((a, *second.requirements)), constraints, settings) is None:
                    continue
                for b in second_only:
                    failure = _probe(_dedupe((a, *shared, b)), constraints, settings)
                    if failure is not None:
                        path, line = a.location()
                        return DependencyError(
                            f"resource groups {first.name!r} and {second.name!r} need incompatible versions: "
                            f"{a.text!r} ({a.origin}, group {first.name!r}) conflicts with "
                            f"{b.text!r} ({b.origin}, group {second.name!r})\n  uv: {_first_cause(failure.stderr)}",
                            path=path,
                            line=line,
                            hint=_ONE_VERSION_HINT + "make both endpoints accept a common version",
                        )
            return DependencyError(
                f"resource groups {first.name!r} and {second.name!r} need incompatible dependencies\n"
                f"  uv: {_uv_key_lines(pair_failure.stderr)}",
                hint=_ONE_VERSION_HINT + "make both groups accept common versions",
            )
    return DependencyError(
        "the resource groups' dependencies cannot be installed together\n  uv: " + _uv_key_lines(joint.stderr),
        hint=_ONE_VERSION_HINT + "make all groups accept common versions",
    )


# ---------------------------------------------------------------------------
# Installing
# ---------------------------------------------------------------------------


class InstalledDistribution(_Model):
    """One distribution in the build folder, as the archiver needs to know it."""

    name: str
    version: str
    pin: str
    hashes: tuple[str, ...] = ()
    dist_info: str
    #: First path component of every RECORD entry (packages, modules, ``bin``, the dist-info).
    top_level: tuple[str, ...]
    size: int
    files: int
    #: sha256 over RECORD's (path, hash, size) lines: changes iff the installed files do.
    content_hash: str
    #: Excluded packages this distribution requires on the target (they are not installed).
    requires_excluded: tuple[str, ...] = ()


class InstallState(_Model):
    format: int = LOCK_FORMAT
    python_version: str
    python_platform: str
    distributions: dict[str, InstalledDistribution] = Field(default_factory=dict)

    def excluded_needed(self, settings: DepsSettings) -> tuple[ExcludedPackage, ...]:
        reasons = settings.excluded()
        wanted: dict[str, list[str]] = {}
        for dist in self.distributions.values():
            for name in dist.requires_excluded:
                wanted.setdefault(name, []).append(dist.name)
        return tuple(
            ExcludedPackage(name=name, reason=reasons.get(name, "user"), required_by=tuple(sorted(by)))
            for name, by in sorted(wanted.items())
        )

    @property
    def total_size(self) -> int:
        return sum(d.size for d in self.distributions.values())


class InstallResult(_Model):
    state: InstallState
    added: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged: tuple[str, ...]
    #: Packages left out although something installed requires them.
    excluded_needed: tuple[ExcludedPackage, ...]
    #: True when uv had to go online because its cache lacked something.
    used_network: bool


def load_install_state(path: Path) -> InstallState | None:
    """The saved state, or ``None`` if missing, unreadable or from another format."""
    try:
        state = InstallState.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if state.format == LOCK_FORMAT else None


def _parse_record(text: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # Paths may contain commas, hash and size never do.
        path, _, rest = line.rpartition(",")
        path, _, digest = path.rpartition(",")
        rows.append((path, digest, rest))
    return rows


def distribution_files(build_dir: Path, dist: InstalledDistribution) -> list[str]:
    """Paths (relative to ``build_dir``) of one distribution's files, from its RECORD."""
    record = build_dir / dist.dist_info / "RECORD"
    return [path for path, _, _ in _parse_record(record.read_text(encoding="utf-8"))]


def _inside(build_dir: Path, relative: str) -> Path | None:
    """``build_dir / relative`` if that stays inside the build folder (RECORD paths may say ``..``).

    A string check on the normalised path: resolving every RECORD line through the
    filesystem is slow, and the build folder holds no symlinks out of itself.
    """
    normal = os.path.normpath(relative)
    if os.path.isabs(normal) or normal in (".", "") or normal == ".." or normal.startswith(".." + os.sep):
        return None
    return build_dir / normal


def _scan_dist_infos(build_dir: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    if not build_dir.is_dir():
        return found
    for entry in build_dir.iterdir():
        if entry.is_dir() and entry.name.endswith(".dist-info"):
            name = entry.name[: -len(".dist-info")].rsplit("-", 1)[0]
            found[normalize_name(name)] = entry
    return found


def _remove_distribution(build_dir: Path, dist_info: Path) -> None:
    """Delete exactly the files a distribution's RECORD lists, then its dist-info.

    Byte-code next to a listed module goes too; directories left empty are pruned.
    """
    record = dist_info / "RECORD"
    parents: set[Path] = set()
    if record.is_file():
        # The dist-info (with RECORD) goes last: a removal interrupted half-way
        # can then be finished by the next build instead of orphaning files.
        for relative, _, _ in _parse_record(record.read_text(encoding="utf-8")):
            target = _inside(build_dir, relative)
            if target is None or dist_info in target.parents:
                continue
            if target.suffix == ".py":
                for compiled in (target.parent / "__pycache__").glob(f"{target.stem}.*.pyc"):
                    compiled.unlink(missing_ok=True)
                parents.add(target.parent / "__pycache__")
            if target.is_file() or target.is_symlink():
                target.unlink()
            parents.add(target.parent)
    shutil.rmtree(dist_info, ignore_errors=True)
    root = build_dir.resolve()
    for directory in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        current = directory
        while current != root and root in current.parents:
            try:
                current.rmdir()
            except OSError:
                break
            current = current.parent


def _drop_from_record(dist_info: Path, filename: str) -> None:
    """Remove a uv-only bookkeeping file (it holds a timestamp) so the artifact is reproducible."""
    extra = dist_info / filename
    if not extra.exists():
        return
    extra.unlink()
    record = dist_info / "RECORD"
    prefix = f"{dist_info.name}/{filename},"
    lines = record.read_text(encoding="utf-8").splitlines(keepends=True)
    record.write_text("".join(line for line in lines if not line.startswith(prefix)), encoding="utf-8")


def _describe(
    build_dir: Path, dist_info: Path, entry: LockEntry, requires_excluded: Sequence[str]
) -> InstalledDistribution:
    rows = _parse_record((dist_info / "RECORD").read_text(encoding="utf-8"))
    hasher = hashlib.sha256()
    size = 0
    top: set[str] = set()
    count = 0
    for relative, digest, length in sorted(rows):
        top.add(relative.split("/", 1)[0])
        if relative == f"{dist_info.name}/RECORD":
            continue
        target = _inside(build_dir, relative)
        if target is None or not target.is_file():
            continue
        count += 1
        if not digest or not length.isdigit():
            data = target.read_bytes()
            digest = "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            length = str(len(data))
        size += int(length)
        hasher.update(f"{relative}\0{digest}\0{length}\n".encode())
    stem = dist_info.name[: -len(".dist-info")]
    version = stem.rsplit("-", 1)[1] if "-" in stem else (entry.version or "")
    return InstalledDistribution(
        name=entry.name,
        version=version,
        pin=entry.pin,
        hashes=entry.hashes,
        dist_info=dist_info.name,
        top_level=tuple(sorted(top)),
        size=size,
        files=count,
        content_hash="sha256:" + hasher.hexdigest(),
        requires_excluded=tuple(sorted(set(requires_excluded))),
    )


_MISSING_DEP_RE = re.compile(r"The package `(?P<dist>[^`]+)` requires `(?P<req>[^`]+)`, but it's not installed")


def _missing_excluded(stderr: str, excluded: Mapping[str, str]) -> dict[str, list[str]]:
    """From uv's ``--strict`` warnings: distribution -> excluded names it needs on the target."""
    found: dict[str, list[str]] = {}
    for match in _MISSING_DEP_RE.finditer(stderr):
        name_match = _NAME_RE.match(match.group("req"))
        if name_match and normalize_name(name_match.group(0)) in excluded:
            found.setdefault(normalize_name(match.group("dist")), []).append(normalize_name(name_match.group(0)))
    return found


def _install_entries(entries: Sequence[LockEntry], build_dir: Path, settings: DepsSettings) -> tuple[_UvRun, bool]:
    """Install pinned entries with uv, from its cache if it can; says whether it went online."""
    lock_existed = (build_dir / ".lock").exists()
    with tempfile.TemporaryDirectory(prefix="flash-install-") as tmp:
        workdir = Path(tmp)
        (workdir / "install.txt").write_text("".join(f"{e.line()}\n" for e in entries), encoding="utf-8")
        args = [
            "pip",
            "install",
            "-r",
            "install.txt",
            "--target",
            str(build_dir),
            "--no-deps",
            "--strict",
            "--link-mode",
            settings.link_mode,
            *_target_args(settings),
        ]
        run = _run_uv([*args, "--offline"], settings, cwd=workdir, quiet=True)
        went_online = False
        if run.returncode != 0 and _OFFLINE_MISS_RE.search(run.stderr):
            went_online = True
            run = _run_uv(args, settings, cwd=workdir)
    if not lock_existed:
        (build_dir / ".lock").unlink(missing_ok=True)
    return run, went_online


def install(lock_path: Path, build_dir: Path, settings: DepsSettings, *, state_path: Path) -> InstallResult:
    """Make the distributions in ``build_dir`` exactly those of ``lock_path``.

    Task inputs: ``lock_path`` and ``settings``. Outputs: ``state_path`` (the
    installed files themselves are described by it). Distributions no longer in
    the lock, or whose pin, wheel hashes or target changed, are removed file by
    file from their RECORD; only missing ones are installed, offline from uv's
    cache first. Files in ``build_dir`` that belong to no distribution (the
    app's own code, the bundled SDK) are left alone.
    """
    build_dir = build_dir.resolve()
    build_dir.mkdir(parents=True, exist_ok=True)
    lock = read_lock(lock_path)
    previous = load_install_state(state_path)
    same_target = (
        previous is not None
        and previous.python_version == settings.python_version
        and previous.python_platform == settings.python_platform
    )
    known = previous.distributions if previous is not None and same_target else {}
    present = _scan_dist_infos(build_dir)

    kept: dict[str, InstalledDistribution] = {}
    removed: list[str] = []
    for name, dist_info in sorted(present.items()):
        entry = lock.entries.get(name)
        record = known.get(name)
        if (
            entry is not None
            and record is not None
            and record.dist_info == dist_info.name
            and record.pin == entry.pin
            and record.hashes == entry.hashes
        ):
            kept[name] = record
            continue
        _remove_distribution(build_dir, dist_info)
        if entry is None:
            removed.append(name)

    to_add = [entry for name, entry in sorted(lock.entries.items()) if name not in kept]
    used_network = False
    installed: dict[str, InstalledDistribution] = {}
    if to_add:
        run, used_network = _install_entries(to_add, build_dir, settings)
        if run.returncode != 0:
            _save_state(state_path, settings, kept)
            raise _dependency_error(run, settings, (), "installing dependencies")
        needs = _missing_excluded(run.stderr, settings.excluded())
        after = _scan_dist_infos(build_dir)
        for entry in to_add:
            new_info = after.get(entry.name)
            if new_info is None:
                _save_state(state_path, settings, {**kept, **installed})
                raise DependencyError(f"uv reported success but {entry.pin} is not in {build_dir}")
            _drop_from_record(new_info, "uv_cache.json")
            installed[entry.name] = _describe(build_dir, new_info, entry, needs.get(entry.name, ()))

    state = _save_state(state_path, settings, {**kept, **installed})
    return InstallResult(
        state=state,
        added=tuple(sorted(installed)),
        removed=tuple(removed),
        unchanged=tuple(sorted(kept)),
        excluded_needed=state.excluded_needed(settings),
        used_network=used_network,
    )


def _save_state(path: Path, settings: DepsSettings, distributions: Mapping[str, InstalledDistribution]) -> InstallState:
    state = InstallState(
        python_version=settings.python_version,
        python_platform=settings.python_platform,
        distributions=dict(sorted(distributions.items())),
    )
    _write_atomic(path, state.model_dump_json(indent=2) + "\n")
    return state


# ---------------------------------------------------------------------------
# The SDK
# ---------------------------------------------------------------------------


def bundle_runpod_flash(target: Path, settings: DepsSettings, *, version: str = RUNPOD_FLASH_VERSION) -> Path:
    """Put the SDK's own ``runpod_flash/`` package (no dist-info, no byte-code) into ``target``.

    The worker image provides the SDK's dependencies, so only the package folder
    is shipped: the pure wheel ``runpod_flash-<version>-py3-none-any.whl`` is
    installed by uv into a scratch folder (offline from uv's cache when it can)
    and its package folder moved into place. Task inputs: ``version`` and the
    index settings; output: ``target / "runpod_flash"``.
    """
    target = target.resolve()
    target.mkdir(parents=True, exist_ok=True)
    destination = target / "runpod_flash"
    with tempfile.TemporaryDirectory(prefix=".flash-sdk-", dir=target.parent) as tmp:
        scratch = Path(tmp)
        entry = LockEntry(name="runpod-flash", pin=f"runpod-flash=={version}")
        run, _ = _install_entries([entry], scratch / "site", settings)
        if run.returncode != 0:
            raise _dependency_error(run, settings, (), f"fetching runpod-flash {version}")
        package = scratch / "site" / "runpod_flash"
        if not (package / "__init__.py").is_file():
            raise DependencyError(f"the runpod-flash {version} wheel has no runpod_flash package")
        staged = scratch / "runpod_flash"
        shutil.copytree(package, staged, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if destination.exists():
            shutil.rmtree(destination)
        shutil.move(str(staged), str(destination))
    return destination


# ---------------------------------------------------------------------------
# Size
# ---------------------------------------------------------------------------


class SizeReport(_Model):
    total_bytes: int
    limit_bytes: int
    #: ``(name, version, installed bytes)``, biggest first.
    biggest: tuple[tuple[str, str, int], ...]

    @property
    def over_limit(self) -> bool:
        return self.total_bytes > self.limit_bytes

    def explain(self) -> str:
        lines = [f"largest dependencies (installed size, {len(self.biggest)} shown):"]
        for name, version, size in self.biggest:
            lines.append(f"  {size / 2**20:9.1f} MB  {name}=={version}")
        lines.append("leave big packages out with --exclude a,b (the worker image may already have them),")
        lines.append("or skip transitive dependencies with --no-deps")
        return "\n".join(lines)


def check_size(
    state: InstallState, *, archive_bytes: int | None = None, limit_mb: int = MAX_ARCHIVE_MB, top: int = 10
) -> SizeReport:
    """The ``top`` biggest installed distributions, to explain an archive over ``limit_mb`` MiB.

    ``archive_bytes`` (the compressed size, if known) is what the limit applies
    to; without it the installed size stands in.
    """
    ranked = sorted(state.distributions.values(), key=lambda d: (-d.size, d.name))[:top]
    return SizeReport(
        total_bytes=archive_bytes if archive_bytes is not None else state.total_size,
        limit_bytes=limit_mb * 2**20,
        biggest=tuple((d.name, d.version, d.size) for d in ranked),
    )
