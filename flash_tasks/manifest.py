"""Join the per-file scans into the manifest.

``endpoints`` finds the endpoints and evaluates their arguments, ``resources``
turns those into deployment fields; this module groups functions by resource,
validates routes and names, picks the one Python version of the artifact and
assembles the result, which mirrors runpod-flash 1.21.0's ``flash_manifest.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import catalog
from .endpoints import BuildWarning, Discovered, Discovery, EndpointObject, path_sort_key
from .errors import BuildError, UsageError
from .evaluator import Evaluator, SdkCall
from .models import FunctionEntry, Manifest, ResourceEntry
from .resources import ResourceSettings

NO_ENDPOINTS_HINT = (
    "no functions or classes decorated with @Endpoint were found.\n"
    "Mark the code that should run on Runpod, for example:\n"
    "    from runpod_flash import Endpoint, GpuGroup\n"
    "\n"
    '    @Endpoint(name="my-worker", gpu=GpuGroup.ADA_24)\n'
    "    async def process(data: dict) -> dict:\n"
    "        ...\n"
    "Files ignored by .gitignore, tests (test_*.py, tests/) and __init__.py files are not searched."
)


@dataclass
class BuildOptions:
    """What the manifest phase needs to know about the request."""

    project_name: str
    python_version: str | None = None
    generated_at: str = "1980-01-01T00:00:00Z"


@dataclass
class ManifestResult:
    manifest: Manifest
    groups: dict[str, list[dict[str, str]]]  # resource -> [{"requirement", "origin"}]
    env_used: dict[str, str | None]
    warnings: list[BuildWarning]


class ManifestBuilder:
    def __init__(self, scans: Mapping[str, dict[str, Any]], options: BuildOptions, environ: Mapping[str, str]) -> None:
        self.scans = scans
        self.options = options
        self.warnings: list[BuildWarning] = []
        self.ev = Evaluator({scan["module"]: scan for scan in scans.values()}, environ)
        self.found = Discovery(scans, self.ev, self.warnings)
        self.settings = ResourceSettings(self.found, environ)

    def python_version(self) -> str:
        requested = self.options.python_version
        if requested is None:
            return catalog.DEFAULT_PYTHON_VERSION
        if requested not in catalog.SUPPORTED_PYTHON_VERSIONS:
            raise UsageError(
                f"Python {requested} is not supported (supported: {', '.join(catalog.SUPPORTED_PYTHON_VERSIONS)})",
                hint="supported versions: " + ", ".join(catalog.SUPPORTED_PYTHON_VERSIONS),
            )
        return requested


    def reconcile_python(self, found: list[Discovered]) -> str:
        """One Python for the whole artifact: the flag, else what resources declare, else 3.12."""
        requested = self.python_version() if self.options.python_version else None
        declared: dict[str, tuple[str, Discovered]] = {}
        for d in found:
            legacy = d.endpoint.legacy
            if legacy is not None and legacy.extra.get("python_version"):
                declared.setdefault(d.resource, (legacy.extra["python_version"], d))
        if requested:
            overridden = sorted(f"{name} ({version})" for name, (version, _) in declared.items() if version != requested)
            if overridden:
                self.warnings.append(BuildWarning(f"--python-version {requested} overrides the python_version of: {', '.join(overridden)}"))
            return requested
        versions = sorted({version for version, _ in declared.values()})
        if len(versions) > 1:
            items = sorted(declared.items())
            a_name, (a_ver, a) = items[0]
            b_name, (b_ver, b) = next((n, vd) for n, vd in items if vd[0] != a_ver)
            raise BuildError(
                f"resources declare different Python versions: {a_name!r} wants {a_ver} ({a.path}:{a.record['line']}) "
                f"and {b_name!r} wants {b_ver} ({b.path}:{b.record['line']}); one artifact serves every resource",
                path=b.path,
                line=b.record["line"],
                hint="set the same python_version on every resource, or choose one with --python-version",
            )
        return versions[0] if versions else catalog.DEFAULT_PYTHON_VERSION

    def check_syntax(self, python_version: str) -> None:
        """Every shipped module must parse on the workers' Python, not only on this one."""
        target = tuple(int(x) for x in python_version.split("."))
        for relpath in sorted(self.scans, key=path_sort_key):
            needs = self.scans[relpath].get("needs_python")
            if needs and tuple(int(x) for x in needs["version"].split(".")) > target:
                raise BuildError(
                    f"this file needs Python {needs['version']} but the workers run Python {python_version}: {needs['msg']}",
                    path=relpath,
                    line=needs["line"],
                    col=needs["col"],
                    hint=f"build with --python-version {needs['version']} (or newer), or avoid this syntax",
                )

    def build(self) -> ManifestResult:
        found = self.found.discover()
        python_version = self.reconcile_python(found)
        self.check_syntax(python_version)
        client_vars = self.found.client_endpoints()
        if not found and not client_vars:
            raise BuildError("no endpoints found", hint=NO_ENDPOINTS_HINT)

        groups: dict[str, list[Discovered]] = {}
        for item in found:
            groups.setdefault(item.resource, []).append(item)

        all_names = {d.record["target"] for d in found}
        resources: dict[str, ResourceEntry] = {}
        registry: dict[str, str] = {}
        registry_where: dict[str, Discovered] = {}
        routes: dict[str, dict[str, str]] = {}
        group_deps: dict[str, list[dict[str, str]]] = {}
        any_gpu = False

        for name in sorted(groups):
            members = sorted(groups[name], key=lambda d: (path_sort_key(d.path), d.record["target"]))
            files = sorted({d.path for d in members}, key=path_sort_key)
            if len(files) > 1:
                raise BuildError(
                    f"endpoint {name!r} is defined in more than one file: {', '.join(files)}",
                    path=members[-1].path,
                    line=members[-1].record["decorator_line"],
                    col=members[-1].record["decorator_col"],
                    hint="give each endpoint a unique name, or keep an endpoint's functions in one file",
                )
            first = members[0]
            objects = {id(d.endpoint): d.endpoint for d in members}
            if len(objects) > 1:
                self.merge_warning(name, first, members)
            is_lb = first.is_lb
            if any(d.is_lb != is_lb for d in members):
                raise BuildError(
                    f"endpoint {name!r} mixes load-balanced routes and queue-based functions",
                    path=first.path,
                    line=first.record["line"],
                    hint="give the routes' Endpoint and the queue-based Endpoint different names",
                )
            config, deps = self.settings.config(first.endpoint, is_lb, python_version)
            any_gpu = any_gpu or "gpuIds" in config
            functions: list[FunctionEntry] = []
            resource_routes: dict[str, str] = {}
            route_where: dict[str, Discovered] = {}
            for d in members:
                rec = d.record
                fn_name = rec["target"]
                is_async = rec["class_is_async"] if rec["is_class"] else rec["is_async"] if is_lb else True
                entry = FunctionEntry(
                    name=fn_name,
                    module=d.module,
                    is_async=is_async,
                    is_class=rec["is_class"],
                    class_methods=rec.get("class_methods") or None,
                    http_method=d.method if is_lb else None,
                    http_path=d.route_path if is_lb else None,
                )
                functions.append(entry)
                if is_lb:
                    key = f"{d.method} {d.route_path}"
                    if key in resource_routes:
                        other = route_where[key]
                        raise BuildError(
                            f"route {key} of endpoint {name!r} is taken by both {resource_routes[key]!r} "
                            f"({other.path}:{other.record['line']}) and {fn_name!r}",
                            path=d.path,
                            line=d.record["decorator_line"],
                            col=d.record["decorator_col"],
                            hint="give each route its own method and path",
                        )
                    resource_routes[key] = fn_name
                    route_where[key] = d
                if fn_name in registry:
                    other = registry_where[fn_name]
                    raise BuildError(
                        f"two endpoints are named {fn_name!r}: in {other.path}:{other.record['line']} "
                        f"(endpoint {registry[fn_name]!r}) and here (endpoint {name!r})",
                        path=d.path,
                        line=d.record["line"],
                        col=d.record["col"],
                        hint="rename one of the functions; the worker looks functions up by name",
                    )
                registry[fn_name] = name
                registry_where[fn_name] = d
            makes_remote_calls = any(set(d.record["calls"]) & all_names for d in members)
            legacy = first.endpoint.legacy
            resources[name] = ResourceEntry(
                resource_type=legacy.cls if legacy else catalog.RESOURCE_TYPES[(is_lb, "instanceIds" in config)],
                file_path=first.path,
                local_path_prefix="/" + first.path[: -len(".py")],
                module_path=first.module,
                functions=functions,
                is_load_balanced=is_lb,
                is_live_resource=legacy.is_live if legacy else True,
                config_variable=first.endpoint.var,
                makes_remote_calls=makes_remote_calls,
                handler_file=None if is_lb else f"handler_{name}.py",
                target_python_version=python_version,
                **config,
            )
            if resource_routes:
                routes[name] = resource_routes
            origin = f"{first.endpoint.path}:{first.endpoint.call['line']}"
            group_deps[name] = [{"requirement": dep, "origin": origin} for dep in deps]
            # The other declarations' dependencies are installed too (runpod-flash installs
            # every declaration's), in the order the functions are listed.
            for obj in objects.values():
                if obj is first.endpoint:
                    continue
                more = self.found.value(obj, "dependencies") or []
                if isinstance(more, (list, tuple)) and all(isinstance(d, str) for d in more):
                    seen = {d["requirement"] for d in group_deps[name]}
                    extra_origin = f"{obj.path}:{obj.call['line']}"
                    group_deps[name] += [{"requirement": d, "origin": extra_origin} for d in more if d not in seen]

        for name in sorted(client_vars):
            obj = client_vars[name]
            if name in resources:
                raise BuildError(
                    f"endpoint {name!r} is both a client Endpoint(image=...) and a decorated endpoint",
                    **self.found.where(obj),
                    hint="each endpoint name must be unique across the app",
                )
            config, deps = self.settings.config(obj, False, python_version)
            any_gpu = any_gpu or "gpuIds" in config
            resources[name] = ResourceEntry(
                resource_type=catalog.RESOURCE_TYPES[(False, "instanceIds" in config)],
                file_path=obj.path,
                local_path_prefix="/" + obj.path[: -len(".py")],
                module_path=obj.module,
                functions=[],
                is_load_balanced=False,
                is_live_resource=True,
                config_variable=obj.var,
                makes_remote_calls=False,
                client_mode=True,
                target_python_version=python_version,
                **config,
            )
            group_deps[name] = [{"requirement": dep, "origin": f"{obj.path}:{obj.call['line']}"} for dep in deps]

        self.version_warnings(python_version, any_gpu)
        manifest = Manifest(
            python_version=python_version,
            generated_at=self.options.generated_at,
            project_name=self.options.project_name,
            resources=resources,
            function_registry=registry,
            routes=routes or None,
        )
        return ManifestResult(manifest, group_deps, dict(self.ev.env_used), self.warnings)

    def merge_warning(self, name: str, applies: Discovered, members: list[Discovered]) -> None:
        """Several Endpoint declarations of one file share a name: one resource, one config.

        As in runpod-flash, the declaration on the function (or class) whose name sorts
        first gives the settings; the others only add their functions (and dependencies).
        Settings that differ are named in a warning.
        """
        chosen = self.found.values(applies.endpoint)
        differing: set[str] = set()
        others: list[Discovered] = []
        for d in members:
            if d.endpoint is applies.endpoint or any(o.endpoint is d.endpoint for o in others):
                continue
            others.append(d)
            values = self.found.values(d.endpoint)
            for key in set(chosen) | set(values):
                if key == "dependencies":
                    continue  # every declaration's dependencies are installed
                if _comparable(chosen.get(key, (None,))[0]) != _comparable(values.get(key, (None,))[0]):
                    differing.add(key)
        if not differing:
            return
        where = f"{applies.path}:{applies.record['decorator_line']}"
        ignored = ", ".join(f"{d.record['target']} ({d.path}:{d.record['decorator_line']})" for d in others)
        self.warnings.append(
            BuildWarning(
                f"endpoint {name!r} is declared {len(others) + 1} times with different settings "
                f"({', '.join(sorted(differing))}); the declaration on {applies.record['target']} ({where}) applies, "
                f"as in runpod-flash, which takes the function whose name sorts first; the settings on {ignored} "
                "are ignored (give them the same settings, or different names)",
                applies.path,
                applies.record["decorator_line"],
            )
        )

    def version_warnings(self, version: str, any_gpu: bool) -> None:
        eol = catalog.END_OF_LIFE.get(version)
        if eol:
            self.warnings.append(
                BuildWarning(f"Python {version} reached end of life on {eol}; migrate to Python 3.11 or newer")
            )
        if any_gpu and version != catalog.GPU_NATIVE_PYTHON_VERSION:
            self.warnings.append(
                BuildWarning(
                    f"GPU workers ship torch for Python {catalog.GPU_NATIVE_PYTHON_VERSION}; with Python {version} "
                    "they reinstall it at cold start (about +7 GB, slower starts). Use --python-version 3.12 if you can"
                )
            )


def _comparable(value: Any) -> Any:
    """A value with SDK calls reduced to what they configure (not where they are written)."""
    if isinstance(value, SdkCall):
        return (value.name, _comparable(value.kwargs))
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


def build_manifest(
    scans: Mapping[str, dict[str, Any]], options: BuildOptions, environ: Mapping[str, str]
) -> ManifestResult:
    """Join scans (keyed by relative path) into the manifest."""
    return ManifestBuilder(scans, options, environ).build()


__all__ = ["BuildOptions", "BuildWarning", "EndpointObject", "ManifestResult", "build_manifest", "path_sort_key"]
