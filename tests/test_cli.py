"""The command line as a user meets it: output, --json, --explain, init, clean, inspect, watch.

Rendered output is compared with snapshots in tests/snapshots/ (colour off,
times, sizes and hashes normalised). After an intended change of the output,
rewrite them with ``UPDATE_SNAPSHOTS=1 python -m pytest tests/test_cli.py`` and
review the diff.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.screen import play
from wheelfactory import make_wheel

from flash_tasks import __version__
from flash_tasks.cli import main
from flash_tasks.commands.init import TEMPLATE, template_files
from flash_tasks.commands.output import Console, format_size, use_color
from flash_tasks.commands.results import BuildResult, ErrorResult, InspectResult

REPO = Path(__file__).resolve().parent.parent
SOURCE_TEMPLATE = REPO / ".flash-template"
SNAPSHOTS = Path(__file__).resolve().parent / "snapshots"


# -- fixtures and helpers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def yaml_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for pyyaml, which the starter app's embedder depends on."""
    folder = tmp_path_factory.mktemp("yaml-wheels")
    make_wheel(folder, "pyyaml", "6.0.4", files={"yaml/__init__.py": "__version__ = '6.0.4'\n" + "# padding\n" * 200})
    return folder


@pytest.fixture()
def flags(local_index: Path, yaml_index: Path) -> list[str]:
    return ["--no-index", "--find-links", str(local_index), "--find-links", str(yaml_index), "--color", "never"]


