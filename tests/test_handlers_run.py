"""The generated handlers, run: imported from an unpacked artifact and called in this process.

tests/apps/runnable_workers is built offline, its artifact unpacked into an
empty folder, and each ``handler_<resource>.py`` imported as the worker image
does (``FLASH_RESOURCE_NAME`` set, the artifact root on ``sys.path``):

* queue handlers get the jobs of tests/support/apps.py, called directly and
  through the real ``runpod`` package's job runner;
* the load-balanced app gets its requests through FastAPI's TestClient.

Results are compared with what runpod-flash 1.21.0's own generated handlers
returned for the same jobs (tests/goldens/runnable_workers/outputs.json).
Where the worker's SDK is imported, tests/support/worker_sdk stands in for it
(see its README); the real SDK runs in the ``reference`` tests.
"""

from __future__ import annotations

import asyncio
import importlib.util
import inspect
import json
import logging
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from support.apps import LB_REQUESTS, QUEUE_JOBS, Case, copy_app, load_golden

from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks

APP = "runnable_workers"
WORKER_SDK = Path(__file__).parent / "support" / "worker_sdk"


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory, local_index: Path) -> Path:
    app = copy_app(APP, tmp_path_factory.mktemp("src"))
    run_tasks(BuildConfig(app_dir=app, no_deps=True, find_links=(str(local_index),), no_index=True))
    target = tmp_path_factory.mktemp("worker")
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        tar.extractall(target, filter="data")
    return target


@pytest.fixture(scope="module")
def golden() -> dict[str, Any]:
    _manifest, _members, outputs = load_golden(Case(APP))
    assert outputs is not None, "no recorded handler outputs; run scripts/record_goldens.py runnable_workers"
    return outputs


class Worker:
    """Imports handler modules from an unpacked artifact and forgets them afterwards."""

    def __init__(self, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder = folder
        self.monkeypatch = monkeypatch

    def load(self, resource: str) -> ModuleType:
        self.monkeypatch.setenv("FLASH_RESOURCE_NAME", resource)
        self.monkeypatch.setenv("RUNPOD_ENDPOINT_ID", "local-test")
        path = self.folder / f"handler_{resource}.py"
        spec = importlib.util.spec_from_file_location(f"handler_{resource}", path)
        assert spec is not None and spec.loader is not None, path
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


def _forget_modules_from(*roots: Path) -> None:
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None) or ""
        if name.split(".")[0] == "runpod_flash" or any(origin.startswith(str(root)) for root in roots):
            del sys.modules[name]


@pytest.fixture()
def worker(unpacked: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Worker]:
    """The artifact root and the worker SDK stand-in importable, as in the worker image."""
    _forget_modules_from(unpacked, WORKER_SDK)
    monkeypatch.syspath_prepend(str(unpacked))
    monkeypatch.syspath_prepend(str(WORKER_SDK))  # before the artifact's own runpod_flash/ copy
    yield Worker(unpacked, monkeypatch)
    _forget_modules_from(unpacked, WORKER_SDK)


def call(handler: Callable[[dict[str, Any]], Any], label: str, payload: Any) -> Any:
    result = handler({"id": f"job-{label}", "input": payload})
    return asyncio.run(result) if inspect.iscoroutine(result) else result


def via_runpod(handler: Callable[[dict[str, Any]], Any], label: str, payload: Any) -> dict[str, Any]:
    """One job through runpod's own job runner, as the serverless worker loop runs it."""
    from runpod.serverless.modules.rp_job import run_job

    return asyncio.run(run_job(handler, {"id": f"job-{label}", "input": payload}))


def replay_until(handler: Callable[[dict[str, Any]], Any], resource: str, label: str, runner: Callable[..., Any]) -> Any:
    """Run ``label``'s job after the jobs listed before it: class instances live for the whole worker."""
    jobs = QUEUE_JOBS[APP][resource]
    for earlier, payload in jobs.items():
        if earlier == label:
            break
        runner(handler, earlier, payload)
    return runner(handler, label, jobs[label])


def same_outcome(ours: Any, reference: Any) -> bool:
    """Equal results; for error results, both failed and raised the same exception.

    Error wording is ours to choose; the exception a traceback ends with is not.
    """
    if isinstance(reference, dict) and reference.get("success") is False:
        if not (isinstance(ours, dict) and ours.get("success") is False and isinstance(ours.get("error"), str)):
            return False
        if "traceback" in reference:
            return ours.get("traceback", "").strip().splitlines()[-1:] == [reference["traceback"]]
        return "traceback" not in ours
    return ours == reference


QUEUE_CASES = [(resource, label) for resource, jobs in QUEUE_JOBS[APP].items() for label in jobs]


