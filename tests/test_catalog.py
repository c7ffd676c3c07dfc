"""``flash_tasks.catalog`` against runpod-flash 1.21.0, entry by entry.

The reference's enums, tables and defaults are dumped as JSON by a small
script run with the reference interpreter (``REFERENCE_DUMP``) and compared
with our tables in both directions: nothing missing, nothing extra, same
values, same order where the order reaches the manifest (``locations`` lists
datacenters in declaration order, for instance). Those tests skip when the
reference is unavailable; the ones at the end check the catalog's own
consistency and hold without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from flash_tasks import catalog
from flash_tasks.endpoints import ENDPOINT_KWARGS
from flash_tasks.resources import NETWORK_VOLUME_KWARGS

try:
    from tests.support.reference import require_reference
except ImportError:  # tests/ itself is on sys.path (pytest's default rootdir-less import)
    from support.reference import require_reference  # type: ignore[no-redef]

MARKER = "@@CATALOG@@"

#: Runs inside the reference's interpreter; argv[1] is a JSON list of idleTimeout values to probe.
REFERENCE_DUMP = r'''
import inspect, json, os, sys, warnings

warnings.simplefilter("ignore")
for var in ("FLASH_GPU_IMAGE", "FLASH_CPU_IMAGE", "FLASH_LB_IMAGE", "FLASH_CPU_LB_IMAGE",
            "FLASH_IMAGE_TAG", "FLASH_IS_LIVE_PROVISIONING", "RUNPOD_ENDPOINT_ID", "RUNPOD_POD_ID"):
    os.environ.pop(var, None)

from runpod_flash import endpoint as endpoint_module
from runpod_flash.cli.commands import build as build_module
from runpod_flash.core.resources import constants
from runpod_flash.core.resources.cpu import CPU_INSTANCE_DISK_LIMITS, CpuInstanceType
from runpod_flash.core.resources.datacenter import CPU_DATACENTERS, DataCenter
from runpod_flash.core.resources.gpu import POOLS_TO_TYPES, GpuGroup, GpuType
from runpod_flash.core.resources.live_serverless import LiveServerless
from runpod_flash.core.resources.network_volume import NetworkVolume
from runpod_flash.core.resources.serverless import CudaVersion, ServerlessScalerType
from runpod_flash.core.resources.template import PodTemplate
from runpod_flash.endpoint import Endpoint


def members(enum):
    return [[m.name, m.value] for m in enum]


def plain(value):
    value = getattr(value, "value", value)
    json.dumps(value)
    return value


def resource_probe(cpu, lb):
    ep = Endpoint(name=f"probe-{cpu}-{lb}", **({"cpu": CpuInstanceType.CPU3C_1_2} if cpu else {}))
    if lb:
        ep.get("/probe")(lambda: None)
    config = ep._build_resource_config()
    return {"cpu": cpu, "lb": lb, "class": type(config).__name__, "image": config.imageName}


def image_names(**env):
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return {kind: constants.get_image_name(kind, "3.12") for kind in constants._IMAGE_REPOS}
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def idle_timeout_ok(value):
    try:
        LiveServerless(name="probe", idleTimeout=value)
    except Exception:
        return False
    return True


signature = inspect.signature(Endpoint.__init__)
size_field = NetworkVolume.model_fields["size"]
size_bounds = {}
for item in size_field.metadata:
    for attr in ("ge", "le", "gt", "lt"):
        if getattr(item, attr, None) is not None:
            size_bounds[attr] = getattr(item, attr)

out = {
    "gpu_groups": members(GpuGroup),
    "gpu_types": members(GpuType),
    "pools": [[group.value, [t.value for t in types]] for group, types in POOLS_TO_TYPES.items()],
    "cpu_types": members(CpuInstanceType),
    "cpu_disk_limits": {t.value: limit for t, limit in CPU_INSTANCE_DISK_LIMITS.items()},
    "datacenters": members(DataCenter),
    "cpu_datacenters": sorted(dc.value for dc in CPU_DATACENTERS),
    "cuda_versions": members(CudaVersion),
    "scaler_types": members(ServerlessScalerType),
    "image_repos": constants._IMAGE_REPOS,
    "image_env_vars": constants._IMAGE_ENV_VARS,
    "image_names": image_names(),
    "image_names_tagged": image_names(FLASH_IMAGE_TAG="probe-tag"),
    "image_names_overridden": image_names(**{v: f"override/{k}:1" for k, v in constants._IMAGE_ENV_VARS.items()}),
    "workers_min": constants.DEFAULT_WORKERS_MIN,
    "workers_max": constants.DEFAULT_WORKERS_MAX,
    "default_python": constants.DEFAULT_PYTHON_VERSION,
    "gpu_base_image_python": constants.GPU_BASE_IMAGE_PYTHON_VERSION,
    "supported_python": list(constants.SUPPORTED_PYTHON_VERSIONS),
    "gpu_python": list(constants.GPU_PYTHON_VERSIONS),
    "cpu_python": list(constants.CPU_PYTHON_VERSIONS),
    "max_tarball_mb": constants.MAX_TARBALL_SIZE_MB,
    "size_prohibitive": sorted(build_module.SIZE_PROHIBITIVE_PACKAGES),
    "http_methods": sorted(endpoint_module._VALID_HTTP_METHODS),
    "reserved_paths": sorted(endpoint_module._RESERVED_PATHS),
    "template_defaults": {name: plain(field.default) for name, field in PodTemplate.model_fields.items()},
    "endpoint_params": [
        [name, plain(p.default) if p.default is not inspect.Parameter.empty else "<required>", p.kind.name]
        for name, p in signature.parameters.items()
        if name != "self"
    ],
    "default_gpu": [plain(g) for g in Endpoint(name="probe-default")._gpu],
    "default_datacenters": [plain(dc) for dc in DataCenter.all()],
    "volume_fields": list(NetworkVolume.model_fields),
    "volume_size_default": size_field.default,
    "volume_size_bounds": size_bounds,
    "volume_datacenter_default": plain(NetworkVolume.model_fields["dataCenterId"].default),
    "idle_timeout_probes": {str(v): idle_timeout_ok(v) for v in json.loads(sys.argv[1])},
    "resource_probes": [resource_probe(cpu, lb) for lb in (False, True) for cpu in (False, True)],
}
print("@@CATALOG@@" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def ref() -> dict[str, Any]:
    python = require_reference()
    lo, hi = catalog.IDLE_TIMEOUT_RANGE
    probes = sorted({0, 1, 60, 3600, 3601, lo - 1, lo, lo + 1, hi - 1, hi, hi + 1, catalog.DEFAULT_IDLE_TIMEOUT})
    proc = subprocess.run(
        [str(python), "-c", REFERENCE_DUMP, json.dumps(probes)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, f"dumping the reference's catalog failed:\n{proc.stderr}"
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    assert len(lines) == 1, proc.stdout
    return json.loads(lines[0][len(MARKER) :])


def pairs(table: dict[str, Any]) -> list[list[Any]]:
    return [[k, v] for k, v in table.items()]


def assert_same_table(ours: list[list[Any]], theirs: list[list[Any]], what: str) -> None:
    """Same entries in the same order; the message names what is missing, extra or moved."""
    our_keys = [k for k, _ in ours]
    their_keys = [k for k, _ in theirs]
    missing = [k for k in their_keys if k not in our_keys]
    extra = [k for k in our_keys if k not in their_keys]
    assert not missing and not extra, f"{what}: missing from our catalog {missing}, not in the reference {extra}"
    changed = {k: (dict(ours)[k], v) for k, v in theirs if dict(ours)[k] != v}
    assert not changed, f"{what}: values differ (ours, reference): {changed}"
    assert our_keys == their_keys, f"{what}: order differs\n  ours:      {our_keys}\n  reference: {their_keys}"


# --- enums and tables -------------------------------------------------------------------


@pytest.mark.reference
def test_gpu_groups(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.GPU_GROUPS), ref["gpu_groups"], "GpuGroup")


@pytest.mark.reference
def test_gpu_types(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.GPU_TYPES), ref["gpu_types"], "GpuType")


@pytest.mark.reference
def test_gpu_pools(ref: dict[str, Any]) -> None:
    assert_same_table([[k, list(v)] for k, v in catalog.GPU_POOLS.items()], ref["pools"], "POOLS_TO_TYPES")


@pytest.mark.reference
def test_cpu_instance_types(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.CPU_INSTANCE_TYPES), ref["cpu_types"], "CpuInstanceType")


@pytest.mark.reference
def test_cpu_disk_limits(ref: dict[str, Any]) -> None:
    ours = {instance: catalog.cpu_disk_limit_gb(instance) for instance in catalog.CPU_INSTANCE_TYPES.values()}
    assert ours == ref["cpu_disk_limits"]
    families = {instance.split("-")[0] for instance in ref["cpu_disk_limits"]}
    assert set(catalog.CPU_DISK_GB_PER_VCPU) == families


@pytest.mark.reference
def test_datacenters(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.DATACENTERS), ref["datacenters"], "DataCenter")
    # a GPU endpoint without datacenter= gets all of them, in this order ("locations")
    assert list(catalog.DATACENTERS.values()) == ref["default_datacenters"]


@pytest.mark.reference
def test_cpu_datacenters(ref: dict[str, Any]) -> None:
    assert sorted(catalog.CPU_DATACENTERS) == ref["cpu_datacenters"]


@pytest.mark.reference
def test_cuda_versions(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.CUDA_VERSIONS), ref["cuda_versions"], "CudaVersion")


@pytest.mark.reference
def test_scaler_types(ref: dict[str, Any]) -> None:
    assert_same_table(pairs(catalog.SCALER_TYPES), ref["scaler_types"], "ServerlessScalerType")


# --- images -------------------------------------------------------------------------------


@pytest.mark.reference
def test_image_repositories(ref: dict[str, Any]) -> None:
    assert catalog.IMAGE_REPOSITORIES == ref["image_repos"]


@pytest.mark.reference
def test_image_override_env_vars(ref: dict[str, Any]) -> None:
    assert catalog.IMAGE_OVERRIDE_ENV == ref["image_env_vars"]
    assert ref["image_names_overridden"] == {kind: f"override/{kind}:1" for kind in catalog.IMAGE_OVERRIDE_ENV}


@pytest.mark.reference
def test_image_names_and_tag(ref: dict[str, Any]) -> None:
    version = catalog.DEFAULT_PYTHON_VERSION
    ours = {kind: f"{repo}:py{version}-{catalog.DEFAULT_IMAGE_TAG}" for kind, repo in catalog.IMAGE_REPOSITORIES.items()}
    assert ours == ref["image_names"]
    tagged = {kind: f"{repo}:py{version}-probe-tag" for kind, repo in catalog.IMAGE_REPOSITORIES.items()}
    assert catalog.IMAGE_TAG_ENV == "FLASH_IMAGE_TAG"
    assert tagged == ref["image_names_tagged"]


@pytest.mark.reference
def test_resource_types_and_image_kinds(ref: dict[str, Any]) -> None:
    repo_kind = {repo: kind for kind, repo in catalog.IMAGE_REPOSITORIES.items()}
    theirs_types = {(p["lb"], p["cpu"]): p["class"] for p in ref["resource_probes"]}
    theirs_kinds = {(p["lb"], p["cpu"]): repo_kind.get(p["image"].split(":")[0]) for p in ref["resource_probes"]}
    assert catalog.RESOURCE_TYPES == theirs_types
    assert catalog.IMAGE_KINDS == theirs_kinds


# --- python versions ------------------------------------------------------------------------


@pytest.mark.reference
def test_python_versions(ref: dict[str, Any]) -> None:
    assert catalog.DEFAULT_PYTHON_VERSION == ref["default_python"]
    assert catalog.GPU_NATIVE_PYTHON_VERSION == ref["gpu_base_image_python"]
    assert ref["gpu_python"] == ref["cpu_python"] == ref["supported_python"]
    # Known difference: the reference's tables also allow 3.13 (its --help lists 3.10-3.12 only);
    # we offer the documented three. See tests/test_reference.py::test_python_version_313_accepted_by_reference_only.
    assert list(catalog.SUPPORTED_PYTHON_VERSIONS) == [v for v in ref["supported_python"] if v != "3.13"]
    assert "3.13" in ref["supported_python"]


# --- defaults ----------------------------------------------------------------------------------


@pytest.mark.reference
def test_worker_defaults(ref: dict[str, Any]) -> None:
    assert (catalog.DEFAULT_WORKERS_MIN, catalog.DEFAULT_WORKERS_MAX) == (ref["workers_min"], ref["workers_max"])


@pytest.mark.reference
def test_endpoint_signature_defaults(ref: dict[str, Any]) -> None:
    defaults = {name: default for name, default, _kind in ref["endpoint_params"]}
    assert catalog.DEFAULT_IDLE_TIMEOUT == defaults["idle_timeout"]
    assert catalog.DEFAULT_SCALER_VALUE == defaults["scaler_value"]
    assert catalog.DEFAULT_MIN_CUDA_VERSION == defaults["min_cuda_version"]
    assert catalog.DEFAULT_GPU_COUNT == defaults["gpu_count"]
    assert defaults["workers"] is None  # -> DEFAULT_WORKERS_MIN/MAX
    assert ref["default_gpu"] == ["any"] and catalog.GPU_GROUPS["ANY"] == "any"


@pytest.mark.reference
def test_endpoint_keywords(ref: dict[str, Any]) -> None:
    """The keywords our evaluator accepts are exactly Endpoint.__init__'s, in its order."""
    assert list(ENDPOINT_KWARGS) == [name for name, _default, _kind in ref["endpoint_params"]]


