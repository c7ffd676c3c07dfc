"""A virtual environment with runpod-flash 1.21.0 and this checkout of flash-tasks side by side.

Made with uv under a test's temporary folder (its packages come from uv's
cache after the first time); the test is skipped when runpod-flash cannot be
installed (typically: offline).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
REFERENCE_REQUIREMENT = "runpod-flash==1.21.0"


def both_python(root: Path) -> Path:
    """The interpreter of a new environment at ``root`` holding runpod-flash and flash-tasks."""
    import pytest
    from uv import find_uv_bin

    uv = find_uv_bin()
    made = subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(root)], check=False, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    python = root / "bin" / "python"
    installed = subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), REFERENCE_REQUIREMENT, str(REPO)],
        check=False, capture_output=True, text=True, timeout=900,
    )
    if installed.returncode != 0:
        pytest.skip(f"cannot install {REFERENCE_REQUIREMENT}: {installed.stderr.strip().splitlines()[-1:]}")
    return python