@pytest.fixture()
def app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The starter app, without dependencies to install, as the current folder."""
    target = tmp_path / "hello"
    shutil.copytree(SOURCE_TEMPLATE, target, ignore=shutil.ignore_patterns(".flash"))
    embed = target / "workers" / "embed.py"
    embed.write_text(embed.read_text().replace('    dependencies=["pyyaml>=6"],\n', ""))
    monkeypatch.chdir(target)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("CLICOLOR_FORCE", raising=False)
    monkeypatch.setenv("COLUMNS", "100")
    return target


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


_TIME_RE = re.compile(r"\b\d+(?:\.\d+)?(?:ms|s)\b|\b\d+m\d\ds\b")
_SIZE_RE = re.compile(r"[+-]?\b\d+(?:\.\d+)? (?:B|KiB|MiB|GiB)\b")


def normalise(text: str, *paths: Path) -> str:
    for path in paths:
        text = text.replace(str(path), "<TMP>")
    text = re.sub(r"\b[0-9a-f]{64}\b", "<SHA256>", text)
    text = _SIZE_RE.sub("<SIZE>", text)
    text = _TIME_RE.sub("<T>", text)
    text = re.sub(r"\[\d\d:\d\d:\d\d\]", "[<CLOCK>]", text)
    text = re.sub(r"this is Python 3\.\d+", "this is Python <HOST>", text)
    # Where a column holds sizes its width depends on them: compare the cells, not the padding.
    lines = [
        re.sub(r"^ +<SIZE>", "  <SIZE>", re.sub(r"(?<=\S) {2,}", "  ", line)) if "<SIZE>" in line else line
        for line in text.splitlines()
    ]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def assert_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("UPDATE_SNAPSHOTS"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    if not path.exists():
        pytest.fail(f"snapshot {path.relative_to(REPO)} is missing; review the output below and create it with UPDATE_SNAPSHOTS=1:\n{text}")
    expected = path.read_text()
    assert text == expected, f"output differs from {path.relative_to(REPO)} (UPDATE_SNAPSHOTS=1 rewrites it):\n{text}"


# -- build output ----------------------------------------------------------------------------------


def test_build_prints_a_line_per_phase_and_a_summary(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "build", *flags)
    assert code == 0, err
    assert "\x1b[" not in out + err
    assert_snapshot("build_first", normalise(out))
    code, out, _ = run(capsys, "build", *flags)
    assert code == 0
    assert_snapshot("build_noop", normalise(out))


def test_quiet_prints_nothing_but_errors(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "build", "-q", *flags) == (0, "", "")
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\ndef broken(:\n")
    code, out, err = run(capsys, "build", "-q", *flags)
    assert code == 1 and out == ""
    assert_snapshot("build_syntax_error", normalise(err))


def test_verbose_shows_each_task_and_why(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "build", *flags)
    (app / "settings.py").write_text((app / "settings.py").read_text() + "\n# edited\n")
    code, out, _ = run(capsys, "build", "-v", *flags)
    assert code == 0
    assert re.search(r"ran\s+scan:settings\.py  \S+  settings\.py changed$", out, re.MULTILINE), out
    assert re.search(r"skip\s+scan:workers/text\.py", out), out
    assert re.search(r"ran\s+stage  \S+  settings\.py changed$", out, re.MULTILINE), out


def test_dependency_lines_name_what_was_left_out(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (app / "requirements.txt").write_text("usestorch\n")
    code, out, err = run(capsys, "build", *flags)
    assert code == 0, err
    assert re.search(r"^ +Locked 3 groups: 2 packages in ", out, re.MULTILINE), out
    assert re.search(r"^ +Installed 2 packages, .* \(\+2 -0\); left out: torch \(needed by usestorch\) in ", out, re.MULTILINE), out
    result = BuildResult.model_validate_json(run(capsys, "build", "--json", *flags)[1])
    torch = next(e for e in result.dependencies.excluded if e.name == "torch")
    assert torch.reason == "always" and torch.required_by == ["usestorch"]
    assert [p.name for p in result.dependencies.installed] == ["leafdep", "usestorch"]
    assert result.dependencies.added == []  # nothing was installed by this (no-op) build


def test_warnings_go_to_stderr(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from flash_tasks.commands.build import print_warnings
    from flash_tasks.config import BuildConfig
    from flash_tasks.runner import BuildReport

    config = BuildConfig(app_dir=app)
    config.paths.state.mkdir(parents=True)
    report = BuildReport(artifact=config.paths.artifact, manifest=config.paths.manifest, warnings=["settings.py:3: warning: unused"])
    stream = io.StringIO()
    print_warnings(config, report, Console(stream))
    assert stream.getvalue() == "settings.py:3: warning: unused\n"


# -- colour ----------------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("mode", "env", "tty", "expected"),
    [
        ("auto", {}, False, False),
        ("auto", {}, True, True),
        ("auto", {"NO_COLOR": "1"}, True, False),
        ("auto", {"NO_COLOR": ""}, True, True),
        ("auto", {"TERM": "dumb"}, True, False),
        ("auto", {"FORCE_COLOR": "1"}, False, True),
        ("auto", {"FORCE_COLOR": "0"}, False, False),
        ("always", {"NO_COLOR": "1"}, False, True),
        ("never", {"FORCE_COLOR": "1"}, True, False),
    ],
)
def test_colour_decision(mode: str, env: dict[str, str], tty: bool, expected: bool) -> None:
    stream = _Tty() if tty else io.StringIO()
    assert use_color(mode, stream, env) is expected


def test_colour_flag_and_no_color(app: Path, local_index: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    index = ["--no-index", "--find-links", str(local_index)]
    code, out, _ = run(capsys, "build", "--color", "always", *index)
    assert code == 0 and "\x1b[1;32m  Discovered\x1b[0m" in out
    code, out, _ = run(capsys, "--color", "always", "build", *index)  # also before the command
    assert "\x1b[" in out
    code, out, _ = run(capsys, "build", *index)  # auto, not a terminal
    assert "\x1b[" not in out
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run(capsys, "build", *index)[1]
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("FORCE_COLOR")
    assert "\x1b[" not in run(capsys, "build", *index)[1]
    # Errors are coloured by the same rules.
    (app / "settings.py").write_text("EMBED_GPU = GpuGroup.NOPE\n")
    code, _, err = run(capsys, "build", "--color", "always", *index)
    assert code == 1 and "\x1b[1;31merror:\x1b[0m" in err


def test_spinner_draws_only_when_live_and_clears_itself() -> None:
    tty = _Tty()
    console = Console(tty, color=False, live=True)
    console.start_spinner("Archiving")
    time.sleep(0.5)
    console.stop_spinner()
    console.line("Archived")
    text = tty.getvalue()
    screen = play(text)
    assert "Archiving" in text and screen.lines() == ["Archived"] and screen.at_line_start and screen.cursor_visible
    piped = io.StringIO()
    console = Console(piped, color=False, live=False)
    console.start_spinner("Archiving")
    time.sleep(0.4)
    console.stop_spinner()
    assert piped.getvalue() == ""


def _run_on_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> str:
    import pty
    import select

    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


def test_colour_is_on_for_a_terminal_unless_no_color(app: Path, flags: list[str]) -> None:
    auto = [f for f in flags if f not in ("--color", "never")]
    command = [sys.executable, "-m", "flash_tasks", "build", *auto]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "CI")} | {"TERM": "xterm"}
    assert "\x1b[1;32m  Discovered\x1b[0m" in _run_on_terminal(command, app, env)
    plain = _run_on_terminal(command, app, env | {"NO_COLOR": "1"})
    assert "  Discovered" in plain and "\x1b[3" not in plain and "\x1b[1m" not in plain


@pytest.mark.parametrize(("extra", "imports_rich"), [([], False), (["-q"], False), (["--json"], False), (["--color", "always"], True)])
def test_a_piped_noop_build_does_not_import_rich(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str], extra: list[str], imports_rich: bool) -> None:
    """rich is for terminals and forced colour: a build into a pipe does without it (and its import time)."""
    assert run(capsys, "build", *flags)[0] == 0
    auto = [f for f in flags if f not in ("--color", "never")]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "CLICOLOR_FORCE")}
    command = [sys.executable, "-X", "importtime", "-m", "flash_tasks", "build", *auto, *extra]
    proc = subprocess.run(command, cwd=app, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "flash_tasks.runner" in imported  # the listing is read right
    assert ("rich" in imported) is imports_rich
    assert ("\x1b" in proc.stdout) is imports_rich
    if not extra:
        assert "Up to date" in proc.stdout


# -- --json ----------------------------------------------------------------------------------------


def test_json_result_is_valid_and_complete(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "build", "--json", *flags)
    assert code == 0, err
    result = BuildResult.model_validate_json(out)
    artifact = app / ".flash" / "artifact.tar.gz"
    assert result.artifact.path == str(artifact)
    assert result.artifact.size == artifact.stat().st_size
    assert result.artifact.sha256 == hashlib.sha256(artifact.read_bytes()).hexdigest()
    assert result.python_version == "3.12" and result.project == "hello"
    by_name = {r.name: r for r in result.resources}
    assert set(by_name) == {"api", "embedder", "text-tools"}
    assert {(r.method, r.path, r.function) for r in by_name["api"].routes} == {("GET", "/health", "health"), ("POST", "/embed", "embed_texts")}
    assert by_name["api"].handler == "handler_api.py" and by_name["api"].load_balanced
    assert by_name["text-tools"].functions[0].methods == ["word_count", "shout"]
    assert by_name["embedder"].type == "LiveServerless" and by_name["embedder"].python_version == "3.12"
    # pyproject's [project].dependencies (runpod-flash among them) describe the developer's machine: not read.
    assert [e.name for e in result.dependencies.excluded] == []
    assert result.tasks_run == len(result.tasks) and result.tasks_skipped == 0
    assert all(t.reasons == ["never built"] for t in result.tasks)
    assert {"discover", "manifest", "lock", "install", "handlers", "archive", "total"} <= set(result.timings)
    # A no-op rebuild: same artifact, every task skipped.
    again = BuildResult.model_validate_json(run(capsys, "build", "--json", *flags)[1])
    assert again.tasks_run == 0 and again.tasks_skipped == len(again.tasks)
    assert again.artifact == result.artifact


def test_json_errors(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "build", "-q", *flags)[0] == 0
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\ndef broken(:\n")
    code, out, err = run(capsys, "build", "--json", *flags)
    assert code == 1 and err == ""
    result = ErrorResult.model_validate_json(out)
    assert not result.ok and result.error.kind == "build" and result.error.code == 1
    assert result.error.file == "workers/text.py" and result.error.line is not None
    assert any(t.status == "failed" and t.name == "scan:workers/text.py" for t in result.tasks)
    text.write_text(text.read_text().replace("\ndef broken(:\n", ""))
    result = BuildResult.model_validate_json(run(capsys, "build", "--json", *flags)[1])
    reasons = {t.name: t.reasons for t in result.tasks}
    assert reasons["scan:workers/text.py"] == ["its last run failed or was interrupted"]
    assert reasons["files"] == ["up to date: its settings are unchanged"]
    # Usage errors, also those argparse finds, are JSON too.
    code, out, _ = run(capsys, "build", "--json", "--python-version", "3.9", *flags)
    assert code == 2 and ErrorResult.model_validate_json(out).error.kind == "usage"
    code, out, _ = run(capsys, "build", "--json", "--no-such-flag")
    assert code == 2 and ErrorResult.model_validate_json(out).error.code == 2


def test_json_dependency_error_exits_3(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (app / "requirements.txt").write_text("no-such-package-anywhere\n")
    code, out, _ = run(capsys, "build", "--json", *flags)
    assert code == 3
    error = ErrorResult.model_validate_json(out).error
    assert error.kind == "dependency" and "no-such-package-anywhere" in error.message + (error.hint or "")


# -- --explain -------------------------------------------------------------------------------------


def test_explain_names_the_changed_file(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "build", "--explain", *flags)
    assert "never built" in out
    text = app / "workers" / "text.py"
    text.write_text(text.read_text().replace("workers=2", "workers=3"))
    code, out, _ = run(capsys, "build", "--explain", *flags)
    assert code == 0
    assert_snapshot("explain_after_edit", normalise(out))


def test_explain_names_flags_environment_and_missing_outputs(
    app: Path, flags: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run(capsys, "build", *flags)
    out = run(capsys, "build", "--explain", "--python-version", "3.11", *flags)[1]
    assert re.search(r"manifest\s+ran: --python-version changed: default -> 3\.11", out), out
    monkeypatch.setenv("LOG_LEVEL", "debug")
    out = run(capsys, "build", "--explain", "--python-version", "3.11", *flags)[1]
    assert re.search(r"manifest\s+ran: environment variable LOG_LEVEL changed", out), out
    (app / ".flash" / "artifact.tar.gz").unlink()
    (app / ".flash" / ".build" / "handler_api.py").unlink()
    out = run(capsys, "build", "--explain", "--python-version", "3.11", *flags)[1]
    assert re.search(r"handlers\s+ran: missing from \.flash/\.build: handler_api\.py", out), out
    assert re.search(r"archive\s+ran: output missing: \.flash/artifact\.tar\.gz", out), out
    (app / "extra.py").write_text("X = 1\n")
    out = run(capsys, "build", "--explain", "--python-version", "3.11", *flags)[1]
    assert re.search(r"files\s+ran: shipped files changed: \+extra\.py", out), out
    assert re.search(r"scan:extra\.py\s+ran: never built", out), out


# -- init, inspect, clean --------------------------------------------------------------------------


def test_packaged_template_matches_flash_template() -> None:
    files = template_files(SOURCE_TEMPLATE)
    assert template_files(TEMPLATE) == files, "run: python scripts/sync_template.py"
    for rel in files:
        assert (TEMPLATE / rel).read_bytes() == (SOURCE_TEMPLATE / rel).read_bytes(), f"{rel} differs; run: python scripts/sync_template.py"
    assert ".gitignore" in files and "workers/embed.py" in files


def test_init_build_inspect_clean(tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "init", "My App", "--color", "never")
    assert code == 0, err
    assert_snapshot("init", normalise(out))
    app = tmp_path / "My App"
    assert sorted(template_files(app)) == template_files(TEMPLATE)
    assert 'name = "my-app"' in (app / "pyproject.toml").read_text()
    assert (app / ".gitignore").read_text() == (SOURCE_TEMPLATE / ".gitignore").read_text()

    # It builds as it is (with its pyyaml dependency).
    monkeypatch.chdir(app)
    code, out, err = run(capsys, "build", *flags)
    assert code == 0, err
    assert "Installed 1 package" in out

    before = sorted(p.relative_to(app) for p in (app / ".flash").rglob("*"))
    code, out, err = run(capsys, "inspect", "--color", "never")
    assert code == 0, err
    assert sorted(p.relative_to(app) for p in (app / ".flash").rglob("*")) == before  # nothing unpacked
    assert_snapshot("inspect", normalise(out))
    code, out, _ = run(capsys, "inspect", "--json", str(app / ".flash" / "artifact.tar.gz"))
    described = InspectResult.model_validate_json(out)
    assert {h.handler: h.resource for h in described.handlers} == {
        "handler_api.py": "api", "handler_embedder.py": "embedder", "handler_text-tools.py": "text-tools",
    }
    entries = {e.name: e for e in described.entries}
    assert entries["yaml/"].distribution == "pyyaml 6.0.4" and entries["yaml/"].origin == "dependency"
    assert entries["workers/"].origin == "app" and entries["runpod_flash/"].origin == "sdk"
    assert entries["handler_api.py"].origin == "generated"
    assert described.entries == sorted(described.entries, key=lambda e: (-e.size, e.name))

    code, out, _ = run(capsys, "clean", "--keep-locks", "--color", "never")
    assert code == 0 and normalise(out) == "Removed .flash/ except .flash/locks/ (<SIZE>)\n"
    assert [p.name for p in (app / ".flash").iterdir()] == ["locks"]
    code, out, _ = run(capsys, "clean", "--color", "never")
    assert code == 0 and not (app / ".flash").exists()
    assert run(capsys, "clean", "--color", "never")[1] == "Nothing to clean: no .flash/ in .\n"


EXAMPLE = REPO / "examples" / "flash-tasks-only"


def test_the_flash_tasks_only_example_builds(tmp_path: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    make_wheel(tmp_path / "numpy-wheel", "numpy", "2.0.0")
    app = tmp_path / "flash-tasks-only"
    shutil.copytree(EXAMPLE, app, ignore=shutil.ignore_patterns(".flash", "__pycache__"))
    code, _, err = run(capsys, "build", "-C", str(app), *flags, "--find-links", str(tmp_path / "numpy-wheel"))
    assert code == 0, err
    import json

    resources = json.loads((app / ".flash" / "flash_manifest.json").read_text())["resources"]
    assert sorted(resources) == ["api", "scorer"]
    assert resources["api"]["makes_remote_calls"] is True and resources["scorer"]["makes_remote_calls"] is False


def _reference_build(python: Path, app: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASH_")}
    env["FLASH_NO_UPDATE_CHECK"] = "1"
    return subprocess.run(
        [str(python), "-m", "runpod_flash.cli.main", "build", "--no-deps"],
        cwd=app, env=env, check=False, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600,
    )


@pytest.mark.network
@pytest.mark.reference
@pytest.mark.slow
def test_the_starter_app_builds_with_runpod_flash_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``flash init``'s app: runpod-flash 1.21.0 builds it, to the same manifest as ours."""
    import json

    from support.reference import require_reference

    python = require_reference()
    manifests = []
    for tool in ("reference", "ours"):
        app = tmp_path / tool / "starter"
        assert run(capsys, "init", str(app), "-q")[0] == 0
        if tool == "reference":
            proc = _reference_build(python, app)
            assert proc.returncode == 0, proc.stdout
        else:
            code, _, err = run(capsys, "build", "-C", str(app), "--no-deps", "-q")
            assert code == 0, err
        manifest = json.loads((app / ".flash" / "flash_manifest.json").read_text())
        for volatile in ("generated_at", "source_fingerprint"):
            manifest.pop(volatile, None)
        manifests.append(manifest)
    assert manifests[0] == manifests[1]
    assert manifests[0]["resources"]["api"]["makes_remote_calls"] is True

    # The example is there for what only flash-tasks builds: runpod-flash refuses it.
    example = tmp_path / "example"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns(".flash", "__pycache__"))
    proc = _reference_build(python, example)
    assert proc.returncode != 0
    assert "No module named 'numpy'" in proc.stdout or "defined in multiple files" in proc.stdout, proc.stdout


