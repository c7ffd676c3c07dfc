"""Our builds against runpod-flash 1.21.0's, as recorded in tests/goldens/ (offline).

scripts/record_goldens.py built every case of tests/support/apps.py with the
reference and kept its manifest (volatile fields aside) and its artifact's
member list (bundled SDK aside). Here each case is built with ours, offline,
from the local test index, and compared with those files: field for field, in
the same key order, and member for member. tests/test_reference.py makes the
same comparison live, when the reference can be installed.

The one deliberate difference, asserted as such: with ``--python-version`` other
than 3.12 our ``runpod/flash*`` image tags follow that Python, the reference's
stay ``py3.12``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from support.apps import (
    CASES,
    CLEARED_ENV,
    FIXTURE_ENV,
    Case,
    artifact_members,
    comparable,
    copy_app,
    json_diff,
    load_golden,
    shipped,
)

from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks

OFFLINE_CASES = [case for case in CASES if not case.network]
NETWORK_CASES = [case for case in CASES if case.network]


def _python_version(case: Case) -> str | None:
    return case.args[case.args.index("--python-version") + 1] if "--python-version" in case.args else None


def build_case(case: Case, root: Path, monkeypatch: pytest.MonkeyPatch, index: dict[str, Any]) -> Path:
    """Build ``case`` with ours the way the recording built it with the reference."""
    for var in CLEARED_ENV:
        monkeypatch.delenv(var, raising=False)
    for var, value in FIXTURE_ENV.items():
        monkeypatch.setenv(var, value)
    app = copy_app(case.app, root / case.name, case.files)
    run_tasks(BuildConfig(app_dir=app, no_deps=True, python_version=_python_version(case), **index))
    return app


def expected_manifest(case: Case, golden: dict[str, Any]) -> dict[str, Any]:
    """The golden manifest with our deliberate difference applied: image tags follow the Python."""
    version = _python_version(case)
    if version is None or version == "3.12":
        return golden
    expected = json.loads(json.dumps(golden))
    for resource in expected["resources"].values():
        image = resource.get("imageName", "")
        if image.startswith("runpod/flash") and image.endswith(":py3.12-latest"):
            resource["imageName"] = image.replace(":py3.12-", f":py{version}-")
    return expected


@pytest.fixture(scope="module")
def offline_index(local_index: Path) -> dict[str, Any]:
    return {"find_links": (str(local_index),), "no_index": True}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, offline_index: dict[str, Any]):
    """Build each case once per module."""
    cache: dict[str, Path] = {}

    def get(case: Case) -> Path:
        if case.name not in cache:
            with pytest.MonkeyPatch.context() as monkeypatch:
                cache[case.name] = build_case(case, tmp_path_factory.mktemp("golden"), monkeypatch, offline_index)
        return cache[case.name]

    return get


def test_every_app_has_a_golden() -> None:
    apps = {path.name for path in (Path(__file__).parent / "apps").iterdir() if path.is_dir()}
    # The real-app constructs have their own goldens and test (tests/test_real_apps.py).
    real = {path.stem for path in (Path(__file__).parent / "goldens" / "real_apps").glob("*.json")}
    apps -= real
    recorded = {case.app for case in CASES}
    assert apps == recorded, f"apps without a recorded case: {sorted(apps - recorded)}; cases without an app: {sorted(recorded - apps)}"
    for case in CASES:
        assert (case.folder / "manifest.json").is_file() and (case.folder / "members.txt").is_file(), (
            f"{case.name}: no golden; run scripts/record_goldens.py {case.name}"
        )


@pytest.mark.parametrize("case", OFFLINE_CASES, ids=lambda case: case.name)
def test_manifest_matches_golden(built, case: Case) -> None:
    golden, _members, _outputs = load_golden(case)
    ours = json.loads((built(case) / ".flash" / "flash_manifest.json").read_text(encoding="utf-8"))
    diff = json_diff(expected_manifest(case, golden), comparable(ours))
    assert not diff, f"{case.name}: flash_manifest.json differs from tests/goldens/{case.name} in {len(diff)} place(s):\n" + "\n".join(diff)


@pytest.mark.parametrize("case", OFFLINE_CASES, ids=lambda case: case.name)
def test_artifact_members_match_golden(built, case: Case) -> None:
    _manifest, golden, _outputs = load_golden(case)
    ours = shipped(artifact_members(built(case) / ".flash" / "artifact.tar.gz"))
    assert ours == golden, (
        f"{case.name}: artifact members differ from tests/goldens/{case.name}/members.txt\n"
        f"  only in the reference: {sorted(golden - ours)}\n  only in ours:          {sorted(ours - golden)}"
    )


def test_goldens_record_what_the_planted_cases_need() -> None:
    """Guard the recordings: a golden that lost what a case is for would let bugs through."""
    reassigned, _, _ = load_golden(Case("reassigned_constants"))
    final = reassigned["resources"]["final"]
    assert (final["gpuIds"], final["workersMax"], final["env"]) == ("AMPERE_80", 3, {"REGION": "eu", "STAGE": "prod"})
    assert reassigned["resources"]["final-cpu"]["idleTimeout"] == 90
    assert reassigned["resources"]["tiered"]["env"] == {"TIER": "small"}  # bound again only after its use
    for case in CASES:
        manifest, _, _ = load_golden(case)
        for name, resource in manifest["resources"].items():
            if resource.get("file_path"):
                assert resource["local_path_prefix"] == "/" + resource["file_path"].removesuffix(".py"), (case.name, name)
    _, members_311, _ = load_golden(Case("native_wheel", ("--python-version", "3.11"), network=True))
    _, members_312, _ = load_golden(Case("native_wheel", ("--python-version", "3.12"), network=True))
    assert "./yaml/_yaml.cpython-311-x86_64-linux-gnu.so" in members_311 - members_312
    assert "./yaml/_yaml.cpython-312-x86_64-linux-gnu.so" in members_312 - members_311


@pytest.mark.network
def test_python_version_change_rebuilds_native_wheels_like_the_reference(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """pyyaml from the real index: a 3.11 build, then 3.12 in the same folder, ship what the reference ships for each."""
    first, second = NETWORK_CASES
    for var in CLEARED_ENV:
        monkeypatch.delenv(var, raising=False)
    app = copy_app(first.app, tmp_path)
    for case in (first, second):
        run_tasks(BuildConfig(app_dir=app, no_deps=True, python_version=_python_version(case)))
        golden_manifest, golden_members, _ = load_golden(case)
        ours = comparable(json.loads((app / ".flash" / "flash_manifest.json").read_text(encoding="utf-8")))
        assert not json_diff(expected_manifest(case, golden_manifest), ours), case.name
        members = shipped(artifact_members(app / ".flash" / "artifact.tar.gz"))
        assert members == golden_members, f"{case.name}: only in the reference {sorted(golden_members - members)}, only in ours {sorted(members - golden_members)}"


def test_golden_cases_are_copied_with_their_generated_files(tmp_path: Path) -> None:
    """nested_packages' ignored files are written into the copy, so its golden proves they stay out."""
    app = copy_app("nested_packages", tmp_path)
    assert (app / ".gitignore").is_file() and (app / "tests" / "test_infer.py").is_file()
    _, members, _ = load_golden(Case("nested_packages"))
    assert "./tests/test_infer.py" not in members and "./scratch/worker.py" not in members
    assert os.path.isfile(app / "scratch" / "worker.py")
    shutil.rmtree(app)
