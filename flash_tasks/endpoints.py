"""Which decorators are endpoints, and what their Endpoint(...) arguments are.

``@ep`` and ``@ep.post(...)`` may name an ``Endpoint`` bound in another module,
and ``@remote`` takes one of the SDK's resource classes; this module follows
those names across the scans, evaluates the arguments once per Endpoint object
with the safe evaluator, and yields one ``Discovered`` per endpoint function or
class, in the order the SDK's own build lists them.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from . import catalog
from .errors import BuildError
from .evaluator import MAX_ARGUMENTS_SIZE, Evaluator, SdkCall, did_you_mean
from .expressions import short

#: Longest endpoint name, in UTF-8 bytes. The name becomes ``handler_<name>.py`` and the
#: build's lock and temporary files (``.handler_<name>.py.tmp-<pid>``): with 200 bytes they
#: all fit the 255-byte file-name limit of common file systems.
MAX_NAME_BYTES = 200
#: Unicode categories refused in names: control characters, line and paragraph
#: separators (``str.splitlines`` breaks on them) and lone surrogates.
_NAME_BAD_CATEGORIES = frozenset({"Cc", "Zl", "Zp", "Cs"})
NAME_HINT = "use letters, digits, '-' and '_' (for example name='my-worker')"

#: Keyword arguments ``Endpoint(...)`` accepts.
ENDPOINT_KWARGS = (
    "name",
    "id",
    "gpu",
    "cpu",
    "workers",
    "idle_timeout",
    "dependencies",
    "system_dependencies",
    "accelerate_downloads",
    "volume",
    "datacenter",
    "env",
    "gpu_count",
    "execution_timeout_ms",
    "flashboot",
    "image",
    "scaler_type",
    "scaler_value",
    "template",
    "min_cuda_version",
    "max_concurrency",
)
@dataclass
class BuildWarning:
    message: str
    path: str | None = None
    line: int | None = None

    def render(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path and self.line else f"{self.path}: " if self.path else ""
        return f"{where}warning: {self.message}"


@dataclass
class EndpointObject:
    """One ``Endpoint(...)`` call: inline decorator or bound to a module variable."""

    module: str
    path: str
    call: dict[str, Any]
    var: str | None
    values: dict[str, Any] = field(default_factory=dict)
    evaluated: bool = False
    routes: list[dict[str, Any]] = field(default_factory=list)
    decorated: list[dict[str, Any]] = field(default_factory=list)
    #: Set for the older ``@remote(LiveServerless(...))`` form: the resource class used.
    legacy: LegacyResource | None = None


@dataclass
class LegacyResource:
    """A resource class instance (``LiveServerless(...)``) given to ``@remote``."""

    cls: str
    is_lb: bool
    is_cpu: bool
    is_live: bool
    #: Fields with no Endpoint equivalent: python_version, templateId, locations, gpuIds.
    extra: dict[str, Any] = field(default_factory=dict)


#: (load balanced, cpu, live) per resource class.
LEGACY_CLASSES: dict[str, tuple[bool, bool, bool]] = {
    "LiveServerless": (False, False, True),
    "CpuLiveServerless": (False, True, True),
    "LiveLoadBalancer": (True, False, True),
    "CpuLiveLoadBalancer": (True, True, True),
    "ServerlessEndpoint": (False, False, False),
    "CpuServerlessEndpoint": (False, True, False),
    "LoadBalancerSlsResource": (True, False, False),
    "CpuLoadBalancerSlsResource": (True, True, False),
}
#: Resource-class fields and the Endpoint argument that means the same.
LEGACY_FIELDS: dict[str, str] = {
    "name": "name",
    "gpus": "gpu",
    "instanceIds": "cpu",
    "idleTimeout": "idle_timeout",
    "env": "env",
    "imageName": "image",
    "scalerType": "scaler_type",
    "scalerValue": "scaler_value",
    "minCudaVersion": "min_cuda_version",
    "datacenter": "datacenter",
    "template": "template",
    "flashboot": "flashboot",
    "gpuCount": "gpu_count",
    "executionTimeoutMs": "execution_timeout_ms",
}
LEGACY_EXTRA = frozenset({"python_version", "templateId", "locations", "gpuIds", "workersMin", "workersMax", "networkVolume", "networkVolumes", "cudaVersions", "type", "flashEnvironmentId", "workersPFBTarget", "id"})


@dataclass
class Discovered:
    """An endpoint function or class, ready to be grouped."""

    resource: str
    endpoint: EndpointObject
    record: dict[str, Any]
    module: str
    path: str
    is_lb: bool
    method: str | None = None
    route_path: str | None = None


def path_sort_key(relpath: str) -> tuple[str, ...]:
    """Order files as ``sorted(pathlib.Path)`` does: by path components."""
    return PurePosixPath(relpath).parts


class Discovery:
    """Finds endpoints in the scans and evaluates their arguments."""

    def __init__(self, scans: Mapping[str, dict[str, Any]], ev: Evaluator, warnings: list[BuildWarning]) -> None:
        self.scans = scans
        self.by_module = {scan["module"]: scan for scan in scans.values()}
        self.ev = ev
        self.objects: dict[tuple[str, str], EndpointObject] = {}
        self.warnings = warnings
        #: Size of every endpoint argument evaluated so far (what the manifest will hold).
        self.arguments_size = 0
        #: Folders left out of discovery because the worker cannot import from them.
        self.skipped_folders: set[str] = set()

    def endpoint_var(self, module: str, var: str, before_line: int, seen: frozenset[tuple[str, str]] = frozenset()) -> EndpointObject | None:
        """The Endpoint object a module-level name refers to, if it is one."""
        if (module, var) in seen:
            return None
        scan = self.by_module.get(module)
        if scan is None:
            return None
        local = scan["endpoint_vars"].get(var)
        assigns = [a["line"] for a in scan["assigns"].get(var, []) if a["line"] < before_line]
        imp = scan["imports"].get(var)
        imp_line = imp["line"] if imp is not None and imp["line"] < before_line else -1
        last_assign = max(assigns, default=-1)
        if local is not None and local["line"] < before_line and last_assign <= local["line"] and local["line"] > imp_line:
            key = (module, var)
            if key not in self.objects:
                self.objects[key] = EndpointObject(module, scan["path"], local["call"], var)
            return self.objects[key]
        if imp is not None and imp_line > last_assign and imp["name"] is not None:
            return self.endpoint_var(imp["module"], imp["name"], 10**9, seen | {(module, var)})
        return None

    def discover(self) -> list[Discovered]:
        found: list[Discovered] = []
        for relpath in sorted(self.scans, key=path_sort_key):
            scan = self.scans[relpath]
            for item in scan.get("unsupported", []):
                raise BuildError(
                    f"{item['what']} is not supported",
                    path=relpath,
                    line=item["line"],
                    col=item["col"],
                    hint="use @Endpoint(name=..., ...) on the function or class, or ep = Endpoint(...) with @ep.get/post(...) routes",
                )
            if scan["is_package"]:
                continue  # the SDK's own build does not look for endpoints in __init__.py
            if self.unimportable(scan):
                continue
            for record in scan["endpoints"]:
                if record["kind"] == "remote":
                    found.append(self.importable(self.remote(record, scan)))
                    continue
                if "call" in record["endpoint"]:
                    obj = EndpointObject(scan["module"], relpath, record["endpoint"]["call"], None)
                    obj.decorated.append(record)
                    found.append(self.importable(self.qb(obj, record, scan)))
                    continue
                obj_or_none = self.endpoint_var(scan["module"], record["endpoint"]["var"], record["decorator_line"])
                if obj_or_none is None:
                    continue  # some other decorator (a web framework's, a cache...)
                if record["kind"] == "route":
                    obj_or_none.routes.append(record)
                    found.append(self.importable(self.route(obj_or_none, record, scan)))
                else:
                    obj_or_none.decorated.append(record)
                    found.append(self.importable(self.qb(obj_or_none, record, scan)))
        for obj in self.objects.values():
            if obj.routes and obj.decorated:
                first = obj.decorated[0]
                raise BuildError(
                    f"Endpoint {obj.var!r} is used both as a decorator and for routes",
                    path=self.scans_path(first),
                    line=first["decorator_line"],
                    col=first["decorator_col"],
                    hint="use @ep directly for one queue-based function, or @ep.get/post(...) routes, not both",
                )
        return found

    def unimportable(self, scan: dict[str, Any]) -> bool:
        """Whether ``scan`` lies in a folder the worker cannot import modules from.

        The worker imports ``a/b/c.py`` as ``importlib.import_module("a.b.c")``: a folder
        whose name holds a dot (``.agents``, ``v1.2``) breaks that dotted name, while '-'
        and other characters do not. Such folders are left out of discovery, with one
        warning per folder when they declare endpoints.
        """
        folder = unimportable_folder(scan["path"])
        if folder is None:
            return False
        declares = bool(scan["endpoints"]) or any(may_set(v["call"], "image") for v in scan["endpoint_vars"].values())
        if declares and folder not in self.skipped_folders:
            self.skipped_folders.add(folder)
            self.warnings.append(
                BuildWarning(
                    f"endpoints in {folder}/ are not built: the worker cannot import modules from a folder "
                    f"whose name contains a dot ({scan['path']} would be module {scan['module']!r}); "
                    f"add the line `{folder}/` to .gitignore to leave the folder out and silence this",
                    folder + "/",
                )
            )
        return True

    @staticmethod
    def importable(found: Discovered) -> Discovered:
        """The worker imports endpoint modules by dotted name: each part must be a plain name."""
        parts = found.module.split(".")
        stems = PurePosixPath(found.path).with_suffix("").parts
        if len(parts) != len(stems) or not all(parts):
            bad = next((p for p in stems if "." in p), found.path)
            raise BuildError(
                f"the worker cannot import {found.path} as a module: {bad!r} contains a dot",
                path=found.path,
                line=found.record["line"],
                col=found.record["col"],
                hint=f"rename it without dots, e.g. {bad.replace('.', '_')!r}",
            )
        return found

    def scans_path(self, record: dict[str, Any]) -> str:
        for relpath, scan in self.scans.items():
            if record in scan["endpoints"]:
                return relpath
        return "?"

    def values(self, obj: EndpointObject) -> dict[str, Any]:
        """Evaluate an Endpoint call's arguments once."""
        if obj.evaluated:
            return obj.values
        call = obj.call
        if call.get("starred"):
            raise BuildError(
                "Endpoint(...) arguments cannot be unpacked with * here",
                path=obj.path,
                line=call["line"],
                col=call["col"],
                hint="pass the name and settings by keyword (name=..., or **settings for a dict of them)",
            )
        if len(call["args"]) > 1:
            extra = call["args"][1]
            raise BuildError(
                "Endpoint takes only the name as a positional argument",
                path=obj.path,
                line=extra["line"],
                col=extra["col"],
                hint="pass the other settings by keyword, e.g. gpu=GpuGroup.ADA_24",
            )
        exprs = dict(call["kwargs"])
        if call["args"]:
            if "name" in exprs:
                raise BuildError("Endpoint got the name twice", path=obj.path, line=call["line"], col=call["col"])
            exprs["name"] = call["args"][0]
        values: dict[str, Any] = {}
        for key, expr in exprs.items():
            if key not in ENDPOINT_KWARGS:
                raise BuildError(
                    f"Endpoint has no argument {key!r}",
                    path=obj.path,
                    line=expr["line"],
                    col=max(1, expr["col"] - len(key) - 1),
                    hint=did_you_mean(key, list(ENDPOINT_KWARGS)),
                )
            value = self.ev.evaluate(obj.module, expr, argument=key)
            self.count(value, {"path": obj.path, "line": expr["line"], "col": expr["col"]})
            values[key] = (value, expr)
        for spread in call.get("unpack", []):
            self.unpack(obj, spread, values)
        obj.values = values
        obj.evaluated = True
        return values

    def unpack(self, obj: EndpointObject, spread: dict[str, Any], values: dict[str, Any]) -> None:
        """Add the settings of one ``**settings`` argument of an Endpoint call to ``values``."""
        where = {"path": obj.path, "line": spread["line"], "col": spread["col"]}
        mapping = self.ev.evaluate(obj.module, spread)
        if not isinstance(mapping, dict) or not all(isinstance(k, str) for k in mapping):
            raise BuildError(
                f"only a dict with string keys can be unpacked into Endpoint(...) with ** (`{short(spread['src'])}`)",
                **where,
                hint="e.g. SETTINGS = {'workers': (0, 3), 'idle_timeout': 60}, then Endpoint(name='x', **SETTINGS)",
            )
        for key, value in mapping.items():
            if key not in ENDPOINT_KWARGS:
                raise BuildError(
                    f"Endpoint has no argument {key!r} (unpacked from `{short(spread['src'])}`)",
                    **where,
                    hint=did_you_mean(key, list(ENDPOINT_KWARGS)),
                )
            if key in values:
                raise BuildError(
                    f"Endpoint got the argument {key!r} twice (again from `{short(spread['src'])}`)",
                    **where,
                    hint=f"give {key}= once: drop it from the call or from the dict",
                )
            self.count(value, where)
            values[key] = (value, spread)

    def count(self, value: Any, where: dict[str, Any]) -> None:
        """Add one argument's value to the app's total, which has a limit."""
        self.arguments_size += self.ev.size_of(value)
        if self.arguments_size > MAX_ARGUMENTS_SIZE:
            raise BuildError(
                f"the endpoint arguments of this app add up to more than {MAX_ARGUMENTS_SIZE:,} bytes",
                **where,
                hint="endpoint arguments are settings, not data: ship large data as a file in the app",
            )

    def value(self, obj: EndpointObject, key: str, default: Any = None) -> Any:
        entry = self.values(obj).get(key)
        return default if entry is None else entry[0]

    def where(self, obj: EndpointObject, key: str | None = None) -> dict[str, Any]:
        entry = self.values(obj).get(key) if key else None
        expr = entry[1] if entry else obj.call
        return {"path": obj.path, "line": expr["line"], "col": expr["col"]}

    def qb(self, obj: EndpointObject, record: dict[str, Any], scan: dict[str, Any]) -> Discovered:
        for key in ("image", "id"):
            if self.value(obj, key) is not None:
                raise BuildError(
                    f"Endpoint({key}=...) is a client for another service and cannot be used as a decorator",
                    path=scan["path"],
                    line=record["decorator_line"],
                    col=record["decorator_col"],
                    hint=f"drop {key}= to run this {'class' if record['is_class'] else 'function'} on Runpod, "
                    "or call the service with await ep.run(...) / ep.post(path, data)",
                )
        name = self.value(obj, "name")
        if name is None:
            name = record["target"]
        return Discovered(self.resource_name(obj, name), obj, record, scan["module"], scan["path"], False)

    def route(self, obj: EndpointObject, record: dict[str, Any], scan: dict[str, Any]) -> Discovered:
        name = self.value(obj, "name")
        if name is None:
            raise BuildError(
                "a load-balanced Endpoint needs a name",
                **self.where(obj),
                hint="write Endpoint(name='my-api', ...) before registering routes",
            )
        for key in ("image", "id"):
            if self.value(obj, key) is not None:
                raise BuildError(
                    f"Endpoint({key}=...) is a client for another service and cannot register routes",
                    **self.where(obj, key),
                    hint="drop image=/id= to serve your own code, or call it with await ep.post(path, data)",
                )
        call = record["route"]
        where = {"path": scan["path"], "line": call["line"], "col": call["col"]}
        if call["star"] or len(call["args"]) != 1 or call["kwargs"]:
            raise BuildError(
                f"@{obj.var}.{record['method'].lower()}(...) takes exactly one argument, the path",
                **where,
                hint=f'write @{obj.var}.{record["method"].lower()}("/my/path")',
            )
        path = self.ev.evaluate(scan["module"], call["args"][0])
        arg = call["args"][0]
        if not isinstance(path, str) or not path.startswith("/"):
            raise BuildError(
                f"route path must be a string starting with '/', got {path!r}",
                path=scan["path"],
                line=arg["line"],
                col=arg["col"],
            )
        if path in catalog.RESERVED_PATHS:
            raise BuildError(
                f"route path {path!r} is reserved by the worker runtime",
                path=scan["path"],
                line=arg["line"],
                col=arg["col"],
                hint="reserved paths: " + ", ".join(catalog.RESERVED_PATHS) + "; pick another path",
            )
        found = Discovered(
            self.resource_name(obj, name), obj, record, scan["module"], scan["path"], True, record["method"], path
        )
        return found

    def remote(self, record: dict[str, Any], scan: dict[str, Any]) -> Discovered:
        """``@remote(resource_config, dependencies=[...], method=..., path=...)``."""
        call = record["remote"]
        where = {"path": scan["path"], "line": call["line"], "col": call["col"]}
        expr = call["args"][0] if call["args"] else call["kwargs"].get("resource_config")
        if expr is None or call["star"]:
            raise BuildError("@remote needs a resource config as its first argument", **where,
                             hint="e.g. @remote(LiveServerless(name='worker')), or better @Endpoint(name='worker')")
        var = expr["src"] if expr["src"].isidentifier() else None
        key = (scan["module"], f"remote:{var}") if var else None
        obj = self.objects.get(key) if key else None
        if obj is None:
            value = self.ev.evaluate(scan["module"], expr)
            if not isinstance(value, SdkCall) or value.name not in LEGACY_CLASSES:
                raise BuildError(
                    "the resource config given to @remote is not one of the SDK's resource classes",
                    path=scan["path"], line=expr["line"], col=expr["col"],
                    hint="use one of: " + ", ".join(LEGACY_CLASSES) + "; or migrate to @Endpoint(name=..., ...)",
                )
            obj = self.legacy_object(value, scan, var)
            if key:
                self.objects[key] = obj
        kwargs = call["kwargs"]
        unknown = set(kwargs) - {"resource_config", "dependencies", "system_dependencies", "accelerate_downloads", "method", "path", "local"}
        if unknown:
            raise BuildError(f"@remote has no argument {min(unknown)!r}", **where)
        if "dependencies" in kwargs:
            obj.values["dependencies"] = (self.ev.evaluate(scan["module"], kwargs["dependencies"]), kwargs["dependencies"])
        method = self.ev.evaluate(scan["module"], kwargs["method"]) if "method" in kwargs else None
        route_path = self.ev.evaluate(scan["module"], kwargs["path"]) if "path" in kwargs else None
        assert obj.legacy is not None
        name = self.resource_name(obj, self.value(obj, "name"))
        if obj.legacy.is_lb:
            if not method or not route_path:
                raise BuildError(f"{obj.legacy.cls} needs method= and path= on @remote", **where,
                                 hint='e.g. @remote(config, method="POST", path="/process")')
            if method not in catalog.HTTP_METHODS:
                raise BuildError(f"method must be one of {', '.join(catalog.HTTP_METHODS)}, got {method!r}", **where)
            if not isinstance(route_path, str) or not route_path.startswith("/"):
                raise BuildError(f"path must start with '/', got {route_path!r}", **where)
            if route_path in catalog.RESERVED_PATHS:
                raise BuildError(f"route path {route_path!r} is reserved by the worker runtime", **where,
                                 hint="reserved paths: " + ", ".join(catalog.RESERVED_PATHS))
            return Discovered(name, obj, record, scan["module"], scan["path"], True, method, route_path)
        if method or route_path:
            self.warnings.append(BuildWarning(f"method/path on @remote are ignored for {obj.legacy.cls} (queue-based)", scan["path"], call["line"]))
        return Discovered(name, obj, record, scan["module"], scan["path"], False)

    def legacy_object(self, value: SdkCall, scan: dict[str, Any], var: str | None) -> EndpointObject:
        """Express a resource class's fields as Endpoint arguments where they mean the same."""
        is_lb, is_cpu, is_live = LEGACY_CLASSES[value.name]
        loc = {"line": value.line, "col": value.col, "src": value.name}
        where: dict[str, Any] = {"path": value.path, "line": value.line, "col": value.col}
        values: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, item in value.kwargs.items():
            if key in LEGACY_FIELDS:
                values[LEGACY_FIELDS[key]] = (item, loc)
            elif key in LEGACY_EXTRA:
                extra[key] = item
            else:
                raise BuildError(f"{value.name} has no field {key!r}", **where,
                                 hint=did_you_mean(key, sorted(set(LEGACY_FIELDS) | LEGACY_EXTRA)))
        if "name" not in values:
            raise BuildError(f"{value.name} needs a name", **where)
        if "workersMin" in extra or "workersMax" in extra:
            values["workers"] = ((extra.pop("workersMin", catalog.DEFAULT_WORKERS_MIN), extra.pop("workersMax", catalog.DEFAULT_WORKERS_MAX)), loc)
        volumes = [v for v in (extra.pop("networkVolumes", None) or []) if v is not None]
        single = extra.pop("networkVolume", None)
        if single is not None and single not in volumes:
            volumes.append(single)
        if volumes:
            values["volume"] = (volumes, loc)
        if is_cpu and "cpu" not in values:
            values["cpu"] = (["cpu3g-2-8"], loc)
        python_version = extra.get("python_version")
        if python_version is not None and python_version not in catalog.SUPPORTED_PYTHON_VERSIONS:
            raise BuildError(
                f"python_version {python_version!r} is not supported (supported: {', '.join(catalog.SUPPORTED_PYTHON_VERSIONS)})",
                **where,
            )
        obj = EndpointObject(scan["module"], scan["path"], {"line": value.line, "col": value.col, "args": [], "kwargs": {}, "star": False}, var)
        obj.values = values
        obj.evaluated = True
        obj.legacy = LegacyResource(value.name, is_lb, is_cpu, is_live, extra)
        return obj

    def resource_name(self, obj: EndpointObject, name: Any) -> str:
        if not isinstance(name, str) or not name:
            raise BuildError(f"Endpoint name must be a non-empty string, got {name!r}", **self.where(obj, "name"))
        self.check_name(obj, name)
        if self.value(obj, "flashboot", True):
            while name.endswith("-fb"):
                name = name[:-3]
        return str(name)


    def check_name(self, obj: EndpointObject, name: str) -> None:
        """Refuse a name that cannot become a file name or a line of a lock file."""
        problem = name_problem(name)
        if problem is not None:
            raise BuildError(
                f"endpoint name {_show(name)} {problem}",
                **self.where(obj, "name"),
                hint=f"the name becomes the handler file handler_<name>.py and a line of the lock files; {NAME_HINT}",
            )

    def client_endpoints(self) -> dict[str, EndpointObject]:
        """Module-level ``Endpoint(image=..., name=...)`` objects: deployed, but run no code of ours."""
        out: dict[str, EndpointObject] = {}
        for relpath in sorted(self.scans, key=path_sort_key):
            scan = self.scans[relpath]
            if self.unimportable(scan):
                continue
            for var, info in scan["endpoint_vars"].items():
                call = info["call"]
                if not may_set(call, "image"):
                    continue
                obj = self.endpoint_var(scan["module"], var, 10**9) or EndpointObject(scan["module"], relpath, call, var)
                if "image" not in call["kwargs"]:
                    # image= can only come from unpacked settings: an Endpoint object whose settings
                    # cannot be read at build time is a client the build does not deploy, as before
                    # (and what it read before failing does not count against the app's limit).
                    size = self.arguments_size
                    try:
                        self.values(obj)
                    except BuildError:
                        self.arguments_size = size
                        continue
                if self.value(obj, "image") is None:
                    continue
                if self.value(obj, "id") is not None:
                    raise BuildError(
                        "id and image cannot both be set",
                        **self.where(obj, "image"),
                        hint="id= connects to an existing endpoint, image= deploys a new one",
                    )
                name = self.value(obj, "name")
                if not isinstance(name, str) or not name:
                    raise BuildError("an Endpoint with image= needs a name", **self.where(obj, "image"))
                self.check_name(obj, name)
                if name in out and out[name].path != relpath:
                    if self.value(out[name], "image") != self.value(obj, "image"):
                        raise BuildError(
                            f"endpoint {name!r} is defined in more than one file: {out[name].path}, {relpath}",
                            **self.where(obj),
                            hint="each endpoint name must be unique across the app",
                        )
                    continue
                out[name] = obj
        return out


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an endpoint name, or None when it can."""
    for ch in name:
        if unicodedata.category(ch) in _NAME_BAD_CATEGORIES:
            return f"contains the control character {ch!a}"
    for sep in ("/", "\\"):
        if sep in name:
            return f"contains the path separator {sep!r}"
    if name in (".", ".."):
        return "is a special folder name"
    size = len(name.encode("utf-8"))
    if size > MAX_NAME_BYTES:
        return f"is too long ({size} bytes in UTF-8; at most {MAX_NAME_BYTES})"
    return None


def _show(name: str, limit: int = 60) -> str:
    """A name quoted for a message, escapes visible, long ones shortened."""
    shown = ascii(name) if any(unicodedata.category(ch) in _NAME_BAD_CATEGORIES for ch in name) else repr(name)
    return shown if len(shown) <= limit else shown[: limit - 4] + "...'"


def may_set(call: Mapping[str, Any], key: str) -> bool:
    """Whether an Endpoint call may set ``key``: by name, or in settings unpacked with ``**``."""
    return key in call["kwargs"] or bool(call.get("unpack"))


def unimportable_folder(relpath: str) -> str | None:
    """The outermost folder of ``relpath`` whose name holds a dot (not importable), if any."""
    parts = PurePosixPath(relpath).parts[:-1]
    for index, part in enumerate(parts):
        if "." in part:
            return "/".join(parts[: index + 1])
    return None
