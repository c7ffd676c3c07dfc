"""Tests for flash_tasks.handlers: the generated worker entry points.

Two layers:

* unit tests on ``render_handlers`` / ``write_generated`` (run anywhere);
* worker-boot tests: a hand-written Flash app plus its manifest are rendered
  into an empty folder, which is then booted in the runpod-flash 1.21.0
  environment exactly as a deployed worker does it (FLASH_RESOURCE_NAME set,
  ``handler(job)`` called, also through runpod's own job runner; FastAPI app
  served through a TestClient). The same jobs go through the handlers the
  reference implementation generates for the same manifest, so behaviour is
  compared, not just asserted. These tests skip without that environment.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import shutil
import stat
import subprocess
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from flash_tasks import handlers
from flash_tasks.errors import BuildError
from flash_tasks.handlers import RESOURCE_CONFIG_PATH, render_handlers, write_generated

try:
    from tests.support import reference
except ImportError:  # tests/ itself is on sys.path (pytest's default rootdir-less import)
    from support import reference  # type: ignore[no-redef]


GENERATED_AT = "2026-01-02T03:04:05.000000Z"

# ---------------------------------------------------------------------------
# The sample app: every shape of endpoint the worker has to serve.
# ---------------------------------------------------------------------------

APP_FILES: dict[str, str] = {
    "workers/gpu_worker.py": '''
        import asyncio

        from runpod_flash import Endpoint, GpuGroup


        @Endpoint(name="gpu-worker", gpu=GpuGroup.ADA_24, workers=(0, 3))
        def generate(prompt: str = "hi", n: int = 1) -> dict:
            return {"text": " ".join([prompt] * n), "n": n}


        @Endpoint(name="async-worker", gpu=GpuGroup.ADA_24)
        async def summarize(text: str) -> dict:
            await asyncio.sleep(0)
            return {"words": len(text.split())}
    ''',
    "workers/cpu_worker.py": '''
        import asyncio

        from runpod_flash import CpuInstanceType, Endpoint


        @Endpoint(name="boom", cpu=CpuInstanceType.CPU3C_1_2)
        def explode(reason: str) -> dict:
            raise ValueError(f"exploded: {reason}")


        @Endpoint(name="classy", cpu="cpu3g-2-8", workers=2)
        class Model:
            def __init__(self):
                self.scale = 10

            def predict(self, x: int) -> dict:
                return {"y": x * self.scale}

            async def other(self, word: str) -> dict:
                await asyncio.sleep(0)
                return {"upper": word.upper()}

            def _private(self):
                return "hidden"


        @Endpoint(name="single", cpu=CpuInstanceType.CPU3C_1_2)
        class Single:
            def run(self, a: int, b: int) -> dict:
                return {"sum": a + b}
    ''',
    # A package folder whose name is not a Python identifier.
    "01_batch/jobs.py": '''
        import asyncio

        from runpod_flash import CpuInstanceType, Endpoint

        _in_flight = 0
        _peak = 0


        @Endpoint(name="batch", cpu=CpuInstanceType.CPU3C_1_2, max_concurrency=3)
        async def crunch(values: list, hold: float = 0.0) -> dict:
            global _in_flight, _peak
            _in_flight += 1
            _peak = max(_peak, _in_flight)
            await asyncio.sleep(hold)
            _in_flight -= 1
            result = {"total": sum(values)}
            if hold:  # only timed calls report the process-wide peak
                result["peak"] = _peak
            return result


        @Endpoint(name="batch-sync", cpu="cpu3c-1-2", max_concurrency=2)
        def tally(values: list) -> dict:
            return {"count": len(values)}
    ''',
    "api/routes.py": '''
        from runpod_flash import Endpoint

        api = Endpoint(name="api", cpu="cpu3c-1-2")


        @api.post("/echo")
        async def echo(message: str, times: int = 1) -> dict:
            return {"echo": message * times}


        @api.get("/hello")
        def hello(name: str = "world") -> dict:
            return {"greeting": f"hello {name}"}
    ''',
}


def _resource(
    file_path: str,
    functions: list[dict[str, Any]],
    *,
    resource_type: str = "CpuLiveServerless",
    load_balanced: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """A manifest resource entry shaped like runpod-flash 1.21.0 writes them."""
    module = file_path[: -len(".py")].replace("/", ".")
    entry: dict[str, Any] = {
        "resource_type": resource_type,
        "file_path": file_path,
        "local_path_prefix": "/" + file_path[: -len(".py")],
        "module_path": module,
        "functions": [{"module": module, **f} for f in functions],
        "is_load_balanced": load_balanced,
        "is_live_resource": True,
        "config_variable": None,
        "makes_remote_calls": False,
        "workersMin": 0,
        "workersMax": 1,
        "idleTimeout": 60,
        "scalerType": "REQUEST_COUNT" if load_balanced else "QUEUE_DELAY",
        "scalerValue": 4,
        "template": {"containerDiskInGb": 20, "dockerArgs": "", "startScript": ""},
        "target_python_version": "3.11",
    }
    entry.update(extra)
    return entry


def _fn(name: str, **extra: Any) -> dict[str, Any]:
    # 1.21.0 marks every queue-based function async, whatever its definition.
    return {"name": name, "is_async": True, "is_class": False, **extra}


def sample_manifest() -> dict[str, Any]:
    """The manifest for APP_FILES, mirroring a real flash_manifest.json."""
    resources = {
        "gpu-worker": _resource(
            "workers/gpu_worker.py", [_fn("generate")], resource_type="LiveServerless", gpuIds="ADA_24"
        ),
        "async-worker": _resource(
            "workers/gpu_worker.py", [_fn("summarize")], resource_type="LiveServerless", gpuIds="ADA_24"
        ),
        "boom": _resource("workers/cpu_worker.py", [_fn("explode")]),
        "classy": _resource(
            "workers/cpu_worker.py",
            [_fn("Model", is_class=True, class_methods=["predict", "other"])],
        ),
        "single": _resource(
            "workers/cpu_worker.py", [_fn("Single", is_class=True, class_methods=["run"])]
        ),
        "batch": _resource("01_batch/jobs.py", [_fn("crunch")], max_concurrency=3),
        "batch-sync": _resource("01_batch/jobs.py", [_fn("tally")], max_concurrency=2),
        "api": _resource(
            "api/routes.py",
            [
                _fn("echo", is_async=True, http_method="POST", http_path="/echo"),
                _fn("hello", is_async=False, http_method="GET", http_path="/hello"),
            ],
            resource_type="CpuLiveLoadBalancer",
            load_balanced=True,
            config_variable="api",
        ),
    }
    for name, entry in resources.items():
        if not entry["is_load_balanced"]:
            entry["handler_file"] = f"handler_{name}.py"
    registry = {
        fn["name"]: name for name, entry in resources.items() for fn in entry["functions"]
    }
    return {
        "version": "1.0",
        "python_version": "3.11",
        "generated_at": GENERATED_AT,
        "project_name": "sample",
        "resources": resources,
        "function_registry": registry,
        "routes": {"api": {"POST /echo": "echo", "GET /hello": "hello"}},
    }


def with_client_endpoint(manifest: dict[str, Any]) -> dict[str, Any]:
    """Add an ``Endpoint(image=...)`` entry: provisioned, but runs no app code."""
    manifest = copy.deepcopy(manifest)
    manifest["resources"]["external"] = _resource(
        "api/routes.py", [], resource_type="CpuServerlessEndpoint", client_mode=True
    )
    return manifest


QUEUE_RESOURCES = ["gpu-worker", "async-worker", "boom", "classy", "single", "batch", "batch-sync"]


# ---------------------------------------------------------------------------
# Unit tests on the rendered text
# ---------------------------------------------------------------------------


def _module_names(text: str) -> dict[str, type]:
    """Top-level names a module binds, mapped to the AST node type binding them."""
    names: dict[str, type] = {}
    for node in ast.parse(text).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = type(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                if isinstance(target, ast.Name):
                    names[target.id] = type(node)
    return names


def _exec_config(text: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "_flash_resource_config"}
    exec(compile(text, RESOURCE_CONFIG_PATH, "exec"), namespace)
    return namespace


def test_one_handler_per_code_resource_plus_resource_config() -> None:
    files = render_handlers(with_client_endpoint(sample_manifest()))
    expected = {f"handler_{name}.py" for name in [*QUEUE_RESOURCES, "api"]}
    assert set(files) == expected | {RESOURCE_CONFIG_PATH}
    assert "handler_external.py" not in files  # client mode: someone else's image


def test_queue_handlers_define_handler_and_lb_handlers_define_app() -> None:
    files = render_handlers(sample_manifest())
    for name in QUEUE_RESOURCES:
        names = _module_names(files[f"handler_{name}.py"])
        assert names.get("handler") in (ast.FunctionDef, ast.AsyncFunctionDef), name
        assert "app" not in names
    lb = _module_names(files["handler_api.py"])
    for required in ("app", "ROUTE_REGISTRY", "lifespan", "ping"):
        assert required in lb
    assert "handler" not in lb
    for path, text in files.items():
        ast.parse(text, filename=path, feature_version=(3, 10))


def test_handler_is_async_exactly_when_max_concurrency_exceeds_one() -> None:
    files = render_handlers(sample_manifest())
    for name in QUEUE_RESOURCES:
        text = files[f"handler_{name}.py"]
        concurrent = name in {"batch", "batch-sync"}
        kind = _module_names(text)["handler"]
        assert kind is (ast.AsyncFunctionDef if concurrent else ast.FunctionDef), name
        assert ("concurrency_modifier" in text) == concurrent, name
    assert "MAX_CONCURRENCY = 3" in files["handler_batch.py"]
    assert "MAX_CONCURRENCY = 2" in files["handler_batch-sync.py"]


def test_is_async_flag_in_manifest_is_ignored() -> None:
    """1.21.0 marks plain ``def`` functions async; the output must not depend on it."""
    manifest = sample_manifest()
    flipped = copy.deepcopy(manifest)
    for entry in flipped["resources"].values():
        for fn in entry["functions"]:
            fn["is_async"] = not fn["is_async"]
    assert render_handlers(manifest) == render_handlers(flipped)


def test_rendering_is_deterministic_and_order_independent() -> None:
    manifest = sample_manifest()
    first = render_handlers(manifest)
    assert render_handlers(copy.deepcopy(manifest)) == first
    shuffled = copy.deepcopy(manifest)
    shuffled["resources"] = dict(reversed(list(shuffled["resources"].items())))
    shuffled["function_registry"] = dict(reversed(list(shuffled["function_registry"].items())))
    assert render_handlers(shuffled) == first
    for text in first.values():
        assert GENERATED_AT in text  # the only time stamp is the manifest's own


def test_generated_at_only_changes_the_header() -> None:
    manifest = sample_manifest()
    later = copy.deepcopy(manifest)
    later["generated_at"] = "2030-01-01T00:00:00Z"
    before, after = render_handlers(manifest), render_handlers(later)
    for path in before:
        changed = [
            (a, b) for a, b in zip(before[path].splitlines(), after[path].splitlines()) if a != b
        ]
        assert len(changed) == 1 and GENERATED_AT in changed[0][0], path


def test_names_are_emitted_as_string_literals() -> None:
    """Module and function names reach generated code only through repr()."""
    manifest = sample_manifest()
    batch = render_handlers(manifest)["handler_batch.py"]
    assert "importlib.import_module(_TARGET_MODULE)" in batch
    assert "_TARGET_MODULE = '01_batch.jobs'" in batch
    hostile = copy.deepcopy(manifest)
    fn = hostile["resources"]["boom"]["functions"][0]
    fn["name"] = "x'); import os; os.system('true'); ('"
    fn["module"] = 'weird"mod\nline'
    text = render_handlers(hostile)["handler_boom.py"]
    tree = ast.parse(text)
    constants = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
    assert fn["name"] in constants and fn["module"] in constants
    assert not any(
        isinstance(n, ast.Attribute) and n.attr == "system" for n in ast.walk(tree)
    )


def test_lb_registry_and_execute_flag() -> None:
    manifest = sample_manifest()
    text = render_handlers(manifest)["handler_api.py"]
    assert "('POST', '/echo'): _load('api.routes', 'echo')" in text
    assert "('GET', '/hello'): _load('api.routes', 'hello')" in text
    assert "include_execute=True, lifespan=lifespan" in text
    assert 'uvicorn.run(app, host="0.0.0.0", port=8000)' in text
    deployed = copy.deepcopy(manifest)
    deployed["resources"]["api"]["is_live_resource"] = False
    assert "include_execute=False" in render_handlers(deployed)["handler_api.py"]


def test_lb_function_without_route_is_imported_but_not_routed() -> None:
    manifest = sample_manifest()
    manifest["resources"]["api"]["functions"].append(_fn("helper", module="api.routes"))
    text = render_handlers(manifest)["handler_api.py"]
    assert "_UNROUTED = (\n    _load('api.routes', 'helper'),\n)" in text
    assert text.count(": _load(") == 2


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda m: m["resources"]["boom"].update(functions=[]), "no functions"),
        (lambda m: m["resources"]["batch"].update(max_concurrency=0), "max_concurrency"),
        (lambda m: m["resources"]["batch"].update(max_concurrency="3"), "max_concurrency"),
        (lambda m: m["resources"]["boom"].update(handler_file="handler_x.py"), "handler_x.py"),
        (lambda m: m["resources"]["boom"]["functions"][0].pop("module"), "'module'"),
        (lambda m: m["resources"]["api"]["functions"][0].update(http_method="TRACE"), "TRACE"),
        (lambda m: m["resources"].update({"../escape": m["resources"].pop("boom")}), "file name"),
        (lambda m: m["resources"].update({"a/b": m["resources"].pop("boom")}), "file name"),
    ],
)
def test_unusable_manifests_raise_build_error(mutate: Any, fragment: str) -> None:
    manifest = sample_manifest()
    mutate(manifest)
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    assert fragment in info.value.message


def test_invalid_generated_python_is_reported_as_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "_QUEUE_MAIN_SERIAL", "\nif __name__ == :\n    pass\n")
    with pytest.raises(BuildError) as info:
        render_handlers(sample_manifest())
    assert "not valid Python" in info.value.message
    assert info.value.hint is not None and "bug" in info.value.hint
    assert info.value.path is not None and info.value.path.startswith("handler_")


def test_resource_config_contents() -> None:
    manifest = with_client_endpoint(sample_manifest())
    config = _exec_config(render_handlers(manifest)[RESOURCE_CONFIG_PATH])
    local = config["RESOURCE_LOCAL_FUNCTIONS"]
    assert local == {
        "api": {"echo", "hello"},
        "async-worker": {"summarize"},
        "batch": {"crunch"},
        "batch-sync": {"tally"},
        "boom": {"explode"},
        "classy": {"Model"},
        "external": set(),  # every resource is a key, even without functions
        "gpu-worker": {"generate"},
        "single": {"Single"},
    }
    assert config["ALL_KNOWN_FUNCTIONS"] == set(manifest["function_registry"])


@pytest.mark.parametrize(
    ("current", "func", "expected"),
    [
        (None, "generate", True),  # not on a worker: everything is local
        ("", "generate", True),
        ("gpu-worker", "generate", True),
        ("gpu-worker", "explode", False),  # known, owned by "boom"
        ("gpu-worker", "not_in_manifest", True),
        ("gpu-worker-fb", "generate", True),  # legacy flashboot suffix on the env value
        ("unknown-resource", "generate", False),
        ("unknown-resource", "mystery", True),
    ],
)
def test_is_local_function_semantics(
    monkeypatch: pytest.MonkeyPatch, current: str | None, func: str, expected: bool
) -> None:
    config = _exec_config(render_handlers(sample_manifest())[RESOURCE_CONFIG_PATH])
    if current is None:
        monkeypatch.delenv("FLASH_RESOURCE_NAME", raising=False)
    else:
        monkeypatch.setenv("FLASH_RESOURCE_NAME", current)
    assert config["is_local_function"](func) is expected


def test_is_local_function_accepts_fb_suffixed_resource_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = sample_manifest()
    entry = manifest["resources"].pop("boom")
    entry.pop("handler_file")
    manifest["resources"]["old-fb"] = entry
    manifest["function_registry"]["explode"] = "old-fb"
    config = _exec_config(render_handlers(manifest)[RESOURCE_CONFIG_PATH])
    monkeypatch.setenv("FLASH_RESOURCE_NAME", "old")
    assert config["is_local_function"]("explode") is True
    assert config["is_local_function"]("generate") is False


def test_resource_config_with_empty_registry_is_importable() -> None:
    config = _exec_config(render_handlers({"resources": {}, "generated_at": "x"})[RESOURCE_CONFIG_PATH])
    assert config["RESOURCE_LOCAL_FUNCTIONS"] == {}
    assert config["ALL_KNOWN_FUNCTIONS"] == set()


# ---------------------------------------------------------------------------
# write_generated
# ---------------------------------------------------------------------------


def test_write_generated_creates_files_with_readable_mode(tmp_path: Path) -> None:
    files = render_handlers(sample_manifest())
    write_generated(files, tmp_path)
    for rel, text in files.items():
        target = tmp_path / rel
        assert target.read_text(encoding="utf-8") == text
        assert stat.S_IMODE(target.stat().st_mode) == 0o644
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_write_generated_only_rewrites_changed_files(tmp_path: Path) -> None:
    files = render_handlers(sample_manifest())
    write_generated(files, tmp_path)
    old = 1_000_000_000
    for rel in files:
        os.utime(tmp_path / rel, (old, old))
    inodes = {rel: (tmp_path / rel).stat().st_ino for rel in files}

    write_generated(files, tmp_path)
    assert all((tmp_path / rel).stat().st_mtime == old for rel in files)

    changed = dict(files)
    changed["handler_boom.py"] += "\n# changed\n"
    write_generated(changed, tmp_path)
    for rel in files:
        st = (tmp_path / rel).stat()
        if rel == "handler_boom.py":
            assert st.st_mtime != old
            assert st.st_ino != inodes[rel]  # replaced, not written in place
            assert (tmp_path / rel).read_text(encoding="utf-8") == changed[rel]
        else:
            assert st.st_mtime == old


@pytest.mark.parametrize("rel", ["../x.py", "/abs.py", "a/../../x.py", "", "a\\b.py"])
def test_write_generated_refuses_paths_outside_build_dir(tmp_path: Path, rel: str) -> None:
    with pytest.raises(BuildError):
        write_generated({rel: "x = 1\n"}, tmp_path / "build")
    assert not (tmp_path / "x.py").exists()


# ---------------------------------------------------------------------------
# Worker boot in the runpod-flash 1.21.0 environment
# ---------------------------------------------------------------------------

# Runs inside the worker environment. Writes its findings to a JSON file because
# runpod logs to stdout.
_DRIVER = r'''
import asyncio
import copy
import importlib
import importlib.util
import inspect
import json
import runpy
import sys
from pathlib import Path


def load_file(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def call_direct(handler, payload):
    """What a test harness or a plain script would do: no event loop running."""
    result = handler({"id": "direct", "input": copy.deepcopy(payload)})
    if inspect.iscoroutine(result):
        result = asyncio.run(result)
    return result


def call_reference(handler, payload):
    # The 1.21.0 concurrent templates crash outside their try block on some inputs.
    try:
        return call_direct(handler, payload)
    except (AttributeError, TypeError) as exc:
        return {"raised": type(exc).__name__}


def run_queue(spec):
    from runpod.serverless.modules.rp_job import run_job

    module = importlib.import_module(spec["module"])
    handler = module.handler
    jobs = spec["jobs"]
    out = {"async_handler": inspect.iscoroutinefunction(handler)}
    out["direct"] = {label: call_direct(handler, p) for label, p in jobs.items()}
    # runpod's job runner: the path a deployed worker takes (it calls a plain
    # handler from inside its running event loop).
    out["run_job"] = {
        label: asyncio.run(run_job(handler, {"id": label, "input": copy.deepcopy(p)}))
        for label, p in jobs.items()
    }
    if spec.get("gather"):
        async def together():
            return await asyncio.gather(*(
                run_job(handler, {"id": f"g{i}", "input": copy.deepcopy(p)})
                for i, p in enumerate(spec["gather"])
            ))
        out["gather"] = asyncio.run(together())

    import runpod
    captured = {}
    original = runpod.serverless.start
    runpod.serverless.start = captured.update
    try:
        runpy.run_path(spec["file"], run_name="__main__")
    finally:
        runpod.serverless.start = original
    modifier = captured.get("concurrency_modifier")
    out["main"] = {
        "keys": sorted(captured),
        "async_handler": inspect.iscoroutinefunction(captured.get("handler")),
        "concurrency": modifier(1) if modifier else None,
    }
    ref = load_file("reference_handler", spec["reference_file"])
    out["reference"] = {label: call_reference(ref.handler, p) for label, p in jobs.items()}
    return out


def serve(app, requests):
    from fastapi.testclient import TestClient

    calls = []
    with TestClient(app) as client:  # "with" runs the lifespan hooks
        for req in requests:
            resp = client.request(req["method"], req["path"], json=req.get("json"), params=req.get("params"))
            calls.append({"status": resp.status_code, "body": resp.json()})
    return calls


def run_lb(spec):
    module = importlib.import_module(spec["module"])
    out = {
        "paths": sorted({getattr(r, "path", "") for r in module.app.routes}),
        "registry": sorted(f"{m} {p}" for m, p in module.ROUTE_REGISTRY),
        "calls": serve(module.app, spec["requests"]),
    }
    import uvicorn
    captured = {}
    original = uvicorn.run
    uvicorn.run = lambda app, **kw: captured.update(kw, app=type(app).__name__)
    try:
        runpy.run_path(spec["file"], run_name="__main__")
    finally:
        uvicorn.run = original
    out["main"] = captured
    ref = load_file("reference_handler", spec["reference_file"])
    out["reference_calls"] = serve(ref.app, spec["requests"])
    return out


def main():
    spec = json.loads(Path(sys.argv[1]).read_text())
    import runpod_flash
    out = run_lb(spec) if spec["kind"] == "lb" else run_queue(spec)
    out["runpod_flash_file"] = runpod_flash.__file__
    Path(sys.argv[2]).write_text(json.dumps(out, default=repr))


main()
'''

# Generates the reference implementation's files for the same manifest.
_REFERENCE_GENERATOR = r'''
import json
import sys
from pathlib import Path

from runpod_flash.cli.commands.build_utils.handler_generator import HandlerGenerator
from runpod_flash.cli.commands.build_utils.lb_handler_generator import LBHandlerGenerator
from runpod_flash.cli.commands.build_utils.resource_config_generator import (
    generate_all_resource_configs,
)

manifest = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
HandlerGenerator(manifest, out).generate_handlers()
LBHandlerGenerator(manifest, out).generate_handlers()
generate_all_resource_configs(manifest, out)
'''

QUEUE_JOBS: dict[str, dict[str, Any]] = {
    "gpu-worker": {
        "kwargs": {"prompt": "ab", "n": 2},
        "none": None,
        "empty_marker": {"__empty": True},
        "not_a_dict": "plain text",
        "bad_kwarg": {"nope": 1},
    },
    "async-worker": {"kwargs": {"text": "one two three"}},
    "boom": {"raises": {"reason": "kaput"}},
    "classy": {
        "predict": {"method": "predict", "x": 4},
        "async_method": {"method": "other", "word": "loud"},
        "unknown_method": {"method": "fly", "x": 1},
        "missing_method": {"x": 1},
        "raising_method": {"method": "predict"},
    },
    "single": {"direct": {"a": 2, "b": 3}, "method_key_dropped": {"method": "run", "a": 1, "b": 1}},
    "batch": {"kwargs": {"values": [1, 2, 3]}, "none": None, "raises": {"values": [1, "x"]}},
    "batch-sync": {"sync_function": {"values": [1, 2]}},
}

LB_REQUESTS = [
    {"method": "GET", "path": "/ping"},
    {"method": "POST", "path": "/echo", "json": {"message": "hi", "times": 3}},
    {"method": "GET", "path": "/hello", "params": {"name": "Ada"}},
    {"method": "GET", "path": "/hello"},
]


def _write_app(root: Path) -> None:
    for rel, source in APP_FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")


def _run_worker(python: Path, folder: Path, reference_dir: Path, resource: str) -> dict[str, Any]:
    """Boot ``handler_<resource>`` the way the worker image does and report back."""
    file_name = f"handler_{resource}.py"
    spec: dict[str, Any] = {
        "module": file_name[: -len(".py")],
        "file": str(folder / file_name),
        "reference_file": str(reference_dir / file_name),
    }
    if resource == "api":
        spec.update(kind="lb", requests=LB_REQUESTS)
    else:
        spec.update(kind="queue", jobs=QUEUE_JOBS[resource])
        if resource == "batch":
            spec["gather"] = [{"values": [i], "hold": 0.3} for i in range(3)]
    scratch = folder.parent / "driver"
    spec_path = scratch / f"{resource}.spec.json"
    out_path = scratch / f"{resource}.out.json"
    spec_path.write_text(json.dumps(spec), encoding="utf-8")
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASH_", "RUNPOD_"))
    }
    env.update(
        RUNPOD_ENDPOINT_ID="test",
        FLASH_RESOURCE_NAME=resource,
        PYTHONPATH=str(folder),
        PYTHONDONTWRITEBYTECODE="1",
    )
    proc = subprocess.run(
        [str(python), str(scratch / "driver.py"), str(spec_path), str(out_path)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"{resource}: worker boot failed\n{proc.stderr[-4000:]}"
    return json.loads(out_path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Boot every resource of the sample app once; tests inspect the reports."""
    python = reference.require_reference()
    base = tmp_path_factory.mktemp("worker")
    manifest = sample_manifest()

    sources = base / "app"
    _write_app(sources)
    folder = base / "artifact"
    folder.mkdir()
    assert not any(folder.iterdir())
    shutil.copytree(sources, folder, dirs_exist_ok=True)
    (folder / "flash_manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    write_generated(render_handlers(manifest), folder)

    scratch = base / "driver"
    scratch.mkdir()
    (scratch / "driver.py").write_text(_DRIVER, encoding="utf-8")
    (scratch / "reference_generator.py").write_text(_REFERENCE_GENERATOR, encoding="utf-8")
    reference_dir = base / "reference"
    reference_dir.mkdir()
    subprocess.run(
        [str(python), str(scratch / "reference_generator.py"), str(folder / "flash_manifest.json"), str(reference_dir)],
        check=True,
        capture_output=True,
        timeout=120,
    )

    resources = [*QUEUE_RESOURCES, "api"]
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        reports = pool.map(lambda r: _run_worker(python, folder, reference_dir, r), resources)
        results = dict(zip(resources, reports))
    results["_folder"] = str(folder)
    results["_reference_dir"] = str(reference_dir)
    return results


def _output(run_result: dict[str, Any]) -> Any:
    assert "error" not in run_result, run_result
    return run_result["output"]


@pytest.mark.reference
def test_function_handler(worker: dict[str, Any]) -> None:
    report = worker["gpu-worker"]
    direct, via_runpod = report["direct"], report["run_job"]
    assert report["async_handler"] is False
    assert direct["kwargs"] == {"text": "ab ab", "n": 2}
    assert _output(via_runpod["kwargs"]) == {"text": "ab ab", "n": 2}
    assert direct["none"] == {"text": "hi", "n": 1}  # None input means no kwargs
    assert direct["empty_marker"] == {"text": "hi", "n": 1}  # "__empty" never reaches user code
    assert direct["not_a_dict"] == {"success": False, "error": "Malformed input: expected dict, got str"}
    assert direct["bad_kwarg"]["success"] is False
    assert "unexpected keyword argument 'nope'" in direct["bad_kwarg"]["error"]
    assert report["main"] == {"keys": ["handler"], "async_handler": False, "concurrency": None}


@pytest.mark.reference
def test_async_function_runs_with_and_without_a_running_loop(worker: dict[str, Any]) -> None:
    report = worker["async-worker"]
    assert report["direct"]["kwargs"] == {"words": 3}  # no loop: asyncio.run
    assert _output(report["run_job"]["kwargs"]) == {"words": 3}  # inside runpod's loop


@pytest.mark.reference
def test_raising_function_returns_error_result(worker: dict[str, Any]) -> None:
    report = worker["boom"]
    result = report["direct"]["raises"]
    assert result["success"] is False
    assert result["error"] == "exploded: kaput"
    assert "ValueError: exploded: kaput" in result["traceback"]
    # runpod turns the "error" key into a failed job instead of crashing the worker.
    assert report["run_job"]["raises"]["error"] == "exploded: kaput"


@pytest.mark.reference
def test_class_handler_dispatches_by_method(worker: dict[str, Any]) -> None:
    report = worker["classy"]
    direct = report["direct"]
    assert direct["predict"] == {"y": 40}  # instance built once, __init__ ran
    assert direct["async_method"] == {"upper": "LOUD"}
    assert _output(report["run_job"]["async_method"]) == {"upper": "LOUD"}
    unknown = direct["unknown_method"]
    assert unknown["success"] is False
    assert "'fly'" in unknown["error"] and "available: other, predict" in unknown["error"]
    missing = direct["missing_method"]
    assert missing["success"] is False and '"method"' in missing["error"]
    assert "other, predict" in missing["error"]
    assert direct["raising_method"]["success"] is False
    assert "traceback" in direct["raising_method"]


@pytest.mark.reference
def test_single_method_class_takes_input_directly(worker: dict[str, Any]) -> None:
    direct = worker["single"]["direct"]
    assert direct["direct"] == {"sum": 5}
    assert direct["method_key_dropped"] == {"sum": 2}


@pytest.mark.reference
def test_max_concurrency_makes_an_async_handler_that_runs_jobs_together(worker: dict[str, Any]) -> None:
    report = worker["batch"]
    assert report["async_handler"] is True
    assert report["main"] == {
        "keys": ["concurrency_modifier", "handler"],
        "async_handler": True,
        "concurrency": 3,
    }
    assert report["direct"]["kwargs"] == {"total": 6}
    assert report["direct"]["none"]["success"] is False  # missing "values", not a crash
    assert report["direct"]["raises"]["success"] is False
    gathered = [_output(r) for r in report["gather"]]
    assert sorted(r["total"] for r in gathered) == [0, 1, 2]
    assert max(r["peak"] for r in gathered) == 3  # all three were in flight at once


@pytest.mark.reference
def test_max_concurrency_with_a_plain_def_still_works(worker: dict[str, Any]) -> None:
    """The manifest claims ``tally`` is async; it is not. The reference awaits it and fails."""
    report = worker["batch-sync"]
    assert report["async_handler"] is True
    assert report["main"]["concurrency"] == 2
    assert report["direct"]["sync_function"] == {"count": 2}
    assert _output(report["run_job"]["sync_function"]) == {"count": 2}
    assert "error" in report["reference"]["sync_function"]


@pytest.mark.reference
def test_load_balanced_app(worker: dict[str, Any]) -> None:
    report = worker["api"]
    ping, echo, hello_named, hello_default = report["calls"]
    assert ping == {"status": 200, "body": {"status": "healthy"}}
    assert echo == {"status": 200, "body": {"echo": "hihihi"}}
    assert hello_named == {"status": 200, "body": {"greeting": "hello Ada"}}
    assert hello_default == {"status": 200, "body": {"greeting": "hello world"}}
    assert report["registry"] == ["GET /hello", "POST /echo"]
    assert {"/ping", "/echo", "/hello", "/execute"} <= set(report["paths"])
    assert report["main"] == {"host": "0.0.0.0", "port": 8000, "app": "FastAPI"}
    assert report["calls"] == report["reference_calls"]


def _outcome(result: Any) -> Any:
    """Compare results, not wording: any error result counts as the same outcome."""
    if isinstance(result, dict) and ("error" in result or "raised" in result):
        return "error"
    return result


@pytest.mark.reference
def test_queue_handlers_agree_with_reference(worker: dict[str, Any]) -> None:
    """Same jobs through the reference's handlers: same results, errors where it errs."""
    # Where 1.21.0's handlers are knowingly not followed.
    intended = {("batch", "none"), ("batch-sync", "sync_function")}
    compared = 0
    for resource in QUEUE_RESOURCES:
        report = worker[resource]
        for label, ours in report["direct"].items():
            if (resource, label) in intended:
                continue
            theirs = report["reference"][label]
            assert _outcome(ours) == _outcome(theirs), (resource, label, ours, theirs)
            if _outcome(ours) == "error":
                assert ours["success"] is False
            compared += 1
    assert compared == sum(len(jobs) for jobs in QUEUE_JOBS.values()) - len(intended)
    # The reference's concurrent template dereferences a None input outside its
    # try block, so the job crashes instead of returning an error result.
    assert worker["batch"]["reference"]["none"] == {"raised": "AttributeError"}
    assert worker["batch"]["direct"]["none"]["success"] is False
    # ... and it awaits every function because the manifest says is_async.
    assert "object dict can't be used in 'await' expression" in (
        worker["batch-sync"]["reference"]["sync_function"]["error"]
    )


@pytest.mark.reference
def test_resource_config_agrees_with_reference(worker: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    ours = _exec_config((Path(worker["_folder"]) / RESOURCE_CONFIG_PATH).read_text(encoding="utf-8"))
    theirs = _exec_config(
        (Path(worker["_reference_dir"]) / RESOURCE_CONFIG_PATH).read_text(encoding="utf-8")
    )
    assert ours["RESOURCE_LOCAL_FUNCTIONS"] == theirs["RESOURCE_LOCAL_FUNCTIONS"]
    assert ours["ALL_KNOWN_FUNCTIONS"] == theirs["ALL_KNOWN_FUNCTIONS"]
    names = [*sorted(theirs["ALL_KNOWN_FUNCTIONS"]), "unknown"]
    for current in [None, "", *QUEUE_RESOURCES, "api", "api-fb", "nope", "nope-fb"]:
        if current is None:
            monkeypatch.delenv("FLASH_RESOURCE_NAME", raising=False)
        else:
            monkeypatch.setenv("FLASH_RESOURCE_NAME", current)
        for name in names:
            assert ours["is_local_function"](name) == theirs["is_local_function"](name), (current, name)


@pytest.mark.reference
def test_partial_runpod_flash_folder_does_not_shadow_the_installed_package(worker: dict[str, Any]) -> None:
    """The artifact's runpod_flash/runtime/ holds only the config module (no __init__.py);
    the worker must still import its installed runpod_flash, not that namespace stub."""
    folder = Path(worker["_folder"])
    for resource in [*QUEUE_RESOURCES, "api"]:
        loaded_from = Path(worker[resource]["runpod_flash_file"])
        assert folder not in loaded_from.parents, resource


# ---------------------------------------------------------------------------
# tests/support/reference.py itself
# ---------------------------------------------------------------------------


def test_reference_override_that_does_not_exist_is_unavailable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(reference, "_failure_reason", {})
    missing = tmp_path / "no-python"
    monkeypatch.setenv(reference.ENV_PYTHON, str(missing))
    assert reference.reference_python() is None
    assert str(missing) in reference.unavailable_reason()


@pytest.mark.skipif(os.name == "nt", reason="uses a POSIX shell script as fake uv")
def test_failed_venv_creation_returns_none_and_leaves_nothing_half_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(reference, "_failure_reason", {})
    fake_uv = tmp_path / "uv"
    fake_uv.write_text("#!/bin/sh\necho 'error: network unreachable'\nexit 2\n", encoding="utf-8")
    fake_uv.chmod(0o755)
    venv_dir = tmp_path / "cache" / "ref"
    assert reference.ensure_reference_venv(venv_dir, uv_bin=str(fake_uv)) is None
    assert not venv_dir.exists()
    assert "network unreachable" in reference.unavailable_reason()
