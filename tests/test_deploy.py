"""``flash deploy``: runpod-flash's deploy with flash-tasks' build as its build step.

Hermetic tests use a stand-in runpod-flash whose deploy module has the shape of
1.21.0's (a ``run_build`` the command calls by module attribute, then
``shutil.rmtree`` of ``.flash/.build``). The network test runs the real
runpod-flash 1.21.0 deploy against a local server on 127.0.0.1 that answers its
GraphQL calls and the artifact upload, and records them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent

FAKE_DEPLOY = '''
import shutil
import sys
from pathlib import Path


def run_build(project_dir, app_name, no_deps=False, output_name=None, exclude=None, verbose=False{extra}):
    print("stand-in build ran", flush=True)
    return Path(project_dir) / "stand-in.tar.gz"


def main():
    args = sys.argv[2:]
    output = args[args.index("-o") + 1] if "-o" in args else None
    path = run_build(project_dir=Path.cwd(), app_name=Path.cwd().name, no_deps="--no-deps" in args,
                     output_name=output, exclude=None{call_extra})
    print(f"deploying {{path}} ({{path.stat().st_size if path.exists() else 'missing'}})", flush=True)
    for folder in (Path.cwd() / ".flash" / ".build", Path.cwd() / "scratch"):
        if folder.exists():
            shutil.rmtree(folder)
    return 0
'''


def install_fake_runpod_flash(site: Path, *, wired: bool = True) -> None:
    """A runpod-flash 1.21.0 stand-in whose ``flash`` entry point is its deploy command."""
    info = site / "runpod_flash-1.21.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: runpod-flash\nVersion: 1.21.0\n")
    (info / "entry_points.txt").write_text("[console_scripts]\nflash = runpod_flash.cli.commands.deploy:main\n")
    package = site / "runpod_flash" / "cli" / "commands"
    package.mkdir(parents=True)
    for folder in (site / "runpod_flash", site / "runpod_flash" / "cli", package):
        (folder / "__init__.py").write_text("")
    extra, call_extra = (", python_version=None", ", python_version=None") if wired else ("", "")
    (package / "deploy.py").write_text(FAKE_DEPLOY.format(extra=extra, call_extra=call_extra))


GPU_APP = (
    "from runpod_flash import Endpoint, GpuGroup\n\n\n"
    '@Endpoint(name="gpu-worker", gpu=GpuGroup.ADA_24)\n'
    "async def work(x: dict) -> dict:\n    return x\n"
)


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    folder.mkdir()
    (folder / "worker.py").write_text(GPU_APP)
    (folder / "scratch").mkdir()
    return folder


def deploy_env(site: Path, local_index: Path, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "FLASH_TASKS_FORWARDED")}
    tools = tmp_path / "no-uv-tools"
    tools.mkdir(exist_ok=True)
    # runpod-flash's deploy has no index options: the build reaches the local wheels through uv's own settings.
    env.update(PYTHONPATH=str(site), UV_TOOL_DIR=str(tools), UV_NO_INDEX="1", UV_FIND_LINKS=str(local_index), NO_COLOR="1")
    return env


def test_deploy_builds_with_flash_tasks_and_keeps_its_build_tree(app: Path, tmp_path: Path, local_index: Path) -> None:
    site = tmp_path / "site"
    install_fake_runpod_flash(site)
    proc = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "deploy", "--no-deps", "-o", "shipped.tar.gz"],
        cwd=app, env=deploy_env(site, local_index, tmp_path), check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "stand-in build ran" not in proc.stdout
    assert "Built .flash/shipped.tar.gz" in proc.stdout
    artifact = app / ".flash" / "shipped.tar.gz"
    assert f"deploying {artifact} ({artifact.stat().st_size})" in proc.stdout
    assert (app / ".flash" / ".build").is_dir()  # flash-tasks' build tree survives the deploy
    assert not (app / "scratch").exists()  # every other rmtree of the deploy still happens

    again = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "deploy", "--no-deps", "-o", "shipped.tar.gz"],
        cwd=app, env=deploy_env(site, local_index, tmp_path), check=False, capture_output=True, text=True, timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "Up to date" in again.stdout  # a second deploy rebuilds nothing


def test_a_build_error_stops_the_deploy_with_the_build_exit_code(app: Path, tmp_path: Path, local_index: Path) -> None:
    site = tmp_path / "site"
    install_fake_runpod_flash(site)
    (app / "worker.py").write_text("def broken(:\n")
    proc = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "deploy"],
        cwd=app, env=deploy_env(site, local_index, tmp_path), check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "deploying" not in proc.stdout and "Traceback" not in proc.stderr
    assert re.search(r"worker\.py:1:\d+: error: ", proc.stderr), proc.stderr


def test_a_deploy_of_another_shape_is_forwarded_untouched_with_a_note(app: Path, tmp_path: Path, local_index: Path) -> None:
    site = tmp_path / "site"
    install_fake_runpod_flash(site, wired=False)  # its run_build takes no python_version
    proc = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "deploy"],
        cwd=app, env=deploy_env(site, local_index, tmp_path), check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stand-in build ran\n")
    assert proc.stderr == "note: runpod-flash 1.21.0's deploy cannot take the flash-tasks build; it builds with its own\n"
    assert not (app / ".flash").exists()


def test_runpod_flash_in_its_own_tool_environment_deploys_with_its_own_build(app: Path, tmp_path: Path, local_index: Path) -> None:
    import venv

    env = deploy_env(tmp_path / "empty-site", local_index, tmp_path)
    root = Path(env["UV_TOOL_DIR"]) / "runpod-flash"
    venv.create(root, with_pip=False, symlinks=True)
    install_fake_runpod_flash(next(root.glob("lib/python*/site-packages")))
    proc = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "deploy"], cwd=app, env=env, check=False, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("stand-in build ran\n")
    assert proc.stderr.startswith("note: runpod-flash runs from its own uv tool environment, so its deploy builds with its own build;\n")


# -- the real runpod-flash 1.21.0, up to the HTTP layer ----------------------------------------------


class FakeRunpod:
    """Answers runpod-flash's GraphQL calls and the presigned upload; records every request."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.uploads: list[bytes] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, operation: str, variables: dict[str, Any]) -> dict[str, Any]:
        env = {"id": "env-1", "name": "production", "state": "HEALTHY", "activeBuildId": None, "createdAt": "2026-01-01T00:00:00Z"}
        given = variables.get("input")
        if operation == "getFlashAppByName":
            data: dict[str, Any] = {"flashAppByName": {"id": "app-1", "name": variables.get("flashAppName"), "flashEnvironments": [env], "flashBuilds": []}}
        elif operation == "listFlashEnvironments":
            data = {"flashApp": {"flashEnvironments": [env]}}
        elif operation == "PrepareArtifactUpload":
            upload = {"uploadUrl": f"{self.url}/upload/build.tar.gz?sig=x", "objectKey": "builds/build.tar.gz", "expiresAt": "2099-01-01T00:00:00Z"}
            data = {"prepareFlashArtifactUpload": upload}
        elif operation == "FinalizeArtifactUpload":
            data = {"finalizeFlashArtifactUpload": {"id": "build-1", "manifest": given["manifest"]}}
        elif operation == "getFlashEnvironmentByName":
            data = {"flashEnvironmentByName": {**env, "endpoints": [], "networkVolumes": []}}
        elif operation == "deployBuildToEnvironment":
            artifact = {"objectKey": "builds/build.tar.gz", "downloadUrl": f"{self.url}/download", "expiresAt": "2099-01-01T00:00:00Z"}
            data = {"deployBuildToEnvironment": {"id": "env-1", "name": "production", "activeArtifact": artifact}}
        elif operation == "getFlashBuild":
            data = {"flashBuild": {"id": given, "manifest": {}}}
        elif operation == "saveEndpoint":
            data = {"saveEndpoint": {**given, "id": f"ep-{given.get('name', 'x')}", "templateId": "tpl-1", "aiKey": None}}
        elif operation == "updateFlashBuildManifest":
            data = {"updateFlashBuildManifest": {"id": given["flashBuildId"], "manifest": given["manifest"]}}
        else:
            return {"errors": [{"message": f"the test server does not answer {operation}"}]}
        return {"data": data}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_PUT(self) -> None:
                body = self._body()
                fake.uploads.append(body)
                fake.requests.append({"method": "PUT", "path": self.path, "size": len(body), "type": self.headers.get("Content-Type")})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                fake.requests.append({"method": "GET", "path": self.path})
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self) -> None:
                payload = json.loads(self._body() or b"{}")
                query = payload.get("query", "")
                match = re.search(r"\b(?:query|mutation)\s+(\w+)", query)
                operation = match.group(1) if match else "?"
                fake.requests.append({
                    "method": "POST", "path": self.path, "operation": operation, "variables": payload.get("variables"),
                    "authorization": self.headers.get("Authorization"),
                })
                data = json.dumps(fake.answer(operation, payload.get("variables") or {})).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def operations(self) -> list[str]:
        return [r.get("operation", f"{r['method']} {r['path'].split('?')[0]}") for r in self.requests]


