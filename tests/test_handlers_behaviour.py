"""What the generated worker entry points do, checked by running them in this process.

Each test renders handlers for a small manifest, writes them with
``write_generated`` into an empty folder next to a tiny app, imports them as the
worker image does and calls them. Expected results come from calling the app's
own functions directly (Python itself is the oracle), from the module docstrings
of flash_tasks.handlers (the spec of each manifest field), or from the ``runpod``
package's own job runner. The load-balanced app goes through FastAPI's
TestClient with the SDK stand-in under tests/support/worker_sdk.
"""

from __future__ import annotations

import ast
import asyncio
import copy
import importlib
import importlib.util
import inspect
import logging
import re
import runpy
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from flash_tasks import handlers
from flash_tasks.errors import BuildError
from flash_tasks.handlers import (
    RESOURCE_CONFIG_PATH,
    handler_file_name,
    render_handlers,
    render_lb_handler,
    render_queue_handler,
    write_generated,
)

WORKER_SDK = Path(__file__).parent / "support" / "worker_sdk"
GENERATED_AT = "2026-05-06T07:08:09.000000Z"

# The app the handlers serve. The package name is unusual on purpose, so that a
# handler importing the wrong module fails loudly.
USER_PACKAGE = "hfapp_7c1"
USER_CODE = {
    "work.py": """
        import asyncio


        def greet(name="world", punct="!"):
            return {"text": f"hello {name}{punct}"}


        async def agreet(name="world"):
            await asyncio.sleep(0)
            return {"text": f"hi {name}"}


        def boom(reason="?"):
            raise ValueError(f"broken: {reason}")


        class Counter:
            built = 0

            def __init__(self):
                Counter.built += 1
                self.total = 0

            def add(self, n=1):
                self.total += n
                return {"total": self.total}

            async def sub(self, n=1):
                await asyncio.sleep(0)
                self.total -= n
                return {"total": self.total}


        class Solo:
            def run(self, a, b):
                return {"sum": a + b}
    """,
    "routes.py": """
        def hello(name: str = "world") -> dict:
            return {"greeting": f"hello {name}"}


        async def echo(message: str, times: int = 1) -> dict:
            return {"echo": message * times}


        def remove(item_id: str) -> dict:
            return {"removed": item_id}


        def helper() -> dict:
            return {"helper": True}
    """,
}


def fn(name: str, module: str = "work", **extra: Any) -> dict[str, Any]:
    return {"name": name, "module": f"{USER_PACKAGE}.{module}", "is_async": True, "is_class": False, **extra}


def queue_resource(*functions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"functions": list(functions), "is_load_balanced": False, "is_live_resource": True, **extra}


def lb_resource(*functions: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"functions": list(functions), "is_load_balanced": True, **extra}


def manifest_of(resources: dict[str, dict[str, Any]]) -> dict[str, Any]:
    registry = {f["name"]: name for name, res in resources.items() for f in res.get("functions", [])}
    return {"generated_at": GENERATED_AT, "resources": resources, "function_registry": registry}


