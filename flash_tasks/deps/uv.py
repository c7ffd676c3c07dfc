"""Running uv (captured, or echoed live on a terminal) and turning its failures
into errors a user can act on."""

from __future__ import annotations

import codecs
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from packaging.utils import canonicalize_name

from ..errors import BuildError, DependencyError, FlashError
from .requirements import RequirementSpec
from .settings import DepsSettings

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


# ---------------------------------------------------------------------------
# Running uv
# ---------------------------------------------------------------------------

#: Environment settings that would silently change what we resolve or install.
_UV_ENV_OVERRIDES = frozenset(
    "UV_CONSTRAINT UV_OVERRIDE UV_EXCLUDE UV_BUILD_CONSTRAINT UV_TORCH_BACKEND UV_PYTHON"
    " UV_SYSTEM_PYTHON UV_OFFLINE UV_NO_CACHE UV_PRERELEASE UV_RESOLUTION UV_NO_BUILD_ISOLATION"
    " UV_COMPILE_BYTECODE UV_LINK_MODE UV_NO_PROGRESS UV_REQUIRE_HASHES".split()
)


@dataclass(frozen=True)
class _UvRun:
    returncode: int
    stdout: str
    stderr: str


@cache
def _uv_binary() -> str:
    try:
        from uv import find_uv_bin
    except ImportError:
        raise DependencyError("uv is not installed", hint="pip install uv") from None
    try:
        return find_uv_bin()
    except FileNotFoundError:
        raise DependencyError(
            "the uv binary could not be found", hint="reinstall it: pip install --force-reinstall uv"
        ) from None


def _uv_env(settings: DepsSettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UV_ENV_OVERRIDES}
    env["UV_PYTHON_DOWNLOADS"] = "never"
    # uv wraps its explanations at COLUMNS or the terminal's width; the patterns
    # below read one sentence per line, so ask for unwrapped text.
    env["UV_NO_WRAP"] = "1"
    if settings.cache_dir is not None:
        env["UV_CACHE_DIR"] = str(settings.cache_dir.resolve())  # uv runs in a scratch folder
    return env


def _show_progress(settings: DepsSettings) -> bool:
    if settings.progress != "auto":
        return settings.progress == "show"
    ci = os.environ.get("CI", "").strip().lower()
    return sys.stderr.isatty() and ci in ("", "0", "false")


def _target_args(settings: DepsSettings) -> list[str]:
    return [
        "--no-python-downloads",
        "--python",
        sys.executable,
        "--python-version",
        settings.python_version,
        "--python-platform",
        settings.python_platform,
        "--only-binary",
        ":all:",
        *settings.index.uv_args(),
    ]


def _run_uv(args: Sequence[str], settings: DepsSettings, *, cwd: Path, quiet: bool = False) -> _UvRun:
    """Run uv, always capturing its messages; on a terminal also echo them live.

    The echo goes through a pseudo-terminal so uv still draws its progress bars
    while we keep the text to explain a failure.
    """
    command = [_uv_binary(), *args, "--color", "never"]
    env = _uv_env(settings)
    if not quiet and _show_progress(settings) and os.name == "posix":
        return _run_on_terminal(command, env=env, cwd=cwd)
    proc = subprocess.run(
        [*command, "--no-progress"],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        check=False,
    )
    return _UvRun(proc.returncode, proc.stdout, proc.stderr)


def _run_on_terminal(command: list[str], *, env: dict[str, str], cwd: Path) -> _UvRun:
    import pty

    master, slave = pty.openpty()
    _copy_window_size(slave)
    proc = subprocess.Popen(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    stdout_parts: list[bytes] = []
    reader = threading.Thread(target=lambda: stdout_parts.append(proc.stdout.read() if proc.stdout else b""))
    reader.start()
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    seen: list[str] = []
    try:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: uv closed its end of the terminal
                break
            if not data:
                break
            text = decoder.decode(data)
            sys.stderr.write(text)
            sys.stderr.flush()
            seen.append(text)
    finally:
        os.close(master)
        reader.join()
        returncode = proc.wait()
        if proc.stdout:
            proc.stdout.close()
    stderr = _ANSI_RE.sub("", "".join(seen)).replace("\r\n", "\n")
    return _UvRun(returncode, b"".join(stdout_parts).decode("utf-8", "replace"), stderr)


def _copy_window_size(fd: int) -> None:
    """Give the pseudo-terminal our terminal's width so uv's bars fit on one line."""
    try:
        import fcntl
        import struct
        import termios

        size = shutil.get_terminal_size()
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", size.lines, size.columns, 0, 0))
    except (ImportError, OSError):
        pass


# ---------------------------------------------------------------------------
# Mapping uv's failures to user errors
# ---------------------------------------------------------------------------

_OFFLINE_MISS_RE = re.compile(r"network (?:was|is) disabled|not found in the cache|Network connectivity is disabled")
_NETWORK_RE = re.compile(
    r"error sending request|dns error|failed to lookup address|Connection refused|"
    r"tcp connect error|operation timed out|Failed to fetch|Could not connect",
    re.IGNORECASE,
)
_NO_WHEEL_RES = (
    re.compile(r"Wheels are required for `(?P<name>[^`]+)`"),
    re.compile(
        r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:[=<>!~]=?\S*)? (?:has|have) no "
        r"(?:usable wheels|wheels with a matching)"
    ),
    re.compile(r"we only found wheels for `(?P<name>[^`]+)`"),
    re.compile(r"Wheels are available for `(?P<name>[^`]+)`"),
)
_NOT_FOUND_RE = re.compile(
    r"Because (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*) was not found in the (?:package registry|provided package locations)"
)
_NO_VERSION_RE = re.compile(r"there is no version of (?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?P<spec>[^\s,]*)")
_REQUIRES_PYTHON_RE = re.compile(
    r"(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==\S+)? (?:requires|depends on) Python\s*(?P<spec>[^\s,]+)"
)
_PARSE_ERROR_RE = re.compile(r"Couldn't parse requirement in `(?P<file>[^`]+)` at position (?P<pos>\d+)")


