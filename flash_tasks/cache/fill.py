"""Completing ``.flash/.build`` after the artifact is out.

When every distribution a cold build installs comes from cached segments
(``installs.restore_installs`` with ``background``), the artifact needs only
the segments themselves: they are concatenated, not unpacked. So the install
step puts in place just what the archive step reads (dist-info folders and
``bin/`` scripts of distributions that have such files, checked against
RECORD), writes a pending-fill record naming the rest, and the build goes on.
Once the build is over, a process of its own extracts the remaining files into
``.flash/.build`` (``python -m flash_tasks.cache.fill``), checks each
distribution's files against its RECORD, moves them in one top-level entry at
a time, and deletes the record. It holds the app's build lock until it is
done: the next build of the app waits for it.

Nothing trusts the record: a killed fill leaves top-level entries missing, and
the install step reinstalls any distribution whose entries are not all there.
A distribution whose segments do not match its RECORD is named in the record
(the next build warns and installs it from its wheel), its segments are
dropped from ``.flash`` and the local cache, and the artifact's record with
them: the next build makes the artifact again. (The archive step ships cached
segments on the strength of their records in any build, this check comes on
top; a mismatch means a cache whose records were written wrongly.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..quick import FILLING_MARKER
from ..store import Record, load, record_hash, save

if TYPE_CHECKING:
    from ..config import BuildPaths


class FillEntry(BaseModel):
    """One distribution whose files are still to be extracted."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Its install record's key (forgotten by the local cache if the segments disagree with RECORD).
    key: str
    #: ``InstalledDistribution`` fields.
    dist: dict[str, object]
    #: Its own top-level entries: its segments hold exactly these.
    own: list[str]
    #: Its files under shared top-level entries (``bin/`` scripts), in place already, with their RECORD digests.
    extra: dict[str, str] = Field(default_factory=dict)
    #: Its segment files in ``.flash/.state/segments``, in order.
    segments: list[str]


class FillState(Record):
    """The pending-fill record: ``.flash/.state/filling.json``."""

    entries: list[FillEntry]
    #: The local cache that gave the segments (its records of bad ones are deleted).
    local_cache: str | None = None
    #: Distributions whose files could not be completed (said by the next build).
    failed: list[str] = Field(default_factory=list)


def marker_path(paths: BuildPaths) -> Path:
    return paths.state / FILLING_MARKER


def pending(paths: BuildPaths) -> bool:
    """Whether ``.flash/.build`` may still lack files of installed distributions."""
    return os.path.lexists(marker_path(paths))


def write_pending(paths: BuildPaths, entries: Sequence[FillEntry]) -> None:
    from . import _session

    local = _session().local
    save(
        marker_path(paths), FillState(entries=list(entries), local_cache=str(local.root) if local is not None else None)
    )


def failures(paths: BuildPaths) -> list[str]:
    """The distributions a finished fill could not complete (empty while it runs or when it succeeded)."""
    state = load(FillState, marker_path(paths))
    return list(state.failed) if state is not None else []


def log_path(paths: BuildPaths) -> Path:
    """Where the fill process's error output goes (empty unless it failed on its own)."""
    return paths.state / "fill.log"


def crash_note(paths: BuildPaths) -> str | None:
    """The last line a fill process left in its log (an exception's), if it left any."""
    try:
        text = log_path(paths).read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else None


def fill(paths: BuildPaths) -> list[str]:
    """Extract every pending distribution's remaining files; returns those that failed (the record then stays)."""
    from .installs import WRITERS

    marker = marker_path(paths)
    state = load(FillState, marker)
    if state is None:
        return []  # damaged or gone: the next install step reinstalls whatever is missing
    failed: list[str] = []
    with ThreadPoolExecutor(max_workers=WRITERS, thread_name_prefix="flash-fill") as writers:
        for entry in state.entries:
            problem = _fill_one(paths, entry, writers)
            if problem is not None:
                failed.append(problem)
                _drop_segments(paths, state, entry)
    if failed:
        # The published artifact holds those segments: the next build must make it again, not trust it.
        (paths.state / "artifact.json").unlink(missing_ok=True)
        save(marker, state.model_copy(update={"failed": failed}))
    else:
        from ..package import remember_shared_files

        # What the first edit's archive step would otherwise read from each RECORD again.
        remember_shared_files(paths, [(entry.dist, entry.own) for entry in state.entries])
        marker.unlink(missing_ok=True)
        from ..quick import write_held_record

        write_held_record(paths.app)  # the build that left this fill, recorded for the next no-op
    return failed


