"""Run the task graph for one app and report what happened.

Used by ``flash build`` and ``python -m flash_tasks``. It takes the app's build
lock (two builds of one app never interleave), runs doit in-process with a
reporter that records each task as run, skipped or failed, and turns a task's
``FlashError`` back into an exception for the CLI.

A ``BuildListener`` (the CLI's live output) hears about each task as doit
starts and finishes it. With ``explain=True`` each event also says why the task
ran (see ``flash_tasks.commands.explain``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from .config import BuildConfig
from .errors import BuildError, FlashError, ResolutionChanged
from .quick import FILLING_MARKER, RUNNING_MARKER
from .stage import read_json, remove_path


@dataclass
class TaskEvent:
    name: str
    status: str  # "run", "skipped", "failed"
    seconds: float = 0.0
    #: Why the task ran or was skipped (filled in when explaining).
    reasons: list[str] = field(default_factory=list)


class BuildListener(Protocol):
    """Hears about tasks as doit runs them (the CLI's live output)."""

    def task_started(self, name: str) -> None: ...

    def task_done(self, event: TaskEvent) -> None: ...


@dataclass
class BuildReport:
    """What a build did: tasks run and skipped, warnings, the artifact."""

    artifact: Path
    manifest: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    events: list[TaskEvent] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Distributions whose files a process of their own is extracting into ``.build`` (``cache.fill``).
    filling: int = 0
    #: With ``run_tasks(hand_over=True)``: a descriptor holding the build lock, for the caller to
    #: pass to ``cache.fill.start`` (which starts that process) and then close.
    fill_lock: int | None = None


class _Log:
    def __init__(self, stream: IO[str] | None, listener: BuildListener | None = None, explainer: Any = None) -> None:
        self.events: list[TaskEvent] = []
        self.failure: BaseException | None = None
        self.failure_text: str | None = None
        self.stream = stream
        self.listener = listener
        self.explainer = explainer
        self.started: dict[str, float] = {}
        self.reasons: dict[str, list[str]] = {}
        self.tasks: dict[str, Any] = {}
        #: Each task's ``config_changed`` values as of its last successful run.
        self.configs: dict[str, dict[str, Any]] = {}

    def record_config(self, task: Any) -> None:
        from doit.tools import config_changed

        values = [utd.config for utd, _, _ in task.uptodate if isinstance(utd, config_changed) and isinstance(utd.config, dict)]
        if values:
            self.configs[task.name] = values[0] if len(values) == 1 else {str(i): v for i, v in enumerate(values)}

    def emit(self, event: TaskEvent) -> None:
        self.events.append(event)
        if self.listener is not None:
            self.listener.task_done(event)


def _make_reporter(log: _Log) -> type:
    class Reporter:
        """Records task outcomes; prints one line per task run when verbose."""

        def __init__(self, outstream: Any, options: Any) -> None:
            pass

        def initialize(self, tasks: Any, selected_tasks: Any) -> None:
            log.tasks = tasks

        def get_status(self, task: Any) -> None:
            pass

        def execute_task(self, task: Any) -> None:
            log.started[task.name] = time.perf_counter()
            if not task.actions:
                return
            if log.explainer is not None:
                log.reasons[task.name] = log.explainer.why_run(task, log.tasks)
            if log.stream is not None:
                log.stream.write(f"  run   {task.name}\n")
                log.stream.flush()
            if log.listener is not None:
                log.listener.task_started(task.name)

        def add_failure(self, task: Any, fail: Any) -> None:
            exc = getattr(fail, "error", None)
            if isinstance(exc, ResolutionChanged):
                log.failure = log.failure or exc  # not a failure: the runner builds again from uv's lock
                return
            took = time.perf_counter() - log.started.get(task.name, time.perf_counter())
            log.emit(TaskEvent(task.name, "failed", took, log.reasons.get(task.name, [])))
            if log.failure is None:
                log.failure = exc if exc is not None else None
                log.failure_text = fail.get_msg() if hasattr(fail, "get_msg") else str(fail)

        def add_success(self, task: Any) -> None:
            if task.actions:
                took = time.perf_counter() - log.started.get(task.name, time.perf_counter())
                log.record_config(task)
                log.emit(TaskEvent(task.name, "run", took, log.reasons.get(task.name, [])))

        def skip_uptodate(self, task: Any) -> None:
            if task.actions:
                reasons = log.explainer.why_skipped(task) if log.explainer is not None else []
                log.emit(TaskEvent(task.name, "skipped", 0.0, reasons))
                if log.stream is not None:
                    log.stream.write(f"  skip  {task.name} (up to date)\n")

        def skip_ignore(self, task: Any) -> None:
            log.emit(TaskEvent(task.name, "skipped", 0.0, ["ignored (doit ignore)"] if log.explainer is not None else []))

        def cleanup_error(self, exception: BaseException) -> None:
            pass

        def runtime_error(self, msg: str) -> None:
            if log.failure is None:
                log.failure_text = msg

        def teardown_task(self, task: Any) -> None:
            pass

        def complete_run(self) -> None:
            pass

    return Reporter


@contextmanager
def hold_lock(lock_file: Path, stream: IO[str] | None, waiting: str) -> Iterator[int | None]:
    """Hold an exclusive lock on ``lock_file``, saying ``waiting`` if someone else has it.

    An ``flock`` on the file: one try that does not block, so the message is
    written only when there is something to wait for, then a wait with no time
    limit. A lock taken on a file that was unlinked meanwhile (``flash clean``
    removes it) is taken again on the file now at that name. The lock file stays
    in place after release. Yields the locked descriptor (a process started
    with it keeps the lock after this one lets go), or None for the fallback.
    Where ``flock`` is missing (not POSIX) or the
    filesystem refuses it, filelock's portable lock is used instead; it is not
    imported otherwise: with the rest of a build already imported, ``import
    filelock`` (4.3) added a median of 15 ms (11-17 ms, 7 runs) to a no-op
    build on a loaded 2-core machine.
    """
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX
        fcntl = None  # type: ignore[assignment]
    told = False
    while fcntl is not None:
        fd = os.open(lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if stream is not None and not told:
                    stream.write(waiting)
                    stream.flush()
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOLCK):
                raise
            break  # this filesystem has no flock: filelock's fallback below
        if os.fstat(fd).st_nlink == 0:
            os.close(fd)  # unlinked while we waited: lock the file now at that name
            continue
        try:
            yield fd
        finally:
            os.close(fd)  # releases the lock (unless a process started meanwhile holds it too)
        return
    with _portable_lock(lock_file, stream, waiting if not told else ""):
        yield None


@contextmanager
def _portable_lock(lock_file: Path, stream: IO[str] | None, waiting: str) -> Iterator[None]:
    from filelock import FileLock, Timeout

    lock = FileLock(lock_file)
    try:
        lock.acquire(blocking=False)
    except Timeout:
        if stream is not None and waiting:
            stream.write(waiting)
            stream.flush()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def build_lock(config: BuildConfig, stream: IO[str] | None) -> Any:
    """Hold ``.flash/.lock`` for the build; a second build waits for it."""
    if os.path.lexists(config.paths.state / FILLING_MARKER):
        waiting = "waiting for .flash/.build to be completed from cached segments (the last build left that for after it)...\n"
    else:
        waiting = "waiting for another build of this app to finish...\n"
    return hold_lock(config.paths.lock_file, stream, waiting)


def task_configs_path(config: BuildConfig) -> Path:
    """Where each task's configuration at its last run is kept (for ``--explain``)."""
    return config.paths.state / "task-configs.json"


def _save_task_configs(config: BuildConfig, configs: dict[str, dict[str, Any]], known: Any) -> None:
    """Remember the configuration each task ran with, so ``--explain`` can name what changed.

    doit keeps only a digest of a ``config_changed`` value; this small file keeps
    the values. Written only when a task ran, so a no-op build writes nothing.
    """
    if not configs:
        return
    from .stage import write_json

    path = task_configs_path(config)
    recorded = read_json(path, {}) or {}
    merged = {name: value for name, value in {**recorded, **configs}.items() if not known or name in known}
    if merged != recorded:
        write_json(path, merged)


#: Temporary names the tool's own writers use; recovery deletes these and nothing else.
TEMPORARY_NAMES = re.compile(
    r"^\..+\.tmp-\d+(-\d+)?$"  # atomic writes: .<name>.tmp-<pid>[-<thread>]
    r"|^\..+\.[A-Za-z0-9_]{8}\.tmp$|^\..+\.\d+\.tmp$"  # mkstemp (locks) and per-process records
    r"|^\.fresh-\d+\.gz$|^\.next\.tar\.gz$|^\.spare\.tmp$"  # the archive's work files
    r"|^\.runpod_flash\.tmp-sdk$|^\.flash-sdk-"  # the SDK being copied or fetched
    r"|^\.tmp[A-Za-z0-9_]{6}$"  # uv's own temporaries inside the build folder, left by a killed install
)


def recover_if_interrupted(config: BuildConfig) -> bool:
    """Sweep a killed build's temporary files and, after one, forget doit's record.

    doit writes its record of finished tasks when a run ends, but outputs are
    renamed into place as each task finishes; a build killed in between leaves
    outputs newer than the record, and undoing the edit would make a stale output
    look up to date. Forgetting the record makes every task check its inputs
    again; the records kept with every output (stamps and digests) keep that
    cheap. Only files matching ``TEMPORARY_NAMES`` are deleted: a dotfile that
    ships (the SDK's ``.env.example``) is never one. Returns True when there was
    something to recover.
    """
    paths = config.paths
    # Where temporaries usually are; cheap enough to sweep on every build.
    # .build too: a fill killed after its record was gone (cache.fill) can leave its staging folder there.
    for folder in (paths.flash, paths.state, paths.segments, paths.build):
        _sweep(folder)
    if not (paths.state / RUNNING_MARKER).exists():
        return False
    for db in paths.flash.glob(paths.db.name + "*"):
        _remove_tree(db)
    for folder in (paths.state, paths.locks, paths.build):
        if folder.is_dir():
            for dirpath, dirnames, filenames in os.walk(folder):
                for name in [*filenames, *dirnames]:
                    if TEMPORARY_NAMES.match(name):
                        _remove_tree(Path(dirpath) / name)
                dirnames[:] = [d for d in dirnames if not TEMPORARY_NAMES.match(d)]
    (paths.build / ".lock").unlink(missing_ok=True)
    return True


def _sweep(folder: Path) -> None:
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if TEMPORARY_NAMES.match(name):
            _remove_tree(folder / name)


def _remove_tree(path: Path) -> None:
    remove_path(path, ignore_errors=True)  # recovery is best effort: the next build sweeps again


#: The only folders the tool keeps in each of its folders; a folder anywhere else is
#: damage (a file replaced by a directory) and is removed before doit looks at it.
_FOLDERS = {"": {".build", ".state", "locks"}, ".state": {"scan", "sdk", "segments"}, ".state/scan": set(), ".state/segments": set(), "locks": set()}


def clear_misplaced_folders(config: BuildConfig) -> None:
    """Remove folders standing where the tool keeps files (a state file, a scan, a lock, the artifact)."""
    for rel, allowed in _FOLDERS.items():
        folder = config.paths.flash / rel if rel else config.paths.flash
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False) and entry.name not in allowed and not TEMPORARY_NAMES.match(entry.name):
                _remove_tree(Path(entry.path))
    manifest = config.paths.build_manifest
    if manifest.is_dir() and not manifest.is_symlink():
        _remove_tree(manifest)