def test_init_refuses_to_overwrite_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "app"
    target.mkdir()
    (target / "settings.py").write_text("MINE = 1\n")
    (target / "notes.txt").write_text("keep me\n")
    code, out, err = run(capsys, "init", str(target), "--color", "never")
    assert code == 2 and out == ""
    assert "settings.py" in err and "--force" in err
    assert (target / "settings.py").read_text() == "MINE = 1\n" and not (target / "workers").exists()
    code, out, _ = run(capsys, "init", str(target), "-f", "--color", "never")
    assert code == 0 and "1 overwritten" in out
    assert (target / "settings.py").read_bytes() == (TEMPLATE / "settings.py").read_bytes()
    assert (target / "notes.txt").read_text() == "keep me\n"


def test_inspect_without_an_artifact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "inspect", "-C", str(tmp_path))
    assert code == 1 and "no artifact at" in err and "flash build" in err
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"not a tarball")
    code, _, err = run(capsys, "inspect", str(bogus))
    assert code == 1 and "cannot read" in err


def test_clean_waits_for_a_running_build(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import fcntl

    flash = app / ".flash"
    (flash / ".build").mkdir(parents=True)
    (flash / ".build" / "x").write_text("x")
    released = threading.Event()
    with open(flash / ".lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)

        def release() -> None:
            time.sleep(0.3)
            released.set()
            fcntl.flock(handle, fcntl.LOCK_UN)

        thread = threading.Thread(target=release)
        thread.start()
        code, _, err = run(capsys, "clean")
        assert released.is_set()
        thread.join()
    assert code == 0 and "waiting for a build" in err and not flash.exists()


# -- version, help, exit codes -------------------------------------------------------------------


def test_version_help_and_usage_errors(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"flash-tasks {__version__}\n"
    with pytest.raises(SystemExit):
        main(["build", "--help"])
    help_text = capsys.readouterr().out
    for expected in ("--watch", "--explain", "--json", "--color", "examples:", "flash build --watch", "exit codes:"):
        assert expected in help_text
    assert main([]) == 2
    assert main(["no-such-command"]) == 2
    assert main(["inspect", "--top", "-1"]) == 2
    assert "--top must be 0 (all) or more" in capsys.readouterr().err
    assert main(["build", "--watch", "--json"]) == 2
    assert "cannot be combined" in ErrorResult.model_validate_json(capsys.readouterr().out).error.message


def test_global_options_go_before_or_after_the_command(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    no_colour = [f for f in flags if f not in ("--color", "never")]
    code, out, err = run(capsys, "-q", "--color", "never", "build", *no_colour)
    assert code == 0 and out == "" and err == ""
    assert (app / ".flash" / "artifact.tar.gz").is_file()
    code, out, _ = run(capsys, "build", *no_colour, "-q")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, "--color", "always", "build", *no_colour)
    assert code == 0 and "\x1b[" in out
    code, out, _ = run(capsys, "build", *no_colour, "--color", "never")
    assert code == 0 and "Up to date" in out and "\x1b[" not in out


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["build", "--wacth"], "error: unknown option --wacth for 'flash build'\n  hint: did you mean --watch? see 'flash build --help'\n"),
        (["inspect", "--jsno"], "error: unknown option --jsno for 'flash inspect'\n  hint: did you mean --json? see 'flash inspect --help'\n"),
        (["init", "--froce"], "error: unknown option --froce for 'flash init'\n  hint: did you mean --force? see 'flash init --help'\n"),
        (["clean", "--kep-locks=1"], "error: unknown option --kep-locks for 'flash clean'\n  hint: did you mean --keep-locks? see 'flash clean --help'\n"),
        (["--colour", "never", "build"], "error: unknown option --colour for 'flash'\n  hint: did you mean --color? see 'flash --help'\n"),
        (["build", "--colour", "never"], "error: unknown option --colour for 'flash build'\n  hint: did you mean --color? see 'flash build --help'\n"),
        (["biuld"], "error: unknown command 'biuld'\n  hint: did you mean 'flash build'? see 'flash build --help'\n"),
    ],
)
def test_a_typo_gets_a_did_you_mean_pointing_at_that_commands_help(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv, "--color", "never")
    assert (code, out, err) == (2, "", expected)


