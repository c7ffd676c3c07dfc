"""Build a realistic app, unpack the artifact into an empty folder and call it as a worker does.

The worker environment is runpod-flash 1.21.0's (runpod, fastapi, runpod_flash): see
tests/support/reference.py. Skipped when it cannot be installed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks
from support.reference import require_reference

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.reference

QUEUE_CALL = """
import asyncio, importlib, json, sys
module = importlib.import_module(sys.argv[1])
jobs = json.loads(sys.argv[2])
out = []
for job in jobs:
    result = module.handler(job)
    if asyncio.iscoroutine(result):
        result = asyncio.run(result)
    out.append(result)
print(json.dumps(out))
"""

LB_CALL = """
import importlib, json, sys
from fastapi.testclient import TestClient
app = importlib.import_module(sys.argv[1]).app
client = TestClient(app)
out = [client.get("/ping").json(), client.get("/health").json(),
       client.post("/words", json={"text": "a b c"}).json()]
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("src") / "shop"
    shutil.copytree(REPO / ".flash-template", app, ignore=shutil.ignore_patterns(".flash"))
    (app / "requirements.txt").write_text("")
    embed = app / "workers" / "embed.py"
    embed.write_text(embed.read_text().replace('    dependencies=["pyyaml>=6"],\n', ""))
    (app / "api" / "routes.py").write_text(
        (app / "api" / "routes.py").read_text()
        + '\n\n@api.post("/words")\ndef words(text: str) -> dict:\n    return {"n": len(text.split())}\n'
    )
    run_tasks(BuildConfig(app_dir=app, no_deps=True))
    target = tmp_path_factory.mktemp("worker")
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        tar.extractall(target, filter="data")
    return target


def run_worker(python: Path, folder: Path, resource: str, script: str, *args: str) -> object:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    env.update({"RUNPOD_ENDPOINT_ID": "local-test", "FLASH_RESOURCE_NAME": resource, "PYTHONPATH": str(folder)})
    result = subprocess.run([str(python), "-c", script, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_unpacked_artifact_has_handlers_and_manifest(unpacked: Path) -> None:
    manifest = json.loads((unpacked / "flash_manifest.json").read_text())
    for name, resource in manifest["resources"].items():
        assert (unpacked / f"handler_{name}.py").is_file()
        for fn in resource["functions"]:
            assert (unpacked / (fn["module"].replace(".", "/") + ".py")).is_file()


def test_queue_function_answers_a_job(unpacked: Path) -> None:
    python = require_reference()
    out = run_worker(python, unpacked, "embedder", QUEUE_CALL, "handler_embedder",
                     json.dumps([{"input": {"texts": ["ab cde"], "normalize": False}}, {"input": {"nope": 1}}]))
    assert out[0]["vectors"] == [[2.0, 3.0]]
    assert out[1]["success"] is False and "nope" in out[1]["error"]


def test_class_endpoint_dispatches_methods(unpacked: Path) -> None:
    python = require_reference()
    jobs = [{"input": {"method": "word_count", "text": "x y"}}, {"input": {"method": "shout", "text": "hi"}}, {"input": {"text": "x"}}]
    out = run_worker(python, unpacked, "text-tools", QUEUE_CALL, "handler_text-tools", json.dumps(jobs))
    assert out[0] == {"words": 2, "calls": 1}
    assert out[1] == {"text": "HI", "calls": 2}
    assert out[2]["success"] is False and "shout" in out[2]["error"] and "word_count" in out[2]["error"]


def test_load_balanced_api_answers_http(unpacked: Path) -> None:
    python = require_reference()
    out = run_worker(python, unpacked, "api", LB_CALL, "handler_api")
    assert out == [{"status": "healthy"}, {"status": "ok"}, {"n": 3}]
