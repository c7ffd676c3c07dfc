"""A no-op build answered from one record, before the build graph is loaded.

A build that succeeded writes ``.flash/.state/quick.json``: the stamp of every
file it depends on, the key of the run (this tool's code, the Python, the
options, the working folder, the environment the build reads) and the output
a build with nothing to do prints (what it printed, if it had nothing to do;
else that output made without printing it). The next ``flash build`` with the
same key stats those files first. When every stamp is as recorded it prints
that output and stops, without importing the graph, doit or pydantic; any
difference, a missing or damaged record, or an option this path does not take
(``--json``, ``--explain``, ``-v``, ``--verify``, ``--upgrade``, ``--watch``)
runs the full build, which checks everything as before. Every full build
deletes the record before it starts.

What is stamped: every file under ``.flash/`` (the artifact, the manifest,
the state, the locks, all of ``.build/``), every file the app walk ships or
reads (``.gitignore`` files, the files at the app's root, requirement files
wherever they are) and every folder the walk entered, so a file added or
removed anywhere the build looks changes a stamp. A stamp is
``(size, mtime_ns, ctime_ns, inode, mode, device)``: the change time cannot be
set back by a program, so a file rewritten with its old modification time
still differs. A record is not written when an input (a file or folder of the
app, a requirement file) changed during the build or in the second before it
(its change time says so), so it never describes inputs newer than the outputs
beside it; nor when a file the build wrote under ``.flash/`` and recorded (the
artifact, the spare, the cached segments, the copies in ``.build``) is not as
the build's own record says it left it. An app that ships files through
symbolic links gets no record (a link's target is not stamped).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypeGuard

from . import __version__
from .stage import write_bytes_atomic

RECORD_NAME = "quick.json"
#: In .flash/.state/ while a build runs (a killed build leaves it behind).
RUNNING_MARKER = "running"
#: In ``.state`` while ``.build`` is being completed after a build (``cache.fill``).
FILLING_MARKER = "filling.json"
#: The arguments of ``write_record`` for the build that left ``.build`` to be completed.
HELD_RECORD_NAME = "quick-after-fill.json"
LAST_BUILD = "last-build.json"
#: Files under .flash/ that are not stamped: the record itself, the lock file, the pointer
#: to the last artifact (rewritten by every build; checked by content) and doit's own record
#: (rewritten by every build; it says what doit last checked, and the stamps here say that
#: again for what this record answers).
UNSTAMPED = frozenset({RECORD_NAME, ".lock", LAST_BUILD, ".doit.db", ".doit.db-journal", ".doit.db-wal", ".doit.db-shm"})
#: A record is refused when a stamped file changed this close to the build's start (or later):
#: file times come from a clock that can lag the real one.
RACY_MARGIN_NS = 1_000_000_000
#: A change this long after another gets another stamp on file systems with sub-second times.
FINE_TICK_NS = 50_000_000
#: Environment variables a build (or the tools it runs) may read, by prefix or by name;
#: the variables the app's own code reads (``env.json``) are added per record.
ENV_PREFIXES = ("FLASH_", "RUNPOD_", "UV_", "PIP_", "PYTHON", "XDG_")
ENV_NAMES = (
    "SOURCE_DATE_EPOCH", "LOG_LEVEL", "CI", "HOME", "PATH", "VIRTUAL_ENV", "LOCALAPPDATA", "TMPDIR",
    "NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "TERM", "COLUMNS", "LINES",
)  # fmt: skip
#: Options with which the full build always runs.
FULL_ONLY = ("json", "explain", "verbose", "verify", "upgrade", "watch")
#: Parts of the package that never change what a build produces: the CLI's commands and
#: output, and the starter app `flash init` copies. Editing them must not rebuild every app.
NOT_BUILD_INPUTS = frozenset({"commands", "templates"})

Stamp = list[int]


#: The package's digests (see ``_package_digests``), with the stamps of the files they were read from.
_DIGESTS: dict[str, Any] = {}


def _package_sources() -> list[tuple[str, str]]:
    """The package's ``.py`` files as (POSIX path relative to the package, full path), in path order."""
    package = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder, _dirs, names in os.walk(package):
        rel_folder = os.path.relpath(folder, package)
        for name in names:
            if name.endswith(".py"):
                rel = name if rel_folder == "." else f"{rel_folder}/{name}".replace(os.sep, "/")
                found.append((rel, os.path.join(folder, name)))
    return sorted(found, key=lambda item: item[0].split("/"))


