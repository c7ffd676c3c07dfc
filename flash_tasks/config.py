"""What a build was asked to do, validated once, up front.

Everything downstream (the task graph, the phases) trusts a ``BuildConfig``.
Paths derived from it live here too, so every phase agrees on the layout of
``.flash/``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from . import catalog
from .errors import UsageError

DEFAULT_ARTIFACT = "artifact.tar.gz"
#: Names in .flash/ that belong to the tool; an artifact may not take them (nor any dot-name).
RESERVED_NAMES = frozenset({"flash_manifest.json", "locks", "last-build.json"})
#: Fixed timestamp used when SOURCE_DATE_EPOCH is not set (1980-01-01, the zip epoch).
DEFAULT_EPOCH = 315532800


def exclusion_names(parts: Iterable[str]) -> tuple[str, ...]:
    """``--exclude`` names in PEP 503 form, sorted and unique; a malformed name is a usage error."""
    parts = [part for part in parts if part.strip()]
    if not parts:
        return ()  # the usual case: no need to load packaging for it
    from packaging.utils import InvalidName, canonicalize_name

    names: set[str] = set()
    for raw in (part.strip() for part in parts):
        if not raw:
            continue
        try:
            names.add(canonicalize_name(raw, validate=True))
        except InvalidName:
            raise UsageError(
                f"--exclude: {raw!r} is not a package name",
                hint="give comma-separated distribution names, e.g. --exclude transformers,scipy",
            ) from None
    return tuple(sorted(names))


class BuildConfig(BaseModel):
    """A validated build request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    app_dir: Path
    no_deps: bool = False
    output: str = DEFAULT_ARTIFACT
    exclude: tuple[str, ...] = ()
    #: Always-excluded packages to keep after all (``--include`` and the app's
    #: ``[tool.flash-tasks] include = [...]``).
    include: tuple[str, ...] = ()
    python_version: str | None = None
    #: The SDK bundled into the artifact (see ``_sdk_version_from_pyproject``).
    runpod_flash_version: str = catalog.DEFAULT_RUNPOD_FLASH_VERSION
    upgrade: bool = False
    #: Re-read every cached piece instead of trusting unchanged stamps (``--verify``).
    verify: bool = False
    #: Publish the artifact before ``.build`` holds every dependency file when all of them come
    #: from cached segments; a process of its own completes ``.build`` (``cache.fill``). Only for
    #: one ``flash build`` run: its runner starts that process.
    background_fill: bool = False
    #: Install ``[project].dependencies`` of the app's pyproject.toml into workers
    #: (``[tool.flash-tasks] project-dependencies = true``). Off by default: real apps list
    #: their local tooling there, and runpod-flash reads only requirements.txt.
    project_dependencies: bool = False
    #: Extra index settings (used by tests and air-gapped setups).
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    index_url: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _sdk_version_from_pyproject(cls, data: Any) -> Any:
        """``--runpod-flash-version`` > the app's ``[tool.flash-tasks] runpod-flash-version`` > the catalog's."""
        if isinstance(data, dict) and data.get("runpod_flash_version") is None:
            data = dict(data)
            data["runpod_flash_version"] = _pyproject_sdk_version(Path(data.get("app_dir", "."))) or catalog.DEFAULT_RUNPOD_FLASH_VERSION
        if isinstance(data, dict) and data.get("project_dependencies") is None:
            data = dict(data)
            data["project_dependencies"] = _pyproject_project_dependencies(Path(data.get("app_dir", ".")))
        if isinstance(data, dict):
            listed = _pyproject_include(Path(data.get("app_dir", ".")))
            if listed:
                data = dict(data)
                data["include"] = (*data.get("include", ()), *listed)
        return data

    @field_validator("runpod_flash_version")
    @classmethod
    def _version_shape(cls, value: str) -> str:
        if value == catalog.DEFAULT_RUNPOD_FLASH_VERSION:
            return value  # the usual case: no need to load packaging for it
        from packaging.version import InvalidVersion, Version

        try:
            Version(value)
        except InvalidVersion:
            raise UsageError(
                f"runpod-flash version {value!r} is not a version number",
                hint=f"e.g. {catalog.DEFAULT_RUNPOD_FLASH_VERSION}",
            ) from None
        return value

    @field_validator("app_dir")
    @classmethod
    def _app_dir_exists(cls, value: Path) -> Path:
        value = value.expanduser().resolve()
        if not value.is_dir():
            raise UsageError(f"app folder {value} does not exist", hint="pass an existing folder with -C/--directory")
        return value

    @field_validator("output")
    @classmethod
    def _output_is_a_name(cls, value: str) -> str:
        if not value or value in (".", "..") or "/" in value or os.sep in value or "\0" in value:
            raise UsageError(
                f"--output must be a file name, got {value!r}",
                hint="the artifact is written inside .flash/, e.g. -o my-app.tar.gz",
            )
        if value.startswith(".") or value in RESERVED_NAMES or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise UsageError(
                f"--output {value!r} would collide with flash-tasks' own files in .flash/",
                hint="pick a plain file name that does not start with '.', e.g. -o my-app.tar.gz "
                f"(reserved: {', '.join(sorted(RESERVED_NAMES))} and every name starting with '.')",
            )
        if len(value.encode("utf-8", "surrogateescape")) > 200:
            raise UsageError(f"--output name is too long ({len(value)} characters)", hint="use a name under 200 bytes")
        return value

    @field_validator("python_version")
    @classmethod
    def _supported_python(cls, value: str | None) -> str | None:
        if value is not None and value not in catalog.SUPPORTED_PYTHON_VERSIONS:
            raise UsageError(
                f"Python {value} is not supported (supported: {', '.join(catalog.SUPPORTED_PYTHON_VERSIONS)})",
                hint="use --python-version with one of: " + ", ".join(catalog.SUPPORTED_PYTHON_VERSIONS),
            )
        return value

    @field_validator("exclude")
    @classmethod
    def _normalize_excludes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return exclusion_names(value)

    @field_validator("include")
    @classmethod
    def _only_always_excluded(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not any(v.strip() for v in value):
            return ()  # the usual case: no need to load packaging for it
        from packaging.utils import canonicalize_name

        names = {canonicalize_name(v.strip()) for v in value if v.strip()}
        unknown = sorted(names - set(catalog.ALWAYS_EXCLUDED))
        if unknown:
            raise UsageError(
                f"--include {unknown[0]}: only always-excluded packages can be included ({', '.join(catalog.ALWAYS_EXCLUDED)})",
                hint="other packages are kept unless you --exclude them",
            )
        return tuple(sorted(names))

    # -- derived ---------------------------------------------------------------

    @property
    def project_name(self) -> str:
        return self.app_dir.name

    @property
    def excluded(self) -> tuple[str, ...]:
        """Every excluded distribution: the always-excluded ones not --include'd, plus --exclude."""
        return tuple(sorted((set(catalog.ALWAYS_EXCLUDED) - set(self.include)) | set(self.exclude)))

    @cached_property
    def paths(self) -> BuildPaths:
        return BuildPaths(self.app_dir, self.output)


_GROUP_FILE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def lock_file_name(group: str) -> str:
    """The file name of a resource group's lock under ``.flash/locks`` (made filesystem-safe)."""
    if _GROUP_FILE_RE.fullmatch(group):
        return f"{group}.txt"
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", group).strip("._") or "group"
    return f"{safe}-{hashlib.sha256(group.encode()).hexdigest()[:8]}.txt"


class BuildPaths:
    """Where everything lives under ``<app>/.flash``."""

    def __init__(self, app_dir: Path, output: str) -> None:
        self.app = app_dir
        self.flash = app_dir / ".flash"
        self.build = self.flash / ".build"
        self.state = self.flash / ".state"
        self.scans = self.state / "scan"
        self.locks = self.flash / "locks"
        self.segments = self.state / "segments"
        self.db = self.flash / ".doit.db"
        self.lock_file = self.flash / ".lock"
        self.files_json = self.state / "files.json"
        self.stage_json = self.state / "stage.json"
        self.manifest = self.flash / "flash_manifest.json"
        self.build_manifest = self.build / "flash_manifest.json"
        self.groups_json = self.state / "groups.json"
        self.env_json = self.state / "env.json"
        self.warnings_json = self.state / "warnings.json"
        self.handlers_json = self.state / "handlers.json"
        self.install_json = self.state / "installed.json"
        #: The record of the SDK files copied into ``.build`` (what the artifact ships of it).
        self.sdk_copy_json = self.state / "sdk-copy.json"
        #: The union of the group locks, which the build folder is installed from.
        self.combined_lock = self.locks / "install.lock"
        self.artifact = self.flash / output

    def group_lock(self, group: str) -> Path:
        return self.locks / lock_file_name(group)


def _pyproject_table(app_dir: Path) -> tuple[Path, dict[str, Any]]:
    """The app's ``[tool.flash-tasks]`` table (empty when there is none)."""
    path = app_dir.expanduser() / "pyproject.toml"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return path, {}
    if "flash-tasks" not in text:
        return path, {}
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10
        import tomli as tomllib
    try:
        table = tomllib.loads(text).get("tool", {}).get("flash-tasks", {})
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"cannot read {path}: {exc}", path=str(path)) from None
    return path, table if isinstance(table, dict) else {}


