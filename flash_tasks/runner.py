"""Run the task graph for one app and report what happened.

Used by ``flash build`` and ``python -m flash_tasks``. It takes the app's build
lock (two builds of one app never interleave), runs doit in-process with a
reporter that records each task as run, skipped or failed, and turns a task's
``FlashError`` back into an exception for the CLI.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from .config import BuildConfig
from .errors import BuildError, FlashError
from .stage import read_json


@dataclass
class TaskEvent:
    name: str
    status: str  # "run", "skipped", "failed"
    seconds: float = 0.0


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


class _Log:
    def __init__(self, stream: IO[str] | None) -> None:
        self.events: list[TaskEvent] = []
        self.failure: BaseException | None = None
        self.failure_text: str | None = None
        self.stream = stream
        self.started: dict[str, float] = {}


def _make_reporter(log: _Log) -> type:
    class Reporter:
        """Records task outcomes; prints one line per task run when verbose."""

        def __init__(self, outstream: Any, options: Any) -> None:
            pass

        def initialize(self, tasks: Any, selected_tasks: Any) -> None:
            pass

        def get_status(self, task: Any) -> None:
            pass

        def execute_task(self, task: Any) -> None:
            log.started[task.name] = time.perf_counter()
            if log.stream is not None and task.actions:
                log.stream.write(f"  run   {task.name}\n")
                log.stream.flush()

        def add_failure(self, task: Any, fail: Any) -> None:
            log.events.append(TaskEvent(task.name, "failed"))
            exc = getattr(fail, "exception", None)
            if log.failure is None:
                log.failure = exc if exc is not None else None
                log.failure_text = fail.get_msg() if hasattr(fail, "get_msg") else str(fail)

        def add_success(self, task: Any) -> None:
            if task.actions:
                took = time.perf_counter() - log.started.get(task.name, time.perf_counter())
                log.events.append(TaskEvent(task.name, "run", took))

        def skip_uptodate(self, task: Any) -> None:
            if task.actions:
                log.events.append(TaskEvent(task.name, "skipped"))
                if log.stream is not None:
                    log.stream.write(f"  skip  {task.name} (up to date)\n")

        def skip_ignore(self, task: Any) -> None:
            log.events.append(TaskEvent(task.name, "skipped"))

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
def build_lock(config: BuildConfig, stream: IO[str] | None) -> Iterator[None]:
    """Hold ``.flash/.lock`` for the build; a second build waits for it."""
    config.paths.flash.mkdir(parents=True, exist_ok=True)
    with open(config.paths.lock_file, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if stream is not None:
                stream.write("waiting for another build of this app to finish...\n")
                stream.flush()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def run_tasks(config: BuildConfig, targets: list[str] | None = None, *, verbose_stream: IO[str] | None = None) -> BuildReport:
    """Build ``config``'s app; raises ``FlashError`` on a problem the user can fix."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from .graph import RAISED, namespace

    started = time.perf_counter()
    log = _Log(verbose_stream)
    with build_lock(config, verbose_stream):
        config.paths.state.mkdir(parents=True, exist_ok=True)
        RAISED.clear()
        ns = namespace(config, reporter=_make_reporter(log))
        loader = ModuleTaskLoader(ns)
        argv = ["run", *(targets or [])]
        code = DoitMain(loader, config_filenames=()).run(argv)
    if RAISED:
        raise RAISED[0]
    if log.failure is not None:
        # A FlashError is the user's to fix; anything else is a bug and keeps its traceback.
        raise log.failure
    if code != 0:
        raise BuildError(f"the build graph failed: {log.failure_text or f'doit exit code {code}'}")
    report = BuildReport(artifact=config.paths.artifact, manifest=config.paths.manifest, events=log.events)
    report.ran = [e.name for e in log.events if e.status == "run"]
    report.skipped = [e.name for e in log.events if e.status == "skipped"]
    report.warnings = read_json(config.paths.warnings_json, [])
    report.seconds = time.perf_counter() - started
    return report