@pytest.mark.reference
def test_idle_timeout_range(ref: dict[str, Any]) -> None:
    lo, hi = catalog.IDLE_TIMEOUT_RANGE
    ours = {value: lo <= int(value) <= hi for value in map(int, ref["idle_timeout_probes"])}
    assert ours == {int(v): ok for v, ok in ref["idle_timeout_probes"].items()}


@pytest.mark.reference
def test_pod_template(ref: dict[str, Any]) -> None:
    theirs = ref["template_defaults"]
    assert set(catalog.TEMPLATE_FIELDS) == set(theirs)
    assert catalog.TEMPLATE_DEFAULTS == {name: theirs[name] for name in catalog.TEMPLATE_DEFAULTS}
    assert catalog.DEFAULT_CONTAINER_DISK_GB == theirs["containerDiskInGb"]


@pytest.mark.reference
def test_network_volume(ref: dict[str, Any]) -> None:
    assert catalog.NETWORK_VOLUME_DEFAULT_SIZE_GB == ref["volume_size_default"]
    assert ref["volume_size_bounds"] == dict(zip(("ge", "le"), catalog.NETWORK_VOLUME_SIZE_RANGE))
    assert catalog.NETWORK_VOLUME_DEFAULT_DATACENTER == ref["volume_datacenter_default"]
    assert set(NETWORK_VOLUME_KWARGS) == set(ref["volume_fields"])


