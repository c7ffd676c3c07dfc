"""Turn an endpoint's evaluated arguments into the manifest's deployment fields.

Applies the catalog's defaults the way the SDK's resource classes do (GPU pools
and their ``gpuIds`` string, CPU instance types and container disk sizing,
workers, scaler, datacenters and ``locations``, network volumes, template,
worker image), and turns every invalid value into a located ``BuildError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import catalog
from .endpoints import BuildWarning, Discovery, EndpointObject
from .errors import BuildError
from .evaluator import EnumValue, SdkCall, did_you_mean
from .models import NetworkVolumeEntry, TemplateEntry

NETWORK_VOLUME_KWARGS = frozenset({"name", "id", "size", "datacenter", "dataCenterId"})


class ResourceSettings:
    """Computes each resource's deployment fields from its Endpoint arguments."""

    def __init__(self, found: Discovery, environ: Mapping[str, str]) -> None:
        self.found = found
        self.environ = environ
        self.ev = found.ev
        self.warnings: list[BuildWarning] = found.warnings

    def value(self, obj: EndpointObject, key: str, default: Any = None) -> Any:
        return self.found.value(obj, key, default)

    def where(self, obj: EndpointObject, key: str | None = None) -> dict[str, Any]:
        return self.found.where(obj, key)

    def config(self, obj: EndpointObject, is_lb: bool, python_version: str) -> tuple[dict[str, Any], list[str]]:
        """The manifest's deployment fields for one Endpoint, and its dependencies."""
        def v(key: str, default: Any = None) -> Any:
            return self.value(obj, key, default)

        def err(key: str, message: str, hint: str | None = None) -> BuildError:
            return BuildError(message, **self.where(obj, key), hint=hint)

        gpu, cpu = v("gpu"), v("cpu")
        if gpu is not None and cpu is not None:
            raise err("cpu", "gpu and cpu cannot both be set", "choose gpu=... for a GPU worker or cpu=... for a CPU worker")
        is_cpu = cpu is not None
        out: dict[str, Any] = {}

        max_concurrency = v("max_concurrency", 1)
        if not isinstance(max_concurrency, int) or isinstance(max_concurrency, bool) or max_concurrency < 1:
            raise err("max_concurrency", f"max_concurrency must be an integer >= 1, got {max_concurrency!r}")
        if max_concurrency > 1:
            if is_lb:
                self.warnings.append(
                    BuildWarning(
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
            if no_default:
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
            where: dict[str, Any] = {"path": item.path, "line": item.line, "col": item.col}
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
            where: dict[str, Any] = {"path": template.path, "line": template.line, "col": template.col}
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
