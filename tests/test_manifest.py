"""The manifest phase: evaluation of endpoint arguments, grouping, validation."""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flash_tasks.errors import BuildError, UsageError
from flash_tasks.manifest import BuildOptions, build_manifest
from flash_tasks.scan import scan_source

HEADER = "from runpod_flash import Endpoint, GpuGroup, GpuType, CpuInstanceType, DataCenter, NetworkVolume, PodTemplate\nimport os\n"


def manifest(files: dict[str, str], environ: dict[str, str] | None = None, python: str | None = None):
    scans = {rel: scan_source(textwrap.dedent(text).encode(), rel) for rel, text in files.items()}
    return build_manifest(scans, BuildOptions(project_name="app", python_version=python), environ or {})


def resources(files: dict[str, str], **kw) -> dict:
    return manifest(files, **kw).manifest.model_dump()["resources"]


def test_gpu_defaults_match_the_sdk() -> None:
    res = resources({"w.py": HEADER + "@Endpoint(name='w')\ndef f(x): return x\n"})["w"]
    assert res["resource_type"] == "LiveServerless"
    assert res["imageName"] == "runpod/flash:py3.12-latest"
    assert res["gpuIds"].split(",") == sorted(res["gpuIds"].split(","), key=str.lower)
    assert "any" not in res["gpuIds"] and "AMPERE_48" in res["gpuIds"]
    assert (res["workersMin"], res["workersMax"], res["idleTimeout"]) == (0, 1, 60)
    assert (res["scalerType"], res["scalerValue"], res["minCudaVersion"]) == ("QUEUE_DELAY", 4, "12.8")
    assert res["locations"].split(",")[0] == "US-CA-2" and len(res["locations"].split(",")) == 11
    assert res["template"]["containerDiskInGb"] == 64
    assert res["handler_file"] == "handler_w.py"
    assert res["functions"] == [{"name": "f", "module": "w", "is_async": True, "is_class": False}]
    assert res["config_variable"] is None


def test_gpu_types_add_pool_negations() -> None:
    res = resources({"w.py": HEADER + "@Endpoint(name='w', gpu=[GpuType.NVIDIA_L4, GpuGroup.ADA_24])\ndef f(): ...\n"})["w"]
    assert res["gpuIds"] == "ADA_24,AMPERE_24,-NVIDIA GeForce RTX 3090,-NVIDIA RTX A5000"


def test_cpu_endpoint_sizes_disk_and_drops_gpu_fields() -> None:
    res = resources({"w.py": HEADER + "@Endpoint(name='c', cpu=['cpu5c-4-8', CpuInstanceType.CPU3C_1_2])\ndef f(): ...\n"})["c"]
    assert res["resource_type"] == "CpuLiveServerless"
    assert res["instanceIds"] == ["cpu5c-4-8", "cpu3c-1-2"]
    assert res["template"]["containerDiskInGb"] == 10
    assert "gpuIds" not in res and "minCudaVersion" not in res and "locations" not in res


def test_constants_from_other_modules_fstrings_and_env() -> None:
    files = {
        "config/settings.py": "from runpod_flash import GpuGroup\nGPU = GpuGroup.AMPERE_80\nMODEL = 'llama'\nWORKERS = (1, 2 + 1)\n",
        "config/__init__.py": "",
        "w.py": HEADER
        + "from config.settings import GPU, MODEL as M, WORKERS\nimport config.settings as cs\n"
        + "TAG = f'{M}-v{2}'\n"
        + "@Endpoint(name=f'{M}-worker', gpu=GPU, workers=WORKERS, env={'TAG': TAG, 'KEY': os.environ.get('KEY', 'none'), 'M2': cs.MODEL})\n"
        + "def f(): ...\n",
    }
    result = manifest(files, environ={"KEY": "secret-value"})
    res = result.manifest.model_dump()["resources"]["llama-worker"]
    assert res["gpuIds"] == "AMPERE_80"
    assert (res["workersMin"], res["workersMax"]) == (1, 3)
    assert res["env"] == {"TAG": "llama-v2", "KEY": "secret-value", "M2": "llama"}
    assert result.env_used["KEY"] == "secret-value"