def _uv_key_lines(stderr: str) -> str:
    """uv's own explanation: everything from its ``error:`` line on, without the chatter before."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()]
    for index, line in enumerate(lines):
        if line.startswith("error:"):
            return "\n".join(lines[index:])
    return "\n".join(lines[-20:])


def _first_cause(stderr: str) -> str:
    for line in stderr.splitlines():
        stripped = line.strip()
        if stripped.startswith("cause:"):
            return stripped[len("cause:") :].strip()
    for line in stderr.splitlines():
        if line.strip().startswith("error:"):
            return line.strip()[len("error:") :].strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "uv failed without a message"


def _locate(name: str, specs: Sequence[RequirementSpec]) -> tuple[str | None, int | None]:
    wanted = canonicalize_name(name)
    for spec in specs:
        if spec.name == wanted:
            return spec.location()
    return None, None


def _dependency_error(run: _UvRun, settings: DepsSettings, specs: Sequence[RequirementSpec], action: str) -> FlashError:
    """Turn a failed uv run into the error a user can act on."""
    stderr = run.stderr
    key = _uv_key_lines(stderr)
    cause = _first_cause(stderr)
    parse = _PARSE_ERROR_RE.search(stderr)
    if parse:
        return BuildError(f"uv could not parse a requirement: {cause}\n  uv: {key}")
    for pattern in _NO_WHEEL_RES:
        match = pattern.search(stderr)
        if match:
            name = match.group("name")
            path, line = _locate(name, specs)
            return DependencyError(
                f"{name} has no Linux x86_64 wheel for Python {settings.python_version} "
                f"({settings.python_platform}); Flash never builds packages from source\n  uv: {cause}",
                path=path,
                line=line,
                hint=(
                    f"pin a version of {name} that publishes manylinux x86_64 wheels for CPython "
                    f"{settings.python_version}, use a different package, or leave it out with --exclude {name}"
                ),
            )
    match = _NOT_FOUND_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"package {name} does not exist on the configured index\n  uv: {cause}",
            path=path,
            line=line,
            hint="check the spelling of the name in your requirements",
        )
    match = _NO_VERSION_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"no release of {name} matches {match.group('spec') or 'the requirement'}\n  uv: {cause}",
            path=path,
            line=line,
            hint="relax the version specifier or pick a published version",
        )
    match = _REQUIRES_PYTHON_RE.search(stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"{name} does not support Python {settings.python_version} "
            f"(it needs Python {match.group('spec')})\n  uv: {cause}",
            path=path,
            line=line,
            hint=f"pin an older {name} that supports Python {settings.python_version}",
        )
    if _NETWORK_RE.search(stderr):
        return DependencyError(
            f"could not reach the package index while {action}\n  uv: {cause}",
            hint="check the network connection and index settings; a rebuild with unchanged locks works offline",
        )
    if "No space left on device" in stderr or "os error 28" in stderr:
        return BuildError(
            f"no space left on device while {action}\n  uv: {cause}",
            hint="free some disk space and build again; the previous artifact was left as it was",
        )
    if "Building source distributions is disabled" in stderr or "source distribution" in stderr.lower():
        name = next((s.name for s in specs if s.name and s.name in stderr), None)
        path, line = _locate(name, specs) if name else (None, None)
        return DependencyError(
            f"a requirement would have to be built from source while {action}; Flash installs wheels only\n  uv: {cause}",
            path=path,
            line=line,
            hint="depend on a published wheel instead of a local project or source archive "
            "(code of your own can live in the app folder, which ships as it is)",
        )
    return DependencyError(
        f"{action} failed\n  uv: {key}",
        hint="run with -v for details; 'flash build --upgrade' resolves from scratch",
    )



def _map_parse_error(run: _UvRun, specs: Sequence[RequirementSpec], constraints: Sequence[RequirementSpec]) -> None:
    """Raise ``BuildError`` at the user's ``file:line`` for a requirement uv refused to parse."""
    match = _PARSE_ERROR_RE.search(run.stderr)
    if not match:
        return
    source = constraints if match.group("file").endswith("constraints.txt") else specs
    offset = int(match.group("pos"))
    consumed = 0
    for spec in source:
        consumed += len((spec.text + "\n").encode())
        if offset < consumed:
            path, line = spec.location()
            raise BuildError(f"invalid requirement {spec.text!r}: {_first_cause(run.stderr)}", path=path, line=line)
