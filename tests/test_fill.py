"""``.flash/.build`` completed after the build (``flash_tasks.cache.fill``).

When every dependency of a cold build comes from the shared cache's segments, the
artifact is published before their files are extracted into ``.build``; a process of
its own extracts them, holding the app's build lock. Here, with that on (the rest of
the suite turns it off): the artifact is published first and equals a build without
caches byte for byte, ``.build`` ends up exactly as uv installs it, the next build
waits for the fill, and a fill that was killed or found bad segments is repaired by
the next build.
"""

from __future__ import annotations

import errno
import fcntl
import gzip
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import test_cache
from test_cache import DEPS, Builds, Compressions, UvInstalls, make_app, tree, warnings_in

from flash_tasks import cache, quick
from flash_tasks.cache import fill
from flash_tasks.config import BuildPaths
from flash_tasks.quick import FILLING_MARKER, held_record_path, record_path

# The wheels and the build helper of the shared-cache tests.
cache_index = test_cache.cache_index
builds = test_cache.builds


@pytest.fixture(autouse=True)
def _background_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASH_TASKS_BACKGROUND_FILL", "1")


def wait_for_fill(app: Path, timeout: float = 120.0) -> None:
    """Take and release the app's build lock: the fill holds it until it is done."""
    fd = os.open(app / ".flash" / ".lock", os.O_RDWR)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
    finally:
        os.close(fd)


def marker(app: Path) -> Path:
    return app / ".flash" / ".state" / FILLING_MARKER


class Starts:
    """What ``.build`` held when the fill was about to start; ``spawn=False`` leaves it undone (a fill killed at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, spawn: bool = True) -> None:
        self.seen: list[set[str]] = []
        real = fill.start

        def watching(paths: BuildPaths, lock_fd: int | None) -> int:
            self.seen.append({p.name for p in paths.build.iterdir()})
            return real(paths, lock_fd) if spawn else 0

        monkeypatch.setattr(fill, "start", watching)


def left_unfilled(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, BuildPaths]:
    """A second app built from the cache of a first one, its fill never started (as if killed at once)."""
    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    with monkeypatch.context() as m:
        Starts(m, spawn=False)
        builds.ok(app)
    return app, BuildPaths(app, "artifact.tar.gz")


def test_the_artifact_comes_first_and_build_is_completed_after(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    assert not marker(tmp_path / "one" / "app").exists()  # nothing cached then: installed as always
    uv = UvInstalls(monkeypatch, cache_empty=False)  # uv's cache is warm, and still not needed
    compressions = Compressions(monkeypatch)
    starts = Starts(monkeypatch)
    app = make_app(tmp_path / "two")
    # The app was written just now: a file changed this close to a build keeps it from being recorded.
    monkeypatch.setattr(quick, "RACY_MARGIN_NS", 50_000_000)
    time.sleep(0.1)
    code, out, err = builds.run(app, "--color", "never")
    assert code == 0, err
    assert "gets the files of 3 packages from cached segments in the background" in out
    assert uv.names == [] and compressions.dependency_segments() == 0
    assert cache.last_stats().installs_restored == len(DEPS)
    # When the artifact was published, the distributions' own files were not in .build yet.
    assert starts.seen and not ({*DEPS} & starts.seen[0])
    assert {"bin"} <= starts.seen[0]  # their scripts ship in the fresh segment: in place before
    assert not record_path(app).exists()  # no no-op record while .build is incomplete
    wait_for_fill(app)
    assert not marker(app).exists()
    assert not warnings_in(err), err
    builds.assert_clean(app)
    assert tree(app / ".flash" / ".build") == tree(builds.last_clean(app) / ".flash" / ".build")
    # The fill recorded the build once .build was complete: the next one is answered from that record.
    assert record_path(app).is_file() and not held_record_path(app).exists()
    verdicts: list[str] = []
    real_answer = quick.answer
    monkeypatch.setattr(quick, "answer", lambda *a, **k: verdicts.append(real_answer(*a, **k)) or verdicts[-1])
    before = (app / ".flash" / "artifact.tar.gz").stat().st_mtime_ns
    code, out, _ = builds.run(app, "--color", "never")
    assert code == 0 and "Up to date" in out
    assert verdicts == [quick.ANSWERED]
    assert (app / ".flash" / "artifact.tar.gz").stat().st_mtime_ns == before


def test_the_fill_remembers_shared_files_for_the_first_edit(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first edit after a build from cached segments lists the distributions' ``bin/`` scripts from the
    memo the fill wrote: no RECORD is read again, and the artifact is the clean build's."""
    from flash_tasks import package

    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    builds.ok(app)
    wait_for_fill(app)
    assert not marker(app).exists()
    memo = json.loads((app / ".flash" / ".state" / "shared-files.json").read_text())["data"]
    assert sorted(memo) == sorted(d for d in DEPS if d != "alpha")  # the two with a script in bin/
    reads: list[str] = []
    real = package._read_dist_files
    monkeypatch.setattr(package, "_read_dist_files", lambda b, d: reads.append(d["name"]) or real(b, d))
    (app / "main.py").write_text((app / "main.py").read_text() + "# edited\n")
    builds.ok(app)
    assert reads == []
    builds.assert_clean(app)