def test_load_balanced_routes_and_remote_calls() -> None:
    files = {
        "api.py": HEADER
        + textwrap.dedent(
            """
            api = Endpoint(name="api", cpu="cpu3c-2-4", workers=(1, 5))

            @Endpoint(name="q")
            def crunch(x): return x

            @api.post("/go")
            async def go(body): return crunch(body)

            @api.get("/ping2")
            def ping2(): return 1
            """
        )
    }
    m = manifest(files).manifest.model_dump()
    api = m["resources"]["api"]
    assert api["resource_type"] == "CpuLiveLoadBalancer"
    assert api["scalerType"] == "REQUEST_COUNT"
    assert api["makes_remote_calls"] is True
    assert "handler_file" not in api
    assert [(f["name"], f["is_async"], f["http_method"]) for f in api["functions"]] == [("go", True, "POST"), ("ping2", False, "GET")]
    assert m["routes"] == {"api": {"POST /go": "go", "GET /ping2": "ping2"}}
    assert m["resources"]["q"]["makes_remote_calls"] is False
    assert m["function_registry"] == {"go": "api", "ping2": "api", "crunch": "q"}


def test_imported_endpoint_function_belongs_to_its_own_file() -> None:
    files = {
        "services/embed.py": HEADER + "@Endpoint(name='embed')\nasync def embed(t): return t\n",
        "api.py": HEADER + "from services.embed import embed\napi = Endpoint(name='api')\n@api.post('/e')\nasync def e(b): return await embed(b)\n",
    }
    m = manifest(files).manifest.model_dump()
    assert m["resources"]["embed"]["file_path"] == "services/embed.py"
    assert m["resources"]["api"]["makes_remote_calls"] is True


def test_route_owner_imported_from_another_module() -> None:
    files = {
        "defs.py": HEADER + "api = Endpoint(name='api', cpu='cpu3c-1-2')\n",
        "routes.py": "from defs import api\n@api.get('/x')\ndef x(): return 1\n",
    }
    res = resources(files)["api"]
    assert res["file_path"] == "routes.py" and res["config_variable"] == "api"


def test_client_mode_endpoint_is_listed_without_functions() -> None:
    res = resources({"c.py": HEADER + "vllm = Endpoint(name='vllm', image='vllm/vllm:1', gpu=GpuGroup.ADA_24)\n@Endpoint(name='w')\ndef f(): ...\n"})
    assert res["vllm"]["client_mode"] is True
    assert res["vllm"]["functions"] == [] and res["vllm"]["imageName"] == "vllm/vllm:1"
    assert list(res) == ["w", "vllm"]


def test_volumes_and_template() -> None:
    res = resources(
        {
            "v.py": HEADER
            + "@Endpoint(name='v', volume=[NetworkVolume(name='a', size=50, datacenter=DataCenter.US_KS_2), NetworkVolume(name='b')],"
            + " template=PodTemplate(containerDiskInGb=100, dockerArgs='--x'))\ndef f(): ...\n"
        }
    )["v"]
    assert res["networkVolumes"] == [
        {"name": "a", "size": 50, "dataCenterId": "US-KS-2"},
        {"name": "b", "size": 100, "dataCenterId": "EU-RO-1"},
    ]
    assert res["template"] == {"containerDiskInGb": 100, "dockerArgs": "--x", "startScript": "", "advancedStart": False, "containerRegistryAuthId": ""}


@pytest.mark.parametrize(
    "call, message, col_hint",
    [
        ("Endpoint(name='w', gpu=GpuGroup.ADA_42)", "no member 'ADA_42'", "ADA_24"),
        ("Endpoint(name='w', cpu='cpu3c-1-3')", "unknown CPU instance type", "cpu3c-1-2"),
        ("Endpoint(name='w', datacenter='EU-RO-2')", "unknown datacenter", "EU-RO-1"),
        ("Endpoint(name='w', gpu=GpuGroup.ADA_24, cpu='cpu3c-1-2')", "cannot both be set", None),
        ("Endpoint(name='w', workers=(3, 1))", "cannot exceed", None),
        ("Endpoint(name='w', idle_timeout=0)", "idle_timeout", None),
        ("Endpoint(name='w', cpu='cpu3c-1-2', datacenter=DataCenter.US_KS_2)", "CPU endpoints are not available", "EU-RO-1"),
        ("Endpoint(name='w', gpu=make_gpu())", "not defined", None),
        ("Endpoint(name='w', gpus=GpuGroup.ADA_24)", "no argument 'gpus'", "gpu"),
        ("Endpoint(name='w', env={'A': 1})", "env must be a dict of strings", None),
    ],
)
def test_bad_arguments_are_located_errors(call: str, message: str, col_hint: str | None) -> None:
    with pytest.raises(BuildError) as info:
        manifest({"w.py": HEADER + f"@{call}\ndef f(): ...\n"})
    err = info.value
    assert message in err.message
    assert err.path == "w.py" and err.line == 3 and err.col is not None
    if col_hint:
        assert col_hint in (err.hint or "")