class Worker:
    """A folder holding the app and the generated files, importable like the worker image's root."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        package = root / USER_PACKAGE
        package.mkdir()
        (package / "__init__.py").write_text("", encoding="utf-8")
        for rel, text in USER_CODE.items():
            (package / rel).write_text(textwrap.dedent(text), encoding="utf-8")
        monkeypatch.syspath_prepend(str(root))
        monkeypatch.syspath_prepend(str(WORKER_SDK))

    def write(self, manifest: dict[str, Any]) -> dict[str, str]:
        files = render_handlers(manifest)
        write_generated(files, self.root)
        return files

    def load(self, resource: str, manifest: dict[str, Any] | None = None) -> ModuleType:
        if manifest is not None:
            self.write(manifest)
        self.monkeypatch.setenv("FLASH_RESOURCE_NAME", resource)
        path = self.root / handler_file_name(resource)
        spec = importlib.util.spec_from_file_location(f"hf_handler_{len(sys.modules)}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def user(self, module: str = "work") -> ModuleType:
        return importlib.import_module(f"{USER_PACKAGE}.{module}")


def _forget() -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in {USER_PACKAGE, "runpod_flash"}:
            del sys.modules[name]


@pytest.fixture()
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    _forget()
    yield Worker(tmp_path, monkeypatch)
    _forget()


def call(handler: Callable[[dict[str, Any]], Any], payload: Any) -> Any:
    result = handler({"id": "job-1", "input": payload})
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def expected(func: Callable[..., Any], **kwargs: Any) -> Any:
    result = func(**kwargs)
    return asyncio.run(result) if inspect.iscoroutine(result) else result


# ---------------------------------------------------------------------------
# Queue-based functions
# ---------------------------------------------------------------------------

CONCURRENCY = [pytest.param({}, id="default"), pytest.param({"max_concurrency": 1}, id="1"),
               pytest.param({"max_concurrency": 2}, id="2"), pytest.param({"max_concurrency": 5}, id="5")]  # fmt: skip


@pytest.mark.parametrize("extra", CONCURRENCY)
@pytest.mark.parametrize("target", ["greet", "agreet"])
def test_function_handler_passes_the_input_as_keyword_arguments(
    worker: Worker, extra: dict[str, Any], target: str
) -> None:
    manifest = manifest_of({"svc": queue_resource(fn(target), **extra)})
    handler = worker.load("svc", manifest).handler
    func = getattr(worker.user(), target)
    assert call(handler, {"name": "ada"}) == expected(func, name="ada")
    # Runpod's marker for a job without input never reaches the function; no input means no arguments.
    assert call(handler, {"__empty": True}) == expected(func)
    assert call(handler, None) == expected(func)
    assert call(handler, {}) == expected(func)
    bad = call(handler, ["ada"])
    assert bad["success"] is False and "list" in bad["error"]


@pytest.mark.parametrize("extra", CONCURRENCY)
def test_only_the_first_function_of_a_queue_resource_is_served(worker: Worker, extra: dict[str, Any]) -> None:
    manifest = manifest_of({"svc": queue_resource(fn("greet"), fn("boom"), **extra)})
    handler = worker.load("svc", manifest).handler
    assert call(handler, {"name": "x", "punct": "?"}) == expected(worker.user().greet, name="x", punct="?")


@pytest.mark.parametrize("extra", CONCURRENCY)
def test_errors_of_user_code_become_failed_results(
    worker: Worker, extra: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    manifest = manifest_of({"failing-svc": queue_resource(fn("boom"), **extra)})
    module = worker.load("failing-svc", manifest)
    caplog.set_level(logging.ERROR)
    result = call(module.handler, {"reason": "kaput"})
    with pytest.raises(ValueError) as info:
        worker.user().boom(reason="kaput")
    assert result["success"] is False and result["error"] == str(info.value)
    assert result["traceback"].strip().splitlines()[-1] == f"ValueError: {info.value}"
    messages = [r.getMessage() for r in caplog.records if r.name == module.__name__]
    assert len(messages) == 1 and "failing-svc" in messages[0]


@pytest.mark.parametrize(
    ("extra", "concurrency"),
    [({}, None), ({"max_concurrency": 1}, None), ({"max_concurrency": 2}, 2), ({"max_concurrency": 7}, 7)],
)
def test_main_block_hands_the_handler_and_concurrency_to_runpod(
    worker: Worker, monkeypatch: pytest.MonkeyPatch, extra: dict[str, Any], concurrency: int | None
) -> None:
    """max_concurrency > 1 lets runpod hand the worker that many jobs at once; 1 (the default) runs them one by one."""
    import runpod

    worker.write(manifest_of({"svc": queue_resource(fn("agreet"), **extra)}))
    started: list[dict[str, Any]] = []
    monkeypatch.setattr(runpod.serverless, "start", started.append)
    namespace = runpy.run_path(str(worker.root / "handler_svc.py"), run_name="__main__")
    assert len(started) == 1 and started[0]["handler"] is namespace["handler"]
    if concurrency is None:
        assert sorted(started[0]) == ["handler"]
        # One job at a time: a plain function, as for max_concurrency 1 in runpod-flash.
        assert not inspect.iscoroutinefunction(namespace["handler"])
    else:
        assert sorted(started[0]) == ["concurrency_modifier", "handler"]
        assert started[0]["concurrency_modifier"](1) == concurrency
        # Several jobs at once need a coroutine handler, or runpod runs them one after the other.
        assert inspect.iscoroutinefunction(namespace["handler"])
    assert call(namespace["handler"], {"name": "bo"}) == expected(worker.user().agreet, name="bo")


def test_jobs_through_runpods_job_runner(worker: Worker) -> None:
    from runpod.serverless.modules.rp_job import run_job

    handler = worker.load("svc", manifest_of({"svc": queue_resource(fn("greet"))})).handler
    result = asyncio.run(run_job(handler, {"id": "j", "input": {"name": "rp"}}))
    assert result == {"output": expected(worker.user().greet, name="rp")}


# ---------------------------------------------------------------------------
# Queue-based classes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("extra", CONCURRENCY)
def test_class_handler_dispatches_on_the_method_key(worker: Worker, extra: dict[str, Any]) -> None:
    func = fn("Counter", is_class=True, class_methods=["sub", "add", "add"])
    handler = worker.load("counter", manifest_of({"counter": queue_resource(func, **extra)})).handler
    assert call(handler, {"method": "add", "n": 5}) == {"total": 5}
    assert call(handler, {"method": "sub", "n": 2}) == {"total": 3}  # one instance for the whole worker
    assert worker.user().Counter.built == 1
    # Methods are listed sorted and once each, whatever the manifest's order.
    missing = call(handler, {"n": 1})
    assert missing["success"] is False and "add, sub" in missing["error"] and "method" in missing["error"]
    unknown = call(handler, {"method": "mul"})
    assert unknown["success"] is False and "'mul'" in unknown["error"] and "add, sub" in unknown["error"]


@pytest.mark.parametrize("extra", CONCURRENCY)
def test_a_single_method_class_takes_the_input_directly(worker: Worker, extra: dict[str, Any]) -> None:
    func = fn("Solo", is_class=True, class_methods=["run"])
    handler = worker.load("solo", manifest_of({"solo": queue_resource(func, **extra)})).handler
    assert call(handler, {"a": 2, "b": 3}) == expected(worker.user().Solo().run, a=2, b=3)
    # A coroutine handler only when runpod may run several jobs at once.
    assert inspect.iscoroutinefunction(handler) == (extra.get("max_concurrency", 1) > 1)


def test_class_without_method_list_has_nothing_to_call(worker: Worker) -> None:
    """``class_methods`` absent means no public methods: the worker boots and says so per job."""
    handler = worker.load("solo", manifest_of({"solo": queue_resource(fn("Solo", is_class=True))})).handler
    result = call(handler, {"a": 1, "b": 2})
    assert result["success"] is False and "Solo" in result["error"] and "no public methods" in result["error"]


@pytest.mark.parametrize("methods", ["run", ["run", ""], ["run", 1], {"run": True}, [None]])
def test_malformed_class_methods_are_refused(methods: Any) -> None:
    manifest = manifest_of({"solo-res": queue_resource(fn("Solo", is_class=True, class_methods=methods))})
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    assert "solo-res" in info.value.message and "class_methods" in info.value.message
    assert info.value.hint is not None and "flash_manifest.json" in info.value.hint


# ---------------------------------------------------------------------------
# Load-balanced resources
# ---------------------------------------------------------------------------


def lb_manifest(**extra: Any) -> dict[str, Any]:
    return manifest_of(
        {
            "web-api": lb_resource(
                fn("hello", "routes", http_method="get", http_path="/hello"),
                fn("echo", "routes", http_method="POST", http_path="/echo"),
                fn("remove", "routes", http_method="DELETE", http_path="/items/{item_id}"),
                fn("helper", "routes"),
                fn("greet", "work", http_method="GET"),  # a method without a path is no route
                **extra,
            )
        }
    )


@pytest.fixture()
def recorded_lb_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record what the generated app passes to the SDK's create_lb_handler."""
    from runpod_flash.runtime import lb_handler

    calls: list[dict[str, Any]] = []
    original = lb_handler.create_lb_handler

    def recording(route_registry: Any, include_execute: bool = False, lifespan: Any = None) -> Any:
        calls.append({"routes": dict(route_registry), "include_execute": include_execute})
        return original(route_registry, include_execute=include_execute, lifespan=lifespan)

    monkeypatch.setattr(lb_handler, "create_lb_handler", recording)
    return calls


