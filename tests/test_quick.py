"""The no-op record (flash_tasks.quick): answered only when nothing changed, and then with the same output.

Every test that lets a change through compares the artifact's bytes with a clean build of the
same sources in a fresh folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from flash_tasks import quick
from flash_tasks.cli import main

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / ".flash-template"
TOOK = re.compile(r"\((\d+(\.\d+)?(ms|s)|\d+m\d+s)\)\n\Z")


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    target = tmp_path / "one" / "hello"
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns(".flash"))
    (target / "requirements.txt").write_text("# none\n")
    embed = target / "workers" / "embed.py"
    embed.write_text(embed.read_text().replace('    dependencies=["pyyaml>=6"],\n', ""))
    (target / "settings_extra.py").write_text("VALUE = 1\n")
    return target


@pytest.fixture()
def verdicts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What ``quick.answer`` said, build after build; file-time margin 0 (nothing else writes here)."""
    seen: list[str] = []
    real = quick.answer

    def spy(*args: object, **kwargs: object) -> str:
        verdict = real(*args, **kwargs)  # type: ignore[arg-type]
        seen.append(verdict)
        return verdict

    monkeypatch.setattr(quick, "answer", spy)
    monkeypatch.setattr(quick, "RACY_MARGIN_NS", 0)
    return seen


def flash(app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["build", "-C", str(app), "--color", "never", *index_args, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def clean_bytes(app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], *extra: str) -> bytes:
    """The artifact a clean build of ``app``'s sources makes, in a fresh folder of the same name."""
    copy = app.parent.parent / "clean" / app.name
    shutil.rmtree(copy.parent, ignore_errors=True)
    shutil.copytree(app, copy, ignore=shutil.ignore_patterns(".flash"))
    code, _, err = flash(copy, index_args, capsys, *extra)
    assert code == 0, err
    return (copy / ".flash" / "artifact.tar.gz").read_bytes()


def recorded(app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]) -> str:
    """Build until the record exists; return the output of the full no-op build that wrote it."""
    assert flash(app, index_args, capsys)[0] == 0
    quick.forget(app)  # the build above recorded itself: make the next one a full no-op
    code, out, _ = flash(app, index_args, capsys)
    assert code == 0 and "nothing to do" in out
    assert quick.record_path(app).is_file()
    verdicts.clear()
    return out