@pytest.mark.parametrize(
    "argv",
    [
        ["build", "--python-version"],
        ["build", "--python-version", "2.7"],
        ["inspect", "--top", "many"],
        ["--color", "purple", "build"],
        ["build", "stray"],
        ["init", "a", "b"],
        ["clean", "-C"],
        ["build", "-o", "../escape.tar.gz"],
    ],
)
def test_usage_errors_exit_2_with_one_message_and_no_traceback(argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "flash_tasks", *argv], check=False, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "" and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("error:") == 1
    assert not (tmp_path / ".flash").exists()


def test_inspect_opens_the_artifact_of_the_last_build(app: Path, flags: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "build", *flags)
    assert code == 0, err
    code, _, err = run(capsys, "build", *flags, "-o", "custom.tar.gz")
    assert code == 0, err
    code, out, err = run(capsys, "inspect", "--color", "never")
    assert code == 0, err
    assert out.startswith(".flash/custom.tar.gz: "), out

    def inspected(out: str) -> Path:
        return Path(InspectResult.model_validate_json(out).artifact.path).resolve()

    code, out, _ = run(capsys, "inspect", "--json", "-C", str(app))
    assert inspected(out) == app / ".flash" / "custom.tar.gz"
    code, out, _ = run(capsys, "inspect", "--json", str(app))  # a folder: its last build's artifact too
    assert inspected(out) == app / ".flash" / "custom.tar.gz"
    # A failed build does not change which artifact was last built.
    (app / "workers" / "text.py").write_text("def broken(:\n")
    assert run(capsys, "build", *flags)[0] == 1
    code, out, _ = run(capsys, "inspect", "--json")
    assert inspected(out) == app / ".flash" / "custom.tar.gz"
    # Once that artifact is gone, the default name is the fallback.
    (app / ".flash" / "custom.tar.gz").unlink()
    code, out, _ = run(capsys, "inspect", "--json")
    assert inspected(out) == app / ".flash" / "artifact.tar.gz"