def prepare_flash_dir(config: BuildConfig) -> None:
    """Make ``.flash/`` usable: whatever the tool wrote there is a cache, so damage is cleared.

    A file where the folder should be, or a folder where the build lock file
    should be, is removed; a folder that cannot be written is one clear error.
    """
    paths = config.paths
    try:
        if os.path.lexists(paths.flash) and not paths.flash.is_dir():
            paths.flash.unlink()
        for folder in (paths.flash, paths.state):
            if os.path.lexists(folder) and not folder.is_dir():
                folder.unlink()
            folder.mkdir(exist_ok=True)
        if paths.lock_file.is_dir() and not paths.lock_file.is_symlink():
            _remove_tree(paths.lock_file)
        probe = paths.state / f".probe.tmp-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink(missing_ok=True)  # another build's sweep (under the lock) may have taken it already
    except OSError as exc:
        raise BuildError(
            f"cannot write to {paths.flash}: {exc.strerror or exc}",
            path=str(paths.flash),
            hint="make the folder writable (or remove it: everything in .flash/ is rebuilt), and free disk space if it is full",
        ) from None


def _db_usable(db: Path) -> bool:
    """Whether doit's sqlite record can be opened and read (a missing one is fine: doit makes it)."""
    import sqlite3

    if not os.path.lexists(db):
        return True
    if not db.is_file():
        return False
    try:
        connection = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = connection.execute("PRAGMA quick_check").fetchall()
        finally:
            connection.close()
    except sqlite3.Error:
        return False
    return rows == [("ok",)]


