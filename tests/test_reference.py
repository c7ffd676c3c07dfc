"""Differential tests: our ``flash build`` against runpod-flash 1.21.0's.

Each app under ``tests/apps/<name>/`` is copied twice into a temporary folder
(one copy per tool, same folder name so ``project_name`` agrees), built with
``--no-deps`` by both tools, and the two ``.flash/flash_manifest.json`` are
compared field by field (``generated_at`` and ``source_fingerprint`` aside),
as are the artifacts' member lists (``./runpod_flash/`` aside: bundling the SDK
is a separate work item).

The reference imports the apps, so fixture apps import only ``runpod_flash``
and the standard library at module level. Files that pytest would collect
(``test_*.py``, ``*_test.py``) or that git would hide (``.gitignore`` and what
it ignores) cannot live in the fixture folders; ``GENERATED_FILES`` writes them
into the copies instead.

Differences we keep on purpose are asserted explicitly, as differences:

- ``--python-version 3.11``: our image tag follows the chosen Python
  (``py3.11``); the reference's stays ``py3.12``.
- ``--python-version 3.13``: the reference accepts it (its code allows 3.13,
  its ``--help`` says 3.10-3.12); we reject it as a usage error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.apps import (
    artifact_members,
    build_env,
    comparable,
    copy_app,
    json_diff,
    reference_build,
    shipped,
)
from support.reference import require_reference

pytestmark = pytest.mark.reference

BASIC_APPS = (
    "queue_basic", "cpu_and_classes", "load_balanced", "nested_packages", "volumes_and_flags", "legacy_remote",
    "reassigned_constants", "runnable_workers",
)
BUILD_TIMEOUT_S = 300

# --- building ------------------------------------------------------------------


@dataclass
class Build:
    tool: str
    app_dir: Path
    returncode: int
    output: str

    @property
    def flash_dir(self) -> Path:
        return self.app_dir / ".flash"

    def check(self) -> Build:
        assert self.returncode == 0, f"{self.tool} build of {self.app_dir.name} failed ({self.returncode}):\n{self.output}"
        return self

    def manifest(self) -> dict[str, Any]:
        return json.loads((self.flash_dir / "flash_manifest.json").read_text(encoding="utf-8"))

    def members(self) -> set[str]:
        return artifact_members(self.flash_dir / "artifact.tar.gz")


def write_app(files: dict[str, str], dest: Path) -> Path:
    for relpath, text in files.items():
        target = dest / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return dest


def run_reference(app_dir: Path, *args: str) -> Build:
    code, output = reference_build(reference_flash(), app_dir, *args, timeout=BUILD_TIMEOUT_S)
    return Build("reference", app_dir, code, output)


def run_ours(app_dir: Path, *args: str) -> Build:
    proc = subprocess.run(
        [sys.executable, "-m", "flash_tasks", "build", "--no-deps", "-v", "-C", str(app_dir), *args],
        env=build_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    return Build("ours", app_dir, proc.returncode, proc.stdout)


def reference_flash() -> Path:
    python = require_reference()
    flash = python.parent / ("flash.exe" if os.name == "nt" else "flash")
    if not flash.exists():
        pytest.skip(f"{python} has no flash command next to it")
    return flash


def build_both(app_root: Path, app: str, *args: str, files: dict[str, str] | None = None) -> tuple[Build, Build]:
    """Build one app with each tool, each on its own copy."""
    copies = []
    for tool in ("reference", "ours"):
        root = app_root / tool
        root.mkdir(parents=True)
        copies.append(write_app(files, root / app) if files is not None else copy_app(app, root))
    return run_reference(copies[0], *args), run_ours(copies[1], *args)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """Build an app with both tools once per module and set of flags."""
    reference_flash()  # skip before copying anything when there is no reference
    cache: dict[tuple[str, tuple[str, ...]], tuple[Build, Build]] = {}

    def get(app: str, *args: str) -> tuple[Build, Build]:
        key = (app, args)
        if key not in cache:
            cache[key] = build_both(tmp_path_factory.mktemp(app), app, *args)
        return cache[key]

    return get


# --- comparing -------------------------------------------------------------------


def assert_same_manifest(ref: dict[str, Any], ours: dict[str, Any], what: str) -> None:
    diff = json_diff(comparable(ref), comparable(ours))
    assert not diff, f"{what}: flash_manifest.json differs in {len(diff)} place(s):\n" + "\n".join(diff)


def missing_parents(members: set[str]) -> set[str]:
    """Directory entries that members imply but the archive does not list."""
    missing = set()
    for member in members:
        parts = member.rstrip("/").split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth]) + "/"
            if parent not in members:
                missing.add(parent)
    return missing


def format_set_diff(ref: set[str], ours: set[str]) -> str:
    lines = [f"  only in the reference: {sorted(ref - ours)}", f"  only in ours:          {sorted(ours - ref)}"]
    return "\n".join(lines)


# --- the apps --------------------------------------------------------------------


@pytest.mark.parametrize("app", BASIC_APPS)
def test_manifest_matches_reference(built, app: str) -> None:
    ref, ours = built(app)
    ref.check()
    ours.check()
    assert_same_manifest(ref.manifest(), ours.manifest(), app)


@pytest.mark.parametrize("app", BASIC_APPS)
def test_artifact_members_match_reference(built, app: str) -> None:
    ref, ours = built(app)
    ref_members, our_members = ref.check().members(), ours.check().members()
    for build, members in ((ref, ref_members), (ours, our_members)):
        assert "./" in members, f"{build.tool}: no './' root entry"
        assert not missing_parents(members), f"{build.tool}: directory entries missing: {sorted(missing_parents(members))}"
    assert shipped(ref_members) == shipped(our_members), f"{app}: artifact members differ\n" + format_set_diff(
        shipped(ref_members), shipped(our_members)
    )


def test_fixture_apps_exercise_what_they_claim(built) -> None:
    """Guard the fixtures themselves: both tools agreeing on an empty app proves nothing."""
    expected = {
        "queue_basic": {
            "ada-async", "types-sync", "mixed", "default-gpu", "scaled", "romania",
            "stage-one", "stage-two", "orchestrator",
        },
        "cpu_and_classes": {"cpu-enum", "cpu-string", "cpu-pair", "cpu-ro", "model-server", "sync-class"},
        "load_balanced": {"api", "summarizer", "vision", "tools", "aliased-queue"},
        "nested_packages": {"nested-infer", "dash-api", "dash-queue", "top"},
        "volumes_and_flags": {"with-volume", "two-volumes", "no-boot-fb", "default-boot", "vllm"},
    }
    for app, names in expected.items():
        _ref, ours = built(app)
        assert set(ours.check().manifest()["resources"]) == names, app


def test_nested_packages_leaves_out_ignored_files(built) -> None:
    ref, ours = built("nested_packages")
    for build in (ref, ours):
        members = build.check().members()
        for left_out in (
            "./scratch/",
            "./scratch/worker.py",
            "./build.log",
            "./test_app.py",
            "./workers/infer_test.py",
            "./tests/",
            "./tests/helpers.py",
            "./NOTES.md",
            "./.gitignore",
        ):
            assert left_out not in members, f"{build.tool} shipped {left_out}"
        for kept in ("./README.md", "./data.json", "./workers/gpu/__init__.py", "./workers/cpu/my-worker.py"):
            assert kept in members, f"{build.tool} left out {kept}"
        manifest = build.manifest()
        assert manifest["resources"]["dash-api"]["module_path"] == "workers.cpu.my-worker"
        assert manifest["resources"]["nested-infer"]["gpuIds"] == "AMPERE_80"  # from config/settings.py


def test_env_reads_os_environ_at_build_time(built) -> None:
    ref, ours = built("queue_basic")
    for build in (ref, ours):
        env = build.check().manifest()["resources"]["ada-async"]["env"]
        assert env == {"MODEL": "models/llama-3", "NAME": "llama-3", "REGION": "eu-west", "TIER": "free"}, build.tool


# --- --python-version ---------------------------------------------------------------


@pytest.mark.parametrize("app", ["load_balanced", "volumes_and_flags"])
def test_python_version_311_differs_only_in_image_tags(built, app: str) -> None:
    """The one deliberate difference: our image tag follows --python-version, the reference's stays py3.12."""
    ref, ours = built(app, "--python-version", "3.11")
    ref_manifest, our_manifest = ref.check().manifest(), ours.check().manifest()
    assert ref_manifest["python_version"] == our_manifest["python_version"] == "3.11"
    retagged = 0
    for name, ref_resource in ref_manifest["resources"].items():
        our_resource = our_manifest["resources"].get(name)
        assert our_resource is not None, f"resource {name!r} missing in ours"
        assert ref_resource["target_python_version"] == our_resource["target_python_version"] == "3.11"
        ref_image, our_image = ref_resource.pop("imageName"), our_resource.pop("imageName")
        if ref_image.startswith("runpod/flash"):
            repo = ref_image.split(":")[0]
            assert ref_image == f"{repo}:py3.12-latest", name
            assert our_image == f"{repo}:py3.11-latest", name
            retagged += 1
        else:  # a user-supplied image is used as is by both
            assert our_image == ref_image, name
    assert retagged, "no resource with a runpod/flash image: the test checks nothing"
    assert_same_manifest(ref_manifest, our_manifest, f"{app} --python-version 3.11 (imageName aside)")
    assert shipped(ref.members()) == shipped(ours.members())