def _fill_one(paths: BuildPaths, entry: FillEntry, writers: ThreadPoolExecutor) -> str | None:
    """One distribution's remaining files into place, all checked; a description of the problem, or None."""
    from ..deps.installed import InstalledDistribution
    from .installs import _RESTORE_ERRORS, _check, _extract, _take_out, _Unusable

    try:
        dist = InstalledDistribution.model_validate(entry.dist)
    except ValidationError:
        return f"{entry.dist.get('name')} (its pending-fill entry is damaged)"
    build = paths.build.resolve()
    # The dist-info folder goes in last: a fill killed while moving leaves no RECORD vouching for missing files.
    todo = sorted(entry.own, key=lambda top: (top == dist.dist_info, top))
    if all(os.path.lexists(build / top) for top in todo):
        return None  # done by an earlier fill
    staging = build / f".{dist.name}-restore.tmp-{os.getpid()}-{threading.get_native_id()}"  # swept after a kill
    shutil.rmtree(staging, ignore_errors=True)
    moved: list[Path] = []
    try:
        staging.mkdir(parents=True)
        segments = [paths.segments / name for name in entry.segments]
        digests = _extract(segments, staging, set(entry.own), writers)
        for rel in entry.extra:  # in place already: checked here against RECORD too
            digests[rel] = record_hash(build / rel)
        _check(staging, dist, digests, absent=frozenset(rel.split("/", 1)[0] for rel in entry.extra))
        for top in todo:
            target = build / top
            if os.path.lexists(target):
                raise _Unusable(f"{top} appeared in the build folder meanwhile")
            os.rename(staging / top, target)
            moved.append(target)
    except _RESTORE_ERRORS as exc:
        _take_out(moved)
        return f"{dist.name} {dist.version} ({exc})"
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return None


def _drop_segments(paths: BuildPaths, state: FillState, entry: FillEntry) -> None:
    """Segments that disagree with their RECORD: out of ``.flash`` and out of the local cache's records."""
    from . import segment_key
    from .local import LocalCache

    segments = [paths.segments / name for name in entry.segments]
    for path in segments:
        path.unlink(missing_ok=True)
    if state.local_cache is not None:
        local = LocalCache(Path(state.local_cache), 0)
        for key in (entry.key, segment_key(segments)):
            try:
                local.action_path(key).unlink(missing_ok=True)
            except OSError:
                pass  # the cache may be gone or read-only: the segments in .flash are gone anyway


def pending_count(paths: BuildPaths) -> int:
    """How many distributions a fill is to complete (0: none pending, or one that failed)."""
    state = load(FillState, marker_path(paths))
    return 0 if state is None or state.failed else len(state.entries)


def start(paths: BuildPaths, lock_fd: int | None) -> int:
    """Complete ``.flash/.build`` in a process of its own that keeps the build lock ``lock_fd`` until it is done.

    Returns how many distributions it completes there. Without a lock to hand
    over (no ``flock`` here) or a process to start, it is done now (0).
    """
    state = load(FillState, marker_path(paths))
    if state is None or state.failed:
        return 0  # nothing pending, or left for the next install step
    if lock_fd is not None:
        # The same flash_tasks as this process's, whatever the working folder holds.
        here = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([here, *filter(None, [os.environ.get("PYTHONPATH")])])}
        try:
            with open(log_path(paths), "wb") as log:
                subprocess.Popen(
                    [sys.executable, "-m", "flash_tasks.cache.fill", str(paths.flash.resolve())],
                    cwd=paths.flash,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=log,
                    pass_fds=(lock_fd,),
                    start_new_session=True,
                )
            return len(state.entries)
        except OSError:
            pass
    fill(paths)
    return 0


def main(argv: Sequence[str]) -> int:
    from ..config import BuildPaths

    if len(argv) != 1:
        print("usage: python -m flash_tasks.cache.fill APP/.flash", file=sys.stderr)
        return 2
    flash = Path(argv[0]).resolve()
    return 1 if fill(BuildPaths(flash.parent, "artifact.tar.gz")) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
