"""Endpoint options -> manifest fields, defaults and located errors, option by option.

Expected values come from runpod-flash 1.21.0: its recorded manifests under
tests/goldens (the default ``locations`` list, GPU pool names, CPU disk sizes,
image names) and its documented rules (``Endpoint`` and the resource classes:
``idleTimeout`` between 1 and 3600 s, network volumes of 10 to 4096 GB in
EU-RO-1 by default, CPU container disk of 10 GB per vCPU for cpu3*/15 for cpu5c,
``RUNPOD_DEFAULT_LOCATIONS`` before ``RUNPOD_DEFAULT_DATACENTER`` before the
datacenter list, gpuIds sorted with negations last). Each case is a small app
built in-process by the manifest phase (no artifact, no network).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from flash_tasks.errors import BuildError, UsageError
from flash_tasks.manifest import BuildOptions, ManifestResult, build_manifest
from flash_tasks.resource_config import RESOURCE_CONFIG_PATH, render_resource_config
from flash_tasks.scan import scan_source

GOLDENS = Path(__file__).parent / "goldens"
IMPORTS = (
    "from runpod_flash import Endpoint, GpuGroup, GpuType, CpuInstanceType, DataCenter, NetworkVolume, PodTemplate, "
    "CudaVersion, ServerlessScalerType\n"
)
LEGACY_IMPORTS = (
    "from runpod_flash import remote, LiveServerless, CpuLiveServerless, ServerlessEndpoint, LiveLoadBalancer, "
    "GpuGroup, DataCenter, PodTemplate\n"
)


def _golden(case: str) -> dict[str, Any]:
    return json.loads((GOLDENS / case / "manifest.json").read_text())


#: The reference's default ``locations`` of a GPU Endpoint: every datacenter, in its order.
ALL_DATACENTERS = _golden("volumes_and_flags")["resources"]["with-volume"]["locations"].split(",")
#: The reference's gpuIds for "any GPU": every pool but ``any``.
ALL_POOLS = _golden("legacy_remote")["resources"]["inline"]["gpuIds"]
TEMPLATE_DEFAULTS = _golden("volumes_and_flags")["resources"]["with-volume"]["template"]


def build(files: dict[str, str], environ: dict[str, str] | None = None, python: str | None = None) -> ManifestResult:
    scans = {rel: scan_source(textwrap.dedent(text).encode(), rel) for rel, text in files.items()}
    return build_manifest(scans, BuildOptions(project_name="app", python_version=python), environ or {})


def endpoint(args: str, environ: dict[str, str] | None = None, decorated: str = "def f(x): return x\n") -> dict[str, Any]:
    """The manifest entry of ``@Endpoint(name='w', <args>)`` on one function."""
    result = build({"w.py": IMPORTS + f"@Endpoint(name='w', {args})\n" + decorated}, environ)
    return result.manifest.model_dump(exclude_none=True)["resources"]["w"]


def failure(args: str, environ: dict[str, str] | None = None) -> BuildError:
    source_line = f"@Endpoint(name='w', {args})"
    with pytest.raises(BuildError) as info:
        build({"w.py": IMPORTS + source_line + "\ndef f(x): return x\n"}, environ)
    err = info.value
    assert err.path == "w.py" and err.line == 2, err.render()
    return err


def value_col(args: str, key: str) -> int:
    """1-based column of the value of ``key=`` in ``@Endpoint(name='w', <args>)``."""
    source_line = f"@Endpoint(name='w', {args})"
    return source_line.index(f"{key}=") + len(key) + 2


# -- defaults ---------------------------------------------------------------------------


def test_gpu_endpoint_defaults_are_the_references() -> None:
    golden = _golden("volumes_and_flags")["resources"]["no-boot-fb"]
    res = endpoint("gpu=GpuGroup.ADA_24")
    keys = ["imageName", "gpuIds", "workersMin", "workersMax", "idleTimeout", "scalerType", "scalerValue",
            "locations", "minCudaVersion", "template", "resource_type", "is_live_resource", "handler_file"]
    assert {k: res.get(k) for k in keys} == {k: golden[k] if k != "handler_file" else "handler_w.py" for k in keys}
    for absent in ("instanceIds", "env", "networkVolumes", "max_concurrency", "templateId", "python_version"):
        assert absent not in res


def test_cpu_endpoint_defaults_are_the_references() -> None:
    golden = _golden("volumes_and_flags")["resources"]["default-boot"]
    res = endpoint("cpu=CpuInstanceType.CPU3C_1_2")
    for key in ("imageName", "instanceIds", "workersMin", "workersMax", "idleTimeout", "scalerType", "scalerValue", "template"):
        assert res[key] == golden[key], key
    for absent in ("gpuIds", "minCudaVersion", "locations"):
        assert absent not in res


def test_load_balanced_defaults_are_the_references() -> None:
    golden = _golden("legacy_remote")["resources"]["legacy-lb"]
    result = build({"a.py": IMPORTS + "api = Endpoint(name='api')\n@api.post('/p')\ndef p(x): return x\n"})
    res = result.manifest.model_dump(exclude_none=True)["resources"]["api"]
    assert res["scalerType"] == golden["scalerType"] == "REQUEST_COUNT"
    assert res["imageName"] == golden["imageName"]
    assert res["gpuIds"] == golden["gpuIds"] == ALL_POOLS
    assert res["resource_type"] == "LiveLoadBalancer" and res["is_load_balanced"] is True
    assert "handler_file" not in res


def test_cpu_load_balanced_image_and_type() -> None:
    result = build({"a.py": IMPORTS + "api = Endpoint(name='api', cpu='cpu3c-1-2')\n@api.get('/q')\ndef q(): return 1\n"})
    res = result.manifest.model_dump(exclude_none=True)["resources"]["api"]
    assert res["imageName"] == "runpod/flash-lb-cpu:py3.12-latest"
    assert res["resource_type"] == "CpuLiveLoadBalancer"
    assert res["scalerType"] == "REQUEST_COUNT"


# -- GPUs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gpu, expected",
    [
        ("GpuGroup.AMPERE_80", "AMPERE_80"),
        ("['AMPERE_80']", "AMPERE_80"),
        ("[GpuGroup.AMPERE_48, GpuGroup.ADA_24]", "ADA_24,AMPERE_48"),
        ("(GpuGroup.HOPPER_141, 'ADA_24')", "ADA_24,HOPPER_141"),
        ("GpuGroup.ANY", ALL_POOLS),
        ("[GpuType.ANY]", ALL_POOLS),
        ("[GpuGroup.ADA_24, GpuGroup.ANY]", ALL_POOLS),
        ("['any']", ALL_POOLS),
        ("None", ALL_POOLS),
        # a GPU type selects its pool minus the pool's other members
        ("GpuType.NVIDIA_L4", "AMPERE_24,-NVIDIA GeForce RTX 3090,-NVIDIA RTX A5000"),
        ("['NVIDIA L4']", "AMPERE_24,-NVIDIA GeForce RTX 3090,-NVIDIA RTX A5000"),
        ("[GpuType.NVIDIA_L4, GpuType.NVIDIA_RTX_A5000]", "AMPERE_24,-NVIDIA GeForce RTX 3090"),
        ("[GpuType.NVIDIA_L4, GpuGroup.AMPERE_24]", "AMPERE_24"),
        ("[GpuType.NVIDIA_A40, GpuType.NVIDIA_L4]", "AMPERE_24,AMPERE_48,-NVIDIA GeForce RTX 3090,-NVIDIA RTX A5000,-NVIDIA RTX A6000"),
    ],
)
def test_gpu_ids(gpu: str, expected: str) -> None:
    assert endpoint(f"gpu={gpu}")["gpuIds"] == expected


@pytest.mark.parametrize(
    "gpu, message, hint",
    [
        ("['ADA_42']", "unknown GPU 'ADA_42'", "ADA_24"),
        ("'ADA_24'", "gpu must be a GpuGroup, a GpuType or a list of them, got 'ADA_24'", "GpuGroup.ADA_24"),
        ("['NVIDIA L5']", "unknown GPU 'NVIDIA L5'", "NVIDIA L4"),
        ("[GpuGroup.ADA_24, 3]", "unknown GPU '3'", None),
        ("DataCenter.EU_RO_1", "unknown GPU 'EU-RO-1'", None),
        ("3", "gpu must be a GpuGroup, a GpuType or a list of them, got 3", "GpuGroup.ADA_24"),
    ],
)
def test_bad_gpu_is_located(gpu: str, message: str, hint: str | None) -> None:
    err = failure(f"gpu={gpu}")
    assert err.message == message
    assert err.col == value_col(f"gpu={gpu}", "gpu")
    if hint:
        assert hint in (err.hint or "")


# -- CPUs and container disk ----------------------------------------------------------------


@pytest.mark.parametrize(
    "cpu, instances, disk",
    [
        ("CpuInstanceType.CPU3G_2_8", ["cpu3g-2-8"], 20),
        ("'cpu3c-8-16'", ["cpu3c-8-16"], 80),
        ("'cpu5c-1-2'", ["cpu5c-1-2"], 15),
        ("['cpu5c-4-8', CpuInstanceType.CPU3G_4_16]", ["cpu5c-4-8", "cpu3g-4-16"], 40),
        ("('cpu5c-2-4', 'cpu5c-8-16')", ["cpu5c-2-4", "cpu5c-8-16"], 30),
    ],
)
def test_cpu_instances_and_disk_limit(cpu: str, instances: list[str], disk: int) -> None:
    res = endpoint(f"cpu={cpu}")
    assert res["instanceIds"] == instances
    assert res["template"]["containerDiskInGb"] == disk
    assert res["resource_type"] == "CpuLiveServerless"


def test_cpu_disk_below_the_limit_is_kept_and_above_is_refused() -> None:
    assert endpoint("cpu='cpu3g-4-16', template=PodTemplate(containerDiskInGb=25)")["template"]["containerDiskInGb"] == 25
    assert endpoint("cpu='cpu3g-4-16', template=PodTemplate(containerDiskInGb=40)")["template"]["containerDiskInGb"] == 40
    args = "cpu=['cpu3g-4-16', 'cpu3g-2-8'], template=PodTemplate(containerDiskInGb=30)"
    err = failure(args)
    assert err.message == (
        "container disk 30GB is more than these CPU instances allow (cpu3g-4-16: max 40GB, cpu3g-2-8: max 20GB)"
    )
    assert err.col == value_col(args, "template")
    assert "<= 20" in (err.hint or "")


@pytest.mark.parametrize(
    "cpu, message, hint",
    [
        ("'cpu3c-1-3'", "unknown CPU instance type 'cpu3c-1-3'", "cpu3c-1-2"),
        ("['cpu3c-1-2', GpuGroup.ADA_24]", "unknown CPU instance type 'ADA_24'", None),
        ("[]", "cpu needs at least one instance type", None),
    ],
)
def test_bad_cpu_is_located(cpu: str, message: str, hint: str | None) -> None:
    err = failure(f"cpu={cpu}")
    assert err.message == message
    assert err.col == value_col(f"cpu={cpu}", "cpu")
    if hint:
        assert hint in (err.hint or "")


# -- workers, idle timeout, scaler, concurrency ---------------------------------------------


@pytest.mark.parametrize(
    "workers, expected",
    [("None", (0, 1)), ("3", (0, 3)), ("0", (0, 0)), ("(1, 2)", (1, 2)), ("[2, 2]", (2, 2)), ("(0, 5)", (0, 5))],
)
def test_workers(workers: str, expected: tuple[int, int]) -> None:
    res = endpoint(f"workers={workers}")
    assert (res["workersMin"], res["workersMax"]) == expected


@pytest.mark.parametrize(
    "workers, message",
    [
        ("(3, 1)", "workers min (3) cannot exceed max (1)"),
        ("-1", "workers cannot be negative: (0, -1)"),
        ("(-1, 2)", "workers cannot be negative: (-1, 2)"),
        ("(1, -2)", "workers cannot be negative: (1, -2)"),
        ("(1, 2, 3)", "workers must be an int or a (min, max) pair, got (1, 2, 3)"),
        ("(1, '2')", "workers must be an int or a (min, max) pair, got (1, '2')"),
        ("(True, 2)", "workers must be an int or a (min, max) pair, got (True, 2)"),
        ("True", "workers must be an int or a (min, max) pair, got True"),
        ("'3'", "workers must be an int or a (min, max) pair, got '3'"),
    ],
)
def test_bad_workers_are_located(workers: str, message: str) -> None:
    err = failure(f"workers={workers}")
    assert err.message == message
    assert err.col == value_col(f"workers={workers}", "workers")


@pytest.mark.parametrize("idle", [1, 30, 3600])
def test_idle_timeout_within_the_references_range(idle: int) -> None:
    assert endpoint(f"idle_timeout={idle}")["idleTimeout"] == idle


@pytest.mark.parametrize("idle", ["0", "3601", "-5", "True", "'60'", "1.5"])
def test_idle_timeout_out_of_range_is_located(idle: str) -> None:
    err = failure(f"idle_timeout={idle}")
    assert err.message == f"idle_timeout must be between 1 and 3600 seconds, got {idle}"
    assert err.col == value_col(f"idle_timeout={idle}", "idle_timeout")


@pytest.mark.parametrize(
    "args, scaler, value",
    [
        ("scaler_type=ServerlessScalerType.REQUEST_COUNT", "REQUEST_COUNT", 4),
        ("scaler_type='REQUEST_COUNT', scaler_value=2", "REQUEST_COUNT", 2),
        ("scaler_type='QUEUE_DELAY', scaler_value=0", "QUEUE_DELAY", 0),
        ("scaler_value=10", "QUEUE_DELAY", 10),
    ],
)
def test_scaler(args: str, scaler: str, value: int) -> None:
    res = endpoint(args)
    assert (res["scalerType"], res["scalerValue"]) == (scaler, value)


def test_bad_scaler_is_located() -> None:
    err = failure("scaler_type='REQUEST_COUNTS'")
    assert err.message == "unknown scaler_type 'REQUEST_COUNTS'"
    assert err.col == value_col("scaler_type='REQUEST_COUNTS'", "scaler_type")
    assert "REQUEST_COUNT" in (err.hint or "")
    for bad in ("'4'", "True", "2.5"):
        err = failure(f"scaler_value={bad}")
        assert err.message == f"scaler_value must be an integer, got {bad}"
        assert err.col == value_col(f"scaler_value={bad}", "scaler_value")


def test_max_concurrency_on_queue_endpoints_and_ignored_on_load_balanced() -> None:
    assert endpoint("max_concurrency=3")["max_concurrency"] == 3
    assert "max_concurrency" not in endpoint("max_concurrency=1")
    source = IMPORTS + "api = Endpoint(name='api',\n    max_concurrency=5)\n@api.get('/q')\ndef q(): return 1\n"
    result = build({"a.py": source})
    assert "max_concurrency" not in result.manifest.model_dump(exclude_none=True)["resources"]["api"]
    [warning] = result.warnings
    assert "max_concurrency=5 is ignored on load-balanced endpoints" in warning.message
    assert (warning.path, warning.line) == ("a.py", 3)


@pytest.mark.parametrize("bad", ["0", "-2", "True", "'2'", "1.0"])
def test_bad_max_concurrency_is_located(bad: str) -> None:
    err = failure(f"max_concurrency={bad}")
    assert err.message == f"max_concurrency must be an integer >= 1, got {bad}"
    assert err.col == value_col(f"max_concurrency={bad}", "max_concurrency")


# -- datacenters and locations ----------------------------------------------------------------


@pytest.mark.parametrize(
    "datacenter, expected",
    [
        ("DataCenter.EU_RO_1", "EU-RO-1"),
        ("'eu_ro_1'", "EU-RO-1"),
        ("' us-ks-2 '", "US-KS-2"),
        ("'eur_no_1'", "EUR-NO-1"),
        ("[DataCenter.US_KS_2, 'eu-cz-1']", "US-KS-2,EU-CZ-1"),
        ("None", ",".join(ALL_DATACENTERS)),
        ("[]", ",".join(ALL_DATACENTERS)),
    ],
)
def test_datacenters_give_locations(datacenter: str, expected: str) -> None:
    assert endpoint(f"gpu=GpuGroup.ADA_24, datacenter={datacenter}")["locations"] == expected


@pytest.mark.parametrize(
    "datacenter, shown, hint",
    [
        ("'EU-RO-2'", "'EU-RO-2'", "EU-RO-1"),
        ("'eu_ro_3'", "'eu_ro_3'", "EU-RO-1"),
        ("'us_ks'", "'us_ks'", "US-KS-2"),
        ("[DataCenter.EU_RO_1, 7]", "'7'", None),
        ("GpuGroup.ADA_24", "'ADA_24'", None),
    ],
)
def test_unknown_datacenter_is_located(datacenter: str, shown: str, hint: str | None) -> None:
    err = failure(f"datacenter={datacenter}")
    assert err.message == f"unknown datacenter {shown}"
    assert err.col == value_col(f"datacenter={datacenter}", "datacenter")
    if hint:
        assert (err.hint or "").startswith(f"did you mean {hint} ")


def test_cpu_datacenters() -> None:
    assert endpoint("cpu='cpu3c-1-2', datacenter='eu-ro-1'")["locations"] == "EU-RO-1"
    args = "cpu='cpu3c-1-2', datacenter=[DataCenter.EU_RO_1, DataCenter.US_KS_2, 'us-ca-2']"
    err = failure(args)
    assert err.message == "CPU endpoints are not available in US-KS-2, US-CA-2"
    assert err.col == value_col(args, "datacenter")
    assert err.hint == "CPU workers run in: EU-RO-1"


@pytest.mark.parametrize(
    "args, environ, expected",
    [
        ("gpu=GpuGroup.ADA_24", {"RUNPOD_DEFAULT_LOCATIONS": "US-KS-2,EU-RO-1"}, "US-KS-2,EU-RO-1"),
        ("gpu=GpuGroup.ADA_24, datacenter='eu-ro-1'", {"RUNPOD_DEFAULT_LOCATIONS": "US-KS-2"}, "US-KS-2"),
        ("gpu=GpuGroup.ADA_24", {"RUNPOD_DEFAULT_DATACENTER": "US-WA-1"}, "US-WA-1"),
        ("gpu=GpuGroup.ADA_24, datacenter='eu-ro-1'", {"RUNPOD_DEFAULT_DATACENTER": "US-WA-1"}, "US-WA-1"),
        (
            "gpu=GpuGroup.ADA_24",
            {"RUNPOD_DEFAULT_DATACENTER": "US-WA-1", "RUNPOD_DEFAULT_LOCATIONS": "EU-CZ-1"},
            "EU-CZ-1",
        ),
        ("cpu='cpu3c-1-2'", {"RUNPOD_DEFAULT_DATACENTER": "EU-RO-1"}, "EU-RO-1"),
        ("gpu=GpuGroup.ADA_24", {"RUNPOD_DEFAULT_LOCATIONS": ""}, ",".join(ALL_DATACENTERS)),
    ],
)
def test_location_environment(args: str, environ: dict[str, str], expected: str) -> None:
    result = build({"w.py": IMPORTS + f"@Endpoint(name='w', {args})\ndef f(x): return x\n"}, environ)
    assert result.manifest.resources["w"].model_dump()["locations"] == expected
    for var in ("RUNPOD_DEFAULT_LOCATIONS", "RUNPOD_DEFAULT_DATACENTER"):
        assert result.env_used[var] == environ.get(var)


def test_client_endpoint_by_id_is_no_resource_of_the_app() -> None:
    result = build({"c.py": IMPORTS + "other = Endpoint(id='abc123')\n@Endpoint(name='w')\ndef f(x): return other\n"})
    resources = result.manifest.model_dump(exclude_none=True)["resources"]
    assert list(resources) == ["w"] and resources["w"]["locations"] == ",".join(ALL_DATACENTERS)


# -- images -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "environ, expected",
    [
        ({}, "runpod/flash:py3.12-latest"),
        ({"FLASH_IMAGE_TAG": "dev"}, "runpod/flash:py3.12-dev"),
        ({"FLASH_IMAGE_TAG": ""}, "runpod/flash:py3.12-latest"),
        ({"FLASH_GPU_IMAGE": "me/gpu:1", "FLASH_IMAGE_TAG": "dev"}, "me/gpu:1"),
        ({"FLASH_CPU_IMAGE": "me/cpu:1"}, "runpod/flash:py3.12-latest"),
    ],
)
def test_gpu_image_environment(environ: dict[str, str], expected: str) -> None:
    result = build({"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n"}, environ)
    assert result.manifest.resources["w"].model_dump()["imageName"] == expected
    assert result.env_used["FLASH_GPU_IMAGE"] == environ.get("FLASH_GPU_IMAGE")


@pytest.mark.parametrize(
    "source, var, default",
    [
        ("@Endpoint(name='w', cpu='cpu3c-1-2')\ndef f(x): return x\n", "FLASH_CPU_IMAGE", "runpod/flash-cpu:py3.11-latest"),
        ("w = Endpoint(name='w')\n@w.get('/a')\ndef f(): return 1\n", "FLASH_LB_IMAGE", "runpod/flash-lb:py3.11-latest"),
        ("w = Endpoint(name='w', cpu='cpu3c-1-2')\n@w.get('/a')\ndef f(): return 1\n", "FLASH_CPU_LB_IMAGE", "runpod/flash-lb-cpu:py3.11-latest"),
    ],
)
def test_image_override_per_kind(source: str, var: str, default: str) -> None:
    assert build({"w.py": IMPORTS + source}, python="3.11").manifest.resources["w"].model_dump()["imageName"] == default
    result = build({"w.py": IMPORTS + source}, {var: "me/custom:2"}, python="3.11")
    assert result.manifest.resources["w"].model_dump()["imageName"] == "me/custom:2"
    assert result.env_used[var] == "me/custom:2"


def test_explicit_image_and_its_errors() -> None:
    client = build({"c.py": IMPORTS + "c = Endpoint(name='c', image='me/worker:3')\n"}).manifest.model_dump()["resources"]["c"]
    assert client["imageName"] == "me/worker:3"
    with pytest.raises(BuildError) as info:
        build({"c.py": IMPORTS + "c = Endpoint(name='c', image=3)\n"})
    assert info.value.message == "image must be a string, got 3"
    assert info.value.col == len("c = Endpoint(name='c', image=") + 1
    client = "c = Endpoint(name='w', id='abc', image='me/x:1')"
    with pytest.raises(BuildError) as info:
        build({"c.py": IMPORTS + client + "\n@Endpoint(name='v')\ndef f(x): return x\n"})
    assert info.value.message == "id and image cannot both be set"  # the reference refuses it too
    assert (info.value.path, info.value.line, info.value.col) == ("c.py", 2, client.index("image=") + len("image=") + 1)
    assert "existing endpoint" in (info.value.hint or "")
    err = failure("gpu=GpuGroup.ADA_24, cpu='cpu3c-1-2'")
    assert err.message == "gpu and cpu cannot both be set"
    assert err.col == value_col("gpu=GpuGroup.ADA_24, cpu='cpu3c-1-2'", "cpu")
    assert "gpu=..." in (err.hint or "")


# -- CUDA, env, typed flags, dependencies -----------------------------------------------------


@pytest.mark.parametrize(
    "args, expected",
    [("min_cuda_version='12.4'", "12.4"), ("min_cuda_version=CudaVersion.V11_8", "11.8"), ("min_cuda_version=None", None)],
)
def test_min_cuda_version(args: str, expected: str | None) -> None:
    assert endpoint(args).get("minCudaVersion") == expected


def test_bad_cuda_version_is_located() -> None:
    err = failure("min_cuda_version='12.9.9'")
    assert err.message == "unknown CUDA version '12.9.9'"
    assert err.col == value_col("min_cuda_version='12.9.9'", "min_cuda_version")
    assert "12.8" in (err.hint or "") or "12.9" in (err.hint or "")


def test_env_is_copied_and_checked() -> None:
    assert endpoint("env={'A': 'b', 'N': '4'}")["env"] == {"A": "b", "N": "4"}
    assert endpoint("env={}")["env"] == {}
    for bad in ("{'A': 1}", "{1: 'a'}", "['A=b']"):
        err = failure(f"env={bad}")
        assert err.message == "env must be a dict of strings to strings"
        assert err.col == value_col(f"env={bad}", "env")
        assert "quote numbers" in (err.hint or "")


@pytest.mark.parametrize(
    "args, key, shown, kind",
    [
        ("gpu_count='2'", "gpu_count", "'2'", "int"),
        ("execution_timeout_ms=1.5", "execution_timeout_ms", "1.5", "int"),
        ("flashboot='yes'", "flashboot", "'yes'", "bool"),
        ("accelerate_downloads=1", "accelerate_downloads", "1", "bool"),
    ],
)
def test_typed_flags_are_checked(args: str, key: str, shown: str, kind: str) -> None:
    err = failure(args)
    assert err.message == f"{key} must be {kind}, got {shown}"
    assert err.col == value_col(args, key)


def test_typed_flags_of_the_right_type_build() -> None:
    res = endpoint("gpu_count=2, execution_timeout_ms=30000, flashboot=False, accelerate_downloads=True, system_dependencies=['ffmpeg']")
    assert res["gpuIds"] == ALL_POOLS


@pytest.mark.parametrize("bad", ["'numpy'", "['numpy', 3]", "{'numpy': '1'}"])
def test_bad_dependencies_are_located(bad: str) -> None:
    err = failure(f"dependencies={bad}")
    assert err.message == "dependencies must be a list of requirement strings"
    assert err.col == value_col(f"dependencies={bad}", "dependencies")
    assert "numpy>=2" in (err.hint or "")


@pytest.mark.parametrize("bad", ["'ffmpeg'", "['ffmpeg', 1]"])
def test_bad_system_dependencies_are_located(bad: str) -> None:
    err = failure(f"system_dependencies={bad}")
    assert err.message == "system_dependencies must be a list of strings"
    assert err.col == value_col(f"system_dependencies={bad}", "system_dependencies")


def test_dependencies_are_grouped_with_their_origin() -> None:
    source = IMPORTS + "@Endpoint(name='w', dependencies=('numpy>=2', 'pillow'))\ndef f(x): return x\n"
    groups = build({"pkg/w.py": source}).groups
    assert groups == {"w": [{"requirement": "numpy>=2", "origin": "pkg/w.py:2"}, {"requirement": "pillow", "origin": "pkg/w.py:2"}]}
    assert build({"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n"}).groups == {"w": []}


# -- network volumes ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "volume, expected",
    [
        ("NetworkVolume(name='m')", [{"name": "m", "size": 100, "dataCenterId": "EU-RO-1"}]),
        ("NetworkVolume(id='vol123')", [{"id": "vol123", "size": 100, "dataCenterId": "EU-RO-1"}]),
        ("NetworkVolume(name='m', size=10)", [{"name": "m", "size": 10, "dataCenterId": "EU-RO-1"}]),
        ("NetworkVolume(name='m', size=4096, datacenter='us_ks_2')", [{"name": "m", "size": 4096, "dataCenterId": "US-KS-2"}]),
        ("NetworkVolume(name='m', dataCenterId=DataCenter.US_CA_2)", [{"name": "m", "size": 100, "dataCenterId": "US-CA-2"}]),
        (
            "[NetworkVolume(name='a', datacenter=DataCenter.EU_CZ_1), NetworkVolume(id='b', size=20)]",
            [{"name": "a", "size": 100, "dataCenterId": "EU-CZ-1"}, {"id": "b", "size": 20, "dataCenterId": "EU-RO-1"}],
        ),
    ],
)
def test_network_volumes(volume: str, expected: list[dict[str, Any]]) -> None:
    assert endpoint(f"volume={volume}")["networkVolumes"] == expected


def test_volume_in_a_named_variable_matches_the_golden() -> None:
    golden = _golden("volumes_and_flags")["resources"]["with-volume"]["networkVolumes"]
    source = IMPORTS + "models = NetworkVolume(name='models', size=50, datacenter=DataCenter.EU_RO_1)\n"
    source += "@Endpoint(name='w', gpu=GpuGroup.ADA_24, volume=models)\ndef f(x): return x\n"
    assert build({"w.py": source}).manifest.model_dump(exclude_none=True)["resources"]["w"]["networkVolumes"] == golden


@pytest.mark.parametrize(
    "volume, message, hint",
    [
        ("NetworkVolume(name='m', size=9)", "NetworkVolume size must be between 10 and 4096 GB, got 9", None),
        ("NetworkVolume(name='m', size=4097)", "NetworkVolume size must be between 10 and 4096 GB, got 4097", None),
        ("NetworkVolume(name='m', size=True)", "NetworkVolume size must be between 10 and 4096 GB, got True", None),
        ("NetworkVolume(name='m', size='20')", "NetworkVolume size must be between 10 and 4096 GB, got '20'", None),
        ("NetworkVolume(name='')", "NetworkVolume name must be a non-empty string", None),
        ("NetworkVolume(name='  ')", "NetworkVolume name must be a non-empty string", None),
        ("NetworkVolume(name=3)", "NetworkVolume name must be a non-empty string", None),
        ("NetworkVolume(size=20)", "NetworkVolume needs a name or an id", None),
        ("NetworkVolume(name='m', sizes=20)", "NetworkVolume has no argument 'sizes'", "size"),
        ("NetworkVolume(name='m', zone=1, b=2)", "NetworkVolume has no argument 'b'", None),
        ("NetworkVolume(name='m', datacentre='EU-RO-1')", "NetworkVolume has no argument 'datacentre'", "datacenter"),
        (
            "[NetworkVolume(name='a'), NetworkVolume(name='b', datacenter='eu-ro-1')]",
            "two network volumes in datacenter EU-RO-1 ('a' and 'b')",
            "at most one network volume per datacenter",
        ),
    ],
)
def test_bad_volume_is_located_at_the_volume(volume: str, message: str, hint: str | None) -> None:
    args = f"volume={volume}"
    err = failure(args)
    assert err.message == message
    source_line = f"@Endpoint(name='w', {args})"
    assert err.col in [i + 1 for i in range(len(source_line)) if source_line.startswith("NetworkVolume(", i)]
    if hint:
        assert hint in (err.hint or "")


def test_volume_datacenter_must_be_among_the_endpoints() -> None:
    args = "datacenter=[DataCenter.US_KS_2, 'eu-cz-1'], volume=NetworkVolume(name='m')"
    err = failure(args)
    assert err.message == "network volume datacenter EU-RO-1 is not among the endpoint's datacenters (US-KS-2, EU-CZ-1)"
    assert err.col == f"@Endpoint(name='w', {args})".index("NetworkVolume(") + 1
    ok = endpoint("datacenter=['us-ks-2', 'eu-ro-1'], volume=NetworkVolume(name='m', datacenter='US-KS-2')")
    assert ok["networkVolumes"] == [{"name": "m", "size": 100, "dataCenterId": "US-KS-2"}]
    assert ok["locations"] == "US-KS-2,EU-RO-1"


def test_volume_with_unknown_datacenter_is_located() -> None:
    args = "volume=NetworkVolume(name='m', datacenter='eu-ro-9')"
    err = failure(args)
    assert err.message == "unknown datacenter 'eu-ro-9'"
    assert err.col == value_col(args, "volume")


@pytest.mark.parametrize("volume, message", [("[]", "volume list must not be empty"), ("'m'", "volume must be a NetworkVolume(...) or a list of them"),
                                             ("PodTemplate(dockerArgs='x')", "volume must be a NetworkVolume(...) or a list of them")])
def test_bad_volume_value_is_located_at_the_argument(volume: str, message: str) -> None:
    err = failure(f"volume={volume}")
    assert err.message == message
    assert err.col == value_col(f"volume={volume}", "volume")


# -- templates ----------------------------------------------------------------------------------


def test_template_fields_override_the_defaults() -> None:
    res = endpoint("template=PodTemplate(dockerArgs='--x', startScript='run.sh', advancedStart=True, containerRegistryAuthId='auth', containerDiskInGb=80)")
    assert res["template"] == {
        "containerDiskInGb": 80, "dockerArgs": "--x", "startScript": "run.sh", "advancedStart": True, "containerRegistryAuthId": "auth",
    }
    assert endpoint("template=PodTemplate(dockerArgs=None)")["template"] == TEMPLATE_DEFAULTS


@pytest.mark.parametrize(
    "template, message, hint",
    [
        ("PodTemplate(containerDiskInGb='80')", "PodTemplate containerDiskInGb must be int, got '80'", None),
        ("PodTemplate(containerDiskInGb=True)", "PodTemplate containerDiskInGb must be int, got True", None),
        ("PodTemplate(advancedStart=1)", "PodTemplate advancedStart must be bool, got 1", None),
        ("PodTemplate(dockerArgs=['x'])", "PodTemplate dockerArgs must be str, got ['x']", None),
        ("PodTemplate(dockerArg='x')", "PodTemplate has no argument 'dockerArg'", "dockerArgs"),
        ("PodTemplate(zzz=1, aaa=2)", "PodTemplate has no argument 'aaa'", None),
    ],
)
def test_bad_template_is_located_at_the_template(template: str, message: str, hint: str | None) -> None:
    args = f"template={template}"
    err = failure(args)
    assert err.message == message
    assert err.col == value_col(args, "template")
    if hint:
        assert hint in (err.hint or "")


def test_template_must_be_a_pod_template() -> None:
    for bad in ("'tpl'", "NetworkVolume(name='x')"):
        err = failure(f"template={bad}")
        assert err.message == "template must be a PodTemplate(...)"
        assert err.col == value_col(f"template={bad}", "template")


# -- resource classes (@remote) -----------------------------------------------------------------


def legacy(config: str, environ: dict[str, str] | None = None) -> dict[str, Any]:
    source = LEGACY_IMPORTS + f"cfg = {config}\n@remote(cfg)\ndef f(x): return x\n"
    resources = build({"w.py": source}, environ).manifest.model_dump(exclude_none=True)["resources"]
    [res] = resources.values()
    return res


def test_legacy_gpu_ids_string_is_normalised_like_the_reference() -> None:
    golden = _golden("legacy_remote")["resources"]["plain"]
    res = legacy("ServerlessEndpoint(name='plain', imageName='me/img:1', gpuIds='AMPERE_80,ADA_24')")
    assert res["gpuIds"] == golden["gpuIds"]
    assert res["imageName"] == golden["imageName"]
    assert res["resource_type"] == "ServerlessEndpoint" and res["is_live_resource"] is False
    assert "locations" not in res
    res = legacy("ServerlessEndpoint(name='p', imageName='me/img:1', gpuIds=' -NVIDIA L4 , AMPERE_24,,ADA_24,ADA_24')")
    assert res["gpuIds"] == "ADA_24,AMPERE_24,-NVIDIA L4"


def test_legacy_classes_default_to_no_locations_and_keep_their_own() -> None:
    assert "locations" not in legacy("LiveServerless(name='a', gpus=[GpuGroup.ADA_24])")
    assert legacy("LiveServerless(name='a', locations='US-KS-2')")["locations"] == "US-KS-2"
    assert legacy("LiveServerless(name='a', locations='US-KS-2')", {"RUNPOD_DEFAULT_LOCATIONS": "EU-CZ-1"})["locations"] == "EU-CZ-1"
    assert legacy("LiveServerless(name='a', datacenter=DataCenter.US_KS_2)")["locations"] == "US-KS-2"


def test_deployable_class_needs_an_image_source() -> None:
    with pytest.raises(BuildError) as info:
        legacy("ServerlessEndpoint(name='p')")
    assert info.value.message == "ServerlessEndpoint needs imageName, template or templateId"
    assert "imageName='org/image:tag'" in (info.value.hint or "")
    res = legacy("ServerlessEndpoint(name='p', templateId='tpl-1')")
    assert res["templateId"] == "tpl-1"
    assert "imageName" not in res and "template" not in res
    res = legacy("ServerlessEndpoint(name='p', template=PodTemplate(dockerArgs='x'))")
    assert "imageName" not in res and res["template"]["dockerArgs"] == "x"
    res = legacy("ServerlessEndpoint(name='p', templateId='tpl-1', template=PodTemplate(dockerArgs='x'))")
    assert res["templateId"] == "tpl-1" and res["template"]["dockerArgs"] == "x"


def test_legacy_python_version_is_recorded() -> None:
    res = legacy("LiveServerless(name='a', python_version='3.11')")
    assert res["python_version"] == "3.11" and res["target_python_version"] == "3.11"
    assert res["imageName"] == "runpod/flash:py3.11-latest"


# -- python version -------------------------------------------------------------------------------


def two_classes(a: str, b: str) -> dict[str, str]:
    return {
        "w.py": LEGACY_IMPORTS
        + f"x = LiveServerless(name='x', python_version='{a}')\ny = LiveServerless(name='y', python_version='{b}')\n"
        + "@remote(x)\ndef f(v): return v\n@remote(y)\ndef g(v): return v\n"
    }


def test_declared_python_versions() -> None:
    assert build(two_classes("3.11", "3.11")).manifest.python_version == "3.11"
    with pytest.raises(BuildError) as info:
        build(two_classes("3.11", "3.10"))
    err = info.value
    assert err.message == (
        "resources declare different Python versions: 'x' wants 3.11 (w.py:5) and 'y' wants 3.10 (w.py:7); "
        "one artifact serves every resource"
    )
    assert (err.path, err.line) == ("w.py", 7)
    assert "--python-version" in (err.hint or "")
    result = build(two_classes("3.11", "3.10"), python="3.10")
    assert result.manifest.python_version == "3.10"
    assert [w.message for w in result.warnings if "overrides" in w.message] == [
        "--python-version 3.10 overrides the python_version of: x (3.11)"
    ]


@pytest.mark.parametrize("python", ["3.9", "3.13", "3"])
def test_unsupported_python_version(python: str) -> None:
    with pytest.raises(UsageError) as info:
        build({"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n"}, python=python)
    assert info.value.message == f"Python {python} is not supported (supported: 3.10, 3.11, 3.12)"
    assert info.value.hint == "supported versions: 3.10, 3.11, 3.12"


def test_version_warnings() -> None:
    gpu = {"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n"}
    cpu = {"w.py": IMPORTS + "@Endpoint(name='w', cpu='cpu3c-1-2')\ndef f(x): return x\n"}
    assert [w.message for w in build(gpu, python="3.11").warnings] == [
        "GPU workers ship torch for Python 3.12; with Python 3.11 they reinstall it at cold start "
        "(about +7 GB, slower starts). Use --python-version 3.12 if you can"
    ]
    assert [w.message for w in build(cpu, python="3.10").warnings] == [
        "Python 3.10 reached end of life on 2026-10-31; migrate to Python 3.11 or newer"
    ]
    assert build(cpu, python="3.11").warnings == []


def test_syntax_of_a_newer_python_is_refused_on_older_workers() -> None:
    files = {"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x):\n    match x:\n        case _:\n            return x\n"}
    assert build(files, python="3.10").manifest.python_version == "3.10"
    files["z.py"] = "try:\n    pass\nexcept* ValueError:\n    pass\n"
    with pytest.raises(BuildError) as info:
        build(files, python="3.10")
    err = info.value
    assert (err.path, err.line) == ("z.py", 3) and err.col is not None
    assert err.message.startswith("this file needs Python 3.11 but the workers run Python 3.10")
    assert err.hint is not None and "--python-version 3.11" in err.hint
    assert build(files, python="3.11").manifest.python_version == "3.11"


# -- manifest assembly --------------------------------------------------------------------------


def test_resource_entry_fields() -> None:
    files = {
        "pkg/__init__.py": "",
        "pkg/work.py": IMPORTS + "@Endpoint(name='b')\nasync def later(x): return x\n@Endpoint(name='a')\ndef first(x): return later(x)\n",
    }
    manifest = build(files).manifest.model_dump(exclude_none=True)
    a, b = manifest["resources"]["a"], manifest["resources"]["b"]
    assert list(manifest["resources"]) == ["a", "b"]
    assert manifest["function_registry"] == {"first": "a", "later": "b"}
    assert "routes" not in manifest
    assert (a["file_path"], a["local_path_prefix"], a["module_path"]) == ("pkg/work.py", "/pkg/work", "pkg.work")
    assert a["makes_remote_calls"] is True and b["makes_remote_calls"] is False
    assert a["functions"] == [{"name": "first", "module": "pkg.work", "is_async": True, "is_class": False}]
    assert (a["handler_file"], a["target_python_version"]) == ("handler_a.py", "3.12")


def test_routes_and_async_flags_of_load_balanced_functions() -> None:
    source = IMPORTS + "api = Endpoint(name='api')\n@api.post('/b')\nasync def b(x): return x\n@api.get('/a')\ndef a(): return 1\n"
    manifest = build({"api.py": source}).manifest.model_dump(exclude_none=True)
    assert manifest["routes"] == {"api": {"GET /a": "a", "POST /b": "b"}}
    functions = manifest["resources"]["api"]["functions"]
    assert functions == [
        {"name": "a", "module": "api", "is_async": False, "is_class": False, "http_method": "GET", "http_path": "/a"},
        {"name": "b", "module": "api", "is_async": True, "is_class": False, "http_method": "POST", "http_path": "/b"},
    ]


def test_duplicate_route_names_both_functions() -> None:
    source = IMPORTS + "api = Endpoint(name='api')\n@api.get('/x')\ndef one(): return 1\n@api.get('/x')\ndef two(): return 2\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    err = info.value
    assert err.message == "route GET /x of endpoint 'api' is taken by both 'one' (a.py:4) and 'two'"
    assert (err.path, err.line, err.col) == ("a.py", 5, 2)  # the decorator expression, after "@"


def test_endpoint_mixing_routes_and_queue_functions() -> None:
    source = IMPORTS + "api = Endpoint(name='api')\n@api.get('/x')\ndef one(): return 1\n@Endpoint(name='api')\ndef two(x): return x\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    assert info.value.message == "endpoint 'api' mixes load-balanced routes and queue-based functions"
    assert info.value.path == "a.py" and info.value.line is not None


def test_endpoint_in_two_files() -> None:
    with pytest.raises(BuildError) as info:
        build({"a.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n", "b.py": IMPORTS + "\n@Endpoint(name='w')\ndef g(x): return x\n"})
    err = info.value
    assert err.message == "endpoint 'w' is defined in more than one file: a.py, b.py"
    assert (err.path, err.line, err.col) == ("b.py", 3, 2)


def test_function_name_in_two_endpoints() -> None:
    with pytest.raises(BuildError) as info:
        build({"a.py": IMPORTS + "@Endpoint(name='x')\ndef f(v): return v\n", "b.py": IMPORTS + "\n\n@Endpoint(name='y')\ndef f(v): return v\n"})
    err = info.value
    assert err.message == "two endpoints are named 'f': in a.py:3 (endpoint 'x') and here (endpoint 'y')"
    assert (err.path, err.line) == ("b.py", 5)


def test_client_endpoint_and_decorated_endpoint_with_one_name() -> None:
    source = IMPORTS + "c = Endpoint(name='w', image='me/x:1')\n@Endpoint(name='w')\ndef f(x): return x\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    assert info.value.message == "endpoint 'w' is both a client Endpoint(image=...) and a decorated endpoint"
    assert (info.value.path, info.value.line) == ("a.py", 2)


def test_client_endpoint_entry() -> None:
    golden = _golden("volumes_and_flags")["resources"]["vllm"]
    source = IMPORTS + "vllm = Endpoint(name='vllm', image='vllm/vllm-openai:latest', gpu=GpuGroup.ADA_24,\n dependencies=['x'])\n"
    result = build({"app.py": source})
    res = result.manifest.model_dump(exclude_none=True)["resources"]["vllm"]
    assert res == {**golden, "file_path": "app.py", "local_path_prefix": "/app", "module_path": "app"}
    assert result.groups == {"vllm": [{"requirement": "x", "origin": "app.py:2"}]}
    cpu = build({"app.py": IMPORTS + "c = Endpoint(name='c', image='me/x:1', cpu='cpu3c-1-2')\n"}).manifest
    assert cpu.model_dump()["resources"]["c"]["resource_type"] == "CpuLiveServerless"


# -- several declarations of one endpoint -------------------------------------------------------


def test_same_settings_declared_twice_merge_silently() -> None:
    source = IMPORTS + (
        "v = NetworkVolume(name='m', size=20)\n"
        "@Endpoint(name='w', volume=NetworkVolume(name='m', size=20), dependencies=['a'])\ndef f(x): return x\n"
        "@Endpoint(name='w', volume=v, dependencies=['a', 'b'])\ndef g(x): return x\n"
    )
    result = build({"w.py": source})
    assert result.warnings == []
    assert result.groups["w"] == [{"requirement": "a", "origin": "w.py:3"}, {"requirement": "b", "origin": "w.py:5"}]


@pytest.mark.parametrize(
    "first, second",
    [
        ("volume=NetworkVolume(name='m', size=20)", "volume=NetworkVolume(name='m', size=30)"),
        ("env={'A': 'x'}", "env={'A': 'y'}"),
        ("volume=[NetworkVolume(name='m')]", "volume=[NetworkVolume(name='n')]"),
    ],
)
def test_different_nested_settings_warn(first: str, second: str) -> None:
    source = IMPORTS + (
        f"@Endpoint(name='w', dependencies=['a'], {first})\ndef f(x): return x\n"
        f"@Endpoint(name='w', dependencies=['b'], {second})\ndef g(x): return x\n"
    )
    result = build({"w.py": source})
    [warning] = result.warnings
    key = first.split("=")[0]
    assert f"different settings ({key})" in warning.message
    assert (warning.path, warning.line) == ("w.py", 2)


def test_merge_warning_names_every_ignored_declaration() -> None:
    source = IMPORTS + (
        "@Endpoint(name='w', workers=1)\ndef a(x): return x\n"
        "@Endpoint(name='w', workers=2, dependencies=['z'])\ndef b(x): return x\n"
        "@Endpoint(name='w', workers=3, idle_timeout=5)\ndef c(x): return x\n"
    )
    result = build({"w.py": source})
    [warning] = result.warnings
    assert warning.message == (
        "endpoint 'w' is declared 3 times with different settings (idle_timeout, workers); the declaration on a (w.py:2) "
        "applies, as in runpod-flash, which takes the function whose name sorts first; the settings on b (w.py:4), "
        "c (w.py:6) are ignored (give them the same settings, or different names)"
    )
    res = result.manifest.model_dump()["resources"]["w"]
    assert (res["workersMax"], res["idleTimeout"]) == (1, 60)
    assert result.groups["w"] == [{"requirement": "z", "origin": "w.py:4"}]


def test_dependencies_alone_do_not_make_declarations_differ() -> None:
    source = IMPORTS + (
        "@Endpoint(name='w', dependencies=['a'], workers=2)\ndef a(x): return x\n"
        "@Endpoint(name='w', workers=2, dependencies=['b'])\ndef b(x): return x\n"
    )
    assert build({"w.py": source}).warnings == []


# -- resource config module ---------------------------------------------------------------------


def _load_config(text: str, monkeypatch: pytest.MonkeyPatch, current: str | None) -> dict[str, Any]:
    if current is None:
        monkeypatch.delenv("FLASH_RESOURCE_NAME", raising=False)
    else:
        monkeypatch.setenv("FLASH_RESOURCE_NAME", current)
    namespace: dict[str, Any] = {}
    exec(compile(text, RESOURCE_CONFIG_PATH, "exec"), namespace)
    return namespace


def test_resource_config_tables() -> None:
    text = render_resource_config({"b": {}, "a": {}, "empty": {}}, {"g": "b", "f": "a", "h": "a", "stray": "gone"}, "2024-01-01T00:00:00Z")
    namespace: dict[str, Any] = {}
    exec(compile(text, RESOURCE_CONFIG_PATH, "exec"), namespace)
    assert namespace["RESOURCE_LOCAL_FUNCTIONS"] == {"a": {"f", "h"}, "b": {"g"}, "empty": set()}
    assert namespace["ALL_KNOWN_FUNCTIONS"] == {"f", "g", "h", "stray"}
    assert "(generated_at: '2024-01-01T00:00:00Z')" in text
    assert "    'a': {'f', 'h'},\n    'b': {'g'},\n    'empty': set(),\n" in text
    assert "ALL_KNOWN_FUNCTIONS: set[str] = {'f', 'g', 'h', 'stray'}\n" in text
    assert text == render_resource_config({"empty": {}, "a": {}, "b": {}}, {"stray": "gone", "h": "a", "g": "b", "f": "a"}, "2024-01-01T00:00:00Z")
    assert RESOURCE_CONFIG_PATH == "runpod_flash/runtime/_flash_resource_config.py"


def test_resource_config_without_functions() -> None:
    text = render_resource_config({"w": {}}, {}, "t")
    namespace: dict[str, Any] = {}
    exec(compile(text, RESOURCE_CONFIG_PATH, "exec"), namespace)
    assert namespace["ALL_KNOWN_FUNCTIONS"] == set() and namespace["RESOURCE_LOCAL_FUNCTIONS"] == {"w": set()}


@pytest.mark.parametrize(
    "current, func, local",
    [
        (None, "g", True),
        ("", "g", True),
        ("a", "f", True),
        ("a", "g", False),
        ("a", "unknown", True),
        ("b-fb", "g", True),
        ("b-fb", "f", False),
        ("c", "h", True),
        ("c", "f", False),
        ("nobody", "f", False),
    ],
)
def test_resource_config_is_local_function(monkeypatch: pytest.MonkeyPatch, current: str | None, func: str, local: bool) -> None:
    text = render_resource_config({"a": {}, "b": {}, "c-fb": {}}, {"f": "a", "g": "b", "h": "c-fb"}, "t")
    namespace = _load_config(text, monkeypatch, current)
    assert namespace["is_local_function"](func) is local


# -- the recorded apps, manifest phase only --------------------------------------------------------


@pytest.mark.parametrize(
    "case",
    ["cpu_and_classes", "legacy_remote", "load_balanced", "queue_basic", "volumes_and_flags", "reassigned_constants",
     "nested_packages", "runnable_workers"],
)
def test_recorded_apps_give_the_references_resources(case: str) -> None:
    """Field for field (nulls aside), as runpod-flash 1.21.0 wrote them for the same sources."""
    app = Path(__file__).parent / "apps" / case
    scans = {p.relative_to(app).as_posix(): scan_source(p.read_bytes(), p.relative_to(app).as_posix()) for p in sorted(app.rglob("*.py"))}
    ours = build_manifest(scans, BuildOptions(project_name=case), {"FLASH_FIXTURE_REGION": "eu-west"}).manifest.model_dump()
    golden = _golden(case)

    def present(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if v is not None}

    assert sorted(ours["resources"]) == sorted(golden["resources"])
    for name, entry in golden["resources"].items():
        assert present(ours["resources"][name]) == present(entry), name
    assert ours["function_registry"] == golden["function_registry"]
    assert ours.get("routes") == golden.get("routes")


# -- hints and locations of the remaining errors ---------------------------------------------------


def test_hints_say_what_to_do() -> None:
    assert failure("gpu=GpuGroup.ADA_24, cpu='cpu3c-1-2'").hint == "choose gpu=... for a GPU worker or cpu=... for a CPU worker"
    assert failure("env={'W': 4}").hint == "quote numbers, e.g. {'WORKERS': '4'}"
    assert failure("dependencies='numpy'").hint == "e.g. dependencies=['numpy>=2', 'pillow']"
    assert (failure("scaler_type='REQUEST_COUNTS'").hint or "").startswith("did you mean REQUEST_COUNT")
    assert (failure("min_cuda_version='12.77'").hint or "").startswith("did you mean 12.")
    with pytest.raises(BuildError) as info:
        build({"a.py": "print('hi')\n"})
    assert info.value.message == "no endpoints found"
    assert "@Endpoint(name=" in (info.value.hint or "") and "test_*.py" in (info.value.hint or "")


def test_deployable_class_with_an_empty_image_is_located_at_the_image() -> None:
    config = "ServerlessEndpoint(name='p', imageName='')"
    with pytest.raises(BuildError) as info:
        legacy(config)
    assert info.value.hint == "set imageName='org/image:tag'; the Live* classes and @Endpoint use the Flash worker image by default"
    assert (info.value.line, info.value.col) == (2, len("cfg = ") + 1)  # the class call


@pytest.mark.parametrize(
    "gpu_ids, expected",
    [
        # the reference's normalisation: sorted without case, negations last
        ("ADAM_1,ADA_24", "ADA_24,ADAM_1"),
        ("-NVIDIA A40, NVIDIA L4", "NVIDIA L4,-NVIDIA A40"),
        ("b,A,-d,-C", "A,b,-C,-d"),
        ("XA_1,B_1", "B_1,XA_1"),
    ],
)
def test_legacy_gpu_ids_order(gpu_ids: str, expected: str) -> None:
    assert legacy(f"ServerlessEndpoint(name='p', imageName='me/img:1', gpuIds='{gpu_ids}')")["gpuIds"] == expected


def test_duplicate_errors_say_what_to_do() -> None:
    source = IMPORTS + "api = Endpoint(name='api')\n@api.get('/x')\ndef one(): return 1\n@api.get('/x')\ndef two(): return 2\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    assert info.value.hint == "give each route its own method and path"
    with pytest.raises(BuildError) as info:
        build({"a.py": IMPORTS + "@Endpoint(name='x')\ndef f(v): return v\n", "b.py": IMPORTS + "@Endpoint(name='y')\nasync  def f(v): return v\n"})
    assert (info.value.path, info.value.line, info.value.col) == ("b.py", 3, 1)
    assert info.value.hint == "rename one of the functions; the worker looks functions up by name"
    source = IMPORTS + "api = Endpoint(name='api')\n@api.get('/x')\ndef one(): return 1\n@Endpoint(name='api')\ndef two(x): return x\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    assert info.value.hint == "give the routes' Endpoint and the queue-based Endpoint different names"
    source = IMPORTS + "c = Endpoint(name='w', image='me/x:1')\n@Endpoint(name='w')\ndef f(x): return x\n"
    with pytest.raises(BuildError) as info:
        build({"a.py": source})
    assert info.value.hint == "each endpoint name must be unique across the app"


def test_endpoint_in_two_files_is_located_at_the_last_declaration() -> None:
    files = {
        "a.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n@Endpoint(name='w')\ndef g(x): return x\n",
        "a/b.py": IMPORTS + "\n@Endpoint(name='w')\ndef h(x): return x\n",
        "a_c.py": IMPORTS + "\n\n@  Endpoint(name='w')\ndef k(x): return x\n",
    }
    with pytest.raises(BuildError) as info:
        build(files)
    err = info.value
    # files in path-component order, as sorted(pathlib.Path) lists them: "a" < "a.py" < "a_c.py"
    assert err.message == "endpoint 'w' is defined in more than one file: a/b.py, a.py, a_c.py"
    assert (err.path, err.line, err.col) == ("a_c.py", 4, 4)
    assert err.hint == "give each endpoint a unique name, or keep an endpoint's functions in one file"


def test_client_endpoint_path_prefix_and_gpu_warning() -> None:
    source = IMPORTS + "g = Endpoint(name='g', image='me/x:1')\n@Endpoint(name='c', cpu='cpu3c-1-2')\ndef f(x): return x\n"
    result = build({"clients.py": source}, python="3.11")
    assert result.manifest.resources["g"].model_dump()["local_path_prefix"] == "/clients"
    assert [w.message for w in result.warnings if "torch" in w.message] == [
        "GPU workers ship torch for Python 3.12; with Python 3.11 they reinstall it at cold start "
        "(about +7 GB, slower starts). Use --python-version 3.12 if you can"
    ]
    cpu_only = IMPORTS + "g = Endpoint(name='g', image='me/x:1', cpu='cpu3c-1-2')\n@Endpoint(name='c', cpu='cpu3c-1-2')\ndef f(x): return x\n"
    assert build({"clients.py": cpu_only}, python="3.11").warnings == []


def test_environment_reaches_the_evaluated_arguments() -> None:
    source = "import os\n" + IMPORTS + "@Endpoint(name='w', env={'K': os.environ.get('KEY', 'none')})\ndef f(x): return x\n"
    result = build({"w.py": source}, {"KEY": "v"})
    assert result.manifest.resources["w"].model_dump()["env"] == {"K": "v"}


def test_overridden_python_versions_are_all_named() -> None:
    files = {
        "w.py": LEGACY_IMPORTS
        + "x = LiveServerless(name='x', python_version='3.11')\ny = LiveServerless(name='y', python_version='3.10')\n"
        + "z = LiveServerless(name='z', python_version='3.12')\n"
        + "@remote(x)\ndef f(v): return v\n@remote(y)\ndef g(v): return v\n@remote(z)\ndef h(v): return v\n"
    }
    result = build(files, python="3.12")
    assert [w.message for w in result.warnings] == ["--python-version 3.12 overrides the python_version of: x (3.11), y (3.10)"]
    with pytest.raises(BuildError) as info:
        build(files)
    assert info.value.hint == "set the same python_version on every resource, or choose one with --python-version"


def test_newer_syntax_is_reported_for_the_first_file_in_path_order() -> None:
    newer = "try:\n    pass\nexcept* ValueError:\n    pass\n"
    files = {"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n", "b.py": newer, "b/a.py": newer}
    with pytest.raises(BuildError) as info:
        build(files, python="3.10")
    assert info.value.path == "b/a.py"


def test_invalid_dependencies_of_another_declaration_are_not_installed() -> None:
    source = IMPORTS + (
        "@Endpoint(name='w', dependencies=['a'])\ndef f(x): return x\n"
        "@Endpoint(name='w', dependencies='bc')\ndef g(x): return x\n"
    )
    assert build({"w.py": source}).groups["w"] == [{"requirement": "a", "origin": "w.py:2"}]


def test_more_hints_say_what_to_do() -> None:
    assert endpoint("max_concurrency=2")["max_concurrency"] == 2
    assert (failure("cpu='cpu3c-1-3'").hint or "").startswith("did you mean cpu3c-1-2")
    assert (failure("gpu=['ADA_42']").hint or "").startswith("did you mean ADA_24")
    assert (failure("gpu=['NVIDIA GeForce RTX 4091']").hint or "").startswith("did you mean NVIDIA GeForce RTX 4090")
    # the resource classes' spelling dataCenterId is accepted but not suggested
    hint = failure("volume=NetworkVolume(name='m', dataCenterID='EU-RO-1')").hint or ""
    assert "datacenter" in hint and "dataCenterId" not in hint
    assert failure("gpu=3").hint == "e.g. gpu=GpuGroup.ADA_24 or gpu=[GpuType.NVIDIA_L4]"
    assert failure("workers='3'").hint == "e.g. workers=3 or workers=(0, 3)"
    assert failure("volume='m'").hint == "e.g. volume=NetworkVolume(name='models', size=100, datacenter=DataCenter.EU_RO_1)"
    assert failure("volume=[NetworkVolume(name='a'), NetworkVolume(name='b')]").hint == "attach at most one network volume per datacenter"
    assert (failure("datacenter='EU_RO_2'").hint or "").startswith("did you mean EU-RO-1")


@pytest.mark.parametrize("environ", [{}, {"FLASH_IMAGE_TAG": "dev"}])
def test_image_tag_variable_is_recorded_as_used(environ: dict[str, str]) -> None:
    result = build({"w.py": IMPORTS + "@Endpoint(name='w')\ndef f(x): return x\n"}, environ)
    assert "FLASH_IMAGE_TAG" in result.env_used and result.env_used["FLASH_IMAGE_TAG"] == environ.get("FLASH_IMAGE_TAG")


# -- settings unpacked with ** ----------------------------------------------------------


@pytest.mark.parametrize(
    ("unpacked", "written"),
    [
        ("**{'gpu': GpuGroup.ADA_24, 'workers': (1, 4)}", "gpu=GpuGroup.ADA_24, workers=(1, 4)"),
        ("cpu='cpu3c-2-4', **dict(workers=2, idle_timeout=300), **{'env': {'A': 'b'}}", "cpu='cpu3c-2-4', workers=2, idle_timeout=300, env={'A': 'b'}"),
        ("**{**{'gpu': GpuGroup.ANY}, 'datacenter': DataCenter.EU_RO_1}", "gpu=GpuGroup.ANY, datacenter=DataCenter.EU_RO_1"),
    ],
)
def test_unpacked_settings_are_the_settings_written_out(unpacked: str, written: str) -> None:
    assert endpoint(unpacked) == endpoint(written)


def test_settings_unpacked_from_another_module_are_the_settings_written_out() -> None:
    shared = "from runpod_flash import GpuGroup\nLIMITS = dict(workers=(0, 5), idle_timeout=90)\nGPU = {'gpu': [GpuGroup.ADA_24]}\n"
    unpacked = build({"shared.py": shared, "w.py": IMPORTS + "from shared import LIMITS, GPU\n@Endpoint(name='w', **GPU, **LIMITS)\ndef f(x): return x\n"})
    written = build({"w.py": IMPORTS + "@Endpoint(name='w', gpu=[GpuGroup.ADA_24], workers=(0, 5), idle_timeout=90)\ndef f(x): return x\n"})
    assert unpacked.manifest.model_dump()["resources"] == written.manifest.model_dump()["resources"]


@pytest.mark.parametrize(
    ("args", "fragment", "hint"),
    [
        ("**{'wokers': 2}", "Endpoint has no argument 'wokers' (unpacked from `{'wokers': 2}`)", "workers"),
        ("workers=2, **{'workers': 3}", "Endpoint got the argument 'workers' twice (again from `{'workers': 3}`)", "give workers= once"),
        ("**{'name': 'v'}", "Endpoint got the argument 'name' twice", "give name= once"),
        ("**[('workers', 2)]", "only a dict with string keys can be unpacked into Endpoint(...) with **", "SETTINGS"),
    ],
)
def test_unpacked_settings_errors_point_at_the_dict(args: str, fragment: str, hint: str) -> None:
    err = failure(args)
    assert fragment in err.message, err.render()
    assert hint in (err.hint or ""), err.render()
    spread = args.rindex("**") + 2
    assert err.col == len("@Endpoint(name='w', ") + spread + 1, err.render()


def test_positional_unpacking_into_endpoint_is_refused() -> None:
    err = failure("*['x']")
    assert "cannot be unpacked with * here" in err.message and "**settings" in (err.hint or "")


def test_a_client_endpoint_with_unpacked_settings_is_the_one_written_out() -> None:
    unpacked = build({"c.py": IMPORTS + "C = {'name': 'c', 'image': 'me/worker:3'}\nc = Endpoint(**C, workers=2)\n"})
    written = build({"c.py": IMPORTS + "c = Endpoint(name='c', image='me/worker:3', workers=2)\n"})
    assert unpacked.manifest.model_dump()["resources"] == written.manifest.model_dump()["resources"]
    assert "c" in written.manifest.model_dump()["resources"]


def test_an_endpoint_object_with_settings_unreadable_at_build_time_is_left_as_a_client() -> None:
    """Only a decorator or route makes the build read an Endpoint's settings; a client it cannot read stays a client."""
    app = IMPORTS + "def load(): return {}\nremote_api = Endpoint(**load())\n@Endpoint(name='w')\ndef f(x): return x\n"
    assert set(build({"w.py": app}).manifest.model_dump()["resources"]) == {"w"}