def test_python_version_313_accepted_by_reference_only(tmp_path: Path) -> None:
    """Known difference: the reference's code accepts 3.13 (its help text says 3.10-3.12); we refuse it."""
    ref, ours = build_both(tmp_path, "cpu_and_classes", "--python-version", "3.13")
    ref.check()
    assert ref.manifest()["python_version"] == "3.13"
    assert ours.returncode == 2, ours.output
    assert "3.13" in ours.output and "not supported" in ours.output


# --- client-mode endpoints used as decorators ---------------------------------------------

CLIENT_DECORATORS = {
    "inline-image": '''\
from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="custom-image", gpu=GpuGroup.ADA_24, image="my/image:1")
async def custom(x: dict) -> dict:
    return x
''',
    "inline-id": '''\
from runpod_flash import Endpoint


@Endpoint(name="attached", id="abc123")
def attached(x):
    return x
''',
    "variable-id": '''\
from runpod_flash import Endpoint

existing = Endpoint(name="existing", id="abc123")


@existing
def attached(x):
    return x
''',
    "variable-image": '''\
from runpod_flash import Endpoint

external = Endpoint(name="external", image="org/img:2")


@external
def wrapped(x):
    return x
''',
}


@pytest.mark.parametrize("case", sorted(CLIENT_DECORATORS))
def test_client_endpoint_as_decorator_is_rejected_by_both(tmp_path: Path, case: str) -> None:
    """Endpoint(image=...) / Endpoint(id=...) is a client; decorating code with it is an error in both tools."""
    ref, ours = build_both(tmp_path, "client_decorator", files={"app.py": CLIENT_DECORATORS[case]})
    assert ref.returncode != 0, f"the reference accepted {case}:\n{ref.output}"
    assert "as a decorator" in ref.output, ref.output
    assert ours.returncode == 1, f"ours exited {ours.returncode} on {case}:\n{ours.output}"
    mode = "id=" if case.endswith("-id") else "image="
    assert mode in ours.output and "as a decorator" in ours.output, ours.output