def _record_damaged(printed: str) -> bool:
    return bool(re.search(r"sqlite3|database|JSONDecodeError|Expecting value|UnicodeDecodeError", printed))


def _doit_failure(code: int, failure: str | None, printed: str, verbose: IO[str] | None) -> BuildError:
    """One clear error for a failure doit reported itself (not from one of our actions)."""
    if verbose is not None and printed:
        verbose.write(printed)
    if re.search(r"database or disk is full|No space left on device", printed):
        return BuildError(
            "no space left on device while recording the build's state",
            hint="free some disk space and build again; the previous artifact was left as it was",
        )
    lines = [line for line in printed.splitlines() if line.strip()]
    detail = failure or (lines[-1] if lines else f"doit exit code {code}")
    return BuildError(f"the build graph failed: {detail}", hint="run with -v to see doit's own report")


def _no_entry_points(group: str) -> tuple[()]:
    return ()


@contextmanager
def _without_doit_plugins() -> Iterator[None]:
    """Run doit with its built-in commands, backends and reporters only.

    doit looks for plugins in every installed distribution's entry points, once
    for commands, once for backends and once for reporters: three reads of all
    the metadata in the environment (about 35 ms with 128 distributions) for
    plugins a build never uses, and which should not change a build if some
    package installed one.
    """
    from doit import plugin

    saved = plugin.entry_points_impl
    plugin.entry_points_impl = lambda: _no_entry_points
    try:
        yield
    finally:
        plugin.entry_points_impl = saved


