"""Read what a build left in ``.flash/``: plain data for the summary and for ``--json``.

Kept free of pydantic models so the human output of a no-op build stays cheap;
``results`` turns these into the ``--json`` models.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import BuildConfig
from ..stage import read_json, read_plain_json


@dataclass
class Route:
    method: str
    path: str
    function: str


@dataclass
class Function:
    name: str
    module: str
    is_async: bool
    is_class: bool
    methods: list[str] = field(default_factory=list)
    http_method: str | None = None
    http_path: str | None = None


@dataclass
class Resource:
    name: str
    type: str
    python_version: str
    file: str
    handler: str | None
    load_balanced: bool
    image: str | None
    functions: list[Function]
    routes: list[Route]


def handler_files(config: BuildConfig) -> list[str]:
    return list((read_json(config.paths.handlers_json, {}) or {}).get("files", []))


@dataclass
class Excluded:
    name: str
    reason: str
    required_by: list[str] = field(default_factory=list)


def resources(manifest: dict[str, Any], handler_files: list[str] | None = None) -> list[Resource]:
    """The manifest's resources, sorted by name, with their functions and routes.

    ``handler_files`` (the generated files) fills in the handler of resources
    whose manifest entry names none (load-balanced ones).
    """
    generated = set(handler_files or ())
    routes_by_resource: dict[str, dict[str, str]] = manifest.get("routes") or {}
    found = []
    for name, res in (manifest.get("resources") or {}).items():
        functions = [
            Function(
                name=f["name"],
                module=f.get("module", ""),
                is_async=bool(f.get("is_async")),
                is_class=bool(f.get("is_class")),
                methods=list(f.get("class_methods") or []),
                http_method=f.get("http_method"),
                http_path=f.get("http_path"),
            )
            for f in res.get("functions", [])
        ]
        routes = []
        for key, function in (routes_by_resource.get(name) or {}).items():
            method, _, path = key.partition(" ")
            routes.append(Route(method=method, path=path, function=function))
        routes.sort(key=lambda r: (r.path, r.method))
        found.append(
            Resource(
                name=name,
                type=res.get("resource_type", "?"),
                python_version=res.get("target_python_version") or manifest.get("python_version", "?"),
                file=res.get("file_path", ""),
                handler=res.get("handler_file") or (f"handler_{name}.py" if f"handler_{name}.py" in generated else None),
                load_balanced=bool(res.get("is_load_balanced")),
                image=res.get("imageName"),
                functions=functions,
                routes=routes,
            )
        )
    found.sort(key=lambda r: r.name)
    return found


_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", re.MULTILINE)


def locked_packages(lock: Path) -> list[str]:
    """The pinned distribution names in a lock file."""
    try:
        return _PIN_RE.findall(lock.read_text(encoding="utf-8"))
    except OSError:
        return []


def excluded(config: BuildConfig) -> list[Excluded]:
    """Packages kept out: directly requested ones (per group lock) and ones installed packages need."""
    merged: dict[str, Excluded] = {}

    def add(entry: dict[str, Any]) -> None:
        name = entry.get("name")
        if not name:
            return
        by = list(entry.get("required_by") or [])
        known = merged.get(name)
        if known is None:
            merged[name] = Excluded(name=name, reason=str(entry.get("reason", "user")), required_by=sorted(set(by)))
        else:
            known.required_by = sorted(set(known.required_by) | set(by))

    for entries in (read_json(config.paths.state / "excluded.json", {}) or {}).values():
        for entry in entries or []:
            add(entry)
    for entry in (read_json(config.paths.state / "install-report.json", {}) or {}).get("excluded_needed", []):
        add(entry)
    return [merged[n] for n in sorted(merged)]


@dataclass
class _CpuNeed:
    reason: str
    endpoints: set[str] = field(default_factory=set)
    origins: list[str] = field(default_factory=list)
    via: set[str] = field(default_factory=set)


def cpu_image_warnings(config: BuildConfig) -> list[str]:
    """Excluded packages that a CPU endpoint needs: the CPU image (Python slim) has none of them.

    GPU images ship torch & co., which is why they are always left out; a CPU
    worker that imports one fails with ImportError. Read from what the lock
    (direct requests per group) and install (what installed packages need)
    phases reported.
    """
    manifest = read_plain_json(config.paths.manifest, {}) or {}
    cpu = sorted(n for n, r in (manifest.get("resources") or {}).items() if str(r.get("resource_type", "")).startswith("Cpu"))
    if not cpu:
        return []
    needs: dict[str, _CpuNeed] = {}
    for group, entries in (read_json(config.paths.state / "excluded.json", {}) or {}).items():
        if group not in cpu:
            continue
        for entry in entries or []:
            if entry.get("reason") in ("always", "user"):
                need = needs.setdefault(entry["name"], _CpuNeed(reason=entry["reason"]))
                need.endpoints.add(group)
                need.origins.extend(o for o in entry.get("required_by") or [] if o not in need.origins)
    report = read_json(config.paths.state / "install-report.json", {}) or {}
    needed = [entry for entry in report.get("excluded_needed", []) if entry.get("reason") in ("always", "user")]
    if needed:  # (the usual build has none: packaging and the locks are then not even loaded)
        _needed_through_locks(config, cpu, needed, needs)
    found = []
    for name in sorted(needs):
        need = needs[name]
        why = "always excluded: GPU images provide it" if need.reason == "always" else "--exclude"
        by = [*need.origins[1:], *(f"{d} needs it" for d in sorted(need.via))]
        where = f"{need.origins[0]}: " if need.origins else ""
        endpoints = ", ".join(sorted(need.endpoints))
        label = "endpoint" if len(need.endpoints) == 1 else "endpoints"
        hint = (
            f"keep it with --include {name}, or in pyproject.toml: [tool.flash-tasks] include = [\"{name}\"]"
            if need.reason == "always"
            else f"drop {name} from --exclude"
        )
        found.append(
            f"{where}warning: {name} is left out of the artifact ({why}), but the CPU {label} {endpoints}"
            + (f" ({'; '.join(by)})" if by else "")
            + f" will not find it: the CPU image does not provide it\n  hint: {hint}"
        )
    return found


def _needed_through_locks(config: BuildConfig, cpu: list[str], needed: list[dict[str, Any]], needs: dict[str, _CpuNeed]) -> None:
    """Add the CPU endpoints whose locked packages require one of the excluded packages ``needed``."""
    from packaging.utils import canonicalize_name as normalize_name

    from ..deps.tasks import lock_path

    locked = {group: {normalize_name(n) for n in locked_packages(lock_path(config, group))} for group in cpu}
    for entry in needed:
        for dist in entry.get("required_by") or []:
            for group in cpu:
                if normalize_name(dist) in locked[group]:
                    need = needs.setdefault(entry["name"], _CpuNeed(reason=entry["reason"]))
                    need.endpoints.add(group)
                    need.via.add(dist)


def warnings(config: BuildConfig, from_manifest: list[str]) -> list[str]:
    """The manifest's warnings, the requirement files' (from the install phase), then CPU-image ones, once each."""
    extra = (read_json(config.paths.state / "install-report.json", {}) or {}).get("warnings", [])
    seen: list[str] = []
    for text in [*from_manifest, *[str(w) for w in extra], *cpu_image_warnings(config)]:
        if text not in seen:
            seen.append(text)
    return seen
