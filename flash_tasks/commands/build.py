"""``flash build``: run the graph, show it as it runs, summarise what was built.

Human output (stdout): one line per phase as it finishes, cargo-style, with
counts read from the phase's own state files, then a table of the resources
and the artifact. ``-v`` adds a line per task (ran/skipped and why);
``--explain`` adds a "why" section; ``--json`` prints only a ``BuildResult``
or an ``ErrorResult`` (see ``results``). Errors and warnings go to stderr.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..config import BuildConfig
from ..errors import FlashError
from ..runner import BuildReport, TaskEvent, run_tasks
from ..stage import read_json, read_plain_json
from .output import Console, format_seconds, format_size, plural

if TYPE_CHECKING:
    from ..quick import OutputLog, Stamp

EXIT_INTERRUPTED = 130

#: Display phases, in graph order; files, stage and scan:<file> show as one "discover" line.
PHASES = ("discover", "manifest", "lock", "install", "handlers", "archive")
_PHASE_OF = {"files": "discover", "stage": "discover", "scan": "discover"}
VERBS = {
    "discover": "Discovered",
    "manifest": "Manifest",
    "lock": "Locked",
    "install": "Installed",
    "handlers": "Generated",
    "archive": "Archived",
}
RUNNING = {
    "discover": "Discovering",
    "manifest": "Writing the manifest",
    "lock": "Resolving dependencies",
    "install": "Installing dependencies",
    "handlers": "Generating handlers",
    "archive": "Archiving",
}
VERB_WIDTH = 12  # cargo-style: verbs right-aligned in 12 columns


def phase_of(task_name: str) -> str:
    base = task_name.split(":", 1)[0]
    return _PHASE_OF.get(base, base if base in VERBS else "archive")


@dataclass
class BuildOptions:
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    explain: bool = False
    color: str = "auto"


def show_path(path: Path) -> str:
    """``path`` relative to the current folder when inside it, else as it is."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def uv_draws_progress() -> bool:
    """uv shows its own progress bars on a terminal (see ``deps.uv._show_progress``)."""
    ci = os.environ.get("CI", "").strip().lower()
    try:
        tty = sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty and ci in ("", "0", "false")


# -- phase summaries, read from each phase's state files ----------------------------------------


