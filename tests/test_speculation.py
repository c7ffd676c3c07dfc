"""Speculative resolution: a cold build takes a group's lock from the shared cache and checks it with uv meanwhile.

Each app builds against its own find-links folder of tiny wheels (made per test, so a test can
add a newer release or take every wheel away). Every build that succeeds is compared byte for
byte with a clean build of the same sources in a fresh folder of the same name, with the shared
cache turned off (so it never speculates).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from wheelfactory import make_wheel

from flash_tasks.cli import main
from flash_tasks.deps import locks, speculation
from flash_tasks.deps.lockfile import unconfirmed_path
from flash_tasks.deps.speculation import CheckResult

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="NAME", cpu=CpuInstanceType.CPU3C_1_2)
def work(payload: dict) -> dict:
    return payload


@Endpoint(name="NAME-helper", cpu=CpuInstanceType.CPU3C_1_2)
def help(payload: dict) -> dict:
    return payload
'''


@pytest.fixture()
def index(tmp_path: Path) -> Path:
    """A find-links folder of this test's own: the SDK stand-in, alpha 1.0 and beta 1.0 (needs alpha)."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "runpod-flash", "1.21.0", files={"runpod_flash/__init__.py": "__version__ = '1.21.0'\n"})
    make_wheel(folder, "alpha", "1.0", files={"alpha/__init__.py": "VERSION = '1.0'\n"})
    make_wheel(folder, "beta", "1.0", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.0'\n"})
    return folder


def make_app(parent: Path, endpoint: str = "worker", requirements: str = "alpha\nbeta\n") -> Path:
    """An app with two endpoints (two groups with the same requirements) under ``parent/app``."""
    root = parent / "app"
    root.mkdir(parents=True)
    (root / "main.py").write_text(MAIN.replace("NAME", endpoint))
    (root / "requirements.txt").write_text(requirements)
    return root


class Builder:
    def __init__(self, index: Path, tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
        self.index = index
        self.tmp = tmp
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.count = 0

    def run(self, app: Path, *extra: str) -> tuple[int, str]:
        self.capsys.readouterr()
        code = main(["build", "-C", str(app), "--no-index", "--find-links", str(self.index), "-q", *extra])
        _, err = self.capsys.readouterr()
        return code, err

    def ok(self, app: Path) -> None:
        code, err = self.run(app)
        assert code == 0, err
        assert "Traceback" not in err

    def without_cache(self, app: Path, *, keep_flash: bool = False) -> Path:
        """A copy of ``app`` in a fresh folder of the same name (with its ``.flash`` if asked), for a build without any cache."""
        self.count += 1
        copy = self.tmp / f"nocache-{self.count}" / app.name
        shutil.copytree(app, copy, ignore=None if keep_flash else shutil.ignore_patterns(".flash"))
        return copy

    def run_without_cache(self, app: Path) -> tuple[int, str]:
        with self.monkeypatch.context() as m:
            m.setenv("FLASH_TASKS_CACHE_MAX", "0")
            return self.run(app)

    def clean_bytes(self, app: Path) -> bytes:
        copy = self.without_cache(app)
        code, err = self.run_without_cache(copy)
        assert code == 0, err
        assert speculation.last_results() == []
        return (copy / ".flash" / "artifact.tar.gz").read_bytes()


@pytest.fixture()
def builder(index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Builder:
    return Builder(index, tmp_path, capsys, monkeypatch)


def artifact(app: Path) -> bytes:
    return (app / ".flash" / "artifact.tar.gz").read_bytes()


def versions(app: Path) -> set[str]:
    """The ``name-version`` of every distribution the artifact holds."""
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        names = tar.getnames()
    return {n.removeprefix("./").split("/")[0].removesuffix(".dist-info") for n in names if ".dist-info" in n}


def markers(app: Path) -> list[str]:
    return sorted(p.name for p in (app / ".flash" / "locks").glob("*.unconfirmed"))


class Resolves:
    """Every ``uv pip compile`` of a group (``GroupResolution.resolve``): its thread, preferences, start and end.

    ``delay`` makes each one take that much longer, so the build has visibly gone on meanwhile.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, delay: float = 0.0) -> None:
        self.calls: list[dict[str, Any]] = []
        real = locks.GroupResolution.resolve

        def resolve(resolution: locks.GroupResolution, *, quiet: bool = False) -> str:
            call: dict[str, Any] = {"thread": threading.current_thread().name, "preferences": resolution.preferences, "start": time.monotonic()}
            self.calls.append(call)
            time.sleep(delay)
            try:
                return real(resolution, quiet=quiet)
            finally:
                call["end"] = time.monotonic()

        monkeypatch.setattr(locks.GroupResolution, "resolve", resolve)


# -- (a) a warm cache: the lock at once, uv's check meanwhile ------------------------------------


def test_second_app_locks_from_the_cache_while_uv_checks(builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.deps import tasks

    builder.ok(make_app(tmp_path / "one"))
    resolves = Resolves(monkeypatch, delay=1.0)
    installs: list[float] = []
    real_install = tasks.install_action

    def install_action(*args: Any) -> None:
        installs.append(time.monotonic())
        real_install(*args)

    monkeypatch.setattr(tasks, "install_action", install_action)
    # Other group names: the cached body does not depend on them.
    second = make_app(tmp_path / "two", endpoint="other")
    builder.ok(second)
    # Both groups (same inputs) took the cached resolution, and uv's one check confirmed it...
    assert speculation.last_results() == [CheckResult("other", "confirmed"), CheckResult("other-helper", "confirmed")]
    assert len(resolves.calls) == 1
    (call,) = resolves.calls
    # ... on its own thread, with what a build without the cache asks uv (a cold build: no preferences),
    assert call["thread"].startswith("flash-resolve") and call["preferences"] == ""
    # ... while the build went on: the install started before uv was done.
    assert installs and installs[0] < call["end"]
    assert markers(second) == []
    # A later build trusts the confirmed lock: no uv at all.
    built = artifact(second)
    builder.ok(second)
    assert len(resolves.calls) == 1 and artifact(second) == built
    assert built == builder.clean_bytes(second)


def test_without_the_shared_cache_nothing_is_speculated(builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASH_TASKS_CACHE_MAX", "0")
    builder.ok(make_app(tmp_path / "one"))
    resolves = Resolves(monkeypatch)
    second = make_app(tmp_path / "two")
    builder.ok(second)
    assert speculation.last_results() == []
    assert [c["thread"] for c in resolves.calls] == [threading.main_thread().name]


# -- (b) the index moved on: uv's answer wins ----------------------------------------------------


def test_a_newer_release_since_the_cached_resolution_is_what_ships(builder: Builder, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builder.ok(make_app(tmp_path / "one"))
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    second = make_app(tmp_path / "two")
    builder.ok(second)
    assert speculation.last_results() == [CheckResult("worker", "changed"), CheckResult("worker-helper", "changed")]
    assert "beta-1.1" in versions(second) and "beta-1.0" not in versions(second)
    assert markers(second) == []
    assert artifact(second) == builder.clean_bytes(second)
    # The cache now holds uv's newer answer: a third app's lock from it is confirmed.
    third = make_app(tmp_path / "three")
    builder.ok(third)
    assert speculation.last_results() == [CheckResult("worker", "confirmed"), CheckResult("worker-helper", "confirmed")]
    assert artifact(third) == builder.clean_bytes(third)


# -- (c) uv's check fails: its error, no artifact from the unchecked lock -----------------------

#: What uv says when the index cannot be reached (see ``deps.uv.UV_TEXTS``, ``network/``).
UNREACHABLE = "error: Failed to fetch: `https://pypi.org/simple/alpha/`\n  Caused by: error sending request for url (https://pypi.org/simple/alpha/)\n"


@pytest.mark.parametrize("failure", ["index unreachable", "wheels gone"])
def test_a_failed_check_fails_the_build_as_uv_would_and_publishes_nothing(
    failure: str, builder: Builder, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builder.ok(make_app(tmp_path / "one"))
    second = make_app(tmp_path / "two", requirements="alpha\n")
    builder.ok(second)
    good = artifact(second)
    good_manifest = (second / ".flash" / "flash_manifest.json").read_bytes()
    # The same requirements as the first app now (a lock made from other inputs: its pins are
    # offered to uv), and uv cannot resolve them any more.
    (second / "requirements.txt").write_text("alpha\nbeta\n")
    saved = tmp_path / "saved-wheels"
    shutil.copytree(index, saved)
    with monkeypatch.context() as m:
        if failure == "index unreachable":
            # Only resolving fails: installing from the folder still works, so the build reaches its archive step.
            from flash_tasks.deps.uv import _UvRun

            m.setattr(locks, "_compile", lambda *args, **kwargs: _UvRun(2, "", UNREACHABLE))
        else:
            for wheel in index.iterdir():
                wheel.unlink()
        reference = builder.without_cache(second, keep_flash=True)
        expected_code, expected_err = builder.run_without_cache(reference)
        assert expected_code == 3 and "error:" in expected_err

        code, err = builder.run(second)
    assert (code, err.replace(str(second), "APP")) == (expected_code, expected_err.replace(str(reference), "APP"))
    assert speculation.last_results() == [CheckResult("worker", "failed"), CheckResult("worker-helper", "failed")]
    assert artifact(second) == good
    assert (second / ".flash" / "flash_manifest.json").read_bytes() == good_manifest
    assert markers(second) == ["worker-helper.txt.unconfirmed", "worker.txt.unconfirmed"]

    # uv works again, and finds a newer beta. doit recorded the lock task as done in the failed
    # build: the next build checks the lock all the same, and ships what uv resolves now.
    for wheel in saved.iterdir():
        shutil.copy2(wheel, index / wheel.name)
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    builder.ok(second)
    assert "beta-1.1" in versions(second)
    assert markers(second) == []
    assert artifact(second) == builder.clean_bytes(second)


# -- (d) a build killed before the check: the next one checks ------------------------------------

_KILLED_BUILD = """
import os, signal, sys
from flash_tasks.deps import tasks

def killed(*args):
    os.kill(os.getpid(), signal.SIGKILL)  # after the locks, before anything settled their check

tasks.install_action = killed
from flash_tasks.cli import main
sys.exit(main(["build", "-C", sys.argv[1], "--no-index", "--find-links", sys.argv[2], "-q"]))
"""


def test_a_lock_left_by_a_killed_build_is_checked_again(builder: Builder, index: Path, tmp_path: Path) -> None:
    builder.ok(make_app(tmp_path / "one"))
    second = make_app(tmp_path / "two")
    proc = subprocess.run([sys.executable, "-c", _KILLED_BUILD, str(second), str(index)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    lock = second / ".flash" / "locks" / "worker.txt"
    assert lock.is_file() and unconfirmed_path(lock).is_file()
    # uv would now resolve otherwise than the lock the killed build took from the cache.
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    builder.ok(second)
    assert [r.outcome for r in speculation.last_results()] == ["changed", "changed"]
    assert "beta-1.1" in versions(second)
    assert markers(second) == []
    assert artifact(second) == builder.clean_bytes(second)


def test_a_peer_lock_waiting_for_its_check_is_never_copied(builder: Builder, tmp_path: Path) -> None:
    """A group whose lock is unconfirmed is not a sibling to copy from, in this build or a later one."""
    from flash_tasks.config import BuildConfig
    from flash_tasks.deps.tasks import _copy_peer_lock

    builder.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    builder.ok(app)
    locks_dir = app / ".flash" / "locks"
    helper = locks_dir / "worker-helper.txt"
    helper.unlink()
    unconfirmed_path(locks_dir / "worker.txt").write_text("{}")
    config = BuildConfig(app_dir=app)
    digest = (locks_dir / "worker.txt").read_text().splitlines()[1].removeprefix("# inputs: ")
    _copy_peer_lock(config, "worker-helper", digest)
    assert not helper.exists()
    unconfirmed_path(locks_dir / "worker.txt").unlink()
    _copy_peer_lock(config, "worker-helper", digest)
    assert helper.is_file()


def test_a_build_that_fails_while_replacing_a_lock_leaves_it_marked(
    builder: Builder, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv's lock is written before the marker goes: a failure (or a kill) in between leaves the lock checked again."""
    builder.ok(make_app(tmp_path / "one"))
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    second = make_app(tmp_path / "two")

    def full_disk(path: Path, text: str) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(speculation, "_write_atomic", full_disk)
        code, _ = builder.run(second)
    assert code != 0
    assert not (second / ".flash" / "artifact.tar.gz").exists()
    assert markers(second) == ["worker-helper.txt.unconfirmed", "worker.txt.unconfirmed"]
    builder.ok(second)
    assert "beta-1.1" in versions(second)
    assert markers(second) == []
    assert artifact(second) == builder.clean_bytes(second)


def test_a_build_that_fails_while_marking_a_lock_leaves_nothing_to_trust(
    builder: Builder, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker is written before the lock from the cache: a failure (or a kill) in between leaves no such lock."""
    builder.ok(make_app(tmp_path / "one"))
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    second = make_app(tmp_path / "two")
    real = locks._write_atomic

    def no_marker(path: Path, text: str) -> None:
        if path.name.endswith(".unconfirmed"):
            raise OSError(28, "No space left on device")
        real(path, text)

    with monkeypatch.context() as m:
        m.setattr(locks, "_write_atomic", no_marker)
        code, _ = builder.run(second)
    assert code != 0
    builder.ok(second)
    assert "beta-1.1" in versions(second)
    assert artifact(second) == builder.clean_bytes(second)


def test_a_cached_resolution_that_is_not_a_lock_is_a_miss(builder: Builder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.cache import resolutions

    builder.ok(make_app(tmp_path / "one"))
    records = [p for p in Path(os.environ["FLASH_TASKS_CACHE_DIR"]).glob("v1/ac/*/*") if '"kind":"resolution"' in p.read_text()]
    assert len(records) == 1
    record = resolutions.ResolutionAction.model_validate_json(records[0].read_text())
    records[0].write_text(record.model_copy(update={"body": "--index-url https://elsewhere.invalid/simple\nalpha===!\n"}).model_dump_json())
    resolves = Resolves(monkeypatch)
    second = make_app(tmp_path / "two")
    builder.ok(second)
    assert speculation.last_results() == []
    assert [c["thread"] for c in resolves.calls] == [threading.main_thread().name]
    assert artifact(second) == builder.clean_bytes(second)


def tree(root: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under ``root``: its permission bits and bytes."""
    return {p.relative_to(root).as_posix(): (p.stat().st_mode & 0o777, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_replaced_lock_with_build_completed_in_the_background(
    builder: Builder, index: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first run left distributions of the cached lock to be extracted after the build: the second run's install is what counts."""
    from test_fill import wait_for_fill

    from flash_tasks.quick import FILLING_MARKER

    monkeypatch.setenv("FLASH_TASKS_BACKGROUND_FILL", "1")
    builder.ok(make_app(tmp_path / "one"))
    make_wheel(index, "beta", "1.1", requires=["alpha"], files={"beta/__init__.py": "VERSION = '1.1'\n"})
    second = make_app(tmp_path / "two")
    pending_at_check: list[bool] = []
    real_confirm = speculation.confirm

    def confirm(config: Any) -> None:
        pending_at_check.append((config.paths.state / FILLING_MARKER).exists())
        real_confirm(config)

    monkeypatch.setattr(speculation, "confirm", confirm)
    builder.ok(second)
    assert [r.outcome for r in speculation.last_results()] == ["changed", "changed"]
    assert pending_at_check[0], "the first run did not leave its cached distributions to a later fill"
    wait_for_fill(second)
    assert artifact(second) == builder.clean_bytes(second)
    clean = builder.tmp / f"nocache-{builder.count}" / second.name
    assert tree(second / ".flash" / ".build") == tree(clean / ".flash" / ".build")
    assert "beta-1.1" in versions(second)
