"""What a build request accepts, checked once up front, and how a bad one is reported."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flash_tasks.cli import main
from flash_tasks.config import BuildConfig
from flash_tasks.deps.settings import DepsSettings
from flash_tasks.errors import UsageError


@pytest.mark.parametrize("bad", ["bad name", "-lead", "trail.", "a/b", "tó"])
def test_bad_exclude_is_a_usage_error_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: str) -> None:
    (tmp_path / "main.py").write_text("")
    code = main(["build", "-C", str(tmp_path), "--exclude", f"scipy,{bad}", "--no-index"])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.splitlines()[0] == f"error: --exclude: {bad!r} is not a package name"
    assert "hint: give comma-separated distribution names" in err
    assert "pydantic" not in err + out and "Traceback" not in err
    assert not (tmp_path / ".flash").exists()  # refused before any work


def test_bad_exclude_in_json_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["build", "-C", str(tmp_path), "--exclude", "bad name", "--json"])
    out, _ = capsys.readouterr()
    assert code == 2
    error = json.loads(out)["error"]
    assert (error["kind"], error["code"]) == ("usage", 2)
    assert "'bad name' is not a package name" in error["message"]


def test_exclusions_are_normalised_the_same_everywhere(tmp_path: Path) -> None:
    raw = (" Foo_Bar", "scipy ", "", "foo.._-BAR", "Zope.Interface")
    want = ("foo-bar", "scipy", "zope-interface")
    assert BuildConfig(app_dir=tmp_path, exclude=raw).exclude == want
    assert DepsSettings(exclude=raw).exclude == want
    assert DepsSettings(exclude=",".join(raw)).exclude == want
    for make in (lambda: BuildConfig(app_dir=tmp_path, exclude=("ok", "no way")), lambda: DepsSettings(exclude="ok,no way")):
        with pytest.raises(UsageError) as info:
            make()
        assert info.value.exit_code == 2 and "'no way'" in info.value.message


@pytest.mark.parametrize("version", ["1.21.0", "1.22.0rc1", "2.0.post1", "1!3.0"])
def test_sdk_version_is_a_pep440_version(tmp_path: Path, version: str) -> None:
    assert BuildConfig(app_dir=tmp_path, runpod_flash_version=version).runpod_flash_version == version


@pytest.mark.parametrize("version", ["latest", "1.21.0abc", "1.21.0; rm -rf /", "==1.21.0", ""])
def test_sdk_version_that_is_not_a_version_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], version: str
) -> None:
    assert main(["build", "-C", str(tmp_path), "--runpod-flash-version", version]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: runpod-flash version {version!r} is not a version number")
    assert "hint: e.g. 1.21.0" in err