def test_the_next_build_waits_for_the_fill(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    builds.ok(app)
    # No waiting here: the build lock makes this one wait until .build is complete.
    code, out, err = builds.run(app, "--color", "never")
    assert code == 0 and "Up to date" in out, err
    assert not marker(app).exists()
    builds.assert_clean(app)
    assert tree(app / ".flash" / ".build") == tree(builds.last_clean(app) / ".flash" / ".build")


@pytest.mark.parametrize(("done", "lost"), [(0, False), (1, False), (1, True)])
def test_a_fill_cut_short_is_finished_by_the_next_build(
    builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, done: int, lost: bool
) -> None:
    """As if the fill was killed after ``done`` distributions (``lost``: with one of their folders gone since):
    the next build reinstalls the rest, identically."""
    app, paths = left_unfilled(builds, tmp_path, monkeypatch)
    state = fill.load(fill.FillState, fill.marker_path(paths))
    assert state is not None and len(state.entries) == len(DEPS)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as writers:
        for entry in state.entries[:done]:
            assert fill._fill_one(paths, entry, writers) is None
    if lost:  # its RECORD is there and intact, one of its folders is not
        name = str(state.entries[0].dist["name"])
        shutil.rmtree(paths.build / name)
        assert (paths.build / str(state.entries[0].dist["dist_info"]) / "RECORD").is_file()
    # A left-over staging folder of the killed fill, as a kill leaves it.
    (paths.build / f".{DEPS[-1]}-restore.tmp-999999-1").mkdir()
    code, out, err = builds.run(app, "--color", "never", "-v")
    assert code == 0, err
    assert f"(+{len(DEPS) - done + lost} -0)" in out
    wait_for_fill(app)
    assert not marker(app).exists()
    builds.assert_clean(app)
    assert tree(app / ".flash" / ".build") == tree(builds.last_clean(app) / ".flash" / ".build")


@pytest.mark.parametrize("crashed", [True, False])
def test_a_fill_that_stopped_on_an_error_is_said_once(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crashed: bool) -> None:
    """A fill process that died on an exception leaves it in its log: the next build says its last line once.
    A fill killed outright leaves an empty log: nothing to say, the next build just finishes the job."""
    app, paths = left_unfilled(builds, tmp_path, monkeypatch)
    (paths.state / "fill.log").write_text(
        "Traceback (most recent call last):\n  File \"fill.py\", line 1, in <module>\nOSError: [Errno 5] Input/output error\n"
        if crashed
        else ""
    )
    code, out, err = builds.run(app, "--color", "never")
    assert code == 0, err
    said = [w for w in warnings_in(err) if "in the background stopped on an error" in w]
    if crashed:
        assert len(said) == 1 and "(OSError: [Errno 5] Input/output error;" in said[0], err
    else:
        assert said == [], err
    wait_for_fill(app)
    code, out, err = builds.run(app, "--color", "never")
    assert code == 0 and "Up to date" in out and not warnings_in(err), err
    builds.assert_clean(app)


def _tamper(segment: Path, name: str) -> None:
    """Change one byte inside a file of a segment (still a valid gzip and tar)."""
    raw = bytearray(gzip.decompress(segment.read_bytes()))
    at = raw.index(f"{name.upper()}_5 = ".encode()) + len(f"{name.upper()}_5 = ")
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    segment.write_bytes(gzip.compress(bytes(raw), mtime=0))


def test_segments_that_disagree_with_record_are_dropped_and_reinstalled(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app, paths = left_unfilled(builds, tmp_path, monkeypatch)
    published = (app / ".flash" / "artifact.tar.gz").stat().st_mtime_ns
    segment = next(paths.segments.glob("alpha-*.gz"))
    _tamper(segment, "alpha")
    failed = fill.fill(paths)
    assert len(failed) == 1 and failed[0].startswith("alpha 1.0 (") and "RECORD" in failed[0]
    assert not (paths.build / "alpha").exists() and (paths.build / "beta").is_dir()
    assert not segment.exists()  # never shipped again from here
    state = json.loads(marker(app).read_text())
    assert state["failed"] == failed
    uv = UvInstalls(monkeypatch, cache_empty=False)
    code, _, err = builds.run(app, "--color", "never")
    assert code == 0, err
    found = warnings_in(err)
    assert len(found) == 1 and "alpha 1.0" in found[0] and "installed from the wheels" in found[0], err
    assert uv.names == ["alpha"]
    assert not marker(app).exists()
    assert (app / ".flash" / "artifact.tar.gz").stat().st_mtime_ns != published  # made again, not trusted
    builds.assert_clean(app)
    assert tree(app / ".flash" / ".build") == tree(builds.last_clean(app) / ".flash" / ".build")
    # The local cache lost its records of the bad segments; the repairing build stored good ones.
    compressions = Compressions(monkeypatch)
    third = make_app(tmp_path / "three")
    builds.ok(third)
    assert compressions.dependency_segments() == 0 and cache.last_stats().installs_restored == len(DEPS)
    wait_for_fill(third)
    builds.assert_clean(third)
    assert tree(third / ".flash" / ".build") == tree(builds.last_clean(third) / ".flash" / ".build")


def test_off_with_the_variable_and_for_verify(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    for n, (variable, flags) in enumerate([("0", ()), ("1", ("--verify",))]):
        monkeypatch.setenv("FLASH_TASKS_BACKGROUND_FILL", variable)
        app = make_app(tmp_path / f"off-{n}")
        code, out, err = builds.run(app, "--color", "never", *flags)
        assert code == 0 and "in the background" not in out, err
        assert not marker(app).exists()
        assert {*DEPS} <= {p.name for p in (app / ".flash" / ".build").iterdir()}