@pytest.mark.parametrize(("resource", "label"), QUEUE_CASES, ids=[f"{r}:{lbl}" for r, lbl in QUEUE_CASES])
def test_queue_handler_answers_like_the_reference(worker: Worker, golden: dict[str, Any], resource: str, label: str) -> None:
    ours = replay_until(worker.load(resource).handler, resource, label, call)
    reference = golden[resource][label]
    assert same_outcome(ours, reference), f"{resource} {label}:\n  ours:      {ours!r}\n  reference: {reference!r}"


@pytest.mark.parametrize(("resource", "label"), QUEUE_CASES, ids=[f"{r}:{lbl}" for r, lbl in QUEUE_CASES])
def test_queue_handler_through_runpods_job_runner(worker: Worker, golden: dict[str, Any], resource: str, label: str) -> None:
    result = replay_until(worker.load(resource).handler, resource, label, via_runpod)
    reference = golden[resource][label]
    if isinstance(reference, dict) and reference.get("success") is False:
        # runpod lifts a result's "error" key out of the output: the job is reported as failed.
        assert isinstance(result.get("error"), str) and result["error"], result
        assert result.get("output", {}).get("success", False) is False, result
    else:
        assert result == {"output": reference}, result


def test_empty_marker_never_reaches_the_function(worker: Worker) -> None:
    """Runpod adds {"__empty": true} to jobs submitted without input; the function must not see it."""
    handler = worker.load("repeat").handler
    assert call(handler, "marker", {"__empty": True}) == {"text": "hi", "n": 1}
    assert call(handler, "marker+n", {"__empty": True, "n": 2}) == {"text": "hi hi", "n": 2}
    assert call(handler, "none", None) == {"text": "hi", "n": 1}


def test_a_failing_function_is_logged_with_its_resource(worker: Worker, caplog: pytest.LogCaptureFixture) -> None:
    module = worker.load("fails")
    caplog.set_level(logging.ERROR, logger=module.__name__)
    result = call(module.handler, "boom", {"reason": "kaput"})
    assert result["success"] is False and result["error"] == "failed: kaput"
    logged = [r for r in caplog.records if r.name == module.__name__]
    assert len(logged) == 1 and "resource fails" in logged[0].getMessage() and "failed: kaput" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is ValueError


def test_class_instance_is_built_once_per_worker(worker: Worker) -> None:
    handler = worker.load("scaler").handler
    first = call(handler, "a", {"method": "scale", "x": 1})
    second = call(handler, "b", {"method": "scale", "x": 2})
    assert (first, second) == ({"y": 10, "calls": 1}, {"y": 20, "calls": 2})


def test_main_block_starts_runpod_with_the_handler(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run as ``__main__`` (how the image starts it), the file hands ``handler`` to runpod's loop."""
    import runpy

    import runpod

    started: list[dict[str, Any]] = []
    monkeypatch.setattr(runpod.serverless, "start", started.append)
    monkeypatch.setenv("FLASH_RESOURCE_NAME", "repeat")
    namespace = runpy.run_path(str(worker.folder / "handler_repeat.py"), run_name="__main__")
    assert [sorted(config) for config in started] == [["handler"]]
    assert started[0]["handler"] is namespace["handler"]
    assert call(started[0]["handler"], "main", {"n": 2}) == {"text": "hi hi", "n": 2}


def test_load_balanced_app_answers_like_the_reference(worker: Worker, golden: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    from fastapi.testclient import TestClient

    module = worker.load("api")
    calls = []
    caplog.set_level(logging.INFO, logger=module.__name__)
    with TestClient(module.app) as client:  # "with" runs the lifespan hooks
        for req in LB_REQUESTS[APP]["api"]:
            resp = client.request(req["method"], req["path"], json=req.get("json"), params=req.get("params"))
            calls.append({"status": resp.status_code, "body": resp.json()})
    assert calls == golden["api"]
    # The process log says which endpoint started and stopped.
    assert [r.getMessage() for r in caplog.records if r.name == module.__name__] == ["endpoint api starting", "endpoint api stopping"]
    assert sorted(f"{method} {path}" for method, path in module.ROUTE_REGISTRY) == ["GET /hello", "POST /echo"]


def test_every_resource_with_code_has_jobs_or_requests(unpacked: Path) -> None:
    """Guard the fixture: a resource nobody calls would leave its handler untested."""
    manifest = json.loads((unpacked / "flash_manifest.json").read_text(encoding="utf-8"))
    called = set(QUEUE_JOBS[APP]) | set(LB_REQUESTS[APP])
    assert set(manifest["resources"]) == called
    for resource in called:
        assert (unpacked / f"handler_{resource}.py").is_file(), resource
