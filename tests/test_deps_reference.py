"""Real dependencies from the package index, compared with runpod-flash 1.21.0.

An app with numpy, pillow, requests and pyyaml in requirements.txt, endpoint-level
dependencies and one endpoint that lists torch: both tools must produce the same
manifest and the same artifact file list; the artifact must import on a CPython of
the target version; torch must never be downloaded; a rebuild must not touch the
network. Versions are pinned so both resolvers see the same releases.
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

pytestmark = [pytest.mark.network, pytest.mark.reference]

MAIN = '''\
from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="images", gpu=GpuGroup.ADA_24, dependencies=["pyyaml==6.0.4"])
def process(data: dict) -> dict:
    return data


@Endpoint(name="light", cpu="cpu3c-1-2", dependencies=["torch", "six==1.17.0"])
def light(x):
    return x
'''
REQUIREMENTS = """\
numpy==2.4.6
pillow==13.0.0
requests==2.34.2
certifi==2026.10.19.post1
charset-normalizer==3.5.3
idna==3.20
urllib3==2.8.0
"""
VOLATILE = ("generated_at", "source_fingerprint")


def make_app(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "main.py").write_text(MAIN)
    (folder / "requirements.txt").write_text(REQUIREMENTS)
    return folder


def find_python(version: str) -> str | None:
    """A working CPython ``version`` interpreter: on PATH or in a pyenv install."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}*/bin/python{version}"))
    for candidate in filter(None, candidates):
        probe = subprocess.run(
            [candidate, "-c", "import sys, platform; print(sys.version_info[:2], platform.machine())"],
            capture_output=True,
            text=True,
        )
        if probe.returncode == 0 and probe.stdout.split(")")[0] + ")" == str(tuple(int(x) for x in version.split("."))):
            return candidate
    return None


def members(artifact: Path) -> set[str]:
    with tarfile.open(artifact) as tar:
        return {m.name + ("/" if m.isdir() and m.name != "." else "") for m in tar.getmembers()}


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    ref_python = require_reference()
    base = tmp_path_factory.mktemp("deps")
    ref_app = make_app(base / "ref" / "shop")
    ours_app = make_app(base / "ours" / "shop")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLASH_", "RUNPOD_"))}
    result = subprocess.run([str(ref_python.parent / "flash"), "build"], cwd=ref_app, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    run_tasks(BuildConfig(app_dir=ours_app))
    return ref_app, ours_app


def test_manifest_matches(builds: tuple[Path, Path]) -> None:
    ref_app, ours_app = builds
    ref = json.loads((ref_app / ".flash" / "flash_manifest.json").read_text())
    ours = json.loads((ours_app / ".flash" / "flash_manifest.json").read_text())
    for key in VOLATILE:
        ref.pop(key, None)
        ours.pop(key, None)
    assert ours == ref


def test_artifact_file_list_matches(builds: tuple[Path, Path]) -> None:
    ref_app, ours_app = builds
    ref = members(ref_app / ".flash" / "artifact.tar.gz")
    ours = members(ours_app / ".flash" / "artifact.tar.gz")
    only_ref, only_ours = sorted(ref - ours), sorted(ours - ref)
    assert not only_ref and not only_ours, f"only in the reference: {only_ref[:20]}\nonly in ours: {only_ours[:20]}"
    for name in ("./numpy/__init__.py", "./PIL/__init__.py", "./requests/__init__.py", "./yaml/__init__.py", "./six.py"):
        assert name in ours


def test_torch_was_never_downloaded(builds: tuple[Path, Path]) -> None:
    _, ours_app = builds
    assert not any(n.startswith(("./torch", "./nvidia", "./triton")) for n in members(ours_app / ".flash" / "artifact.tar.gz"))
    cache = Path(os.environ["UV_CACHE_DIR"])
    assert not [p for p in cache.rglob("*") if p.name.startswith(("torch-", "torch_", "nvidia_", "triton-"))]


def test_artifact_imports_on_the_target_python(builds: tuple[Path, Path], tmp_path: Path) -> None:
    _, ours_app = builds
    python = find_python("3.12")
    if python is None:
        pytest.skip("no CPython 3.12 on this machine")
    with tarfile.open(ours_app / ".flash" / "artifact.tar.gz") as tar:
        tar.extractall(tmp_path, filter="data")
    code = "import numpy, PIL.Image, requests, yaml, six; print(numpy.__version__, PIL.__version__, yaml.__version__)"
    result = subprocess.run([python, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path)!r}); {code}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2.4.6", "13.0.0", "6.0.4"]


def test_rebuilds_do_not_touch_the_network(builds: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _, ours_app = builds
    # A dead proxy: any request to the index would fail the build.
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    assert run_tasks(BuildConfig(app_dir=ours_app)).ran == []
    (ours_app / "main.py").write_text(MAIN + "\n# edited\n")
    report = run_tasks(BuildConfig(app_dir=ours_app))
    assert "manifest" in report.ran and "install" not in report.ran
    # Even a wiped build folder reinstalls from the locks and uv's cache, offline.
    shutil.rmtree(ours_app / ".flash" / ".build")
    report = run_tasks(BuildConfig(app_dir=ours_app))
    assert "install" in report.ran
    assert (ours_app / ".flash" / ".build" / "numpy" / "__init__.py").is_file()