def test_an_empty_folder_or_one_without_endpoints_suggests_init(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, "build", "--no-index", "--color", "never")
    assert (code, out) == (1, "")
    assert err == (
        "error: no Python files in this folder: nothing to build\n"
        "  hint: to start from a working app, run 'flash init' in an empty folder (or 'flash init NEW_DIR')\n"
    )
    assert not (tmp_path / ".flash").exists()
    code, out, _ = run(capsys, "build", "--json", "--no-index")
    assert code == 1 and "flash init" in (ErrorResult.model_validate_json(out).error.hint or "")

    # Python files that are all ignored: the "no endpoints" error, which names the ignore rules.
    (tmp_path / "ignored").mkdir()
    (tmp_path / "ignored" / "skipped.py").write_text("VALUE = 1\n")
    (tmp_path / ".gitignore").write_text("ignored/\n")
    code, _, err = run(capsys, "build", "--no-index", "--color", "never")
    assert code == 1 and "error: no endpoints found" in err and "no Python files" not in err
    shutil.rmtree(tmp_path / ".flash")

    (tmp_path / "plain.py").write_text("VALUE = 1\n")
    code, _, err = run(capsys, "build", "--no-index", "--color", "never")
    assert code == 1 and "error: no endpoints found" in err
    assert err.rstrip().endswith("Or to start from a working app, run 'flash init' in an empty folder (or 'flash init NEW_DIR').")