def test_error_column_points_at_the_argument() -> None:
    with pytest.raises(BuildError) as info:
        manifest({"w.py": HEADER + "@Endpoint(name='w', gpu=GpuGroup.NOPE)\ndef f(): ...\n"})
    assert info.value.col == len("@Endpoint(name='w', gpu=") + 1


def test_reserved_and_duplicate_routes() -> None:
    base = HEADER + "api = Endpoint(name='api')\n"
    with pytest.raises(BuildError, match="reserved"):
        manifest({"a.py": base + "@api.get('/ping')\ndef p(): ...\n"})
    with pytest.raises(BuildError) as info:
        manifest({"a.py": base + "@api.get('/x')\ndef one(): ...\n@api.get('/x')\ndef two(): ...\n"})
    assert "'one'" in info.value.message and "'two'" in info.value.message


def test_same_endpoint_name_in_two_files_names_both() -> None:
    with pytest.raises(BuildError) as info:
        manifest({"a.py": HEADER + "@Endpoint(name='w')\ndef f(): ...\n", "b.py": HEADER + "@Endpoint(name='w')\ndef g(): ...\n"})
    assert "a.py" in info.value.message and "b.py" in info.value.message


def test_same_function_name_in_two_endpoints() -> None:
    with pytest.raises(BuildError, match="two endpoints are named 'f'"):
        manifest({"a.py": HEADER + "@Endpoint(name='x')\ndef f(): ...\n", "b.py": HEADER + "@Endpoint(name='y')\ndef f(): ...\n"})


def test_no_endpoints_gives_guidance() -> None:
    with pytest.raises(BuildError) as info:
        manifest({"a.py": "print('hi')\n"})
    assert "no endpoints found" in info.value.message and "@Endpoint" in (info.value.hint or "")


def test_python_version_rules() -> None:
    files = {"w.py": HEADER + "@Endpoint(name='w')\ndef f(): ...\n"}
    result = manifest(files, python="3.10")
    assert result.manifest.python_version == "3.10"
    res = result.manifest.model_dump()["resources"]["w"]
    assert res["target_python_version"] == "3.10" and res["imageName"] == "runpod/flash:py3.10-latest"
    messages = " ".join(w.message for w in result.warnings)
    assert "end of life" in messages and "+7 GB" in messages
    assert not manifest(files, python="3.12").warnings
    with pytest.raises(UsageError, match="3.10, 3.11, 3.12") as info:
        manifest(files, python="3.9")
    assert info.value.hint is not None and "3.10, 3.11, 3.12" in info.value.hint  # what to do instead


def test_image_overrides_from_environment() -> None:
    result = manifest({"w.py": HEADER + "@Endpoint(name='w')\ndef f(): ...\n"}, environ={"FLASH_IMAGE_TAG": "dev"})
    assert result.manifest.resources["w"].imageName == "runpod/flash:py3.12-dev"
    assert result.env_used["FLASH_IMAGE_TAG"] == "dev"


# -- the evaluator never executes and never crashes ------------------------------------

#: Where expressions that ran would leave a trace; it must stay empty.
SENTINEL = Path(tempfile.mkdtemp(prefix="flash-never-executes-"))
atexit.register(shutil.rmtree, SENTINEL, True)
_ran: list[str] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if _watching and event in ("os.system", "subprocess.Popen", "os.exec", "os.posix_spawn"):
        _ran.append(event)


_watching = False
sys.addaudithook(_audit)