#: How often the graph runs again after uv replaced a lock taken from the shared cache (once is the rule).
MAX_RERUNS = 2
_CHECKED = {
    "confirmed": "taken from the shared cache; uv's resolution, run meanwhile, is the same",
    "changed": "taken from the shared cache; uv's resolution, run meanwhile, differed: built again from uv's",
    "failed": "taken from the shared cache; uv's resolution, run meanwhile, failed",
}


def _note_checks(events: list[TaskEvent], results: list[Any]) -> None:
    """Say in each lock task's reasons (``--explain``, ``--json``) what uv's check of its lock said."""
    from .graph import task_name

    said = {f"lock:{task_name(r.group)}": _CHECKED[r.outcome] for r in results}
    for event in events:
        if event.name in said and said[event.name] not in event.reasons:
            event.reasons.append(said[event.name])


def _settle_resolutions(config: BuildConfig, log: _Log) -> bool:
    """Wait for uv's checks of locks taken from the shared cache; True when the graph must run again.

    A check that failed is the build's error, whatever failed after it: a build
    without the cache would have stopped at that lock. A lock uv replaced makes
    any failure since then moot: it may come from the replaced lock.
    """
    changed = isinstance(log.failure, ResolutionChanged)  # the archive step settled them and published nothing
    speculation = sys.modules.get("flash_tasks.deps.speculation")
    if speculation is not None and speculation.pending(config):
        try:
            changed = speculation.settle(config) or changed
        except FlashError as exc:
            log.failure, log.failure_text = exc, None
            return False
    if changed:
        log.failure, log.failure_text = None, None
    return changed


def _merge_events(first: list[TaskEvent], again: list[TaskEvent]) -> list[TaskEvent]:
    """One event per task over two runs of the graph: ran in either is ran, with both times."""
    merged = {event.name: event for event in first}
    for event in again:
        old = merged.get(event.name)
        if old is None:
            merged[event.name] = event
        elif event.status != "skipped":
            seconds = event.seconds + (old.seconds if old.status == "run" else 0.0)
            merged[event.name] = TaskEvent(event.name, event.status, seconds, event.reasons or old.reasons)
    return list(merged.values())