def test_load_balanced_app_serves_every_routed_function(worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    module = worker.load("web-api", lb_manifest())
    routes = worker.user("routes")
    caplog.set_level(logging.INFO)
    with TestClient(module.app) as client:
        assert client.get("/hello", params={"name": "ada"}).json() == routes.hello(name="ada")
        assert client.post("/echo", json={"message": "ab", "times": 2}).json() == asyncio.run(routes.echo("ab", 2))
        assert client.delete("/items/42").json() == routes.remove(item_id="42")
        assert client.get("/ping").json() == {"status": "healthy"}
        assert client.get("/helper").status_code == 404
        assert client.post("/greet").status_code == 404
    assert set(module.ROUTE_REGISTRY) == {("GET", "/hello"), ("POST", "/echo"), ("DELETE", "/items/{item_id}")}
    assert module.ROUTE_REGISTRY[("GET", "/hello")] is routes.hello
    logged = [r.getMessage() for r in caplog.records if r.name == module.__name__]
    assert logged == ["endpoint web-api starting", "endpoint web-api stopping"]


@pytest.mark.parametrize(
    ("extra", "execute"), [({}, False), ({"is_live_resource": False}, False), ({"is_live_resource": True}, True)]
)
def test_execute_route_only_for_live_resources(
    worker: Worker, recorded_lb_calls: list[dict[str, Any]], extra: dict[str, Any], execute: bool
) -> None:
    worker.load("web-api", lb_manifest(**extra))
    assert [c["include_execute"] for c in recorded_lb_calls] == [execute]
    assert len(recorded_lb_calls[0]["routes"]) == 3


def test_every_unrouted_function_is_imported_at_boot(worker: Worker) -> None:
    """A broken reference fails when the worker boots, routed or not (as with runpod-flash)."""
    manifest = manifest_of(
        {
            "web-api": lb_resource(
                fn("hello", "routes", http_method="GET", http_path="/hello"),
                fn("helper", "routes"),
                fn("nope", "routes"),
            )
        }
    )
    with pytest.raises(AttributeError, match="nope"):
        worker.load("web-api", manifest)
    ok = manifest_of({"web-api": lb_resource(fn("helper", "routes"), fn("greet", "work"))})
    module = worker.load("web-api", ok)
    assert module.ROUTE_REGISTRY == {}


@pytest.mark.parametrize("method", ["TRACE", "connect", "OPTIONS"])
def test_unsupported_http_method_is_refused(method: str) -> None:
    manifest = manifest_of({"web-api": lb_resource(fn("hello", "routes", http_method=method, http_path="/h"))})
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    assert "web-api" in info.value.message and "'hello'" in info.value.message and method.upper() in info.value.message
    assert info.value.hint is not None and "DELETE, GET, PATCH, POST, PUT" in info.value.hint


# ---------------------------------------------------------------------------
# The set of generated files
# ---------------------------------------------------------------------------


def test_one_handler_per_resource_that_runs_code(worker: Worker) -> None:
    manifest = manifest_of(
        {
            "svc": queue_resource(fn("greet"), handler_file="handler_svc.py"),
            "web-api": lb_resource(fn("hello", "routes", http_method="GET", http_path="/hello")),
            "remote": queue_resource(client_mode=True),
            "remote-lb": lb_resource(client_mode=True),
            "plain": queue_resource(fn("agreet"), client_mode=False),
        }
    )
    files = worker.write(manifest)
    assert sorted(files) == sorted(["handler_svc.py", "handler_web-api.py", "handler_plain.py", RESOURCE_CONFIG_PATH])
    for rel, text in files.items():
        assert (worker.root / rel).read_bytes() == text.encode("utf-8")
        if rel.startswith("handler_"):
            assert GENERATED_AT in (ast.get_docstring(ast.parse(text)) or "")
            assert repr(rel[len("handler_") : -len(".py")]) in (ast.get_docstring(ast.parse(text)) or "")
    assert hasattr(worker.load("plain"), "handler") and hasattr(worker.load("web-api"), "app")
    # The resource-config module knows which resource each function runs on.
    config = runpy.run_path(str(worker.root / RESOURCE_CONFIG_PATH))
    assert config["ALL_KNOWN_FUNCTIONS"] >= {"greet", "hello", "agreet"}


def test_without_resources_only_the_resource_config_is_generated() -> None:
    assert list(render_handlers({"generated_at": GENERATED_AT})) == [RESOURCE_CONFIG_PATH]


def test_declared_handler_file_must_match_the_resource_name() -> None:
    manifest = manifest_of({"svc": queue_resource(fn("greet"), handler_file="handler_other.py")})
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    assert (
        "'svc'" in info.value.message
        and "handler_other.py" in info.value.message
        and "handler_svc.py" in info.value.message
    )
    assert info.value.hint is not None and "flash_manifest.json" in info.value.hint


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(manifest: dict[str, Any]) -> None:
        target: Any = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def _drop(path: tuple[Any, ...]) -> Callable[[dict[str, Any]], None]:
    def apply(manifest: dict[str, Any]) -> None:
        target: Any = manifest
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


BASE = {
    "q-res": queue_resource(fn("greet")),
    "lb-res": lb_resource(fn("hello", "routes", http_method="GET", http_path="/hello")),
}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (_set(("resources",), []), ["resources"]),
        (_set(("resources", "q-res"), "x"), ["'q-res'"]),
        (_set(("function_registry",), ["a"]), ["function_registry"]),
        (_set(("resources", "q-res", "functions"), []), ["'q-res'", "no functions"]),
        (_drop(("resources", "q-res", "functions")), ["'q-res'", "no functions"]),
        (_set(("resources", "q-res", "functions"), "greet"), ["'q-res'", "'functions'"]),
        (_set(("resources", "q-res", "functions"), ["greet"]), ["'q-res'", "'functions'"]),
        (_set(("resources", "lb-res", "functions"), {"a": 1}), ["'lb-res'", "'functions'"]),
        (_set(("resources", "lb-res", "functions"), [1]), ["'lb-res'", "'functions'"]),
        (_drop(("resources", "q-res", "functions", 0, "module")), ["'q-res'", "'module'"]),
        (_set(("resources", "q-res", "functions", 0, "module"), ""), ["'q-res'", "'module'"]),
        (_set(("resources", "q-res", "functions", 0, "name"), 3), ["'q-res'", "'name'"]),
        (_drop(("resources", "lb-res", "functions", 0, "module")), ["'lb-res'", "'module'"]),
        (_set(("resources", "lb-res", "functions", 0, "name"), ""), ["'lb-res'", "'name'"]),
        (_set(("resources", "q-res", "max_concurrency"), 0), ["'q-res'", "max_concurrency", "0"]),
        (_set(("resources", "q-res", "max_concurrency"), -2), ["'q-res'", "max_concurrency", "-2"]),
        (_set(("resources", "q-res", "max_concurrency"), True), ["'q-res'", "max_concurrency", "True"]),
        (_set(("resources", "q-res", "max_concurrency"), 2.0), ["'q-res'", "max_concurrency", "2.0"]),
        (_set(("resources", "q-res", "max_concurrency"), "2"), ["'q-res'", "max_concurrency", "'2'"]),
        (_set(("resources", "q-res", "max_concurrency"), None), ["'q-res'", "max_concurrency", "None"]),
    ],
)
def test_manifests_that_cannot_boot_a_worker_are_refused(
    change: Callable[[dict[str, Any]], None], words: list[str]
) -> None:
    manifest = manifest_of(copy.deepcopy(BASE))
    render_handlers(manifest)  # the base manifest is fine
    change(manifest)
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    for word in words:  # as a word of its own: the field or resource is named, not just mentioned
        assert re.search(rf"(?<!\w){re.escape(word)}(?!\w)", info.value.message), (word, info.value.message)
    assert info.value.hint, info.value.message
    if "max_concurrency" in words:  # the hint says what to write in the app's code
        assert "max_concurrency=" in info.value.hint and "Endpoint(" in info.value.hint