# -- always-excluded packages: --include and the CPU image -----------------------------------------


CPU_AND_GPU = {
    "cpu_direct.py": (
        "from runpod_flash import CpuInstanceType, Endpoint\n\n\n"
        '@Endpoint(name="cpu-direct", cpu=CpuInstanceType.CPU3C_1_2, dependencies=["torch"])\n'
        "async def direct(x: dict) -> dict:\n    return x\n"
    ),
    "cpu_indirect.py": (
        "from runpod_flash import CpuInstanceType, Endpoint\n\n\n"
        '@Endpoint(name="cpu-indirect", cpu=CpuInstanceType.CPU3C_1_2, dependencies=["usestorch"])\n'
        "async def indirect(x: dict) -> dict:\n    return x\n"
    ),
    "gpu.py": (
        "from runpod_flash import Endpoint, GpuGroup\n\n\n"
        '@Endpoint(name="gpu", gpu=GpuGroup.ADA_24, dependencies=["torch"])\n'
        "async def gpu(x: dict) -> dict:\n    return x\n"
    ),
}


def test_an_excluded_package_a_cpu_endpoint_needs_is_a_warning_naming_the_cpu_image(
    tmp_path: Path, index_args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, text in CPU_AND_GPU.items():
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "build", *index_args, "--color", "never")
    assert code == 0, err
    assert err == (
        "cpu_direct.py:4: warning: torch is left out of the artifact (always excluded: GPU images provide it), "
        "but the CPU endpoints cpu-direct, cpu-indirect (usestorch needs it) will not find it: the CPU image does not provide it\n"
        '  hint: keep it with --include torch, or in pyproject.toml: [tool.flash-tasks] include = ["torch"]\n'
    )
    code, out, _ = run(capsys, "build", *index_args, "--json")
    assert code == 0 and any("CPU image does not provide it" in w for w in BuildResult.model_validate_json(out).warnings)

    # Only GPU endpoints ask for it: GPU images provide it, nothing to say.
    (tmp_path / "cpu_direct.py").unlink()
    (tmp_path / "cpu_indirect.py").unlink()
    code, _, err = run(capsys, "build", *index_args, "--color", "never")
    assert code == 0 and err == ""


