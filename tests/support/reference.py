"""Locate (or create once) a Python environment with runpod-flash 1.21.0.

That environment plays the Runpod worker: it has ``runpod``, ``fastapi``,
``uvicorn``, ``httpx`` and ``runpod_flash`` itself, so tests can boot the
generated handlers exactly as a deployed worker would and compare against the
reference implementation.

Resolution order:

1. ``FLASH_REFERENCE_PYTHON``, if set (an existing interpreter to use as is);
2. a cached venv under ``$FLASH_TASKS_TEST_CACHE/ref-1.21.0`` (tests/conftest.py points
   that at pytest's cache folder; outside pytest, the temp folder), created with uv on first use. Creation is serialised with a file lock so
   parallel test processes do not race, and a marker file written last tells a
   finished venv from one interrupted half-way.

When the venv cannot be created (typically: offline) the helpers return
``None`` and remember that for the rest of the session, so the suite pays the
failed attempt once and the dependent tests skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REFERENCE_VERSION = "1.21.0"
REFERENCE_REQUIREMENT = f"runpod-flash=={REFERENCE_VERSION}"
ENV_PYTHON = "FLASH_REFERENCE_PYTHON"
ENV_CACHE = "FLASH_TASKS_TEST_CACHE"

_COMPLETE_MARKER = ".complete"
_INSTALL_TIMEOUT_S = 900

# Session cache: Path once found, None after a failed creation. A missing key
# means "not attempted yet".
_resolved: dict[str, Path | None] = {}
_failure_reason: dict[str, str] = {}


def cache_root() -> Path:
    """Directory holding test-only environments that survive between runs."""
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured).expanduser()
    import tempfile

    return Path(tempfile.gettempdir()) / "flash-tasks-tests"


def reference_python() -> Path | None:
    """Interpreter of an environment with runpod-flash 1.21.0, or None if unavailable."""
    override = os.environ.get(ENV_PYTHON)
    if override:
        path = Path(override).expanduser()
        if path.exists():
            return path
        _failure_reason[override] = f"{ENV_PYTHON}={override} does not exist"
        return None
    venv_dir = cache_root() / f"ref-{REFERENCE_VERSION}"
    key = str(venv_dir)
    if key not in _resolved:
        _resolved[key] = ensure_reference_venv(venv_dir)
    return _resolved[key]


def unavailable_reason() -> str:
    """Human-readable explanation for the last failed lookup."""
    if _failure_reason:
        return "; ".join(_failure_reason.values())
    return "no reference environment"


def require_reference() -> Path:
    """Reference interpreter for a test, skipping the test when there is none."""
    import pytest

    python = reference_python()
    if python is None:
        pytest.skip(
            f"runpod-flash {REFERENCE_VERSION} worker environment unavailable "
            f"({unavailable_reason()}); set {ENV_PYTHON} to an interpreter that has it"
        )
    return python


def ensure_reference_venv(venv_dir: Path, *, uv_bin: str | None = None) -> Path | None:
    """Create ``venv_dir`` with runpod-flash installed unless a finished one exists.

    Returns the venv's python, or None (with the reason recorded) when uv
    could not create or populate it.
    """
    python = _venv_python(venv_dir)
    marker = venv_dir / _COMPLETE_MARKER
    if marker.exists() and python.exists():
        return python
    venv_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(venv_dir.parent / f".{venv_dir.name}.lock"):
        # Another process may have finished while this one waited for the lock.
        if marker.exists() and python.exists():
            return python
        if venv_dir.exists():
            shutil.rmtree(venv_dir)
        try:
            uv = uv_bin or _find_uv()
            _run([uv, "venv", "--python", sys.executable, str(venv_dir)])
            _run([uv, "pip", "install", "--python", str(python), REFERENCE_REQUIREMENT])
        except (OSError, subprocess.SubprocessError, ImportError) as exc:
            _failure_reason[str(venv_dir)] = f"creating {venv_dir} failed: {exc}"
            shutil.rmtree(venv_dir, ignore_errors=True)
            return None
        marker.write_text(REFERENCE_REQUIREMENT + "\n", encoding="utf-8")
        return python


def _find_uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def _run(cmd: list[str]) -> None:
    """Run a uv command; its output only matters when it fails."""
    proc = subprocess.run(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=_INSTALL_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        raise subprocess.SubprocessError(
            f"uv {' '.join(cmd[1:3])} exited with {proc.returncode}: " + " ".join(lines[-2:])
        )


def _venv_python(venv_dir: Path) -> Path:
    if os.name == "nt":
        return venv_dir / "Scripts" / "python.exe"
    return venv_dir / "bin" / "python"


@contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive OS lock on ``lock_path`` (released if the process dies)."""
    with open(lock_path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
