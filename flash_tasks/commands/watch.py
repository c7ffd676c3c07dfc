"""``flash build --watch``: build, then rebuild on every save of a shipped file.

Polling, no new dependency: every 0.3 s it stats the files that ship (and the
``.gitignore`` files that decide what ships). Folder mtimes catch files being
added, removed or renamed, and a full walk with the ignore rules runs every
few seconds or whenever a folder changed. A change starts a rebuild only once
the files have stopped changing for 0.2 s (editors often write a file in
several steps). Each rebuild prints what changed and the new artifact's size.

Ctrl-C while waiting exits 0; during a rebuild it exits 130, and the previous
artifact is left as it was.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

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

POLL_SECONDS = 0.3
SETTLE_SECONDS = 0.2
FULL_SCAN_SECONDS = 3.0



def _stat(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


@dataclass(frozen=True)
class Snapshot:
    """The state of every watched file and of the folders that hold them."""

    files: dict[str, tuple[int, int, int] | None]
    folders: dict[str, int | None]
    taken: float

    @classmethod
    def take(cls, app_dir: Path) -> Snapshot:
        from ..files import scan_app_tree

        tree = scan_app_tree(app_dir)
        names = [*tree.files, *tree.ignore_files]
        folders = {""}
        for rel in names:
            parts = rel.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                folders.add("/".join(parts[:i]))
        return cls(
            files={rel: _stat(app_dir / rel) for rel in names},
            folders={f: _mtime(app_dir / f) for f in sorted(folders)},
            taken=time.monotonic(),
        )

    def refresh(self, app_dir: Path) -> Snapshot:
        """A new snapshot: a re-stat of the known files, or a full walk when folders changed."""
        if time.monotonic() - self.taken > FULL_SCAN_SECONDS or any(_mtime(app_dir / f) != m for f, m in self.folders.items()):
            return Snapshot.take(app_dir)
        return Snapshot({rel: _stat(app_dir / rel) for rel in self.files}, self.folders, self.taken)

    def changes(self, newer: Snapshot) -> list[str]:
        """``changed: a``, ``added: b``, ``removed: c`` (empty when nothing changed)."""
        added = sorted(set(newer.files) - set(self.files))
        removed = sorted(set(self.files) - set(newer.files))
        modified = sorted(rel for rel in set(self.files) & set(newer.files) if self.files[rel] != newer.files[rel])
        return [f"{word}: {', '.join(names[:5])}" + (f" and {len(names) - 5} more" if len(names) > 5 else "")
                for word, names in (("changed", modified), ("added", added), ("removed", removed)) if names]


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
        while True:
            time.sleep(POLL_SECONDS)
            current = snapshot.refresh(config.app_dir)
            if current.files == snapshot.files:
                snapshot = current
                continue
            while True:  # debounce: wait until the files stop changing
                time.sleep(SETTLE_SECONDS)
                settled = current.refresh(config.app_dir)
                if settled.files == current.files:
                    break
                current = settled
            changes = snapshot.changes(current)
            snapshot = current
            if not changes:
                continue
            console.line(f"{console.dim(time.strftime('[%H:%M:%S]'))} {'; '.join(changes)}")
            building = True
            outcome = rebuild(config, options, console)
            building = False
            show_rebuild(config, outcome, options, console, err)
    except KeyboardInterrupt:
        console.stop_spinner()
        if building:
            err.write_always("interrupted; the previous artifact was left as it was")
            return EXIT_INTERRUPTED
        console.line(console.dim("stopped watching"))
        return 0