def test_concurrency_of_one_is_the_default() -> None:
    plain = render_queue_handler("q", queue_resource(fn("greet")), GENERATED_AT)
    assert plain == render_queue_handler("q", queue_resource(fn("greet"), max_concurrency=1), GENERATED_AT)
    assert plain != render_queue_handler("q", queue_resource(fn("greet"), max_concurrency=2), GENERATED_AT)


# ---------------------------------------------------------------------------
# Names and paths
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["api", "my-worker", "gpu_worker_2", "XL-Model", "ünï", "a b", "x\x7f", "..."])
def test_usable_resource_names_are_kept_verbatim(name: str) -> None:
    assert handler_file_name(name) == f"handler_{name}.py"


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "a\\b", "a\0b", "a\nb", "a\x1fb", "\tx"])
def test_resource_names_that_cannot_be_file_names_are_refused(name: str) -> None:
    with pytest.raises(BuildError) as info:
        handler_file_name(name)
    assert repr(name) in info.value.message
    assert info.value.hint is not None and "handler_<name>.py" in info.value.hint


def test_generated_code_must_parse_on_the_oldest_worker_python(monkeypatch: pytest.MonkeyPatch) -> None:
    """Python 3.10 workers cannot import newer syntax such as ``except*`` (3.11), though this interpreter can."""
    late = "try:\n    pass\nexcept* ValueError:\n    pass\n"
    compile(late, "<3.11 syntax>", "exec")  # fine here: only the worker's oldest Python refuses it
    monkeypatch.setattr(handlers, "_QUEUE_MAIN_SERIAL", handlers._QUEUE_MAIN_SERIAL + "\n" + late)
    manifest = manifest_of({"q-res": queue_resource(fn("greet"))})
    with pytest.raises(BuildError) as info:
        render_handlers(manifest)
    text = render_queue_handler("q-res", queue_resource(fn("greet")), GENERATED_AT)
    last = len(text.splitlines())  # the appended block ends the file
    block = range(last - late.count("\n") + 1, last + 1)
    assert info.value.path == "handler_q-res.py" and info.value.line in block and info.value.col is not None
    assert f"line {info.value.line}" in info.value.message and "handler_q-res.py" in info.value.message
    assert info.value.hint is not None and "flash_manifest.json" in info.value.hint


