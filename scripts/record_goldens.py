"""Record runpod-flash 1.21.0's outputs for every case in tests/support/apps.py into tests/goldens/.

Run by hand, with the reference installed in some environment (never a dependency
of this project):

    python -m venv /tmp/ref && /tmp/ref/bin/pip install runpod-flash==1.21.0
    python scripts/record_goldens.py --reference-python /tmp/ref/bin/python [CASE ...]

For each case the app is copied to a temporary folder and built with the
reference's ``flash build --no-deps``; then

* ``manifest.json``: its flash_manifest.json without the fields that change on
  every build (``generated_at``, ``source_fingerprint``);
* ``members.txt``: the artifact's member list, without the bundled SDK;
* ``outputs.json`` (apps with jobs in ``QUEUE_JOBS``/``LB_REQUESTS``, default flags): the
  artifact is unpacked and, in the reference environment, each queue
  resource's ``handler`` is called with those jobs and each load-balanced
  resource's ``app`` is sent those requests through FastAPI's TestClient.
  Of a traceback in a result only its last line (the exception) is kept.

Cases marked ``network`` need the real package index (their requirements are
installed). The default test suite compares our builds with these files offline
(tests/test_goldens.py); rerun this script when the fixture apps change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.apps import (
    CASES,
    LB_REQUESTS,
    QUEUE_JOBS,
    Case,
    artifact_members,
    comparable,
    copy_app,
    reference_build,
    shipped,
)

BUILD_TIMEOUT_S = 600

#: Runs inside the reference environment, in the unpacked artifact, once per resource.
_DRIVER = r'''
import asyncio, importlib, json, sys

spec = json.loads(sys.argv[1])
module = importlib.import_module(spec["module"])
out = {}
if spec["kind"] == "queue":
    for label, payload in spec["jobs"].items():
        try:
            result = module.handler({"id": "job-" + label, "input": payload})
            if asyncio.iscoroutine(result):
                result = asyncio.run(result)
        except Exception as exc:
            result = {"raised": type(exc).__name__}
        if isinstance(result, dict) and isinstance(result.get("traceback"), str):
            # Paths and line numbers are the generator's; the exception line is the contract.
            result["traceback"] = result["traceback"].strip().splitlines()[-1]
        out[label] = result
else:
    from fastapi.testclient import TestClient

    calls = []
    with TestClient(module.app) as client:
        for req in spec["requests"]:
            resp = client.request(req["method"], req["path"], json=req.get("json"), params=req.get("params"))
            calls.append({"status": resp.status_code, "body": resp.json()})
    out = calls
print(json.dumps(out, default=repr))
'''


def run_reference_build(python: Path, app_dir: Path, args: tuple[str, ...]) -> None:
    code, output = reference_build(python.parent / "flash", app_dir, *args, timeout=BUILD_TIMEOUT_S)
    if code != 0:
        raise SystemExit(f"the reference failed to build {app_dir.name} {' '.join(args)}:\n{output}")


def handler_outputs(python: Path, case: Case, unpacked: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    outputs: dict[str, Any] = {}
    jobs = QUEUE_JOBS.get(case.app, {})
    requests = LB_REQUESTS.get(case.app, {})
    for resource in sorted({*jobs, *requests}):
        if resource not in manifest["resources"]:
            raise SystemExit(f"{case.name}: jobs for {resource!r}, which the reference's manifest does not have")
        spec: dict[str, Any] = {"module": f"handler_{resource}"}
        spec.update({"kind": "queue", "jobs": jobs[resource]} if resource in jobs else {"kind": "lb", "requests": requests[resource]})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASH_", "RUNPOD_"))}
        env.update(RUNPOD_ENDPOINT_ID="golden", FLASH_RESOURCE_NAME=resource, PYTHONPATH=str(unpacked), PYTHONDONTWRITEBYTECODE="1")
        proc = subprocess.run(
            [str(python), "-c", _DRIVER, json.dumps(spec)],
            cwd=unpacked,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{case.name}: running handler_{resource} failed:\n{proc.stderr[-4000:]}")
        outputs[resource] = json.loads(proc.stdout.strip().splitlines()[-1])
    return outputs


def record(python: Path, case: Case, scratch: Path) -> None:
    app_dir = copy_app(case.app, scratch / case.name / "src", case.files)
    run_reference_build(python, app_dir, case.args)
    manifest = json.loads((app_dir / ".flash" / "flash_manifest.json").read_text(encoding="utf-8"))
    artifact = app_dir / ".flash" / "artifact.tar.gz"
    case.folder.mkdir(parents=True, exist_ok=True)
    (case.folder / "manifest.json").write_text(json.dumps(comparable(manifest), indent=2) + "\n", encoding="utf-8")
    members = sorted(shipped(artifact_members(artifact)))
    (case.folder / "members.txt").write_text("\n".join(members) + "\n", encoding="utf-8")
    if not case.args and (case.app in QUEUE_JOBS or case.app in LB_REQUESTS):
        unpacked = scratch / case.name / "unpacked"
        with tarfile.open(artifact) as tar:
            tar.extractall(unpacked, filter="data")
        outputs = handler_outputs(python, case, unpacked, manifest)
        (case.folder / "outputs.json").write_text(json.dumps(outputs, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"recorded {case.name}: {len(manifest['resources'])} resources, {len(members)} members")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", type=Path, default=os.environ.get("FLASH_REFERENCE_PYTHON"),
                        help="an interpreter with runpod-flash 1.21.0 (default: $FLASH_REFERENCE_PYTHON)")
    parser.add_argument("--skip-network", action="store_true", help="leave out the cases that need the package index")
    parser.add_argument("cases", nargs="*", help="case names (default: all); see tests/support/apps.py")
    args = parser.parse_args(argv)
    if args.reference_python is None or not Path(args.reference_python).exists():
        parser.error("give --reference-python (or FLASH_REFERENCE_PYTHON): an interpreter with runpod-flash 1.21.0")
    version = subprocess.run([str(args.reference_python), "-c", "import importlib.metadata as m; print(m.version('runpod-flash'))"],
                             capture_output=True, text=True, check=False).stdout.strip()
    if version != "1.21.0":
        parser.error(f"{args.reference_python} has runpod-flash {version or '(none)'}, not 1.21.0")
    known = {case.name: case for case in CASES}
    unknown = [name for name in args.cases if name not in known]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; known: {sorted(known)}")
    selected = [known[name] for name in args.cases] if args.cases else list(CASES)
    if args.skip_network:
        selected = [case for case in selected if not case.network]
    with tempfile.TemporaryDirectory(prefix="flash-goldens-") as tmp:
        for case in selected:
            record(Path(args.reference_python), case, Path(tmp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