def test_a_noop_after_a_recorded_noop_is_answered_with_the_same_output(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    full = recorded(app, index_args, capsys, verdicts)
    artifact = (app / ".flash" / "artifact.tar.gz").read_bytes()
    code, out, err = flash(app, index_args, capsys)
    assert (code, verdicts) == (0, [quick.ANSWERED])
    assert TOOK.sub("", out) == TOOK.sub("", full) and TOOK.search(out)
    assert err == ""
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == artifact
    assert quick.record_path(app).is_file()  # still there: the next no-op is answered too
    assert flash(app, index_args, capsys)[0] == 0 and verdicts == [quick.ANSWERED, quick.ANSWERED]


def _same_size_edit(app: Path) -> None:
    path = app / "settings_extra.py"
    before = path.stat()
    path.write_text("VALUE = 2\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))  # size and mtime as before


def _file_in_a_folder_that_shipped_nothing(app: Path) -> None:
    (app / "extra" / "more.py").write_text("EXTRA = 1\n")


def _gitignore_edit(app: Path) -> None:
    (app / ".gitignore").write_text((app / ".gitignore").read_text() + "settings_extra.py\n")


def _delete_a_source(app: Path) -> None:
    (app / "settings_extra.py").unlink()


CHANGES: dict[str, Callable[[Path], None]] = {
    "same-size edit keeping mtime": _same_size_edit,
    "new file in a folder that shipped nothing": _file_in_a_folder_that_shipped_nothing,
    ".gitignore edited": _gitignore_edit,
    "source deleted": _delete_a_source,
}


@pytest.mark.parametrize("change", sorted(CHANGES))
def test_a_changed_input_runs_the_full_build_and_equals_a_clean_build(
    change: str, app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    (app / "extra").mkdir()
    (app / "extra" / "notes.md").write_text("not shipped\n")
    recorded(app, index_args, capsys, verdicts)
    CHANGES[change](app)
    code, out, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD]
    assert "nothing to do" not in out
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def test_an_environment_variable_the_app_reads_is_part_of_the_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LOG_LEVEL", raising=False)
    recorded(app, index_args, capsys, verdicts)
    assert "LOG_LEVEL" in (app / ".flash" / ".state" / "env.json").read_text()
    monkeypatch.setenv("LOG_LEVEL", "debug")
    code, _, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD]
    assert '"debug"' in (app / ".flash" / "flash_manifest.json").read_text()


@pytest.mark.parametrize("extra", [("-o", "other.tar.gz"), ("--color", "always"), ("--exclude", "six"), ("--json",), ("-v",)])
def test_other_options_are_not_answered_from_the_record(
    extra: tuple[str, ...], app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    recorded(app, index_args, capsys, verdicts)
    code, _, err = flash(app, index_args, capsys, *extra)
    assert code == 0, err
    assert verdicts == [quick.BUILD]


def test_a_damaged_build_folder_is_verified_not_answered(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    recorded(app, index_args, capsys, verdicts)
    good = (app / ".flash" / "artifact.tar.gz").read_bytes()
    target = app / ".flash" / "artifact.tar.gz"
    before = target.stat()
    with open(target, "r+b") as handle:  # a flipped byte, size and mtime kept
        handle.seek(len(good) // 2)
        handle.write(bytes([good[len(good) // 2] ^ 0x55]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    code, _, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.VERIFY]
    assert target.read_bytes() == good == clean_bytes(app, index_args, capsys)


def test_a_damaged_record_is_ignored(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    recorded(app, index_args, capsys, verdicts)
    record = quick.record_path(app)
    data = bytearray(record.read_bytes())
    data[len(data) // 2] ^= 0x01
    record.write_bytes(bytes(data))
    code, out, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD] and "nothing to do" in out


def test_a_failed_build_leaves_no_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    recorded(app, index_args, capsys, verdicts)
    (app / "settings_extra.py").write_text("VALUE = (\n")
    assert flash(app, index_args, capsys)[0] == 1
    assert not quick.record_path(app).exists()
    code, _, _ = flash(app, index_args, capsys)
    assert code == 1 and verdicts == [quick.BUILD, quick.BUILD]


def test_the_noop_after_a_build_that_ran_tasks_prints_what_a_full_noop_prints(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    full = recorded(app, index_args, capsys, verdicts)
    (app / "settings_extra.py").write_text("VALUE = 3\n")
    code, out, _ = flash(app, index_args, capsys)
    assert code == 0 and "nothing to do" not in out
    assert quick.record_path(app).is_file()
    code, answered, err = flash(app, index_args, capsys)
    assert (code, verdicts) == (0, [quick.BUILD, quick.ANSWERED]), err
    quick.forget(app)
    code, noop, _ = flash(app, index_args, capsys)
    assert code == 0 and verdicts[-1] == quick.BUILD
    assert TOOK.sub("", answered) == TOOK.sub("", noop) and TOOK.search(answered)
    assert "nothing to do" in full and "nothing to do" in noop
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def _flip_artifact_keeping_its_stamp(app: Path) -> None:
    target = app / ".flash" / "artifact.tar.gz"
    before = target.stat()
    data = target.read_bytes()
    with open(target, "r+b") as handle:
        handle.seek(len(data) // 2)
        handle.write(bytes([data[len(data) // 2] ^ 0x55]))
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))


def _edit_a_staged_copy(app: Path) -> None:
    (app / ".flash" / ".build" / "settings_extra.py").write_text("VALUE = 'hacked'\n")


def _flip_the_spare(app: Path) -> None:
    spare = app / ".flash" / ".state" / "spare.tar.gz"
    data = bytearray(spare.read_bytes())
    data[40] ^= 0x55
    spare.write_bytes(bytes(data))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "artifact flipped, stamp kept": _flip_artifact_keeping_its_stamp,
    "staged copy edited": _edit_a_staged_copy,
    "spare flipped": _flip_the_spare,
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damage_after_a_build_that_ran_tasks_is_repaired_by_the_next_build(
    damage: str, app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    recorded(app, index_args, capsys, verdicts)
    (app / "settings_extra.py").write_text("VALUE = 4\n")
    assert flash(app, index_args, capsys)[0] == 0
    assert quick.record_path(app).is_file()
    DAMAGE[damage](app)
    code, out, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD, quick.VERIFY]
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)
    assert (app / ".flash" / ".build" / "settings_extra.py").read_text() == "VALUE = 4\n"


def test_an_edit_during_a_build_leaves_no_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A source changed after the build staged it: the build's outputs are older than its inputs."""
    from flash_tasks import graph

    recorded(app, index_args, capsys, verdicts)
    stage = graph.stage_action

    def stage_then_edit(*args: object) -> None:
        stage(*args)  # type: ignore[arg-type]
        (app / "settings_extra.py").write_text("VALUE = 'after staging'\n")

    monkeypatch.setattr(graph, "stage_action", stage_then_edit)
    (app / "settings_extra.py").write_text("VALUE = 5\n")
    assert flash(app, index_args, capsys)[0] == 0
    monkeypatch.setattr(graph, "stage_action", stage)
    assert not quick.record_path(app).exists()
    code, out, err = flash(app, index_args, capsys, "--explain")
    assert code == 0, err
    assert verdicts == [quick.BUILD, quick.BUILD] and "nothing to do" not in out
    assert "changed after it was copied: settings_extra.py" in out  # doit's own input check missed it
    assert (app / ".flash" / ".build" / "settings_extra.py").read_text() == "VALUE = 'after staging'\n"
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def test_an_artifact_changed_after_it_was_published_leaves_no_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The artifact's record holds its stamp at publish: a stamp that moved since means someone else wrote it."""
    from flash_tasks import graph

    recorded(app, index_args, capsys, verdicts)
    archive = graph.archive_action

    def archive_then_touch(*args: object) -> None:
        archive(*args)  # type: ignore[arg-type]
        artifact = app / ".flash" / "artifact.tar.gz"
        st = artifact.stat()
        os.utime(artifact, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))

    monkeypatch.setattr(graph, "archive_action", archive_then_touch)
    (app / "settings_extra.py").write_text("VALUE = 6\n")
    assert flash(app, index_args, capsys)[0] == 0
    monkeypatch.setattr(graph, "archive_action", archive)
    assert not quick.record_path(app).exists()
    code, out, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD, quick.BUILD] and "nothing to do" not in out  # the archive step runs again
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def test_no_record_when_an_input_changed_just_before_the_build(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """File times come from a clock that can lag: a change this close to the build is not trusted."""
    monkeypatch.setattr(quick, "RACY_MARGIN_NS", 60 * 1_000_000_000)
    assert flash(app, index_args, capsys)[0] == 0
    code, out, _ = flash(app, index_args, capsys)
    assert code == 0 and "nothing to do" in out
    assert not quick.record_path(app).exists()


def test_an_app_shipping_a_symlink_gets_no_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    (app / "linked.py").symlink_to(app / "settings_extra.py")
    assert flash(app, index_args, capsys)[0] == 0
    code, out, _ = flash(app, index_args, capsys)
    assert code == 0 and "nothing to do" in out
    assert not quick.record_path(app).exists()
    (app / "settings_extra.py").write_text("VALUE = 5\n")  # changes what the link ships
    assert flash(app, index_args, capsys)[0] == 0
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def imported_modules(importtime: str) -> set[str]:
    return {line.rsplit("|", 1)[-1].strip() for line in importtime.splitlines() if line.startswith("import time:")}


def test_the_answer_loads_neither_the_graph_nor_pydantic(app: Path, index_args: list[str], tmp_path: Path) -> None:
    """End to end, with the real one-second margin: the third build is answered without the heavy imports."""
    command = [sys.executable, "-X", "importtime", "-m", "flash_tasks", "build", "-C", str(app), "--color", "never", *index_args]
    first = subprocess.run(command, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    import time

    time.sleep(1.2)
    second = subprocess.run(command, capture_output=True, text=True)
    third = subprocess.run(command, capture_output=True, text=True)
    assert second.returncode == third.returncode == 0
    heavy = {"doit", "pydantic", "flash_tasks.graph", "flash_tasks.config"}
    assert heavy <= imported_modules(second.stderr)  # the full no-op build that wrote the record
    assert not heavy & imported_modules(third.stderr)
    assert TOOK.sub("", third.stdout) == TOOK.sub("", second.stdout)


def test_the_first_noop_after_a_cold_or_an_edit_build_is_answered(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """End to end, with the real one-second margin: the build that ran tasks wrote the record."""
    import time

    command = [sys.executable, "-X", "importtime", "-m", "flash_tasks", "build", "-C", str(app), "--color", "never", *index_args]
    heavy = {"doit", "pydantic", "flash_tasks.graph", "flash_tasks.config"}
    for change in ("cold", "edit"):
        if change == "edit":
            (app / "settings_extra.py").write_text("VALUE = 9\n")
        time.sleep(1.2)  # the sources were written just now: let them age past the margin
        build = subprocess.run(command, capture_output=True, text=True)
        assert build.returncode == 0, build.stderr
        assert "nothing to do" not in build.stdout and heavy <= imported_modules(build.stderr)
        noop = subprocess.run(command, capture_output=True, text=True)
        assert noop.returncode == 0, noop.stderr
        assert "nothing to do" in noop.stdout, change
        assert not heavy & imported_modules(noop.stderr), change
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def test_a_cold_build_right_after_deleting_flash_is_answered_next(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Deleting .flash just before a cold build changes the app folder, as making .flash does:
    neither is a change of the app, and the next no-op is answered; a file added next to the
    sources after that build is not missed."""
    import shutil
    import time

    command = [sys.executable, "-X", "importtime", "-m", "flash_tasks", "build", "-C", str(app), "--color", "never", *index_args]
    heavy = {"doit", "pydantic", "flash_tasks.graph", "flash_tasks.config"}
    assert subprocess.run(command, capture_output=True, text=True).returncode == 0
    time.sleep(1.2)  # the sources age past the margin; the deletion below does not
    shutil.rmtree(app / ".flash")
    cold = subprocess.run(command, capture_output=True, text=True)
    assert cold.returncode == 0, cold.stderr
    noop = subprocess.run(command, capture_output=True, text=True)
    assert "nothing to do" in noop.stdout and not heavy & imported_modules(noop.stderr)
    # A new source in the app folder right after: the folder's stamp says so, the build runs in full.
    (app / "added_module.py").write_text("ADDED = 1\n")
    after = subprocess.run(command, capture_output=True, text=True)
    assert after.returncode == 0, after.stderr
    assert heavy <= imported_modules(after.stderr)
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        assert "./added_module.py" in tar.getnames()
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


def test_a_build_by_plain_doit_drops_the_record(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    """An app's own dodo.py runs the same graph: the record it may outdate is gone, the next build runs in full."""
    (app / "dodo.py").write_text(
        "from flash_tasks.graph import dodo_namespace\n"
        f"globals().update(dodo_namespace('.', find_links=({index_args[-1]!r},), no_index=True))\n"
    )
    (app / ".gitignore").write_text((app / ".gitignore").read_text() + "dodo.py\n")
    recorded(app, index_args, capsys, verdicts)
    (app / "settings_extra.py").write_text("VALUE = 7\n")
    result = subprocess.run([sys.executable, "-m", "doit"], cwd=app, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not quick.record_path(app).exists()
    code, out, err = flash(app, index_args, capsys)
    assert code == 0, err
    assert verdicts == [quick.BUILD] and "nothing to do" in out  # doit built it already
    (app / "dodo.py").unlink()
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)


@pytest.mark.parametrize(
    "output",
    [
        [["out", "stream", [], {}]],
        [["out", "line", ["a", "b"], {}]],
        [["elsewhere", "line", ["text"], {}]],
        [["out", "table", [["a"], [[1]]], {}]],
        {"not": "a list"},
    ],
)
def test_a_record_with_output_no_build_writes_is_not_replayed(
    output: object, app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str]
) -> None:
    """A record with a valid digest but other content (written by hand, or by another tool) runs the full build."""
    recorded(app, index_args, capsys, verdicts)
    data = quick.load_record(quick.record_path(app))
    quick.save_record(quick.record_path(app), {**data, "output": output})
    code, out, err = flash(app, index_args, capsys)
    assert (code, verdicts) == (0, [quick.BUILD]), err
    assert "nothing to do" in out and "Traceback" not in err


def test_a_terminal_on_stderr_alone_is_a_different_run(
    app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], verdicts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Warnings go to stderr, styled when it is a terminal: the record holds them as they were printed."""
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for name in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE", "CI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm")
    capsys.readouterr()
    assert main(["build", "-C", str(app), *index_args]) == 0
    assert main(["build", "-C", str(app), *index_args]) == 0
    assert quick.record_path(app).is_file()
    verdicts.clear()
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert main(["build", "-C", str(app), *index_args]) == 0
    assert verdicts == [quick.BUILD]


def test_the_package_digests_follow_its_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Read once while the files keep their stamps; an edit is seen, one in commands/ by the run key only."""
    (tmp_path / "commands").mkdir()
    (tmp_path / "graph.py").write_text("A = 1\n")
    (tmp_path / "commands" / "output.py").write_text("B = 1\n")
    monkeypatch.setattr(quick, "_package_sources", lambda: [(p.relative_to(tmp_path).as_posix(), str(p)) for p in sorted(tmp_path.rglob("*.py"))])
    monkeypatch.setattr(quick, "_DIGESTS", {})
    build, everything = quick._package_digests()
    (tmp_path / "commands" / "output.py").write_text("B = 2\n")
    after_output = quick._package_digests()
    assert after_output[0] == build and after_output[1] != everything
    (tmp_path / "graph.py").write_text("A = 2\n")
    after_graph = quick._package_digests()
    assert after_graph[0] != build and quick.tool_fingerprint() == after_graph[0][:16]
    (tmp_path / "graph.py").write_text("A = 1\n")  # back as it was: the same digest again
    assert quick._package_digests()[0] == build


def test_a_damaged_lock_plan_is_made_again_not_followed(app: Path, index_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """lock-plan.json with one byte of a file name changed (size and mtime kept): still valid JSON with
    the same key, but not what was written, so the plan is made again and the build succeeds."""
    assert flash(app, index_args, capsys)[0] == 0
    plan = app / ".flash" / ".state" / "lock-plan.json"
    data = plan.read_bytes()
    at = data.index(b"requirements.txt")
    info = plan.stat()
    plan.write_bytes(data[:at] + b"R" + data[at + 1 :])
    os.utime(plan, ns=(info.st_atime_ns, info.st_mtime_ns))
    for extra in ((), ("--verify",)):
        code, _, err = flash(app, index_args, capsys, *extra)
        assert code == 0, err
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == clean_bytes(app, index_args, capsys)