def test_include_names_only_always_excluded_packages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from flash_tasks.config import BuildConfig

    config = BuildConfig(app_dir=tmp_path, include=("TorchVision", " triton "))
    assert config.include == ("torchvision", "triton")
    assert config.excluded == ("torch", "torchaudio")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.flash-tasks]\ninclude = ["torchaudio"]\n')
    assert BuildConfig(app_dir=tmp_path, include=("triton",)).include == ("torchaudio", "triton")
    assert BuildConfig(app_dir=tmp_path).excluded == ("torch", "torchvision", "triton")

    code, out, err = run(capsys, "build", "-C", str(tmp_path), "--include", "numpy", "--color", "never")
    assert (code, out) == (2, "")
    assert err.startswith("error: --include numpy: only always-excluded packages can be included (torch, torchvision, torchaudio, triton)\n")
    (tmp_path / "pyproject.toml").write_text('[tool.flash-tasks]\ninclude = "torch"\n')
    code, _, err = run(capsys, "build", "-C", str(tmp_path), "--color", "never")
    assert code == 2 and err.startswith(f"{tmp_path / 'pyproject.toml'}: error: [tool.flash-tasks] include must be a list of package names\n")


def test_include_keeps_an_always_excluded_package(tmp_path: Path, index_args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "gpu.py").write_text(CPU_AND_GPU["gpu.py"])
    code, _, err = run(capsys, "build", "-C", str(tmp_path), *index_args, "--include", "torch", "--color", "never")
    assert code == 0, err
    code, out, _ = run(capsys, "inspect", "--json", "-C", str(tmp_path))
    assert "torch 2.9.0" in {e.distribution for e in InspectResult.model_validate_json(out).entries}


