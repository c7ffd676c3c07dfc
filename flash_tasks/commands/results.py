"""``--json`` output: what a build or an inspection produced, as pydantic models.

The models are the contract for scripts and CI: ``format`` is bumped on any
incompatible change. A successful build prints one ``BuildResult``; any
failure prints one ``ErrorResult`` (``ok: false``) whose ``error`` carries
``FlashError.to_dict()``: kind, exit code, message, file, line, col and hint.
Both go to stdout, alone; the exit code is the same as without ``--json``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from .. import __version__
from ..config import BuildConfig
from ..errors import FlashError
from ..stage import read_json, read_plain_json, write_json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RouteResult(_Model):
    method: str
    path: str
    function: str


class FunctionResult(_Model):
    name: str
    module: str
    is_async: bool
    is_class: bool
    #: A class endpoint's public methods.
    methods: list[str] = []
    http_method: str | None = None
    http_path: str | None = None


class ResourceResult(_Model):
    name: str
    type: str
    python_version: str
    file: str
    #: The generated worker handler inside the artifact.
    handler: str | None
    load_balanced: bool
    image: str | None = None
    functions: list[FunctionResult]
    routes: list[RouteResult]


class ArtifactResult(_Model):
    path: str
    size: int
    sha256: str


class PackageResult(_Model):
    name: str
    version: str
    size: int


class ExcludedResult(_Model):
    name: str
    #: ``always`` (torch & co.), ``user`` (--exclude) or ``sdk`` (runpod-flash, bundled separately).
    reason: str
    required_by: list[str] = []


class DependenciesResult(_Model):
    groups: list[str]
    locks: list[str]
    installed: list[PackageResult]
    added: list[str]
    removed: list[str]
    excluded: list[ExcludedResult]


class TaskResult(_Model):
    name: str
    status: Literal["run", "skipped", "failed"]
    seconds: float
    reasons: list[str] = []


class BuildResult(_Model):
    format: Literal[1] = 1
    ok: Literal[True] = True
    tool_version: str = __version__
    app: str
    project: str
    python_version: str
    manifest: str
    artifact: ArtifactResult
    resources: list[ResourceResult]
    dependencies: DependenciesResult
    warnings: list[str]
    tasks: list[TaskResult]
    tasks_run: int
    tasks_skipped: int
    #: Seconds per phase (discover, manifest, lock, install, handlers, archive) and ``total``.
    timings: dict[str, float]


class ErrorDetail(_Model):
    #: ``build`` (exit 1), ``usage`` (2), ``dependency`` (3), ``interrupted`` (130) or ``internal`` (a bug).
    kind: str
    code: int
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    hint: str | None = None


class ErrorResult(_Model):
    format: Literal[1] = 1
    ok: Literal[False] = False
    error: ErrorDetail
    tasks: list[TaskResult] = []


class HandlerResult(_Model):
    handler: str
    resource: str | None
    type: str | None
    #: ``module.function`` for queue endpoints, ``METHOD /path -> function`` for routes.
    serves: list[str]


class EntryResult(_Model):
    """One top-level entry of the archive (a package, a module, a folder of the app)."""

    #: Folders end with ``/``.
    name: str
    size: int
    files: int
    #: ``app`` (the app's files), ``generated`` (handlers, manifest), ``sdk`` (the bundled
    #: runpod_flash) or ``dependency`` (an installed distribution, named in ``distribution``).
    origin: Literal["app", "generated", "sdk", "dependency"]
    #: The installed distribution it belongs to, ``name version``.
    distribution: str | None = None


class InspectResult(_Model):
    format: Literal[1] = 1
    ok: Literal[True] = True
    artifact: ArtifactResult
    unpacked_size: int
    files: int
    project: str | None
    python_version: str | None
    handlers: list[HandlerResult]
    #: Biggest first (uncompressed bytes); ``*.dist-info`` folders are counted in ``metadata_size``.
    entries: list[EntryResult]
    metadata_size: int


# -- reading a build's state ------------------------------------------------------------------


def resources_from_manifest(manifest: dict[str, Any], handler_files: list[str] | None = None) -> list[ResourceResult]:
    from dataclasses import asdict

    from .state import resources

    return [ResourceResult.model_validate(asdict(r)) for r in resources(manifest, handler_files)]


def artifact_sha256(config: BuildConfig, path: Path) -> str:
    """The artifact's sha256, cached in ``.flash/.state`` against its size and mtime."""
    st = path.stat()
    cache_path = config.paths.state / "artifact-sha256.json"
    key = {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "ino": st.st_ino}
    cached = read_json(cache_path, {}) or {}
    if cached.get("key") == key and isinstance(cached.get("sha256"), str):
        return str(cached["sha256"])
    digest = file_sha256(path)
    try:
        write_json(cache_path, {"key": key, "sha256": digest})
    except (OSError, FlashError):  # a read-only tree still gets its answer
        pass
    return digest


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dependencies_result(config: BuildConfig, *, installed_now: bool = True) -> DependenciesResult:
    """Locks, installed packages and exclusions; ``added``/``removed`` only if this build installed."""
    from ..deps.tasks import lock_path
    from .state import excluded, locked_packages

    groups = sorted((read_json(config.paths.groups_json, {}) or {}).get("groups", {}))
    installed = (read_plain_json(config.paths.install_json, {}) or {}).get("distributions", {}) or {}
    report = read_json(config.paths.state / "install-report.json", {}) or {}
    locks = sorted({pkg for g in groups for pkg in locked_packages(lock_path(config, g))})
    return DependenciesResult(
        groups=groups,
        locks=locks,
        installed=[
            PackageResult(name=d.get("name", n), version=d.get("version", "?"), size=int(d.get("size", 0)))
            for n, d in sorted(installed.items())
        ],
        added=list(report.get("added", [])) if installed_now else [],
        removed=list(report.get("removed", [])) if installed_now else [],
        excluded=[ExcludedResult(name=e.name, reason=e.reason, required_by=e.required_by) for e in excluded(config)],
    )


def build_result(config: BuildConfig, report: Any, tasks: list[TaskResult], timings: dict[str, float]) -> BuildResult:
    from .state import handler_files
    from .state import warnings as state_warnings

    manifest = read_plain_json(config.paths.manifest, {}) or {}
    artifact = config.paths.artifact
    return BuildResult(
        app=str(config.app_dir),
        project=manifest.get("project_name", config.project_name),
        python_version=manifest.get("python_version", "?"),
        manifest=str(config.paths.manifest),
        artifact=ArtifactResult(path=str(artifact), size=artifact.stat().st_size, sha256=artifact_sha256(config, artifact)),
        resources=resources_from_manifest(manifest, handler_files(config)),
        dependencies=dependencies_result(config, installed_now=any(t.name == "install" and t.status == "run" for t in tasks)),
        warnings=state_warnings(config, list(report.warnings)),
        tasks=tasks,
        tasks_run=sum(t.status == "run" for t in tasks),
        tasks_skipped=sum(t.status == "skipped" for t in tasks),
        timings=timings,
    )


def error_result(error: dict[str, Any], tasks: list[TaskResult] | None = None) -> ErrorResult:
    detail = ErrorDetail(
        kind=str(error.get("kind", "build")),
        code=int(error.get("code", 1)),
        message=str(error.get("message", "")),
        file=error.get("file"),
        line=error.get("line"),
        col=error.get("col"),
        hint=error.get("hint"),
    )
    return ErrorResult(error=detail, tasks=tasks or [])


def dump(model: BaseModel) -> str:
    return model.model_dump_json(indent=2)
