"""Hand the commands flash-tasks does not implement to runpod-flash's own CLI.

flash-tasks owns ``build``, ``init``, ``clean`` and ``inspect``. Every other
command (``deploy``, ``dev``, ``login``, ``env``, ``app``, ``undeploy``,
``update`` and whatever a later runpod-flash adds) goes to runpod-flash, found
in this order:

1. the ``runpod-flash`` distribution in this environment: its ``flash``
   console-script entry point (read from its metadata, not hard-coded) is
   loaded and called in this process, exactly as its own script would, so its
   arguments, output, exit code and signal handling are its own;
2. a ``uv tool install runpod-flash`` environment (``$UV_TOOL_DIR``, else
   ``$XDG_DATA_HOME/uv/tools``, else ``~/.local/share/uv/tools``): this process
   is replaced (``os.execv``) by that environment's Python running the same
   entry point.

Without either, the command exits 2 with one line saying what to install.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importlib.metadata costs tens of milliseconds: only imported when needed
    from importlib import metadata

DISTRIBUTION = "runpod-flash"
SCRIPT = "flash"
#: Set in the environment of an exec'd runpod-flash so a misconfigured tool
#: environment can never bounce the command back here forever.
GUARD = "FLASH_TASKS_FORWARDED"

#: runpod-flash 1.21.0's commands that flash-tasks does not implement, for
#: ``flash --help`` and for the message when runpod-flash is missing. Commands
#: not listed here are forwarded too when runpod-flash is installed.
THEIR_COMMANDS: dict[str, str] = {
    "deploy": "build with flash-tasks, then upload and deploy to Runpod",
    "dev": "run the app locally for development",
    "login": "save a Runpod API key",
    "env": "list, create, inspect or delete deployment environments",
    "app": "list, create, inspect or delete Flash apps",
    "undeploy": "delete deployed endpoints",
    "update": "update runpod-flash itself",
    "run": "the older name of 'dev'",
}

#: A one-liner the target Python runs: load runpod-flash's ``flash`` entry point and call it.
_BOOTSTRAP = (
    "import sys\n"
    "from importlib import metadata\n"
    f"eps = [e for e in metadata.distribution({DISTRIBUTION!r}).entry_points if e.group == 'console_scripts' and e.name == {SCRIPT!r}]\n"
    "if not eps:\n"
    f"    sys.exit('error: this runpod-flash has no {SCRIPT} command')\n"
    f"sys.argv[0] = {SCRIPT!r}\n"
    "sys.exit(eps[0].load()())\n"
)


@dataclass(frozen=True)
class InProcess:
    """runpod-flash installed in this environment."""

    version: str
    entry_point: metadata.EntryPoint

    def describe(self) -> str:
        return f"{DISTRIBUTION} {self.version}"


@dataclass(frozen=True)
class ToolEnv:
    """runpod-flash in its own ``uv tool`` environment."""

    python: Path

    def describe(self) -> str:
        return f"{DISTRIBUTION} (uv tool environment {self.python.parent.parent})"


Target = InProcess | ToolEnv


def _entry_point(dist: metadata.Distribution) -> metadata.EntryPoint | None:
    scripts = [ep for ep in dist.entry_points if ep.group == "console_scripts"]
    for ep in scripts:
        if ep.name == SCRIPT:
            return ep
    return None


def local_target() -> InProcess | None:
    """runpod-flash's ``flash`` entry point in this environment, if installed."""
    from importlib import metadata

    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    ep = _entry_point(dist)
    if ep is None:
        return None
    return InProcess(version=dist.version, entry_point=ep)


def uv_tool_dir() -> Path:
    """Where ``uv tool install`` puts tool environments (uv's documented defaults)."""
    configured = os.environ.get("UV_TOOL_DIR")
    if configured:
        return Path(configured).expanduser()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return base / "uv" / "tools"


def tool_target() -> ToolEnv | None:
    """The Python of a ``uv tool install runpod-flash`` environment, if there is one."""
    env = uv_tool_dir() / DISTRIBUTION
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if not python.exists():
        return None
    try:
        if env.resolve() == Path(sys.prefix).resolve():
            return None  # this very environment: local_target() would have found it
    except OSError:
        return None
    if not any(env.glob("lib*/python*/site-packages/runpod_flash-*.dist-info")) and not any(env.glob("Lib/site-packages/runpod_flash-*.dist-info")):
        return None
    return ToolEnv(python=python)


def find_target() -> Target | None:
    """Where runpod-flash's CLI is, or None."""
    found = local_target()
    if found is not None:
        return found
    if os.environ.get(GUARD):
        return None
    return tool_target()


def missing_message(command: str) -> str:
    return (
        f"error: 'flash {command}' is a runpod-flash command and runpod-flash is not installed here\n"
        f"  hint: install it next to flash-tasks: pip install {DISTRIBUTION}\n"
        f"        (or as a uv tool: uv tool install {DISTRIBUTION}; then uv tool install --force flash-tasks)"
    )


def _exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


def run_in_process(target: InProcess, argv: Sequence[str]) -> int:
    """Call runpod-flash's entry point with ``argv`` as its arguments; returns its exit code."""
    func: Callable[[], object] = target.entry_point.load()
    saved = sys.argv
    sys.argv = [SCRIPT, *argv]
    try:
        result = func()
    except SystemExit as exc:
        return _exit_code(exc)
    finally:
        sys.argv = saved
    return _exit_code(SystemExit(result))


def exec_tool(target: ToolEnv, argv: Sequence[str]) -> int:
    """Replace this process by the tool environment's runpod-flash (never returns on success)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.environ[GUARD] = "1"
    try:
        os.execv(str(target.python), [str(target.python), "-c", _BOOTSTRAP, *argv])
    except OSError as exc:
        sys.stderr.write(f"error: cannot start runpod-flash from {target.python}: {exc.strerror or exc}\n")
        return 2


def forward(argv: Sequence[str], target: Target | None = None) -> int:
    """Run runpod-flash's CLI with ``argv`` (``argv[0]`` is the command); its exit code."""
    target = target if target is not None else find_target()
    if target is None:
        sys.stderr.write(missing_message(argv[0] if argv else "") + "\n")
        return 2
    if isinstance(target, InProcess):
        return run_in_process(target, argv)
    return exec_tool(target, argv)
