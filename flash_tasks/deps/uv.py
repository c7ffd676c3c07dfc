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

from ..errors import BuildError, DependencyError, FlashError
from .requirements import RequirementSpec
from .settings import DepsSettings

_ANSI_RE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


# ---------------------------------------------------------------------------
# Running uv
# ---------------------------------------------------------------------------

#: Environment settings that would silently change what we resolve or install.
_UV_ENV_OVERRIDES = frozenset(
    ["UV_CONSTRAINT", "UV_OVERRIDE", "UV_EXCLUDE", "UV_BUILD_CONSTRAINT", "UV_TORCH_BACKEND", "UV_PYTHON", "UV_SYSTEM_PYTHON", "UV_OFFLINE", "UV_NO_CACHE", "UV_PRERELEASE", "UV_RESOLUTION", "UV_NO_BUILD_ISOLATION", "UV_COMPILE_BYTECODE", "UV_LINK_MODE", "UV_NO_PROGRESS", "UV_REQUIRE_HASHES"]
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
# What uv says, and how it is read
# ---------------------------------------------------------------------------
#
# uv's exit code tells a failed resolution (1) from any other error (2), and
# nothing more; it has no structured error output. So the explanation is read
# from its English text, and every text this package reads is in this one table.
# tests/test_uv_patterns.py makes each of them happen with the real uv (offline)
# and checks the pattern still matches: an upgrade of uv that rewords one fails there.

#: uv's exit codes (``uv`` documents 0 success, 1 failure, 2 error).
UV_UNSATISFIABLE = 1
UV_ERROR = 2

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"


@dataclass(frozen=True)
class UvText:
    """One message of uv's: what it means (``kind``) and how to find it (``pattern``)."""

    #: Unique within the table, ``kind/variant``: the tests name their scenarios by it.
    id: str
    kind: str
    pattern: re.Pattern[str]
    #: The exit codes uv gives with this text (0 for warnings on success).
    exit_codes: tuple[int, ...]


def _text(id: str, pattern: str, *exit_codes: int, flags: int = 0) -> UvText:
    return UvText(id, id.split("/")[0], re.compile(pattern, flags), exit_codes)


UV_TEXTS: tuple[UvText, ...] = (
    # The layout of every failure: an ``error:`` line, then ``cause:`` lines.
    _text("error-line/", r"(?m)^error: (?P<text>.*)$", UV_UNSATISFIABLE, UV_ERROR),
    _text("cause-line/", r"(?m)^\s*cause: (?P<text>.*)$", UV_UNSATISFIABLE, UV_ERROR),
    _text("no-solution/", r"No solution found when resolving dependencies", UV_UNSATISFIABLE),
    _text("parse-error/", r"Couldn't parse requirement in `(?P<file>[^`]+)` at position (?P<pos>\d+)", UV_ERROR),
    _text("no-wheel/required", r"Wheels are required for `(?P<name>[^`]+)`", UV_UNSATISFIABLE),
    _text(
        "no-wheel/none-usable",
        rf"(?P<name>{_NAME})(?:[=<>!~]=?\S*)? (?:has|have) no (?:usable wheels|wheels with a matching)",
        UV_UNSATISFIABLE,
    ),
    _text("no-wheel/other-abi", r"we only found wheels for `(?P<name>[^`]+)`", UV_UNSATISFIABLE),
    _text("no-wheel/other-platform", r"Wheels are available for `(?P<name>[^`]+)`", UV_UNSATISFIABLE),
    _text(
        "not-found/",
        rf"Because (?P<name>{_NAME}) was not found in the (?:package registry|provided package locations)",
        UV_UNSATISFIABLE,
    ),
    _text("no-version/", rf"there is no version of (?P<name>{_NAME})(?P<spec>[^\s,]*)", UV_UNSATISFIABLE),
    _text(
        "requires-python/",
        rf"(?P<name>{_NAME})(?:==\S+)? (?:requires|depends on) Python\s*(?P<spec>[^\s,]+)",
        UV_UNSATISFIABLE,
    ),
    _text(
        "offline-miss/",
        r"network (?:was|is) disabled|not found in the cache|Network connectivity is disabled",
        UV_UNSATISFIABLE,
    ),
    _text(
        "network/",
        r"error sending request|dns error|failed to lookup address|Connection refused|"
        r"tcp connect error|operation timed out|Failed to fetch|Could not connect",
        UV_ERROR,
        flags=re.IGNORECASE,
    ),
    _text("no-space/", r"No space left on device|os error 28", UV_ERROR),
    _text(
        "source-build/",
        r"Building source distributions is disabled, but attempted to build `(?P<name>[^`]+)`",
        UV_UNSATISFIABLE,
    ),
    _text(
        "missing-dependency/",
        r"The package `(?P<dist>[^`]+)` requires `(?P<req>[^`]+)`, but it's not installed",
        0,
    ),
)


def uv_says(kind: str, text: str) -> re.Match[str] | None:
    """The first match of a ``kind`` of uv message in ``text`` (its patterns in table order)."""
    for entry in UV_TEXTS:
        if entry.kind == kind:
            match = entry.pattern.search(text)
            if match:
                return match
    return None


def uv_says_all(kind: str, text: str) -> list[re.Match[str]]:
    """Every match of a ``kind`` of uv message in ``text``."""
    return [match for entry in UV_TEXTS if entry.kind == kind for match in entry.pattern.finditer(text)]


# ---------------------------------------------------------------------------
# Mapping uv's failures to user errors
# ---------------------------------------------------------------------------


def _uv_key_lines(stderr: str) -> str:
    """uv's own explanation: everything from its ``error:`` line on, without the chatter before."""
    start = uv_says("error-line", stderr)
    text = stderr[start.start() :] if start else stderr
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(lines if start else lines[-20:])


def _first_cause(stderr: str) -> str:
    match = uv_says("cause-line", stderr) or uv_says("error-line", stderr)
    if match:
        return match.group("text").strip()
    return stderr.strip().splitlines()[-1] if stderr.strip() else "uv failed without a message"


def _locate(name: str, specs: Sequence[RequirementSpec]) -> tuple[str | None, int | None]:
    from packaging.utils import canonicalize_name

    wanted = canonicalize_name(name)
    for spec in specs:
        if spec.name == wanted:
            return spec.location()
    return None, None


_PARSE_HINT = "rewrite the requirement as the message says: uv reads PEP 508 more strictly than pip"


def _dependency_error(run: _UvRun, settings: DepsSettings, specs: Sequence[RequirementSpec], action: str) -> FlashError:
    """Turn a failed uv run into the error a user can act on."""
    stderr = run.stderr
    key = _uv_key_lines(stderr)
    cause = _first_cause(stderr)
    if uv_says("parse-error", stderr):
        return BuildError(f"uv could not parse a requirement: {cause}\n  uv: {key}", hint=_PARSE_HINT)
    match = uv_says("no-wheel", stderr)
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
    match = uv_says("not-found", stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"package {name} does not exist on the configured index\n  uv: {cause}",
            path=path,
            line=line,
            hint="check the spelling of the name in your requirements",
        )
    match = uv_says("no-version", stderr)
    if match:
        name = match.group("name")
        path, line = _locate(name, specs)
        return DependencyError(
            f"no release of {name} matches {match.group('spec') or 'the requirement'}\n  uv: {cause}",
            path=path,
            line=line,
            hint="relax the version specifier or pick a published version",
        )
    match = uv_says("requires-python", stderr)
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
    if uv_says("network", stderr):
        return DependencyError(
            f"could not reach the package index while {action}\n  uv: {cause}",
            hint="check the network connection and index settings; a rebuild with unchanged locks works offline",
        )
    if uv_says("no-space", stderr):
        return BuildError(
            f"no space left on device while {action}\n  uv: {cause}",
            hint="free some disk space and build again; the previous artifact was left as it was",
        )
    match = uv_says("source-build", stderr)
    if match:
        from packaging.utils import canonicalize_name

        name = canonicalize_name(match.group("name"))
        path, line = _locate(name, specs)
        return DependencyError(
            f"a requirement would have to be built from source while {action}; Flash installs wheels only\n  uv: {cause}",
            path=path,
            line=line,
            hint="depend on a published wheel instead of a local project or source archive "
            "(code of your own can live in the app folder, which ships as it is)",
        )
    if run.returncode == UV_UNSATISFIABLE:
        return DependencyError(
            f"no set of versions satisfies the requirements while {action}\n  uv: {key}",
            hint="relax the version specifiers that uv names above; 'flash build --upgrade' resolves from scratch",
        )
    if run.returncode < 0:
        return DependencyError(
            f"uv was stopped by signal {-run.returncode} while {action}",
            hint="build again; if it keeps happening, check memory and disk limits",
        )
    return DependencyError(
        f"{action} failed\n  uv: {key}",
        hint="run with -v for details; 'flash build --upgrade' resolves from scratch",
    )


def _map_parse_error(run: _UvRun, specs: Sequence[RequirementSpec], constraints: Sequence[RequirementSpec]) -> None:
    """Raise ``BuildError`` at the user's ``file:line`` for a requirement uv refused to parse."""
    match = uv_says("parse-error", run.stderr)
    if not match:
        return
    source = constraints if match.group("file").endswith("constraints.txt") else specs
    offset = int(match.group("pos"))
    consumed = 0
    for spec in source:
        consumed += len((spec.text + "\n").encode())
        if offset < consumed:
            path, line = spec.location()
            raise BuildError(
                f"invalid requirement {spec.text!r}: {_first_cause(run.stderr)}", path=path, line=line, hint=_PARSE_HINT
            )