@pytest.mark.reference
def test_build_constants(ref: dict[str, Any]) -> None:
    assert sorted(catalog.ALWAYS_EXCLUDED) == ref["size_prohibitive"]
    assert catalog.MAX_ARTIFACT_MB == ref["max_tarball_mb"]
    assert sorted(catalog.HTTP_METHODS) == ref["http_methods"]
    assert sorted(catalog.RESERVED_PATHS) == ref["reserved_paths"]


# --- without the reference: the catalog's own consistency -----------------------------------


@pytest.mark.parametrize(
    ("instance", "limit"),
    [
        ("cpu3g-1-4", 10),
        ("cpu3g-8-32", 80),
        ("cpu3c-1-2", 10),
        ("cpu3c-2-4", 20),
        ("cpu5c-1-2", 15),
        ("cpu5c-2-4", 30),
        ("cpu5c-4-8", 60),
        ("cpu5c-8-16", 120),
    ],
)
def test_cpu_disk_limit_examples(instance: str, limit: int) -> None:
    assert catalog.cpu_disk_limit_gb(instance) == limit


def test_cpu_disk_limit_unknown_family() -> None:
    with pytest.raises((KeyError, ValueError)):
        catalog.cpu_disk_limit_gb("cpu9x-2-4")


def test_every_cpu_instance_has_a_disk_limit() -> None:
    for instance in catalog.CPU_INSTANCE_TYPES.values():
        family, vcpus, memory = instance.split("-")
        assert family in catalog.CPU_DISK_GB_PER_VCPU, instance
        assert catalog.cpu_disk_limit_gb(instance) == int(vcpus) * catalog.CPU_DISK_GB_PER_VCPU[family]
        assert int(memory) >= int(vcpus)