@pytest.fixture()
def fake_runpod() -> Iterator[FakeRunpod]:
    fake = FakeRunpod()
    thread = threading.Thread(target=fake.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        fake.server.shutdown()
        fake.server.server_close()


@pytest.mark.network
@pytest.mark.reference
@pytest.mark.slow
def test_real_deploy_uploads_the_flash_tasks_artifact_and_manifest(tmp_path: Path, fake_runpod: FakeRunpod) -> None:
    from support.both import both_python

    python = both_python(tmp_path / "both")

    app = tmp_path / "starter"
    shutil.copytree(REPO / ".flash-template", app, ignore=shutil.ignore_patterns(".flash", "__pycache__"))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "FLASH_")) and k not in ("PYTHONPATH",)}
    env.update(
        HOME=str(home), RUNPOD_API_KEY="test-key", RUNPOD_API_BASE_URL=fake_runpod.url, RUNPOD_REST_API_URL=fake_runpod.url,
        RUNPOD_HAPI_URL=fake_runpod.url, RUNPOD_CONSOLE_URL=fake_runpod.url, RUNPOD_ENDPOINT_BASE_URL=fake_runpod.url,
        RUNPOD_URL_MIXED_OK="1", FLASH_NO_UPDATE_CHECK="1", NO_PROXY="127.0.0.1", no_proxy="127.0.0.1",
        UV_TOOL_DIR=str(tmp_path / "no-uv-tools"), COLUMNS="200",
    )
    def deploy() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(python), "-m", "flash_tasks", "deploy", "--env", "production", "--no-deps"],
            cwd=app, env=env, check=False, capture_output=True, text=True, timeout=600,
        )

    proc = deploy()
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Built .flash/artifact.tar.gz" in proc.stdout, output  # flash-tasks built it
    assert "deployed to production" in proc.stdout, output

    artifact = app / ".flash" / "artifact.tar.gz"
    with tarfile.open(artifact, "r:gz") as tar:
        handle = tar.extractfile("./flash_manifest.json")
        assert handle is not None
        built_manifest = json.loads(handle.read())
    assert fake_runpod.operations() == [
        "getFlashAppByName", "getFlashAppByName", "listFlashEnvironments", "PrepareArtifactUpload", "PUT /upload/build.tar.gz",
        "FinalizeArtifactUpload", "getFlashEnvironmentByName", "getFlashEnvironmentByName", "deployBuildToEnvironment",
        "getFlashBuild", "saveEndpoint", "saveEndpoint", "saveEndpoint", "updateFlashBuildManifest",
    ]
    by_op = {r.get("operation"): r for r in fake_runpod.requests}
    assert by_op["getFlashAppByName"]["variables"] == {"flashAppName": "starter"}
    assert by_op["PrepareArtifactUpload"]["variables"]["input"] == {"flashAppId": "app-1", "tarballSize": artifact.stat().st_size}
    assert hashlib.sha256(fake_runpod.uploads[0]).hexdigest() == hashlib.sha256(artifact.read_bytes()).hexdigest()
    sent = by_op["FinalizeArtifactUpload"]["variables"]["input"]
    assert sent["objectKey"] == "builds/build.tar.gz" and sent["manifest"] == built_manifest
    assert by_op["deployBuildToEnvironment"]["variables"]["input"] == {"flashEnvironmentId": "env-1", "flashBuildId": "build-1"}
    saved = sorted(r["variables"]["input"]["name"] for r in fake_runpod.requests if r.get("operation") == "saveEndpoint")
    assert len(saved) == 3 and all(any(n in name for name in saved) for n in ("api", "embedder", "text-tools")), saved
    assert all(r["authorization"] and "test-key" in r["authorization"] for r in fake_runpod.requests if r["method"] == "POST")
    assert (app / ".flash" / ".build").is_dir()  # runpod-flash's deploy did not delete flash-tasks' build tree

    # A second deploy without an edit rebuilds nothing and uploads the same bytes.
    del fake_runpod.requests[:]
    again = deploy()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Up to date" in again.stdout, again.stdout[:1500]
    assert fake_runpod.uploads[1] == fake_runpod.uploads[0] == artifact.read_bytes()