def _package_digests() -> tuple[str, str]:
    """Digests of the package's source: the modules that decide what a build makes, and all of them.

    Read once per process while the files keep their stamps (a build asks for
    them several times; opening 60 files costs more than stating them).
    """
    sources = _package_sources()
    stamps = [(rel, _stamp(path)) for rel, path in sources]
    if _DIGESTS.get("stamps") == stamps:
        return _DIGESTS["digests"]  # type: ignore[no-any-return]
    build = hashlib.sha256(__version__.encode())
    everything = hashlib.sha256(__version__.encode())
    for rel, path in sources:
        with open(path, "rb") as handle:
            data = handle.read()
        for digest in (build, everything) if rel.split("/", 1)[0] not in NOT_BUILD_INPUTS else (everything,):
            digest.update(rel.encode())
            digest.update(data)
    digests = (build.hexdigest(), everything.hexdigest())
    _DIGESTS.update(stamps=stamps, digests=digests)
    return digests


def _digest_package(*, everything: bool) -> str:
    return _package_digests()[1 if everything else 0]


def tool_fingerprint() -> str:
    """Identifies this tool's code: a new version or an edited module rebuilds.

    Hashes the package's source (a few hundred KB), so two installs of the same
    code agree and any change to it is noticed.
    """
    return _digest_package(everything=False)[:16]


def _stamp(path: str) -> Stamp | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_mode, st.st_dev]


def record_path(app_dir: Path) -> Path:
    return app_dir / ".flash" / ".state" / RECORD_NAME


def held_record_path(app_dir: Path) -> Path:
    """A record held back until ``.flash/.build`` is complete (``cache.fill`` writes it then)."""
    return app_dir / ".flash" / ".state" / HELD_RECORD_NAME


def eligible(options: Mapping[str, Any]) -> bool:
    """Whether a build with these command-line options may be answered from the record."""
    return not any(options.get(name) for name in FULL_ONLY)


def _env(names: Iterable[str]) -> dict[str, str | None]:
    wanted = set(names) | set(ENV_NAMES)
    wanted.update(name for name in os.environ if name.startswith(ENV_PREFIXES))
    return {name: os.environ.get(name) for name in sorted(wanted)}


def _terminal_size(stream: IO[str]) -> list[int] | None:
    try:
        if not stream.isatty():
            return None
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        return None
    return [size.columns, size.lines]