def _pyproject_include(app_dir: Path) -> tuple[str, ...]:
    """``[tool.flash-tasks] include = [...]``: always-excluded packages the app keeps."""
    path, table = _pyproject_table(app_dir)
    value = table.get("include", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise UsageError("[tool.flash-tasks] include must be a list of package names", path=str(path), hint='e.g. include = ["torchvision"]')
    return tuple(value)


def _pyproject_sdk_version(app_dir: Path) -> str | None:
    """The SDK version an app pins in its pyproject.toml, if any."""
    _path, table = _pyproject_table(app_dir)
    value = table.get("runpod-flash-version")
    if value is not None and not isinstance(value, str):
        raise UsageError("[tool.flash-tasks] runpod-flash-version must be a string", path=str(app_dir / "pyproject.toml"))
    return value


def _pyproject_project_dependencies(app_dir: Path) -> bool:
    """Whether the app opts in to installing ``[project].dependencies`` into workers."""
    _, table = _pyproject_table(app_dir)
    value = table.get("project-dependencies", False)
    if not isinstance(value, bool):
        raise UsageError(
            "[tool.flash-tasks] project-dependencies must be true or false", path=str(app_dir / "pyproject.toml")
        )
    return value


def source_date_epoch() -> int:
    """The timestamp stored in outputs: SOURCE_DATE_EPOCH, else a fixed date."""
    raw = os.environ.get("SOURCE_DATE_EPOCH")
    if raw is None or not raw.strip():
        return DEFAULT_EPOCH
    try:
        return int(raw)
    except ValueError:
        raise UsageError(f"SOURCE_DATE_EPOCH must be an integer, got {raw!r}") from None