class PhaseFacts:
    """What each phase produced, for its one-line summary."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self.paths = config.paths

    def describe(self, phase: str, events: list[TaskEvent]) -> str:
        return str(getattr(self, "_" + phase)(events))

    def _discover(self, events: list[TaskEvent]) -> str:
        files = (read_json(self.paths.files_json, {}) or {}).get("files", [])
        modules = sum(f.endswith(".py") for f in files)
        rescanned = sum(e.name.startswith("scan:") and e.status == "run" for e in events)
        text = f"{plural(len(files), 'file')}, {plural(modules, 'Python module')}"
        if 0 < rescanned < modules:
            text += f" ({rescanned} rescanned)"
        return text

    def _manifest(self, events: list[TaskEvent]) -> str:
        manifest = read_plain_json(self.paths.build_manifest, {}) or {}
        resources = manifest.get("resources") or {}
        functions = sum(len(r.get("functions", [])) for r in resources.values())
        routes = sum(len(r) for r in (manifest.get("routes") or {}).values())
        text = f"Python {manifest.get('python_version', '?')}: {plural(len(resources), 'endpoint')}, {plural(functions, 'function')}"
        if routes:
            text += f", {plural(routes, 'route')}"
        warnings = read_json(self.paths.warnings_json, []) or []
        if warnings:
            text += f" ({plural(len(warnings), 'warning')})"
        return text

    def _lock(self, events: list[TaskEvent]) -> str:
        from ..deps.tasks import lock_path
        from .state import locked_packages

        groups = sorted((read_json(self.paths.groups_json, {}) or {}).get("groups", {}))
        packages = {p for g in groups for p in locked_packages(lock_path(self.config, g))}
        resolved = sum(e.status == "run" for e in events)
        text = f"{plural(len(groups), 'group')}: {plural(len(packages), 'package')}"
        if 0 < resolved < len(groups):
            text += f" ({resolved} resolved again)"
        return text

    def _install(self, events: list[TaskEvent]) -> str:
        from .state import excluded

        installed = (read_plain_json(self.paths.install_json, {}) or {}).get("distributions", {}) or {}
        size = sum(int(d.get("size", 0)) for d in installed.values())
        text = plural(len(installed), "package")
        if installed:
            text += f", {format_size(size)}"
        if any(e.status == "run" for e in events):
            report = read_json(self.paths.state / "install-report.json", {}) or {}
            text += f" (+{len(report.get('added', []))} -{len(report.get('removed', []))})"
        left_out = [e for e in excluded(self.config) if e.reason != "sdk"]
        if left_out:
            parts = [e.name + (f" (needed by {', '.join(e.required_by[:2])})" if e.required_by else "") for e in left_out]
            text += "; left out: " + ", ".join(parts)
        return text

    def _handlers(self, events: list[TaskEvent]) -> str:
        files = (read_json(self.paths.handlers_json, {}) or {}).get("files", [])
        handlers = [f for f in files if "/" not in f and f.startswith("handler_")]
        return plural(len(handlers), "handler")

    def _archive(self, events: list[TaskEvent]) -> str:
        artifact = self.paths.artifact
        size = artifact.stat().st_size if artifact.exists() else 0
        return f"{show_path(artifact)}, {format_size(size)}"


# -- the live view ---------------------------------------------------------------------------------


_STATUS = {"run": ("ran", ("green",)), "skipped": ("skip", ("dim",)), "failed": ("failed", ("red", "bold"))}


class PhaseView:
    """A ``BuildListener`` that prints a line per phase (and per task with ``-v``)."""

    def __init__(self, config: BuildConfig, console: Console, *, phases: bool = True, verbose: bool = False) -> None:
        self.config = config
        self.console = console
        self.phases = phases
        self.verbose = verbose
        self.facts = PhaseFacts(config)
        self.events: list[TaskEvent] = []
        #: Each task's position in ``events``.
        self.seen: dict[str, int] = {}
        self.by_phase: dict[str, list[TaskEvent]] = {p: [] for p in PHASES}
        self.current = -1
        self.uv_progress = uv_draws_progress()

    # BuildListener
    def task_started(self, name: str) -> None:
        phase = phase_of(name)
        self._advance(phase)
        if phase in ("lock", "install") and self.uv_progress:
            self.console.pause_spinner()  # uv draws its own progress bars
        else:
            label = RUNNING[phase] + (f" ({name.split(':', 1)[1]})" if ":" in name else "")
            self.console.start_spinner(label)

    def task_done(self, event: TaskEvent) -> None:
        phase = phase_of(event.name)
        self._advance(phase)
        seen = self.seen.get(event.name)
        if seen is not None:
            # The graph ran again (uv replaced a lock taken from the shared cache): one event per task.
            if event.status == "skipped":
                return
            old = self.events[seen]
            event = TaskEvent(event.name, event.status, event.seconds + (old.seconds if old.status == "run" else 0.0), event.reasons or old.reasons)
            self.events[seen] = event
            events = self.by_phase[phase]
            events[:] = [event if e.name == event.name else e for e in events]
        else:
            self.seen[event.name] = len(self.events)
            self.events.append(event)
            self.by_phase[phase].append(event)
        if self.verbose:
            self.console.line(self.task_line(event))

    def task_line(self, event: TaskEvent) -> str:
        """``-v``: ``ran    scan:app.py  3.1ms  app.py changed`` or ``skip   files``."""
        c = self.console
        word, styles = _STATUS[event.status]
        took = f"  {c.dim(format_seconds(event.seconds))}" if event.status != "skipped" else ""
        why = f"  {c.dim('; '.join(event.reasons))}" if event.reasons and event.status != "skipped" else ""
        return f"{'':>{VERB_WIDTH}} {c.style(word.ljust(6), *styles)} {event.name}{took}{why}"

    def _advance(self, phase: str) -> None:
        index = PHASES.index(phase)
        while self.current < index:
            if self.current >= 0:
                self._flush(PHASES[self.current])
            self.current += 1

    def _flush(self, phase: str) -> None:
        events = self.by_phase[phase]
        if not events or not self.phases:
            return
        ran = [e for e in events if e.status == "run"]
        c = self.console
        verb = VERBS[phase].rjust(VERB_WIDTH)
        text = self.facts.describe(phase, events)
        if ran:
            tail = c.dim(f" in {format_seconds(sum(e.seconds for e in ran))}")
            head = c.style(verb, "green", "bold")
        else:
            tail = c.dim(" (up to date)")
            head = c.style(verb, "bold")
        c.line(f"{head} {text}{tail}")

    def finish(self) -> None:
        """The build succeeded: print the phases not printed yet."""
        self.console.stop_spinner()
        while self.current < len(PHASES):
            if self.current >= 0:
                self._flush(PHASES[self.current])
            self.current += 1

    def abort(self) -> None:
        """The build failed or was interrupted: the failing phase gets no summary line."""
        self.console.stop_spinner()

    # summaries
    def timings(self, total: float) -> dict[str, float]:
        result = {p: round(sum(e.seconds for e in self.by_phase[p]), 6) for p in PHASES if self.by_phase[p]}
        result["total"] = round(total, 6)
        return result

    def task_results(self) -> list[Any]:
        from .results import TaskResult

        return [TaskResult(name=e.name, status=e.status, seconds=round(e.seconds, 6), reasons=e.reasons) for e in self.events]


# -- summary ----------------------------------------------------------------------------------------


def _serves(resource: Any) -> str:
    if resource.routes:
        parts = [f"{r.method} {r.path}" for r in resource.routes]
    else:
        parts = [f"{f.name} ({', '.join(f.methods)})" if f.methods else f.name for f in resource.functions]
    text = ", ".join(parts)
    return text if len(text) <= 72 else text[:69] + "..."


def print_summary(config: BuildConfig, report: BuildReport, console: Console) -> None:
    if console.quiet:
        return  # nothing to show: the manifest is not even read
    from .state import resources as read_resources

    manifest = read_plain_json(config.paths.manifest, {}) or {}
    resources = read_resources(manifest)
    artifact = config.paths.artifact
    size = artifact.stat().st_size if artifact.exists() else 0
    if resources:
        console.line()
        rows = [
            [console.style(r.name, "cyan"), r.type, r.python_version, _serves(r)]
            for r in resources
        ]
        console.table(["resource", "type", "python", "functions / routes"], rows)
        console.line()
    where = console.bold(show_path(artifact))
    took = format_seconds(report.seconds)
    if report.ran:
        console.line(
            f"{console.style('Built', 'green', 'bold')} {where} ({format_size(size)}) in {took}: "
            f"{plural(len(report.ran), 'task')} run, {len(report.skipped)} up to date"
        )
        if report.filling:
            console.line(
                f"  {show_path(config.paths.build)} gets the files of {plural(report.filling, 'package')} from cached "
                "segments in the background; the next build waits for it"
            )
    else:
        console.line(f"{console.style('Up to date', 'green', 'bold')}: {where} ({format_size(size)}), nothing to do ({took})")


#: Task names' first part, in graph order (``graph.PHASES``).
TASK_ORDER = ("files", "stage", "scan", "manifest", "lock", "install", "handlers", "archive")


def _task_rank(base: str) -> int:
    return TASK_ORDER.index(base) if base in TASK_ORDER else len(TASK_ORDER)


def print_explain(events: list[TaskEvent], console: Console) -> None:
    """Why each task ran, in graph order; the tasks of one kind that were skipped share a line."""
    by_base: dict[str, list[TaskEvent]] = {}
    for event in events:
        by_base.setdefault(event.name.split(":", 1)[0], []).append(event)
    rows: list[list[str]] = []
    for base in sorted(by_base, key=lambda b: (_task_rank(b), b)):
        group = by_base[base]
        for event in sorted((e for e in group if e.status != "skipped"), key=lambda e: e.name):
            word = console.style("ran", "green") if event.status == "run" else console.style("failed", "red")
            rows.append([event.name, f"{word}: {'; '.join(event.reasons) or 'out of date'}"])
        skipped = [e for e in group if e.status == "skipped"]
        if len(skipped) == 1:
            rows.append([skipped[0].name, console.dim("; ".join(skipped[0].reasons) or "up to date")])
        elif skipped:
            label = f"{base} ({len(skipped)} {'others' if len(skipped) < len(group) else 'tasks'})"
            rows.append([label, console.dim("up to date: their inputs and settings are unchanged")])
    console.line()
    console.line(console.bold("Why each task ran or was skipped:"))
    for line in _two_columns(rows):
        console.line(line)


def _two_columns(rows: list[list[str]]) -> list[str]:
    from .output import strip_ansi

    width = min(max((len(strip_ansi(r[0])) for r in rows), default=0), 40)
    return [f"  {r[0]}{' ' * max(width - len(strip_ansi(r[0])), 0)}  {r[1]}" for r in rows]


def print_warnings(config: BuildConfig, report: BuildReport, err: Console) -> None:
    if err.quiet:
        return
    from .state import warnings

    for text in warnings(config, list(report.warnings)):
        if text.startswith("warning:") or ": warning:" in text:
            err.line(text)
        else:
            err.line(f"{err.style('warning:', 'yellow', 'bold')} {text}")


# -- the command -----------------------------------------------------------------------------------


INIT_HINT = "to start from a working app, run 'flash init' in an empty folder (or 'flash init NEW_DIR')"


def last_artifact(app_dir: Path) -> Path | None:
    """The artifact the last successful build of ``app_dir`` wrote, if it is still there."""
    from ..quick import LAST_BUILD

    record = read_plain_json(app_dir / ".flash" / LAST_BUILD, {}) or {}
    name = record.get("artifact") if isinstance(record, dict) else None
    if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
        return None
    path = app_dir / ".flash" / name
    return path if path.is_file() else None


def check_not_empty(config: BuildConfig) -> None:
    """Before a folder's first build: one with no Python file at all gets pointed at ``flash init``.

    Python files that are there but ignored (.gitignore) are left to the
    manifest's "no endpoints" error, which names the ignore rules.
    """
    from ..errors import BuildError

    if config.paths.flash.exists():
        return
    for _root, dirs, files in os.walk(config.app_dir):
        if any(name.endswith(".py") for name in files):
            return
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in ("__pycache__", "node_modules")]
    where = show_path(config.app_dir)
    raise BuildError(f"no Python files in {'this folder' if where == '.' else where}: nothing to build", hint=INIT_HINT)


def _with_init_hint(exc: FlashError) -> FlashError:
    from ..manifest import NO_ENDPOINTS_HINT

    if exc.hint == NO_ENDPOINTS_HINT:
        exc.hint = f"{NO_ENDPOINTS_HINT}\nOr {INIT_HINT}."
    return exc


class RecordingConsole(Console):
    """A console that also notes each line and table it is asked for, for the no-op record (``quick``)."""

    log: OutputLog
    name: str
    _depth: int = 0

    def line(self, text: str = "") -> None:
        self._note("line", [text], {})
        self._depth += 1
        try:
            super().line(text)
        finally:
            self._depth -= 1

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "  ", right: Sequence[int] = ()) -> None:
        self._note("table", [list(header), [list(row) for row in rows]], {"indent": indent, "right": list(right)})
        self._depth += 1
        try:
            super().table(header, rows, indent=indent, right=right)
        finally:
            self._depth -= 1

    def _note(self, method: str, args: list[Any], kwargs: dict[str, Any]) -> None:
        if self._depth == 0:
            self.log.add(self.name, method, args, kwargs)


def _consoles(options: BuildOptions, out: IO[str], err: IO[str], log: OutputLog | None) -> tuple[Console, Console]:
    quiet = options.quiet or options.json
    if log is None:
        return Console.create(out, options.color, quiet=quiet), Console.create(err, options.color, quiet=quiet)
    return _recording_pair(RecordingConsole, options, out, err, log)


def _recording_pair(
    kind: type[RecordingConsole], options: BuildOptions, out: IO[str], err: IO[str], log: OutputLog
) -> tuple[RecordingConsole, RecordingConsole]:
    """Consoles of ``kind`` for stdout and stderr that note what they print in ``log``."""
    quiet = options.quiet or options.json
    consoles = []
    for name, stream in (("out", out), ("err", err)):
        console = kind.create(stream, options.color, quiet=quiet)
        assert isinstance(console, kind)
        console.log, console.name = log, name
        consoles.append(console)
    return consoles[0], consoles[1]


class ShadowConsole(RecordingConsole):
    """A recording console that writes nothing: it notes the output a build would print."""

    def write_always(self, text: str) -> None:
        pass

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], *, indent: str = "  ", right: Sequence[int] = ()) -> None:
        self._note("table", [list(header), [list(row) for row in rows]], {"indent": indent, "right": list(right)})

    def start_spinner(self, label: str) -> None:
        pass


def noop_output(config: BuildConfig, options: BuildOptions, report: BuildReport, out: IO[str], err: IO[str]) -> OutputLog:
    """What a build of the same app with nothing to do prints, made without printing it.

    The same phase lines and summary, from the same state files: each task
    this build ran would have been up to date, and the warnings are the
    manifest's (a shared cache's failures are this build's alone).
    """
    from ..quick import OutputLog

    log = OutputLog()
    console, err_console = _recording_pair(ShadowConsole, options, out, err, log)
    view = PhaseView(config, console, phases=not console.quiet)
    skipped = [TaskEvent(e.name, "skipped") for e in report.events]
    for event in sorted(skipped, key=lambda e: PHASES.index(phase_of(e.name))):
        view.task_done(event)
    view.finish()
    noop = BuildReport(
        artifact=report.artifact,
        manifest=report.manifest,
        skipped=[e.name for e in skipped],
        events=skipped,
        warnings=read_json(config.paths.warnings_json, []),
        seconds=report.seconds,
    )
    print_warnings(config, noop, err_console)
    print_summary(config, noop, console)
    return log


def _record_build(
    config: BuildConfig,
    options: BuildOptions,
    record: Mapping[str, Any],
    report: BuildReport,
    log: OutputLog,
    out: IO[str],
    err: IO[str],
    started_ns: int,
    app_folder: tuple[Stamp | None, Stamp | None],
) -> None:
    """After a build that succeeded, let the next identical one with nothing to do be answered from a record.

    ``log``: what this build printed, which is what the next one would print if
    this one had nothing to do; else that output is made again (``noop_output``).
    """
    from ..deps.tasks import planned_locks
    from ..files import scan_app_tree
    from ..quick import run_key, stamp_inputs, tool_fingerprint, write_record
    from ..store import stamps_written

    try:
        tree = scan_app_tree(config.app_dir)
        if tree.links:
            return
        inputs = stamp_inputs(
            config.app_dir,
            started_ns=started_ns,
            shipped=[*tree.files, *tree.ignore_files],
            folders=tree.dirs,
            inputs=planned_locks(config, tool_fingerprint()).files,
            app_folder=app_folder,
        )
        if inputs is None:
            return
        written = stamps_written(config)
        if written is None:
            return
        env_names = sorted(read_json(config.paths.env_json, {}) or {})
        if report.ran:
            log = noop_output(config, options, report, out, err)
        write_record(
            config.app_dir,
            inputs,
            key=run_key(record, env_names, out, err),
            env_names=env_names,
            output=log,
            took=format_seconds(report.seconds),
            written=written,
            hold=bool(report.filling),  # recorded by the process completing .build, once it is complete
        )
    except (FlashError, OSError):
        return  # no record: the next build runs in full, as it would have anyway


def build_once(
    config: BuildConfig, options: BuildOptions, out: IO[str], err: IO[str], *, record: Mapping[str, Any] | None = None
) -> int:
    """One build with full output; returns the exit code (FlashErrors propagate unless --json).

    ``record``: the command line's options, when the build, once it succeeded, may be
    recorded for ``quick`` to answer the next one that has nothing to do.
    """
    from ..quick import OutputLog, forget, make_flash_folder, write_last_build

    started_ns = time.time_ns()
    try:
        forget(config.app_dir)
        check_not_empty(config)
        app_folder = make_flash_folder(config.app_dir)
    except FlashError as exc:
        if options.json:
            from .results import dump, error_result

            out.write(dump(error_result(exc.to_dict())) + "\n")
            return exc.exit_code
        raise
    log = OutputLog() if record is not None and not options.json else None
    console, err_console = _consoles(options, out, err, log)
    # Quiet: no phase lines, so none of the state files they describe is read.
    view = PhaseView(config, console, phases=not console.quiet, verbose=options.verbose)
    started = time.perf_counter()
    try:
        report = run_tasks(
            config,
            listener=view,
            explain=options.explain or options.verbose or options.json,
            wait_stream=None if (options.quiet or options.json) else err,
            hand_over=True,
        )
    except FlashError as exc:
        view.abort()
        _with_init_hint(exc)
        if options.json:
            from .results import dump, error_result

            out.write(dump(error_result(exc.to_dict(), view.task_results())) + "\n")
            return exc.exit_code
        if options.explain:
            print_explain(view.events, console)
        raise
    except KeyboardInterrupt:
        view.abort()
        if options.json:
            from .results import dump, error_result

            error = {"kind": "interrupted", "code": EXIT_INTERRUPTED, "message": "interrupted; the previous artifact was left as it was"}
            out.write(dump(error_result(error, view.task_results())) + "\n")
            return EXIT_INTERRUPTED
        raise
    finally:
        console.stop_spinner()  # whatever ended the build, the terminal gets its cursor back
    try:
        view.finish()
        write_last_build(config.paths.flash, config.output)
        if options.json:
            from .results import build_result, dump

            result = build_result(config, report, view.task_results(), view.timings(time.perf_counter() - started))
            out.write(dump(result) + "\n")
            return 0
        print_warnings(config, report, err_console)
        if options.explain:
            print_explain(view.events, console)
        print_summary(config, report, console)
        if log is not None and record is not None:
            _record_build(config, options, record, report, log, out, err, started_ns, app_folder)
        return 0
    finally:
        if report.fill_lock is not None:
            # Handed over: the process completing .build holds the build lock from here (and records
            # this build once .build is complete); this process lets go of it.
            from ..cache.fill import start

            try:
                start(config.paths, report.fill_lock)
            finally:
                os.close(report.fill_lock)
