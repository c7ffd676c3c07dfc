"""``flash build --watch``: build, then rebuild on every save of a shipped file.

The operating system reports changes through ``watchfiles`` (no polling); a
batch of changes is taken once nothing has changed for 0.2 s (editors often
write a file in several steps). What is under ``.flash/`` never wakes the loop;
anything else is checked against the files that ship (the ``.gitignore``
rules included), so only a change to a shipped file, or to a ``.gitignore``
that decides what ships, starts a rebuild. Each rebuild prints what changed and
the new artifact's size.

Ctrl-C while waiting exits 0; during a rebuild it exits 130, and the previous
artifact is left as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..config import BuildConfig
from ..errors import FlashError
from ..runner import BuildReport, TaskEvent
from .build import (
    EXIT_INTERRUPTED,
    BuildOptions,
    PhaseView,
    build_once,
    print_explain,
    show_path,
)
from .output import (
    Console,
    format_delta,
    format_seconds,
    format_size,
    plural,
    render_error,
)

if TYPE_CHECKING:
    from watchfiles import Change

#: A batch of changes is yielded once nothing more has changed for this long (ms) ...
SETTLE_MS = 200
#: ... or once it has been collecting for this long (ms), however busy the folder is.
MAX_BATCH_MS = 1600
#: With nothing changing, an empty batch comes this often (ms); only the first one is looked at.
IDLE_MS = 1000


def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass(frozen=True)
class Snapshot:
    """The state of every file that ships (and of the ``.gitignore`` files that decide what ships)."""

    files: dict[str, tuple[int, int, int] | None]

    @classmethod
    def take(cls, app_dir: Path) -> Snapshot:
        from ..files import scan_app_tree

        tree = scan_app_tree(app_dir)
        return cls({rel: _stat(app_dir / rel) for rel in (*tree.files, *tree.ignore_files)})

    def changes(self, newer: Snapshot) -> list[str]:
        """``changed: a``, ``added: b``, ``removed: c`` (empty when nothing changed)."""
        added = sorted(set(newer.files) - set(self.files))
        removed = sorted(set(self.files) - set(newer.files))
        modified = sorted(rel for rel in set(self.files) & set(newer.files) if self.files[rel] != newer.files[rel])
        return [f"{word}: {', '.join(names[:5])}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                for word, names in (("changed", modified), ("added", added), ("removed", removed)) if names]


def outside_flash(config: BuildConfig) -> Callable[[Change, str], bool]:
    """A ``watchfiles`` filter: every path but ``.flash/`` and what is in it (the build writes there)."""
    flash = os.path.normpath(config.paths.flash)
    inside = flash + os.sep

    def keep(change: Change, path: str) -> bool:
        path = os.path.normpath(path)
        return path != flash and not path.startswith(inside)

    return keep


def changed_batches(config: BuildConfig) -> Iterator[set[tuple[Change, str]]]:
    """Batches of settled changes outside ``.flash/``, and an empty one after each idle second.

    The first batch (empty or not) comes once the watcher is up, so what changed
    between the first snapshot and then is not missed. Ctrl-C raises KeyboardInterrupt.
    """
    from watchfiles import watch as watch_changes

    yield from watch_changes(
        config.app_dir,
        watch_filter=outside_flash(config),
        step=SETTLE_MS,
        debounce=MAX_BATCH_MS,
        rust_timeout=IDLE_MS,
        yield_on_timeout=True,
        raise_interrupt=True,
    )


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


@dataclass
class Rebuild:
    """One rebuild's outcome, printed once the build itself is over."""

    before: int | None
    report: BuildReport | None = None
    error: FlashError | None = None
    events: list[TaskEvent] | None = None


def rebuild(config: BuildConfig, options: BuildOptions, console: Console) -> Rebuild:
    """Run the graph again without output (a spinner on a terminal, task lines with -v)."""
    from ..runner import run_tasks

    outcome = Rebuild(before=_size(config.paths.artifact))
    view = PhaseView(config, console, phases=False, verbose=options.verbose)
    try:
        outcome.report = run_tasks(config, listener=view, explain=options.explain or options.verbose)
    except FlashError as exc:
        outcome.error = exc
    finally:
        if outcome.report is not None:
            view.finish()
        else:
            view.abort()
    outcome.events = view.events
    return outcome


def show_rebuild(config: BuildConfig, outcome: Rebuild, options: BuildOptions, console: Console, err: Console) -> None:
    """What changed in the artifact: its new size and the difference, or the error."""
    if outcome.error is not None:
        err.write_always(render_error(outcome.error, err))
        console.line(console.dim("  waiting for changes..."))
        return
    report = outcome.report
    assert report is not None
    if options.explain:
        print_explain([e for e in outcome.events or [] if e.status != "skipped"], console)
    took = format_seconds(report.seconds)
    if not report.ran:
        console.line(f"  {console.dim('no change to the artifact')} ({took})")
        return
    after = _size(config.paths.artifact) or 0
    delta = f", {format_delta(after - outcome.before)}" if outcome.before is not None else ""
    console.line(
        f"  {console.style('Rebuilt', 'green', 'bold')} {show_path(config.paths.artifact)} "
        f"({format_size(after)}{delta}) in {took}, {plural(len(report.ran), 'task')} run"
    )


def watch(config: BuildConfig, options: BuildOptions, out: IO[str], err_stream: IO[str]) -> int:
    import gc

    gc.enable()  # off for a one-off build (``_launch``); this process runs until Ctrl-C
    console = Console.create(out, options.color, quiet=options.quiet)
    err = Console.create(err_stream, options.color)
    building = True
    try:
        try:
            build_once(config, options, out, err_stream)
        except FlashError as exc:
            err.write_always(render_error(exc, err))
        building = False
        snapshot = Snapshot.take(config.app_dir)
        console.line(console.dim(f"Watching {plural(len(snapshot.files), 'file')} in {show_path(config.app_dir)} for changes (Ctrl-C to stop)"))
        first = True
        for batch in changed_batches(config):
            if not batch and not first:
                continue
            first = False
            current = Snapshot.take(config.app_dir)
            changes = snapshot.changes(current)
            snapshot = current
            if not changes:
                continue  # nothing that ships: a .gitignored file, an editor's swap file
            console.line(f"{console.dim(time.strftime('[%H:%M:%S]'))} {'; '.join(changes)}")
            building = True
            outcome = rebuild(config, options, console)
            building = False
            show_rebuild(config, outcome, options, console, err)
        return 0
    except KeyboardInterrupt:
        console.stop_spinner()
        if building:
            err.write_always("interrupted; the previous artifact was left as it was")
            return EXIT_INTERRUPTED
        console.line(console.dim("stopped watching"))
        return 0