def test_lb_handler_text_is_a_pure_function_of_its_inputs() -> None:
    resource = lb_manifest()["resources"]["web-api"]
    first = render_lb_handler("web-api", resource, GENERATED_AT)
    assert first == render_lb_handler("web-api", resource, GENERATED_AT)
    assert "web-api" in first and GENERATED_AT in first


@pytest.mark.parametrize(
    "rel", ["../x.py", "/x.py", "a/../../x.py", "sub/../../x.py", "..", "", ".", "a\\..\\..\\x.py", "a\\b.py"]
)
def test_generated_files_are_never_written_outside_the_build_dir(tmp_path: Path, rel: str) -> None:
    build = tmp_path / "deep" / "build"
    with pytest.raises(BuildError) as info:
        write_generated({"handler_ok.py": "x = 1\n", rel: "x = 2\n"}, build)
    assert repr(rel) in info.value.message
    assert info.value.hint is not None and "flash_manifest.json" in info.value.hint
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    assert written in ([], ["deep/build/handler_ok.py"])


def test_generated_files_may_live_in_subfolders(tmp_path: Path) -> None:
    write_generated({"a/b/c.py": "x = 1\n", "a/./d.py": "y = 2\n"}, tmp_path)
    assert (tmp_path / "a" / "b" / "c.py").read_bytes() == b"x = 1\n"
    assert (tmp_path / "a" / "d.py").read_bytes() == b"y = 2\n"


def test_a_manifest_without_generated_at_renders_as_with_an_empty_one() -> None:
    manifest = manifest_of(copy.deepcopy(BASE))
    del manifest["generated_at"]
    empty = manifest_of(copy.deepcopy(BASE))
    empty["generated_at"] = ""
    assert render_handlers(manifest) == render_handlers(empty)
    dated = render_handlers(manifest_of(copy.deepcopy(BASE)))
    # Every generated module, the resource config included, says which manifest it was built from.
    for rel, text in dated.items():
        assert repr(GENERATED_AT) in (ast.get_docstring(ast.parse(text)) or ""), rel


def test_a_resource_without_is_load_balanced_is_queue_based(worker: Worker) -> None:
    resource = queue_resource(fn("greet"))
    del resource["is_load_balanced"]
    module = worker.load("svc", manifest_of({"svc": resource}))
    assert call(module.handler, {"name": "q"}) == expected(worker.user().greet, name="q")
    assert not hasattr(module, "app")