def run_tasks(
    config: BuildConfig,
    targets: list[str] | None = None,
    *,
    verbose_stream: IO[str] | None = None,
    listener: BuildListener | None = None,
    explain: bool = False,
    wait_stream: IO[str] | None = None,
    hand_over: bool = False,
) -> BuildReport:
    """Build ``config``'s app; raises ``FlashError`` on a problem the user can fix.

    ``listener`` hears each task start and finish; ``explain`` fills each
    event's ``reasons`` (why it ran, or that it was up to date); a message goes
    to ``wait_stream`` (default: ``verbose_stream``) while another build of the
    app holds the lock. When the build left ``.build`` to be completed
    (``cache.fill``), that starts now, unless ``hand_over``: then a successful
    build's report carries a descriptor holding the lock (``fill_lock``) and the
    caller starts it, after recording the build.
    """
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from .graph import namespace

    started = time.perf_counter()
    filling = 0
    fill_lock: int | None = None
    completed = False
    explainer = None
    if explain:
        from .commands.explain import Explainer

        explainer = Explainer(config)
    log = _Log(verbose_stream, listener, explainer)
    prepare_flash_dir(config)
    with build_lock(config, wait_stream if wait_stream is not None else verbose_stream) as lock_fd:
        prepare_flash_dir(config)
        recover_if_interrupted(config)
        clear_misplaced_folders(config)
        from .store import repairs_path

        repairs_path(config).unlink(missing_ok=True)
        running = config.paths.state / RUNNING_MARKER
        running.touch()
        ns = namespace(config, reporter=_make_reporter(log))
        loader = ModuleTaskLoader(ns)
        argv = ["run", *(targets or [])]
        # doit prints its own errors (with tracebacks) to sys.stderr; keep them for the
        # report below instead of showing them raw. Subprocesses (uv) keep the real stderr.
        doit_errors = io.StringIO()

        def run_graph() -> int:
            nonlocal doit_errors
            if not _db_usable(config.paths.db):
                # doit's record is a cache like the rest: damaged means absent (every task checks its inputs).
                for db in config.paths.flash.glob(config.paths.db.name + "*"):
                    _remove_tree(db)
            with contextlib.redirect_stderr(doit_errors), _without_doit_plugins():
                code: int = DoitMain(loader, config_filenames=()).run(argv)
            if code == 3 and log.failure is None and _record_damaged(doit_errors.getvalue()):
                # doit could not read its own record (damaged in a way sqlite's check misses): forget it, once.
                for db in config.paths.flash.glob(config.paths.db.name + "*"):
                    _remove_tree(db)
                doit_errors = io.StringIO()
                log.events.clear()
                with contextlib.redirect_stderr(doit_errors), _without_doit_plugins():
                    code = DoitMain(loader, config_filenames=()).run(argv)
            return code

        try:
            code = run_graph()
            # A lock taken from the shared cache is settled before the build ends, whatever happened.
            for rerun in range(MAX_RERUNS + 1):
                if not _settle_resolutions(config, log):
                    break
                if rerun == MAX_RERUNS:
                    raise BuildError(
                        "the dependency resolution changed again while the build ran", hint="build again"
                    )
                if verbose_stream is not None:
                    verbose_stream.write("  note: uv resolved differently from the shared cache's copy: building again from uv's lock\n")
                first, log.events = log.events, []
                doit_errors = io.StringIO()
                code = run_graph()
                log.events = _merge_events(first, log.events)
            if code in (0, 1):
                # doit has saved its record of this run: it matches the outputs again.
                # (Code 3 means doit itself failed, possibly while saving: stay careful.)
                running.unlink(missing_ok=True)
            completed = code == 0 and log.failure is None
        finally:
            speculation = sys.modules.get("flash_tasks.deps.speculation")
            if speculation is not None:
                # Checks not settled (an interrupt): their locks stay marked, the next build checks them.
                _note_checks(log.events, speculation.end_build(config))
            caches = sys.modules.get("flash_tasks.cache")
            if caches is not None:
                caches.end_build()  # the next build (--watch) starts its own cache session
            if "flash_tasks.cache.fill" in sys.modules:  # loaded by an install step that left files for later
                from .cache.fill import pending_count, start

                waiting = pending_count(config.paths) if hand_over and completed and lock_fd is not None else 0
                if waiting and lock_fd is not None:
                    filling = waiting
                    fill_lock = os.dup(lock_fd)  # the lock stays held through this copy until the caller starts the fill
                else:
                    filling = start(config.paths, lock_fd)
            try:
                _save_task_configs(config, log.configs, log.tasks)
            except FlashError:  # only --explain's wording suffers; never hide the build's own outcome
                pass
    if log.failure is not None:
        # A FlashError is the user's to fix; anything else is a bug and keeps its traceback.
        raise log.failure
    if code != 0:
        raise _doit_failure(code, log.failure_text, doit_errors.getvalue(), verbose_stream)
    report = BuildReport(artifact=config.paths.artifact, manifest=config.paths.manifest, events=log.events, filling=filling, fill_lock=fill_lock)
    report.ran = [e.name for e in log.events if e.status == "run"]
    report.skipped = [e.name for e in log.events if e.status == "skipped"]
    report.warnings = read_json(config.paths.warnings_json, [])
    cache = sys.modules.get("flash_tasks.cache")  # loaded by the archive step if it ran
    if cache is not None:
        report.warnings = [*report.warnings, *cache.take_warnings()]  # a shared cache that failed
    from .store import repairs_path

    repairs = read_json(repairs_path(config), [])
    if repairs:
        # A damaged cache piece is rebuilt without asking; -v and --explain say which and why.
        if verbose_stream is not None:
            verbose_stream.write("".join(f"  repaired: {line}\n" for line in repairs))
        for event in report.events:
            if event.name == "archive" and explain:
                event.reasons.extend(f"repaired: {line}" for line in repairs)
    report.seconds = time.perf_counter() - started
    return report
