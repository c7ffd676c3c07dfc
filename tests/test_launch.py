"""The entry point's handling of a Ctrl-C that Python can only report as "Exception ignored"."""

from __future__ import annotations

import subprocess
import sys
import types

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