def test_sizes_are_human() -> None:
    assert [format_size(n) for n in (0, 999, 1024, 1536, 10 * 1024**2, 1500 * 1024**2)] == [
        "0 B", "999 B", "1.0 KiB", "1.5 KiB", "10.0 MiB", "1.5 GiB",
    ]


# -- watch -----------------------------------------------------------------------------------------


class _Lines:
    """Lines of a child's stream, read on a thread so waiting for one can time out."""

    def __init__(self, stream: io.TextIOBase) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: io.TextIOBase) -> None:
        for line in stream:
            self.queue.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matching {pattern!r}; got:\n{''.join(self.seen)}")


@contextlib.contextmanager
def _watching(app: Path, flags: list[str]) -> Iterator[tuple[subprocess.Popen[str], _Lines]]:
    """``flash build --watch`` in ``app``, its stdout read line by line; killed if still running at the end."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "flash_tasks", "build", "--watch", *flags],
        cwd=app, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        yield proc, _Lines(proc.stdout)  # type: ignore[arg-type]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop_watch(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Ctrl-C; the exit code and stderr."""
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=15)
    return code, proc.stderr.read()  # type: ignore[union-attr]


def test_watch_rebuilds_on_save_and_stops_on_ctrl_c(app: Path, flags: list[str]) -> None:
    with _watching(app, flags) as (proc, out):
        out.wait_for(r"^Watching \d+ files")
        text = app / "workers" / "text.py"
        text.write_text(text.read_text() + "\n# saved once\n")
        assert "changed: workers/text.py" in out.wait_for(r"changed: ")
        rebuilt = out.wait_for(r"Rebuilt|no change")
        assert re.search(r"Rebuilt \.flash/artifact\.tar\.gz \(\d.* [KM]iB, [+-]\d", rebuilt), rebuilt
        (app / "new_module.py").write_text("VALUE = 1\n")
        assert "added: new_module.py" in out.wait_for(r"added: ")
        out.wait_for(r"Rebuilt")
        code, err = _stop_watch(proc)
    time.sleep(0.2)
    assert code == 0, err + "".join(out.seen) + "".join(list(out.queue.queue))
    assert "Traceback" not in err
    assert "stopped watching" in "".join(out.seen) + out.wait_for("stopped watching", timeout=5)


def test_watch_ignores_what_does_not_ship(app: Path, flags: list[str]) -> None:
    """Writes under .flash/ and to .gitignored files start no rebuild; the next shipped save does, alone."""
    with _watching(app, flags) as (proc, out):
        out.wait_for(r"^Watching \d+ files")
        (app / ".flash" / "scratch.txt").write_text("not shipped\n")
        (app / "debug.log").write_text("not shipped\n")
        (app / "scratch").mkdir()
        (app / "scratch" / "notes.py").write_text("X = 1\n")
        time.sleep(1.5)  # longer than a batch takes to settle
        text = app / "workers" / "text.py"
        text.write_text(text.read_text() + "\n# saved\n")
        line = out.wait_for(r"changed: |added: |removed: ")
        assert re.fullmatch(r"\[\d\d:\d\d:\d\d\] changed: workers/text\.py\n", line), line
        out.wait_for(r"Rebuilt")
        code, err = _stop_watch(proc)
    assert code == 0 and "Traceback" not in err, err
    seen = "".join(out.seen) + "".join(list(out.queue.queue))
    assert seen.count("Rebuilt") == 1 and "debug.log" not in seen and "scratch" not in seen, seen


def test_watch_filter_drops_only_the_flash_folder(app: Path) -> None:
    from watchfiles import Change

    from flash_tasks.commands.watch import outside_flash
    from flash_tasks.config import BuildConfig

    keep = outside_flash(BuildConfig(app_dir=app))
    assert not keep(Change.added, str(app / ".flash"))
    assert not keep(Change.modified, str(app / ".flash" / "artifact.tar.gz"))
    assert keep(Change.modified, str(app / ".flashy" / "x.py"))
    assert keep(Change.modified, str(app / "workers" / "text.py"))