def test_enum_tables_are_well_formed() -> None:
    for enum_name, table in catalog.ENUMS.items():
        assert table, enum_name
        assert all(name.isidentifier() for name in table), enum_name
        assert len(set(table.values())) == len(table), f"{enum_name} has duplicate values"


def test_gpu_pools_cover_every_gpu_type_once() -> None:
    pooled = [model for models in catalog.GPU_POOLS.values() for model in models]
    assert len(pooled) == len(set(pooled)), "a GPU model is in two pools"
    assert set(pooled) == set(catalog.GPU_TYPES.values()) - {"any"}
    assert set(catalog.GPU_POOLS) == set(catalog.GPU_GROUPS.values()) - {"any"}


def test_datacenter_tables_agree() -> None:
    assert catalog.CPU_DATACENTERS <= set(catalog.DATACENTERS.values())
    assert catalog.NETWORK_VOLUME_DEFAULT_DATACENTER in catalog.DATACENTERS.values()


def test_defaults_are_catalog_members() -> None:
    assert catalog.DEFAULT_MIN_CUDA_VERSION in catalog.CUDA_VERSIONS.values()
    assert catalog.DEFAULT_PYTHON_VERSION in catalog.SUPPORTED_PYTHON_VERSIONS
    assert catalog.GPU_NATIVE_PYTHON_VERSION in catalog.SUPPORTED_PYTHON_VERSIONS
    assert set(catalog.END_OF_LIFE) <= set(catalog.SUPPORTED_PYTHON_VERSIONS)
    lo, hi = catalog.IDLE_TIMEOUT_RANGE
    assert lo <= catalog.DEFAULT_IDLE_TIMEOUT <= hi
    lo, hi = catalog.NETWORK_VOLUME_SIZE_RANGE
    assert lo <= catalog.NETWORK_VOLUME_DEFAULT_SIZE_GB <= hi
    assert catalog.DEFAULT_WORKERS_MIN <= catalog.DEFAULT_WORKERS_MAX
    assert catalog.DEFAULT_CONTAINER_DISK_GB == catalog.TEMPLATE_DEFAULTS["containerDiskInGb"]
    assert set(catalog.TEMPLATE_DEFAULTS) <= catalog.TEMPLATE_FIELDS


def test_image_tables_agree() -> None:
    kinds = set(catalog.IMAGE_KINDS.values())
    assert set(catalog.IMAGE_REPOSITORIES) == kinds == set(catalog.IMAGE_OVERRIDE_ENV)
    assert set(catalog.RESOURCE_TYPES) == set(catalog.IMAGE_KINDS)
    assert len(set(catalog.RESOURCE_TYPES.values())) == 4
    # "Cpu" in the resource type exactly when the image is a CPU one
    for key, resource_type in catalog.RESOURCE_TYPES.items():
        is_lb, is_cpu = key
        assert resource_type.startswith("Cpu") == is_cpu
        assert ("LoadBalancer" in resource_type) == is_lb
        assert catalog.IMAGE_KINDS[key].startswith("lb") == is_lb


if __name__ == "__main__":  # pragma: no cover - handy for eyeballing the reference dump
    sys.exit(pytest.main([__file__, "-q"]))