_atoms = st.sampled_from(
    ["1", "'a'", "None", "True", "GpuGroup.ADA_24", "os.environ.get('X', 'y')", "[1, 2]", "{'k': 'v'}",
     f"open({str(SENTINEL / 'opened')!r}, 'w')",
     f"__import__('pathlib').Path({str(SENTINEL / 'imported')!r}).touch()",
     f"__import__('os').system('touch {SENTINEL / 'system'}')",
     f"(lambda: open({str(SENTINEL / 'lambda')!r}, 'w'))()",
     f"exec({f'open({str(SENTINEL / chr(120))!r}, chr(119))'!r})",
     f"eval({f'open({str(SENTINEL / chr(121))!r}, chr(119))'!r})",
     "X", "f'{1}'", "GpuGroup", "PodTemplate()", "2 ** 10000", "'a' * 10**9"]
)
_exprs = st.recursive(
    _atoms,
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "%", "**", " if 1 else ", " and ", " or "]), inner).map(lambda t: f"({t[0]}{t[1]}{t[2]})"),
        st.lists(inner, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        inner.map(lambda x: f"{x}.value"),
        inner.map(lambda x: f"{x}[0]"),
        inner.map(lambda x: f"str({x})"),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(_exprs)
def test_evaluator_never_executes_and_only_raises_build_errors(expr: str) -> None:
    global _watching
    files = {"w.py": HEADER + f"X = 3\n@Endpoint(name='w', env={{'V': str({expr})}})\ndef f(): ...\n"}
    _watching = True
    try:
        manifest(files)
    except BuildError as exc:
        assert exc.path == "w.py" and exc.line is not None
    finally:
        _watching = False
    assert not list(SENTINEL.iterdir()), f"{expr} ran: it left {sorted(p.name for p in SENTINEL.iterdir())}"
    assert not _ran, f"{expr} started a process: {_ran}"


def test_never_executes_sentinels_work() -> None:
    """The traces the test above looks for do appear when such an expression really runs."""
    global _watching
    _watching = True
    try:
        # Really running such code is the point here: it proves the traces show.
        exec(f"__import__('os').system('true')\nopen({str(SENTINEL / 'probe')!r}, 'w').close()")  # noqa: S102
    finally:
        _watching = False
    assert (SENTINEL / "probe").exists() and "os.system" in _ran
    (SENTINEL / "probe").unlink()
    _ran.clear()


# -- the SDK's older form: @remote(resource_config) ------------------------------------------

LEGACY = "from runpod_flash import remote, LiveServerless, CpuLiveServerless, LiveLoadBalancer, ServerlessEndpoint, GpuGroup\n"


def test_remote_with_resource_classes() -> None:
    files = {
        "a.py": LEGACY
        + textwrap.dedent(
            """
            gpu_cfg = LiveServerless(name="g", gpus=[GpuGroup.ADA_24], workersMax=3, python_version="3.11")
            lb_cfg = LiveLoadBalancer(name="lb")
            plain = ServerlessEndpoint(name="plain", imageName="me/img:1", gpus=[GpuGroup.AMPERE_80])

            @remote(gpu_cfg, dependencies=["numpy"])
            def g(x): return x

            @remote(resource_config=lb_cfg, method="POST", path="/p")
            async def lbf(x): return x

            @remote(plain)
            def p(x): return x

            @remote(CpuLiveServerless(name="c"))
            class K:
                def m(self): ...
            """
        )
    }
    result = manifest(files)
    m = result.manifest.model_dump()
    assert m["python_version"] == "3.11"
    g = m["resources"]["g"]
    assert (g["resource_type"], g["config_variable"], g["python_version"], g["gpuIds"], g["workersMax"]) == ("LiveServerless", "gpu_cfg", "3.11", "ADA_24", 3)
    assert "locations" not in g  # resource classes have no default datacenters
    assert result.groups["g"][0]["requirement"] == "numpy"
    lb = m["resources"]["lb"]
    assert lb["is_load_balanced"] and lb["scalerType"] == "REQUEST_COUNT" and m["routes"]["lb"] == {"POST /p": "lbf"}
    plain = m["resources"]["plain"]
    assert (plain["resource_type"], plain["is_live_resource"], plain["imageName"]) == ("ServerlessEndpoint", False, "me/img:1")
    c = m["resources"]["c"]
    assert c["instanceIds"] == ["cpu3g-2-8"] and c["template"]["containerDiskInGb"] == 20
    assert c["functions"][0]["is_async"] is False


def test_conflicting_declared_python_versions_name_both() -> None:
    files = {
        "a.py": LEGACY + "@remote(LiveServerless(name='one', python_version='3.10'))\ndef f(): ...\n",
        "b.py": LEGACY + "@remote(LiveServerless(name='two', python_version='3.11'))\ndef g(): ...\n",
    }
    with pytest.raises(BuildError) as info:
        manifest(files)
    message = info.value.message
    assert "'one'" in message and "3.10" in message and "'two'" in message and "3.11" in message
    result = manifest(files, python="3.12")
    assert result.manifest.python_version == "3.12"
    assert any("overrides" in w.message and "one (3.10)" in w.message for w in result.warnings)


def test_deployable_class_needs_an_image() -> None:
    with pytest.raises(BuildError, match="needs imageName"):
        manifest({"a.py": LEGACY + "@remote(ServerlessEndpoint(name='x'))\ndef f(): ...\n"})


def test_remote_on_lb_class_needs_method_and_path() -> None:
    with pytest.raises(BuildError, match="method= and path="):
        manifest({"a.py": LEGACY + "@remote(LiveLoadBalancer(name='x'))\ndef f(): ...\n"})


def test_syntax_newer_than_the_target_python_is_located() -> None:
    files = {
        "w.py": HEADER + "@Endpoint(name='w')\ndef f(): ...\n",
        "util.py": "def g():\n    try:\n        pass\n    except* ValueError:\n        pass\n",
    }
    with pytest.raises(BuildError) as info:
        manifest(files, python="3.10")
    err = info.value
    assert err.path == "util.py" and "3.11" in err.message and "3.10" in err.message
    assert manifest(files, python="3.11").manifest.python_version == "3.11"


def test_endpoint_in_a_dotted_file_name_is_refused() -> None:
    with pytest.raises(BuildError, match="contains a dot"):
        manifest({"my.worker.py": HEADER + "@Endpoint(name='w')\ndef f(): ...\n"})


def test_columns_count_characters_not_bytes() -> None:
    with pytest.raises(BuildError) as info:
        manifest({"w.py": HEADER + "@Endpoint(name='ééé', gpu=GpuGroup.NOPE)\ndef f(): ...\n"})
    assert info.value.col == len("@Endpoint(name='ééé', gpu=") + 1


# -- one name, two Endpoint objects in one file ----------------------------------------------------


def test_two_endpoint_objects_with_one_name_and_one_config_are_one_endpoint() -> None:
    files = {
        "w.py": HEADER
        + "a = Endpoint(name='shared', cpu='cpu3c-1-2', workers=(0, 2))\n"
        + "b = Endpoint(name='shared', cpu='cpu3c-1-2', workers=(0, 2))\n"
        + "@a.get('/one')\ndef one(): ...\n"
        + "@b.get('/two')\ndef two(): ...\n"
    }
    resource = resources(files)["shared"]
    assert [f["name"] for f in resource["functions"]] == ["one", "two"]
    assert resource["workersMax"] == 2


def test_two_endpoint_objects_with_one_name_and_different_configs_in_one_file_merge_with_a_warning() -> None:
    """As runpod-flash does for one file: one resource, the settings of the function whose name sorts first."""
    files = {
        "w.py": HEADER
        + "a = Endpoint(name='shared', cpu='cpu3c-1-2', workers=(0, 2))\n"
        + "b = Endpoint(name='shared', cpu='cpu3c-1-2', workers=(0, 3))\n"
        + "@a.get('/one')\ndef one(): ...\n"
        + "@b.get('/two')\ndef two(): ...\n"
    }
    result = manifest(files)
    resource = result.manifest.model_dump()["resources"]["shared"]
    assert (resource["workersMin"], resource["workersMax"]) == (0, 2)
    [warning] = [w.message for w in result.warnings]
    assert "'shared' is declared 2 times with different settings (workers)" in warning
    assert "the declaration on one (w.py:5) applies" in warning and "two (w.py:7) are ignored" in warning
