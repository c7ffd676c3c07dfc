"""The entry point's handling of a Ctrl-C that Python can only report as "Exception ignored"."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from flash_tasks import _launch


def unraisable(exc: BaseException) -> types.SimpleNamespace:
    return types.SimpleNamespace(exc_type=type(exc), exc_value=exc, exc_traceback=None, err_msg=None, object="Path")


def test_an_unraisable_ctrl_c_is_noted_silently(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(_launch, "_interrupted", False)
    _launch._quiet_interrupts(unraisable(KeyboardInterrupt()))
    assert _launch._interrupted is True
    assert capsys.readouterr().err == ""


def test_other_unraisable_errors_are_still_reported() -> None:
    code = (
        "import sys\n"
        "from flash_tasks import _launch\n"
        "sys.unraisablehook = _launch._quiet_interrupts\n"
        "class Boom:\n"
        "    def __del__(self):\n"
        "        raise ValueError('boom')\n"
        "Boom()\n"
        "sys.exit(3 if _launch._interrupted else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "ValueError: boom" in result.stderr


def test_an_unraisable_ctrl_c_during_start_up_exits_130_without_a_traceback() -> None:
    code = (
        "import sys\n"
        "from flash_tasks import _launch\n"
        "import flash_tasks.cli as cli\n"
        "class Boom:\n"
        "    def __del__(self):\n"
        "        raise KeyboardInterrupt\n"
        "def fake_main():\n"
        "    return 0\n"
        "cli.main = fake_main\n"
        "sys.unraisablehook = _launch._quiet_interrupts\n"
        "Boom()\n"  # an exception in __del__ is unraisable: Python hands it to the hook
        "sys.exit(130 if _launch._interrupted else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_an_interrupt_wrapped_by_a_class_being_built_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C inside ``__set_name__`` while a module imports arrives as a RuntimeError caused by it."""
    from flash_tasks import cli

    def interrupted_import(*args: object, **kwargs: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__ on 'Field' instance") from exc

    monkeypatch.setitem(cli.COMMANDS, "build", interrupted_import)
    assert cli.main(["build"]) == cli.EXIT_INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "teardown"), [(["build", "-C", "{app}"], False), (["cache", "info", "--cache-dir", "{cache}"], True)])
def test_a_build_leaves_without_the_interpreter_teardown(argv: list[str], teardown: bool, tmp_path: Path) -> None:
    """A build ends with its output flushed and its exit code, but skips Python's shutdown (exit handlers
    included); other commands, and runpod-flash's run in the same process, keep it."""
    app = tmp_path / "bad"
    app.mkdir()
    (app / "main.py").write_text("x = (\n")  # fails fast: exit code 1, an error on stderr
    marker = tmp_path / "exit-handler-ran"
    code = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: open({str(marker)!r}, 'w').close())\n"
        f"sys.argv = ['flash', *{[a.format(app=app, cache=tmp_path / 'cache') for a in argv]!r}]\n"
        "runpy.run_module('flash_tasks', run_name='__main__')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    if argv[0] == "build":
        assert result.returncode == 1 and "main.py:1:5: error: syntax error" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
    assert marker.exists() is teardown