def run_key(options: Mapping[str, Any], env_names: Iterable[str], out: IO[str], err: IO[str]) -> str:
    """What, besides the stamped files, decides a build's outputs and what it prints."""
    from .commands.output import use_color

    mode = str(options.get("color") or "auto")
    plain = {k: v for k, v in sorted(options.items()) if isinstance(v, (str, bool, int, list, type(None)))}
    parts = {
        "tool": _digest_package(everything=True),  # the CLI's output code too: the record replays it
        "python": [sys.executable, sys.version],
        "options": plain,
        "color": [use_color(mode, out), use_color(mode, err)],
        "cwd": os.getcwd(),
        "env": _env(env_names),
        "terminal": [_terminal_size(out), _terminal_size(err)],
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


# -- writing the record (after a full build that had nothing to do) ----------------------------------


class OutputLog:
    """The calls a build made on its consoles, to be made again when the record answers."""

    def __init__(self) -> None:
        self.calls: list[list[Any]] = []

    def add(self, stream: str, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        self.calls.append([stream, method, args, kwargs])


def _walk_files(folder: str, skip: frozenset[str], into: dict[str, Stamp]) -> None:
    """Stamp every file (and link) under ``folder``, folders excluded."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if entry.name in skip:
            continue
        if entry.is_dir(follow_symlinks=False):
            _walk_files(entry.path, frozenset(), into)
            continue
        stamp = _stamp(entry.path)
        if stamp is not None:
            into[entry.path] = stamp


@dataclass
class Inputs:
    """The stamps of a build's inputs, taken right after it: the app's files, then its folders."""

    files: dict[str, Stamp]
    dirs: dict[str, Stamp]


def stamp_inputs(
    app_dir: Path,
    *,
    started_ns: int,
    shipped: Iterable[str],
    folders: Iterable[str],
    inputs: Iterable[str],
    app_folder: tuple[Stamp | None, Stamp | None],
) -> Inputs | None:
    """Stamp the inputs of the build that just succeeded; None when one changed during it or too close to its start.

    ``shipped``: the app's files the walk found (and the ignore files it read),
    ``folders`` the folders it entered (``""`` for the app's), ``inputs`` the
    requirement files. ``app_folder``: the app folder's stamps before and after
    the build made ``.flash`` in it (``make_flash_folder``), so that change is
    not taken for someone else's.
    """
    files: dict[str, Stamp] = {}
    root = str(app_dir)
    for name in os.listdir(root):
        path = os.path.join(root, name)
        if name != ".flash" and not os.path.isdir(path):
            stamp = _stamp(path)
            if stamp is not None:
                files[path] = stamp
    for path in [*(os.path.join(root, rel) for rel in shipped), *inputs]:
        stamp = _stamp(path)
        if stamp is None:
            return None
        files[path] = stamp
    dirs: dict[str, Stamp] = {}
    changed = [s[2] for s in files.values()]  # change times
    for rel in folders:
        path = os.path.join(root, rel) if rel else root
        stamp = _stamp(path)
        if stamp is None:
            return None
        dirs[path] = stamp
        if not rel:
            # The app folder as it is now must be as it was once .flash was there (the walk ran
            # after that, so it saw every entry made before). Its stamp then may be recent (the
            # build made .flash; .flash was just deleted for a cold build): what matters is only
            # that a later change cannot share that stamp, one clock tick of the file system on.
            before, after = app_folder
            if before is None or after is None or stamp != after:
                return None  # changed since the build made .flash in it (or began)
            if time.time_ns() - max(after[1], after[2]) < _tick(after):
                return None
            continue
        changed.append(stamp[2])
    if max(changed, default=0) >= started_ns - RACY_MARGIN_NS:
        return None  # an input changed during the build, or too close to its start to tell
    return Inputs(files, dirs)


def _tick(stamp: Stamp) -> int:
    """How far apart two changes must be for this stamp to tell them apart, at most.

    Whole seconds in both times: a file system that keeps seconds (or two);
    else a few milliseconds (Linux stamps files at the kernel's tick), taken
    with room to spare.
    """
    if stamp[1] % 1_000_000_000 == 0 and stamp[2] % 1_000_000_000 == 0:
        return 2 * RACY_MARGIN_NS
    return FINE_TICK_NS


def write_record(
    app_dir: Path,
    inputs: Inputs,
    *,
    key: str,
    env_names: Iterable[str],
    output: OutputLog,
    took: str,
    written: Mapping[str, tuple[int, int, int, int]],
    hold: bool = False,
) -> bool:
    """Record the build that just succeeded; False when it cannot be trusted to (see module).

    ``hold``: ``.build`` is still being completed; keep the arguments for the
    process doing that, which records the build once it is done
    (``write_held_record``): only then do the files under ``.flash/`` stay put.

    ``written``: for files the build wrote under ``.flash/`` and recorded, the
    ``(size, mtime_ns, inode, permission bits)`` it saw right after writing each;
    a file that is not like that any more was changed by someone else since.
    """
    if hold:
        held = {"files": inputs.files, "dirs": inputs.dirs, "key": key, "env": sorted(env_names), "output": output.calls}
        save_record(held_record_path(app_dir), {**held, "took": took, "written": {p: list(s) for p, s in written.items()}})
        return True
    outputs: dict[str, Stamp] = {}
    _walk_files(str(app_dir / ".flash"), UNSTAMPED, outputs)
    for path, (size, mtime_ns, ino, mode) in written.items():
        now = outputs.get(path)
        if now is None or not stat.S_ISREG(now[4]) or [now[0], now[1], now[3], stat.S_IMODE(now[4])] != [size, mtime_ns, ino, mode]:
            return False  # not as the build left it
    # The app's files first: they are what changes between builds, and ``answer`` stops at the first difference.
    files = {**inputs.files, **outputs}
    data = {"key": key, "files": files, "dirs": inputs.dirs, "env": sorted(env_names), "output": output.calls, "took": took}
    save_record(record_path(app_dir), data)
    return True


#: The record's first line: this format's name and the sha256 of the JSON after it.
RECORD_FORMAT = "flash-tasks-quick/1"


def save_record(path: Path, data: dict[str, Any]) -> None:
    """Write a record: a header line with the digest of the compact JSON that follows.

    Not ``stage.write_json``: checking that envelope means serialising its data
    again, and a record stamps every file under ``.flash/`` (thousands, with
    installed packages); here the check is one digest of the bytes read.
    """
    body = json.dumps(data, separators=(",", ":")).encode()
    write_bytes_atomic(path, f"{RECORD_FORMAT} {hashlib.sha256(body).hexdigest()}\n".encode() + body)


def load_record(path: Path) -> Any:
    """A record's data, or None when it is missing, damaged or not one."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    header, _, body = raw.partition(b"\n")
    if header != f"{RECORD_FORMAT} {hashlib.sha256(body).hexdigest()}".encode():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        return None


def make_flash_folder(app_dir: Path) -> tuple[Stamp | None, Stamp | None]:
    """Make ``.flash`` in the app folder if it is missing; the folder's stamps before and after.

    Making it changes the app folder, which a record stamps as an input: with
    these stamps a first build can tell that change (its own) from one made
    by anyone else during the build (see ``write_record``).
    """
    before = _stamp(str(app_dir))
    try:
        os.mkdir(app_dir / ".flash")
    except OSError:
        return before, before  # there already (or it cannot be made: the build says why)
    return before, _stamp(str(app_dir))


def forget(app_dir: Path) -> None:
    """Drop the record (and one held back): a full build is about to change what it describes."""
    for path in (record_path(app_dir), held_record_path(app_dir)):
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError):
            pass  # no record (or a .state that is not a folder, which the build clears)
        except IsADirectoryError:
            from .stage import remove_path

            remove_path(path)


def write_held_record(app_dir: Path) -> bool:
    """Write the record held back by the build whose ``.build`` was just completed; whether it was."""
    data = load_record(held_record_path(app_dir))
    held_record_path(app_dir).unlink(missing_ok=True)
    if not isinstance(data, dict):
        return False
    try:
        output = OutputLog()
        output.calls = list(data["output"])
        written = {str(p): (int(s[0]), int(s[1]), int(s[2]), int(s[3])) for p, s in dict(data["written"]).items()}
        inputs = Inputs(files=dict(data["files"]), dirs=dict(data["dirs"]))
        return write_record(
            app_dir, inputs, key=str(data["key"]), env_names=list(data["env"]), output=output, took=str(data["took"]), written=written
        )
    except (KeyError, TypeError, ValueError, IndexError):
        return False


def write_last_build(flash_dir: Path, output: str) -> None:
    """Remember which artifact the build wrote (``-o`` may have renamed it), for ``flash inspect``.

    Written after the build lock is released, so concurrent builds each use a
    temporary file of their own; the record is a convenience, a failure to
    write it does not fail the build.
    """
    path = flash_dir / LAST_BUILD
    text = json.dumps({"artifact": output}) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return
    except (OSError, UnicodeDecodeError):
        pass
    tmp = path.with_name(f".{LAST_BUILD}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


# -- answering from the record ---------------------------------------------------------------------


ANSWERED, BUILD, VERIFY = "answered", "build", "verify"


def answer(options: Mapping[str, Any], out: IO[str], err: IO[str]) -> str:
    """Print the recorded no-op build's output if nothing it depends on changed.

    Returns ``ANSWERED``; ``BUILD`` when a full build must run; ``VERIFY`` when
    the record stands but a file under ``.flash/`` is not as that build left it:
    only a program other than ``flash build`` changes those files in between,
    so the full build re-reads every cached piece (as ``--verify`` does) instead
    of trusting stamps a damaging write may have kept.
    """
    started = time.perf_counter()
    if not eligible(options):
        return BUILD
    app_dir = Path(str(options.get("directory") or ".")).expanduser().resolve()
    flash = app_dir / ".flash"
    if (flash / ".state" / RUNNING_MARKER).exists() or os.path.lexists(flash / ".state" / FILLING_MARKER):
        return BUILD
    data = load_record(record_path(app_dir))
    if not isinstance(data, dict):
        return BUILD
    files = data.get("files")
    if not isinstance(files, dict) or not _unchanged(data):
        inside = str(flash) + os.sep
        damaged = isinstance(files, dict) and any(p.startswith(inside) and _stamp(p) != s for p, s in files.items())
        return VERIFY if damaged else BUILD
    from .commands.output import Console, format_seconds

    color_mode = str(options.get("color") or "auto")
    key = run_key(options, data.get("env", []), out, err)
    if data.get("key") != key:
        return BUILD
    consoles = {
        "out": Console.create(out, color_mode, quiet=bool(options.get("quiet"))),
        "err": Console.create(err, color_mode, quiet=bool(options.get("quiet"))),
    }
    took = f"({data.get('took')})"
    calls = data.get("output")
    if not _replayable(calls):
        return BUILD
    for index, (stream, method, args, kwargs) in enumerate(calls):
        if index == len(calls) - 1 and method == "line" and args and str(args[0]).endswith(took):
            args = [str(args[0])[: -len(took)] + f"({format_seconds(time.perf_counter() - started)})"]
        getattr(consoles[stream], method)(*args, **kwargs)
    write_last_build(flash, str(options.get("output")))
    return ANSWERED


def _replayable(calls: Any) -> TypeGuard[list[list[Any]]]:
    """Whether ``calls`` are console calls a build records: lines and tables, on out or err."""
    if not isinstance(calls, list):
        return False
    for call in calls:
        if not (isinstance(call, list) and len(call) == 4 and call[0] in ("out", "err")):
            return False
        _, method, args, kwargs = call
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            return False
        if method == "line" and not (len(args) == 1 and isinstance(args[0], str) and not kwargs):
            return False
        if method == "table":
            shaped = (
                len(args) == 2
                and all(isinstance(cell, str) for cell in args[0])
                and all(isinstance(row, list) and all(isinstance(cell, str) for cell in row) for row in args[1])
                and set(kwargs) <= {"indent", "right"}
                and isinstance(kwargs.get("indent", ""), str)
                and all(isinstance(i, int) for i in kwargs.get("right", []))
            )
            if not shaped:
                return False
        elif method != "line":
            return False
    return True


def _unchanged(data: dict[str, Any]) -> bool:
    for group in ("dirs", "files"):  # the app's folders, its files, then .flash's
        stamps = data.get(group)
        if not isinstance(stamps, dict):
            return False
        for path, stamp in stamps.items():
            if _stamp(path) != stamp:
                return False
    return True
