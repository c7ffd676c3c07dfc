"""What gets installed for an app, and how it is marked: REQUESTED markers and pyproject dependencies."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from flash_tasks.cli import main

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2)
def work(payload: dict) -> dict:
    return payload
'''


def build(app: Path, index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "-C", str(app), "--no-index", "--find-links", str(index), "-q"])
    err = capsys.readouterr().err
    assert code == 0, err


def members(artifact: Path) -> set[str]:
    with tarfile.open(artifact) as tar:
        return {m.name.removeprefix("./") for m in tar}


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    root = tmp_path / "reqapp"
    root.mkdir()
    (root / "main.py").write_text(MAIN)
    return root


def test_only_direct_requirements_are_marked_requested(app: Path, local_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (app / "requirements.txt").write_text("middep==1.0\n")
    build(app, local_index, capsys)
    shipped = members(app / ".flash" / "artifact.tar.gz")
    assert "middep-1.0.dist-info/REQUESTED" in shipped
    assert "leafdep-1.0.dist-info/METADATA" in shipped
    assert "leafdep-1.0.dist-info/REQUESTED" not in shipped
    record = (app / ".flash" / ".build" / "leafdep-1.0.dist-info" / "RECORD").read_text()
    assert "REQUESTED" not in record

    # leafdep becomes a direct requirement: now it is marked, and the result is a clean build's.
    (app / "requirements.txt").write_text("middep==1.0\nleafdep\n")
    build(app, local_index, capsys)
    shipped = members(app / ".flash" / "artifact.tar.gz")
    assert "leafdep-1.0.dist-info/REQUESTED" in shipped
    clean = tmp_path / "clean" / app.name
    shutil.copytree(app, clean, ignore=shutil.ignore_patterns(".flash"))
    build(clean, local_index, capsys)
    assert (clean / ".flash" / "artifact.tar.gz").read_bytes() == (app / ".flash" / "artifact.tar.gz").read_bytes()


def test_pyproject_dependencies_are_ignored_unless_the_app_opts_in(app: Path, local_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "pyproject.toml").write_text('[project]\nname = "reqapp"\nversion = "0"\ndependencies = ["leafdep", "runpod-flash"]\n')
    build(app, local_index, capsys)
    assert not any(m.startswith("leafdep") for m in members(app / ".flash" / "artifact.tar.gz"))

    (app / "pyproject.toml").write_text(
        '[project]\nname = "reqapp"\nversion = "0"\ndependencies = ["leafdep", "runpod-flash"]\n'
        "\n[tool.flash-tasks]\nproject-dependencies = true\n"
    )
    build(app, local_index, capsys)
    assert "leafdep/__init__.py" in members(app / ".flash" / "artifact.tar.gz")


def test_project_dependencies_setting_must_be_a_boolean(app: Path, local_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "pyproject.toml").write_text('[tool.flash-tasks]\nproject-dependencies = "yes"\n')
    code = main(["build", "-C", str(app), "--no-index", "--find-links", str(local_index)])
    err = capsys.readouterr().err
    assert code == 2 and "project-dependencies must be true or false" in err and "Traceback" not in err
