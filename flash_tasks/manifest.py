"""Join the per-file scans into the manifest.

Resolves which decorators really are endpoints (``@ep`` and ``@ep.post`` may
refer to an ``Endpoint`` defined in another module), evaluates endpoint
arguments with the safe evaluator, applies the catalog's defaults, groups
functions by resource, validates routes and names, and picks the Python
version. The result mirrors runpod-flash 1.21.0's ``flash_manifest.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from . import catalog
from .errors import BuildError, UsageError
from .evaluator import EnumValue, Evaluator, SdkCall, did_you_mean
from .models import FunctionEntry, Manifest, NetworkVolumeEntry, ResourceEntry, TemplateEntry

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
NETWORK_VOLUME_KWARGS = frozenset({"name", "id", "size", "datacenter", "dataCenterId"})
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
class Warning_:
    message: str
    path: str | None = None
    line: int | None = None

    def render(self) -> str:
        where = f"{self.path}:{self.line}: " if self.path and self.line else f"{self.path}: " if self.path else ""
        return f"{where}warning: {self.message}"


@dataclass
class BuildOptions:
    """What the manifest phase needs to know about the request."""

    project_name: str
    python_version: str | None = None
    generated_at: str = "1980-01-01T00:00:00Z"


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


@dataclass
class ManifestResult:
    manifest: Manifest
    groups: dict[str, list[dict[str, str]]]  # resource -> [{"requirement", "origin"}]
    env_used: dict[str, str | None]
    warnings: list[Warning_]
    real_async: dict[str, bool]


def path_sort_key(relpath: str) -> tuple[str, ...]:
    """Order files as ``sorted(pathlib.Path)`` does: by path components."""
    return PurePosixPath(relpath).parts


class ManifestBuilder:
    def __init__(self, scans: Mapping[str, dict[str, Any]], options: BuildOptions, environ: Mapping[str, str]) -> None:
        self.scans = scans
        self.options = options
        self.by_module = {scan["module"]: scan for scan in scans.values()}
        self.ev = Evaluator(self.by_module, environ)
        self.environ = environ
        self.objects: dict[tuple[str, str], EndpointObject] = {}
        self.warnings: list[Warning_] = []

    # -- discovery -------------------------------------------------------------------

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
            for record in scan["endpoints"]:
                if record["kind"] == "remote":
                    found.append(self.remote(record, scan))
                    continue
                if "call" in record["endpoint"]:
                    obj = EndpointObject(scan["module"], relpath, record["endpoint"]["call"], None)
                    obj.decorated.append(record)
                    found.append(self.qb(obj, record, scan))
                    continue
                obj_or_none = self.endpoint_var(scan["module"], record["endpoint"]["var"], record["decorator_line"])
                if obj_or_none is None:
                    continue  # some other decorator (a web framework's, a cache...)
                if record["kind"] == "route":
                    obj_or_none.routes.append(record)
                    found.append(self.route(obj_or_none, record, scan))
                else:
                    obj_or_none.decorated.append(record)
                    found.append(self.qb(obj_or_none, record, scan))
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
        if call["star"]:
            raise BuildError(
                "Endpoint(...) arguments cannot be unpacked with * or ** here",
                path=obj.path,
                line=call["line"],
                col=call["col"],
                hint="write each argument out as name=value",
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
            values[key] = (self.ev.evaluate(obj.module, expr), expr)
        obj.values = values
        obj.evaluated = True
        return values

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
            raise BuildError(f"@remote has no argument {sorted(unknown)[0]!r}", **where)
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
            self.warnings.append(Warning_(f"method/path on @remote are ignored for {obj.legacy.cls} (queue-based)", scan["path"], call["line"]))
        return Discovered(name, obj, record, scan["module"], scan["path"], False)

    def legacy_object(self, value: SdkCall, scan: dict[str, Any], var: str | None) -> EndpointObject:
        """Express a resource class's fields as Endpoint arguments where they mean the same."""
        is_lb, is_cpu, is_live = LEGACY_CLASSES[value.name]
        loc = {"line": value.line, "col": value.col, "src": value.name}
        where = {"path": value.path, "line": value.line, "col": value.col}
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
        if self.value(obj, "flashboot", True):
            while name.endswith("-fb"):
                name = name[:-3]
        return name

    # -- configuration -------------------------------------------------------------------

    def config(self, obj: EndpointObject, is_lb: bool, python_version: str) -> tuple[dict[str, Any], list[str]]:
        """The manifest's deployment fields for one Endpoint, and its dependencies."""
        v = lambda key, default=None: self.value(obj, key, default)  # noqa: E731
        err = lambda key, message, hint=None: BuildError(message, **self.where(obj, key), hint=hint)  # noqa: E731

        gpu, cpu = v("gpu"), v("cpu")
        if gpu is not None and cpu is not None:
            raise err("cpu", "gpu and cpu cannot both be set", "choose gpu=... for a GPU worker or cpu=... for a CPU worker")
        if v("id") is not None and v("image") is not None:
            raise err("image", "id and image cannot both be set", "id= connects to an existing endpoint, image= deploys a new one")
        is_cpu = cpu is not None
        out: dict[str, Any] = {}

        max_concurrency = v("max_concurrency", 1)
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise err("max_concurrency", f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if max_concurrency > 1:
            if is_lb:
                self.warnings.append(
                    Warning_(
                        f"max_concurrency={max_concurrency} is ignored on load-balanced endpoints (they serve requests concurrently already)",
                        obj.path,
                        self.where(obj, "max_concurrency")["line"],
                    )
                )
            else:
                out["max_concurrency"] = max_concurrency

        legacy = obj.legacy
        extra = legacy.extra if legacy else {}
        image = v("image")
        if image is not None and not isinstance(image, str):
            raise err("image", f"image must be a string, got {image!r}")
        if legacy is not None and not legacy.is_live:
            # Deployable classes take no default image: they need one of these.
            if not image and not extra.get("templateId") and v("template") is None:
                raise err(
                    "image",
                    f"{legacy.cls} needs imageName, template or templateId",
                    "set imageName='org/image:tag'; the Live* classes and @Endpoint use the Flash worker image by default",
                )
            if image:
                out["imageName"] = image
        else:
            out["imageName"] = image or self.default_image(catalog.IMAGE_KINDS[(is_lb, is_cpu)], python_version)
        if extra.get("python_version"):
            out["python_version"] = extra["python_version"]
        if extra.get("templateId"):
            out["templateId"] = extra["templateId"]

        if is_cpu:
            out["instanceIds"] = self.cpu_instances(obj, cpu)
        elif extra.get("gpuIds") and gpu is None:
            tokens = {t.strip() for t in str(extra["gpuIds"]).split(",") if t.strip()}
            out["gpuIds"] = ",".join(sorted(tokens, key=lambda t: (t.startswith("-"), t.lstrip("-").lower())))
        else:
            out["gpuIds"] = self.gpu_ids(obj, gpu)

        workers_min, workers_max = self.workers(obj, v("workers"))
        out["workersMin"], out["workersMax"] = workers_min, workers_max

        idle = v("idle_timeout", catalog.DEFAULT_IDLE_TIMEOUT)
        low, high = catalog.IDLE_TIMEOUT_RANGE
        if not isinstance(idle, int) or isinstance(idle, bool) or not low <= idle <= high:
            raise err("idle_timeout", f"idle_timeout must be between {low} and {high} seconds, got {idle!r}")
        out["idleTimeout"] = idle

        scaler = v("scaler_type")
        if scaler is None:
            scaler = "REQUEST_COUNT" if is_lb else "QUEUE_DELAY"
        elif isinstance(scaler, EnumValue) and scaler.enum == "ServerlessScalerType":
            scaler = scaler.value
        elif scaler not in catalog.SCALER_TYPES.values():
            raise err("scaler_type", f"unknown scaler_type {scaler!r}", did_you_mean(str(scaler), list(catalog.SCALER_TYPES)))
        out["scalerType"] = scaler
        scaler_value = v("scaler_value", catalog.DEFAULT_SCALER_VALUE)
        if not isinstance(scaler_value, int) or isinstance(scaler_value, bool):
            raise err("scaler_value", f"scaler_value must be an integer, got {scaler_value!r}")
        out["scalerValue"] = scaler_value

        # Endpoint defaults GPU workers to every datacenter; resource classes default to none.
        datacenters = self.datacenters(obj, v("datacenter"), is_cpu or legacy is not None)
        locations = self.environ.get("RUNPOD_DEFAULT_LOCATIONS")
        self.ev.env_used["RUNPOD_DEFAULT_LOCATIONS"] = locations
        default_dc = self.environ.get("RUNPOD_DEFAULT_DATACENTER")
        self.ev.env_used["RUNPOD_DEFAULT_DATACENTER"] = default_dc
        if not locations and extra.get("locations"):
            locations = extra["locations"]
        if not locations:
            if default_dc:
                locations = default_dc
            elif datacenters:
                locations = ",".join(datacenters)
            else:
                locations = None
        if locations:
            out["locations"] = locations

        if not is_cpu:
            cuda = v("min_cuda_version", catalog.DEFAULT_MIN_CUDA_VERSION)
            if isinstance(cuda, EnumValue) and cuda.enum == "CudaVersion":
                cuda = cuda.value
            if cuda is not None:
                if cuda not in catalog.CUDA_VERSIONS.values():
                    raise err(
                        "min_cuda_version",
                        f"unknown CUDA version {cuda!r}",
                        did_you_mean(str(cuda), list(catalog.CUDA_VERSIONS.values())),
                    )
                out["minCudaVersion"] = cuda

        env = v("env")
        if env is not None:
            if not isinstance(env, dict) or not all(isinstance(k, str) and isinstance(val, str) for k, val in env.items()):
                raise err("env", "env must be a dict of strings to strings", "quote numbers, e.g. {'WORKERS': '4'}")
            out["env"] = dict(env)

        volumes = self.volumes(obj, v("volume"), datacenters)
        if volumes:
            out["networkVolumes"] = volumes

        if not (extra.get("templateId") and v("template") is None):
            out["template"] = self.template(obj, v("template"), out.get("instanceIds"))

        deps = v("dependencies")
        if deps is None:
            deps = []
        if not isinstance(deps, (list, tuple)) or not all(isinstance(d, str) for d in deps):
            raise err("dependencies", "dependencies must be a list of requirement strings", "e.g. dependencies=['numpy>=2', 'pillow']")
        for key, kind in (("gpu_count", int), ("execution_timeout_ms", int), ("flashboot", bool), ("accelerate_downloads", bool)):
            value = v(key)
            if value is not None and not isinstance(value, kind):
                raise err(key, f"{key} must be {kind.__name__}, got {value!r}")
        system_deps = v("system_dependencies")
        if system_deps is not None and (not isinstance(system_deps, (list, tuple)) or not all(isinstance(d, str) for d in system_deps)):
            raise err("system_dependencies", "system_dependencies must be a list of strings")
        return out, list(deps)

    def default_image(self, kind: str, python_version: str) -> str:
        override_var = catalog.IMAGE_OVERRIDE_ENV[kind]
        override = self.environ.get(override_var)
        self.ev.env_used[override_var] = override
        if override:
            return override
        tag = self.environ.get(catalog.IMAGE_TAG_ENV)
        self.ev.env_used[catalog.IMAGE_TAG_ENV] = tag
        return f"{catalog.IMAGE_REPOSITORIES[kind]}:py{python_version}-{tag or catalog.DEFAULT_IMAGE_TAG}"

    def cpu_instances(self, obj: EndpointObject, cpu: Any) -> list[str]:
        items = cpu if isinstance(cpu, (list, tuple)) else [cpu]
        valid = list(catalog.CPU_INSTANCE_TYPES.values())
        out: list[str] = []
        for item in items:
            if isinstance(item, EnumValue) and item.enum == "CpuInstanceType":
                out.append(item.value)
            elif isinstance(item, str) and item in valid:
                out.append(item)
            else:
                raise BuildError(
                    f"unknown CPU instance type {str(item)!r}",
                    **self.where(obj, "cpu"),
                    hint=did_you_mean(str(item), valid),
                )
        if not out:
            raise BuildError("cpu needs at least one instance type", **self.where(obj, "cpu"))
        return out

    def gpu_ids(self, obj: EndpointObject, gpu: Any) -> str:
        if gpu is None:
            gpu = [EnumValue("GpuGroup", "ANY", "any")]
        items = gpu if isinstance(gpu, (list, tuple)) else [gpu]
        if not isinstance(gpu, (list, tuple)) and not isinstance(gpu, EnumValue):
            raise BuildError(
                f"gpu must be a GpuGroup, a GpuType or a list of them, got {gpu!r}",
                **self.where(obj, "gpu"),
                hint="e.g. gpu=GpuGroup.ADA_24 or gpu=[GpuType.NVIDIA_L4]",
            )
        groups: list[str] = []
        types: list[str] = []
        pool_values = list(catalog.GPU_GROUPS.values())
        type_values = list(catalog.GPU_TYPES.values())
        for item in items:
            if isinstance(item, EnumValue) and item.enum in ("GpuGroup", "GpuType"):
                (groups if item.enum == "GpuGroup" else types).append(item.value)
            elif isinstance(item, str) and item in pool_values:
                groups.append(item)
            elif isinstance(item, str) and item in type_values:
                types.append(item)
            else:
                raise BuildError(
                    f"unknown GPU {str(item)!r}",
                    **self.where(obj, "gpu"),
                    hint=did_you_mean(str(item), list(catalog.GPU_GROUPS) + pool_values[1:] + type_values[1:]),
                )
        if "any" in groups or "any" in types:
            groups = [g for g in pool_values if g != "any"]
            types = []
        tokens: set[str] = set(groups)
        type_pools: set[str] = set()
        for gpu_type in types:
            for pool, members in catalog.GPU_POOLS.items():
                if gpu_type in members:
                    type_pools.add(pool)
        tokens |= type_pools
        for pool in type_pools - set(groups):
            tokens |= {f"-{member}" for member in catalog.GPU_POOLS[pool] if member not in types}
        ordered = sorted(tokens, key=lambda t: (t.startswith("-"), t.lstrip("-").lower()))
        return ",".join(ordered)

    def workers(self, obj: EndpointObject, workers: Any) -> tuple[int, int]:
        if workers is None:
            return catalog.DEFAULT_WORKERS_MIN, catalog.DEFAULT_WORKERS_MAX
        if isinstance(workers, int) and not isinstance(workers, bool):
            low, high = catalog.DEFAULT_WORKERS_MIN, workers
        elif isinstance(workers, (list, tuple)) and len(workers) == 2 and all(isinstance(w, int) and not isinstance(w, bool) for w in workers):
            low, high = workers
        else:
            raise BuildError(
                f"workers must be an int or a (min, max) pair, got {workers!r}",
                **self.where(obj, "workers"),
                hint="e.g. workers=3 or workers=(0, 3)",
            )
        if low < 0 or high < 0:
            raise BuildError(f"workers cannot be negative: ({low}, {high})", **self.where(obj, "workers"))
        if low > high:
            raise BuildError(f"workers min ({low}) cannot exceed max ({high})", **self.where(obj, "workers"))
        return low, high

    def datacenter_id(self, obj: EndpointObject, key: str, item: Any) -> str:
        valid = list(catalog.DATACENTERS.values())
        if isinstance(item, EnumValue) and item.enum == "DataCenter":
            return item.value
        if isinstance(item, str):
            normalized = item.strip().upper().replace("_", "-")
            if normalized in valid:
                return normalized
        raise BuildError(
            f"unknown datacenter {str(item)!r}",
            **self.where(obj, key),
            hint=did_you_mean(str(item).upper().replace("_", "-"), valid),
        )

    def datacenters(self, obj: EndpointObject, datacenter: Any, no_default: bool) -> list[str]:
        is_cpu = self.value(obj, "cpu") is not None
        if not datacenter:
            if no_default or self.value(obj, "id") is not None:
                return []
            return list(catalog.DATACENTERS.values())
        items = datacenter if isinstance(datacenter, (list, tuple)) else [datacenter]
        ids = [self.datacenter_id(obj, "datacenter", item) for item in items]
        if is_cpu:
            unsupported = [dc for dc in ids if dc not in catalog.CPU_DATACENTERS]
            if unsupported:
                raise BuildError(
                    f"CPU endpoints are not available in {', '.join(unsupported)}",
                    **self.where(obj, "datacenter"),
                    hint="CPU workers run in: " + ", ".join(sorted(catalog.CPU_DATACENTERS)),
                )
        return ids

    def volumes(self, obj: EndpointObject, volume: Any, datacenters: list[str]) -> list[NetworkVolumeEntry]:
        if volume is None:
            return []
        items = volume if isinstance(volume, (list, tuple)) else [volume]
        if not items:
            raise BuildError("volume list must not be empty", **self.where(obj, "volume"))
        out: list[NetworkVolumeEntry] = []
        seen: dict[str, str] = {}
        for item in items:
            if not isinstance(item, SdkCall) or item.name != "NetworkVolume":
                raise BuildError(
                    "volume must be a NetworkVolume(...) or a list of them",
                    **self.where(obj, "volume"),
                    hint="e.g. volume=NetworkVolume(name='models', size=100, datacenter=DataCenter.EU_RO_1)",
                )
            where = {"path": item.path, "line": item.line, "col": item.col}
            unknown = set(item.kwargs) - NETWORK_VOLUME_KWARGS
            if unknown:
                key = sorted(unknown)[0]
                raise BuildError(
                    f"NetworkVolume has no argument {key!r}", **where, hint=did_you_mean(key, sorted(NETWORK_VOLUME_KWARGS - {"dataCenterId"}))
                )
            name, vol_id = item.kwargs.get("name"), item.kwargs.get("id")
            if name is not None and (not isinstance(name, str) or not name.strip()):
                raise BuildError("NetworkVolume name must be a non-empty string", **where)
            if not name and not vol_id:
                raise BuildError("NetworkVolume needs a name or an id", **where)
            size = item.kwargs.get("size", catalog.NETWORK_VOLUME_DEFAULT_SIZE_GB)
            low, high = catalog.NETWORK_VOLUME_SIZE_RANGE
            if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not low <= size <= high):
                raise BuildError(f"NetworkVolume size must be between {low} and {high} GB, got {size!r}", **where)
            dc_value = item.kwargs.get("dataCenterId") or item.kwargs.get("datacenter")
            dc = self.datacenter_id(obj, "volume", dc_value) if dc_value is not None else catalog.NETWORK_VOLUME_DEFAULT_DATACENTER
            label = name or vol_id
            if dc in seen:
                raise BuildError(
                    f"two network volumes in datacenter {dc} ({seen[dc]!r} and {label!r})",
                    **where,
                    hint="attach at most one network volume per datacenter",
                )
            seen[dc] = str(label)
            if datacenters and dc not in datacenters:
                raise BuildError(
                    f"network volume datacenter {dc} is not among the endpoint's datacenters ({', '.join(datacenters)})",
                    **where,
                )
            out.append(NetworkVolumeEntry(name=name, id=vol_id, size=size, dataCenterId=dc))
        return out

    def template(self, obj: EndpointObject, template: Any, instance_ids: list[str] | None) -> TemplateEntry:
        fields: dict[str, Any] = dict(catalog.TEMPLATE_DEFAULTS)
        if template is not None:
            if not isinstance(template, SdkCall) or template.name != "PodTemplate":
                raise BuildError("template must be a PodTemplate(...)", **self.where(obj, "template"))
            where = {"path": template.path, "line": template.line, "col": template.col}
            unknown = set(template.kwargs) - catalog.TEMPLATE_FIELDS
            if unknown:
                key = sorted(unknown)[0]
                raise BuildError(f"PodTemplate has no argument {key!r}", **where, hint=did_you_mean(key, sorted(catalog.TEMPLATE_FIELDS)))
            for key in catalog.TEMPLATE_DEFAULTS:
                value = template.kwargs.get(key)
                if value is None:
                    continue
                expected = type(catalog.TEMPLATE_DEFAULTS[key])
                if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                    raise BuildError(f"PodTemplate {key} must be {expected.__name__}, got {value!r}", **where)
                fields[key] = value
        if instance_ids:
            limit = min(catalog.cpu_disk_limit_gb(i) for i in instance_ids)
            if fields["containerDiskInGb"] == catalog.DEFAULT_CONTAINER_DISK_GB:
                fields["containerDiskInGb"] = limit
            elif fields["containerDiskInGb"] > limit:
                limits = ", ".join(f"{i}: max {catalog.cpu_disk_limit_gb(i)}GB" for i in instance_ids)
                raise BuildError(
                    f"container disk {fields['containerDiskInGb']}GB is more than these CPU instances allow ({limits})",
                    **self.where(obj, "template"),
                    hint=f"use containerDiskInGb <= {limit}, or a larger instance type",
                )
        return TemplateEntry(**fields)

    # -- python version ------------------------------------------------------------------

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

    # -- assembly ------------------------------------------------------------------------

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
                self.warnings.append(Warning_(f"--python-version {requested} overrides the python_version of: {', '.join(overridden)}"))
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

    def build(self) -> ManifestResult:
        found = self.discover()
        python_version = self.reconcile_python(found)
        client_vars = self.client_endpoints()
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
        real_async: dict[str, bool] = {}
        any_gpu = False

        for name in sorted(groups):
            members = sorted(groups[name], key=lambda d: (path_sort_key(d.path), d.record["target"]))
            files = sorted({d.path for d in members}, key=path_sort_key)
            if len(files) > 1:
                raise BuildError(
                    f"endpoint {name!r} is defined in more than one file: {', '.join(files)}",
                    path=members[-1].path,
                    line=members[-1].record["line"],
                    hint="give each endpoint a unique name, or keep an endpoint's functions in one file",
                )
            objects = {id(d.endpoint): d.endpoint for d in members}
            if len(objects) > 1:
                first, second = list(objects.values())[:2]
                self.check_same_config(name, first, second)
            first = members[0]
            is_lb = first.is_lb
            if any(d.is_lb != is_lb for d in members):
                raise BuildError(
                    f"endpoint {name!r} mixes load-balanced routes and queue-based functions",
                    path=first.path,
                    line=first.record["line"],
                    hint="give the routes' Endpoint and the queue-based Endpoint different names",
                )
            config, deps = self.config(first.endpoint, is_lb, python_version)
            any_gpu = any_gpu or "gpuIds" in config
            functions: list[FunctionEntry] = []
            resource_routes: dict[str, str] = {}
            route_where: dict[str, Discovered] = {}
            for d in members:
                rec = d.record
                fn_name = rec["target"]
                real_async[fn_name] = rec["class_is_async"] if rec["is_class"] else rec["is_async"]
                if rec["is_class"]:
                    is_async = rec["class_is_async"]
                else:
                    is_async = rec["is_async"] if is_lb else True
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

        for name in sorted(client_vars):
            obj = client_vars[name]
            if name in resources:
                raise BuildError(
                    f"endpoint {name!r} is both a client Endpoint(image=...) and a decorated endpoint",
                    **self.where(obj),
                    hint="each endpoint name must be unique across the app",
                )
            config, deps = self.config(obj, False, python_version)
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
        return ManifestResult(manifest, group_deps, dict(self.ev.env_used), self.warnings, real_async)

    def check_same_config(self, name: str, first: EndpointObject, second: EndpointObject) -> None:
        """Two Endpoint objects share a name: fine only if they configure the same thing."""
        a = {k: v[0] for k, v in self.values(first).items()}
        b = {k: v[0] for k, v in self.values(second).items()}
        if a != b:
            raise BuildError(
                f"endpoint {name!r} is configured twice with different settings "
                f"({first.path}:{first.call['line']} and {second.path}:{second.call['line']})",
                **self.where(second),
                hint="give the endpoints different names, or use one shared Endpoint object",
            )

    def client_endpoints(self) -> dict[str, EndpointObject]:
        """Module-level ``Endpoint(image=..., name=...)`` objects: deployed, but run no code of ours."""
        out: dict[str, EndpointObject] = {}
        for relpath in sorted(self.scans, key=path_sort_key):
            scan = self.scans[relpath]
            for var, info in scan["endpoint_vars"].items():
                call = info["call"]
                if "image" not in call["kwargs"]:
                    continue
                obj = self.endpoint_var(scan["module"], var, 10**9) or EndpointObject(scan["module"], relpath, call, var)
                if self.value(obj, "image") is None or self.value(obj, "id") is not None:
                    continue
                name = self.value(obj, "name")
                if not isinstance(name, str) or not name:
                    raise BuildError("an Endpoint with image= needs a name", **self.where(obj, "image"))
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

    def version_warnings(self, version: str, any_gpu: bool) -> None:
        eol = catalog.END_OF_LIFE.get(version)
        if eol:
            self.warnings.append(
                Warning_(f"Python {version} reached end of life on {eol}; migrate to Python 3.11 or newer")
            )
        if any_gpu and version != catalog.GPU_NATIVE_PYTHON_VERSION:
            self.warnings.append(
                Warning_(
                    f"GPU workers ship torch for Python {catalog.GPU_NATIVE_PYTHON_VERSION}; with Python {version} "
                    "they reinstall it at cold start (about +7 GB, slower starts). Use --python-version 3.12 if you can"
                )
            )


def build_manifest(
    scans: Mapping[str, dict[str, Any]], options: BuildOptions, environ: Mapping[str, str]
) -> ManifestResult:
    """Join scans (keyed by relative path) into the manifest."""
    return ManifestBuilder(scans, options, environ).build()


__all__ = ["BuildOptions", "ManifestResult", "Warning_", "build_manifest", "path_sort_key"]
