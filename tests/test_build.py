"""End-to-end builds through the CLI: outputs, incremental reruns, failures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from flash_tasks import graph
from flash_tasks.cli import main
from flash_tasks.config import BuildConfig
from flash_tasks.runner import BuildReport, run_tasks

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = REPO / ".flash-template"


@pytest.fixture(autouse=True)
def _local_index(local_index: Path) -> None:
    global INDEX
    INDEX = {"find_links": (str(local_index),), "no_index": True}


INDEX: dict[str, object] = {}


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    """A copy of the bundled example app, without dependencies to install."""
    target = tmp_path / "hello"
    shutil.copytree(TEMPLATE, target, ignore=shutil.ignore_patterns(".flash"))
    (target / "requirements.txt").write_text("# none\n")
    embed = target / "workers" / "embed.py"
    embed.write_text(embed.read_text().replace('    dependencies=["pyyaml>=6"],\n', ""))
    return target


def build(app: Path, **options: object) -> BuildReport:
    return run_tasks(BuildConfig(app_dir=app, **{**INDEX, **options}))  # type: ignore[arg-type]


def index_flags() -> list[str]:
    return ["--no-index", "--find-links", str(INDEX["find_links"][0])]  # type: ignore[index]


def names(tar_path: Path) -> list[str]:
    with tarfile.open(tar_path, "r:gz") as tar:
        return tar.getnames()


def test_build_writes_manifest_handlers_and_artifact(app: Path) -> None:
    report = build(app)
    flash = app / ".flash"
    manifest = json.loads((flash / "flash_manifest.json").read_text())
    assert set(manifest["resources"]) == {"api", "embedder", "text-tools"}
    assert (flash / ".build" / "flash_manifest.json").read_text() == (flash / "flash_manifest.json").read_text()
    listed = names(flash / "artifact.tar.gz")
    for expected in (".", "./api/routes.py", "./workers/embed.py", "./settings.py", "./handler_embedder.py",
                     "./handler_text-tools.py", "./handler_api.py", "./flash_manifest.json", "./README.md"):
        assert expected in listed
    # Ignored: tests, .gitignore, the .flash folder itself.
    assert not any(n.startswith("./tests") or n.endswith(".gitignore") or ".flash/" in n for n in listed)
    assert report.ran and not report.skipped


def test_noop_rebuild_runs_no_task(app: Path) -> None:
    build(app)
    artifact = (app / ".flash" / "artifact.tar.gz").read_bytes()
    report = build(app)
    assert report.ran == []
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == artifact


def test_editing_one_file_rescans_only_that_file(app: Path) -> None:
    build(app)
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\n# a comment\n")
    report = build(app)
    assert "scan:workers/text.py" in report.ran
    assert not [t for t in report.ran if t.startswith("scan:") and t != "scan:workers/text.py"]
    assert not [t for t in report.ran if t.startswith(("lock", "install"))]
    assert "archive" in report.ran
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        member = tar.extractfile("./workers/text.py")
        assert member is not None and member.read().endswith(b"# a comment\n")


def test_changing_an_endpoint_argument_changes_the_manifest(app: Path) -> None:
    build(app)
    text = app / "workers" / "text.py"
    text.write_text(text.read_text().replace("workers=2", "workers=(1, 4)"))
    build(app)
    manifest = json.loads((app / ".flash" / "flash_manifest.json").read_text())
    res = manifest["resources"]["text-tools"]
    assert (res["workersMin"], res["workersMax"]) == (1, 4)


def test_python_version_flag_reruns_what_it_affects(app: Path) -> None:
    build(app)
    report = build(app, python_version="3.11")
    assert "manifest" in report.ran and "archive" in report.ran
    assert not [t for t in report.ran if t.startswith("scan:")] and "stage" not in report.ran
    assert json.loads((app / ".flash" / "flash_manifest.json").read_text())["python_version"] == "3.11"
    assert build(app, python_version="3.11").ran == []


def test_output_name_reruns_only_the_archive(app: Path) -> None:
    build(app)
    report = build(app, output="other.tar.gz")
    assert report.ran == ["archive"]
    assert (app / ".flash" / "other.tar.gz").is_file()


def test_environment_variable_read_by_an_endpoint_is_an_input(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "info")
    build(app)
    assert build(app).ran == []
    monkeypatch.setenv("LOG_LEVEL", "debug")
    report = build(app)
    assert "manifest" in report.ran
    env = json.loads((app / ".flash" / "flash_manifest.json").read_text())["resources"]["embedder"]["env"]
    assert env["LOG_LEVEL"] == "debug"


def test_tool_upgrade_rebuilds_everything(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    build(app)
    monkeypatch.setattr(graph, "tool_fingerprint", lambda: "a-newer-version")
    report = build(app)
    assert "manifest" in report.ran and "archive" in report.ran
    assert any(t.startswith("scan:") for t in report.ran)


def test_new_and_deleted_files_are_picked_up(app: Path) -> None:
    build(app)
    (app / "extra.py").write_text("VALUE = 1\n")
    build(app)
    assert "./extra.py" in names(app / ".flash" / "artifact.tar.gz")
    (app / "extra.py").unlink()
    build(app)
    assert "./extra.py" not in names(app / ".flash" / "artifact.tar.gz")
    assert not (app / ".flash" / ".build" / "extra.py").exists()


def test_ignored_and_secret_files_never_ship(app: Path) -> None:
    (app / ".env").write_text("RUNPOD_API_KEY=secret\n")
    (app / "scratch").mkdir()
    (app / "scratch" / "notes.py").write_text("x = 1\n")
    (app / "debug.log").write_text("log\n")
    build(app)
    listed = names(app / ".flash" / "artifact.tar.gz")
    assert "./.env" not in listed and "./scratch/notes.py" not in listed and "./debug.log" not in listed
    assert "./.env.example" in listed


def test_failed_build_keeps_the_previous_artifact(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "-C", str(app), "-q", *index_flags()]) == 0
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()
    text = app / "workers" / "text.py"
    good = text.read_text()
    text.write_text(good + "\ndef broken(:\n")
    assert main(["build", "-C", str(app), *index_flags()]) == 1
    err = capsys.readouterr().err
    assert "workers/text.py:" in err and "syntax error" in err and "Traceback" not in err
    assert artifact.read_bytes() == before
    text.write_text(good.replace("workers=2", "workers=3"))
    assert main(["build", "-C", str(app), "-q", *index_flags()]) == 0
    manifest = json.loads((app / ".flash" / "flash_manifest.json").read_text())
    assert manifest["resources"]["text-tools"]["workersMax"] == 3


def test_no_endpoints_fails_with_guidance(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "main.py").write_text("print('hello')\n")
    assert main(["build", "-C", str(tmp_path), *index_flags()]) == 1
    err = capsys.readouterr().err
    assert "no endpoints found" in err and "@Endpoint" in err
    assert not (tmp_path / ".flash" / "artifact.tar.gz").exists()


def test_usage_errors_exit_2(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["build", "-C", str(app), "--python-version", "3.9"]) == 2
    assert "3.10, 3.11, 3.12" in capsys.readouterr().err
    assert main(["build", "--no-such-flag"]) == 2
    assert main(["build", "-C", str(app / "missing")]) == 2
    assert main(["build", "-C", str(app), "-o", "../escape.tar.gz"]) == 2


def test_python_m_entry_point_and_version(app: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *index_flags()], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "artifact.tar.gz" in result.stdout
    version = subprocess.run([sys.executable, "-m", "flash_tasks", "--version"], capture_output=True, text=True)
    assert version.stdout.startswith("flash-tasks ")


def test_plugins_installed_next_to_the_tool_are_not_loaded(app: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    info = site / "sneaky_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sneaky-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[pydantic]\nsneaky = sneaky_plugin:plugin\n[doit.COMMAND]\nsneaky = sneaky_plugin:plugin\n[doit.REPORTER]\nsneaky = sneaky_plugin:plugin\n"
    )
    marker = tmp_path / "loaded"
    (site / "sneaky_plugin.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\nplugin = object()\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")]))}
    found = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(len(m.entry_points(group='pydantic')))"], env=env, capture_output=True, text=True)
    assert found.stdout.strip() != "0", found.stderr  # the plugin is visible to anything that looks
    result = subprocess.run([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *index_flags()], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not marker.exists()


def test_repository_dodo_lists_the_phases() -> None:
    result = subprocess.run([sys.executable, "-m", "doit", "list"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert set(graph.PHASES) <= listed


def test_an_apps_own_dodo_runs_the_same_tasks(app: Path) -> None:
    (app / "dodo.py").write_text(
        "from flash_tasks.graph import dodo_namespace\n"
        f"globals().update(dodo_namespace('.', find_links=({str(INDEX['find_links'][0])!r},), no_index=True))\n"
    )
    (app / ".gitignore").write_text((app / ".gitignore").read_text() + "dodo.py\n")
    result = subprocess.run([sys.executable, "-m", "doit"], cwd=app, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (app / ".flash" / "artifact.tar.gz").is_file()
    # flash build now finds everything up to date: same tasks, same state database.
    assert build(app).ran == []


def test_concurrent_builds_of_one_app_do_not_corrupt(app: Path) -> None:
    env = {**os.environ}
    procs = [
        subprocess.Popen([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), "-q", *index_flags()], env=env, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        assert "./handler_embedder.py" in tar.getnames()
    assert build(app).ran == []


def member(artifact: Path, name: str) -> bytes:
    with tarfile.open(artifact, "r:gz") as tar:
        extracted = tar.extractfile(name)
        assert extracted is not None, f"{name} is not a file in {artifact.name}"
        return extracted.read()


def test_deleted_build_folder_is_rebuilt(app: Path) -> None:
    build(app)
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()
    shutil.rmtree(app / ".flash" / ".build")
    report = build(app)
    assert "stage" in report.ran and "handlers" in report.ran
    # The recreated build folder is identical, so the artifact is the same, byte for byte.
    assert (app / ".flash" / ".build" / "workers" / "embed.py").read_bytes() == (app / "workers" / "embed.py").read_bytes()
    assert (app / ".flash" / ".build" / "handler_embedder.py").is_file()
    assert artifact.read_bytes() == before
    assert member(artifact, "./workers/embed.py") == (app / "workers" / "embed.py").read_bytes()


def test_deleted_artifact_is_rebuilt_alone(app: Path) -> None:
    build(app)
    (app / ".flash" / "artifact.tar.gz").unlink()
    assert build(app).ran == ["archive"]


# -- dependencies, end to end (hermetic: the local index only) ------------------------------


def add_dependencies(app: Path, requirements: str, endpoint_deps: list[str]) -> None:
    (app / "requirements.txt").write_text(requirements)
    embed = app / "workers" / "embed.py"
    embed.write_text(embed.read_text().replace("    idle_timeout=120,\n", f"    idle_timeout=120,\n    dependencies={endpoint_deps!r},\n"))


def test_dependencies_are_installed_and_the_sdk_bundled(app: Path) -> None:
    add_dependencies(app, "tinydep==1.0\nrunpod-flash\n", ["middep"])
    build(app)
    listed = set(names(app / ".flash" / "artifact.tar.gz"))
    for expected in ("./tinydep/__init__.py", "./middep/__init__.py", "./leafdep/__init__.py", "./runpod_flash/__init__.py",
                     "./runpod_flash/runtime/_flash_resource_config.py", "./tinydep-1.0.dist-info/METADATA"):
        assert expected in listed
    # The SDK's own package ships, never its dependencies or its dist-info.
    assert not any(n.startswith(("./httpx", "./pydantic", "./runpod_flash-")) for n in listed)


def test_excluded_packages_are_never_installed(app: Path) -> None:
    add_dependencies(app, "", ["usestorch"])
    build(app)
    listed = set(names(app / ".flash" / "artifact.tar.gz"))
    assert "./usestorch/__init__.py" in listed and "./leafdep/__init__.py" in listed
    assert not any(n.startswith(("./torch", "./nvidia")) for n in listed)
    cache = Path(os.environ["UV_CACHE_DIR"])
    assert not list(cache.rglob("torch-2.9.0*")) and not list(cache.rglob("nvidia_fake*"))


def test_no_deps_installs_only_direct_requirements(app: Path) -> None:
    add_dependencies(app, "", ["middep"])
    build(app, no_deps=True)
    listed = set(names(app / ".flash" / "artifact.tar.gz"))
    assert "./middep/__init__.py" in listed and "./leafdep/__init__.py" not in listed


def test_wheels_match_the_target_python(app: Path, tmp_path: Path) -> None:
    """Both nativedep wheels are version 1.0; only their tags and contents differ."""
    add_dependencies(app, "nativedep\n", [])
    artifact = app / ".flash" / "artifact.tar.gz"
    build(app, python_version="3.11")
    assert (app / ".flash" / ".build" / "nativedep" / "__init__.py").read_bytes() == b"NATIVE = 311\n"
    assert member(artifact, "./nativedep/__init__.py") == b"NATIVE = 311\n"
    build(app)
    assert (app / ".flash" / ".build" / "nativedep" / "__init__.py").read_bytes() == b"NATIVE = 312\n"
    assert member(artifact, "./nativedep/__init__.py") == b"NATIVE = 312\n"
    # The rebuild ships exactly what a first 3.12 build of the same app ships.
    fresh = tmp_path / "fresh" / app.name
    shutil.copytree(app, fresh, ignore=shutil.ignore_patterns(".flash"))
    build(fresh)
    assert artifact.read_bytes() == (fresh / ".flash" / "artifact.tar.gz").read_bytes()


def test_adding_a_dependency_installs_and_compresses_only_it(app: Path) -> None:
    add_dependencies(app, "tinydep==1.0\n", [])
    build(app)
    segments = app / ".flash" / ".state" / "segments"
    before = {p.name: p.stat().st_mtime_ns for p in segments.glob("*.gz")}
    (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    report = build(app)
    assert not [t for t in report.ran if t.startswith("scan:")]
    after = {p.name: p.stat().st_mtime_ns for p in segments.glob("*.gz")}
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith("leafdep-1.0-")
    assert all(after[name] == before[name] for name in before if name in after)
    installed = json.loads((app / ".flash" / ".state" / "install-report.json").read_text())["data"]
    assert installed["added"] == ["leafdep"]


def test_editing_a_source_file_reuses_dependency_segments(app: Path) -> None:
    add_dependencies(app, "tinydep==1.0\nleafdep\n", [])
    build(app)
    segments = app / ".flash" / ".state" / "segments"
    before = {p.name: p.stat().st_mtime_ns for p in segments.glob("*.gz")}
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\n# edit\n")
    report = build(app)
    assert "install" not in report.ran and not [t for t in report.ran if t.startswith("lock")]
    assert {p.name: p.stat().st_mtime_ns for p in segments.glob("*.gz")} == before
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        assert tar.extractfile("./workers/text.py").read().endswith(b"# edit\n")  # type: ignore[union-attr]
        assert "./tinydep/__init__.py" in tar.getnames()


def test_bad_requirement_line_is_located(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "requirements.txt").write_text("tinydep\nthis is not a requirement!!\n")
    assert main(["build", "-C", str(app), *index_flags()]) == 1
    assert "requirements.txt:2" in capsys.readouterr().err


def test_missing_package_is_a_dependency_error(app: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "requirements.txt").write_text("no-such-package-anywhere\n")
    assert main(["build", "-C", str(app), *index_flags()]) == 3
    assert "no-such-package-anywhere" in capsys.readouterr().err


def test_sdk_dependency_line_does_not_pull_its_tree(app: Path) -> None:
    add_dependencies(app, "runpod-flash>=1.0\n", [])
    build(app)
    listed = set(names(app / ".flash" / "artifact.tar.gz"))
    assert not any(n.startswith(("./httpx", "./pydantic")) for n in listed)


# -- reproducibility ---------------------------------------------------------------------------


def test_two_folders_give_byte_identical_artifacts(app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    add_dependencies(app, "tinydep==1.0\nleafdep\n", ["nativedep"])
    other = tmp_path / "elsewhere" / app.name
    shutil.copytree(app, other)
    for i, path in enumerate(sorted(p for p in other.rglob("*") if p.is_file())):
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # different mtimes, same content
    build(app)
    build(other)
    first = (app / ".flash" / "artifact.tar.gz").read_bytes()
    assert first == (other / ".flash" / "artifact.tar.gz").read_bytes()
    # A from-scratch rebuild, later, gives the same bytes again.
    shutil.rmtree(other / ".flash")
    build(other)
    assert (other / ".flash" / "artifact.tar.gz").read_bytes() == first


def test_source_date_epoch_sets_every_timestamp(app: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build(app)
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        assert {m.mtime for m in tar.getmembers()} == {1700000000}
    manifest = json.loads((app / ".flash" / "flash_manifest.json").read_text())
    assert manifest["generated_at"] == "2023-11-14T22:13:20Z"


def test_edits_reuse_the_previous_artifact_and_stay_byte_identical(app: Path, tmp_path: Path) -> None:
    add_dependencies(app, "tinydep==1.0\nleafdep\n", ["middep"])
    build(app)
    text = app / "workers" / "text.py"
    for i in range(3):  # the second edit onwards cuts and extends the spare copy
        text.write_text(text.read_text() + f"\n# edit {i}\n")
        build(app)
        clean = tmp_path / f"clean{i}" / app.name
        shutil.copytree(app, clean, ignore=shutil.ignore_patterns(".flash"))
        build(clean)
        assert (app / ".flash" / "artifact.tar.gz").read_bytes() == (clean / ".flash" / "artifact.tar.gz").read_bytes()
    spare = app / ".flash" / ".state" / "spare.tar.gz"
    assert spare.is_file() and spare.stat().st_nlink == 1
    assert spare.stat().st_ino != (app / ".flash" / "artifact.tar.gz").stat().st_ino


def test_a_hard_link_to_the_artifact_is_never_changed(app: Path, tmp_path: Path) -> None:
    build(app)
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\n# one\n")
    build(app)
    backup = tmp_path / "backup.tar.gz"
    os.link(app / ".flash" / "artifact.tar.gz", backup)
    kept = backup.read_bytes()
    for i in range(2):
        text.write_text(text.read_text() + f"\n# more {i}\n")
        build(app)
    assert backup.read_bytes() == kept


def test_big_distributions_are_split_into_parallel_chunks(app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks import package

    add_dependencies(app, "tinydep==1.0\nmiddep\n", [])
    whole = tmp_path / "whole" / app.name
    shutil.copytree(app, whole)
    build(whole)
    monkeypatch.setattr(package, "CHUNK_BYTES", 40)
    build(app)
    chunks = sorted(p.name for p in (app / ".flash" / ".state" / "segments").glob("tinydep-*.gz"))
    assert len(chunks) > 1 and all(f"of{len(chunks)}.gz" in name for name in chunks)

    def contents(artifact: Path) -> dict[str, bytes]:
        with tarfile.open(artifact) as tar:
            return {m.name: (tar.extractfile(m).read() if m.isfile() else b"") for m in tar.getmembers()}  # type: ignore[union-attr]

    assert contents(app / ".flash" / "artifact.tar.gz") == contents(whole / ".flash" / "artifact.tar.gz")


def test_the_bundled_sdk_version_is_configurable(app: Path, local_index: Path, tmp_path: Path) -> None:
    from wheelfactory import make_wheel

    index = tmp_path / "wheels"
    shutil.copytree(local_index, index)
    make_wheel(index, "runpod-flash", "1.20.0", files={"runpod_flash/__init__.py": "__version__ = '1.20.0'\n"})
    (app / "pyproject.toml").write_text('[project]\nname = "hello"\n\n[tool.flash-tasks]\nrunpod-flash-version = "1.20.0"\n')
    run_tasks(BuildConfig(app_dir=app, find_links=(str(index),), no_index=True))
    assert b"1.20.0" in (app / ".flash" / ".build" / "runpod_flash" / "__init__.py").read_bytes()
    assert main(["build", "-C", str(app), "-q", "--no-index", "--find-links", str(index), "--runpod-flash-version", "1.21.0"]) == 0
    assert b"1.21.0" in (app / ".flash" / ".build" / "runpod_flash" / "__init__.py").read_bytes()


def test_a_source_edited_after_it_was_staged_is_staged_again(app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """doit takes a task's input stamps after the task ran: an edit made meanwhile must not pass for staged."""
    build(app)
    source = app / "workers" / "embed.py"
    stage = graph.stage_action

    def stage_then_edit(*args: object) -> None:
        stage(*args)  # type: ignore[arg-type]
        source.write_text(source.read_text() + "# edited after staging\n")

    monkeypatch.setattr(graph, "stage_action", stage_then_edit)
    source.write_text(source.read_text() + "# edited before the build\n")
    build(app)
    monkeypatch.setattr(graph, "stage_action", stage)
    report = build(app)
    assert "stage" in report.ran and "archive" in report.ran
    assert (app / ".flash" / ".build" / "workers" / "embed.py").read_bytes() == source.read_bytes()
    clean = tmp_path / "clean" / app.name
    shutil.copytree(app, clean, ignore=shutil.ignore_patterns(".flash"))
    build(clean)
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == (clean / ".flash" / "artifact.tar.gz").read_bytes()
    assert build(app).ran == []


def test_an_edit_that_leaves_every_scan_as_it_was_only_refingerprints_the_manifest(
    app: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flash_tasks import manifest

    build(app)
    made: list[str] = []
    real = manifest.build_manifest

    def spy(*args: object, **kwargs: object) -> object:
        made.append("made")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest, "build_manifest", spy)
    before = json.loads((app / ".flash" / "flash_manifest.json").read_text())
    text = app / "workers" / "text.py"
    text.write_text(text.read_text() + "\n# a trailing comment changes no scan\n")
    assert "manifest" in build(app).ran and made == []
    after = json.loads((app / ".flash" / "flash_manifest.json").read_text())
    assert after["source_fingerprint"] != before["source_fingerprint"]
    assert {**after, "source_fingerprint": None} == {**before, "source_fingerprint": None}
    clean = tmp_path / "clean" / app.name
    shutil.copytree(app, clean, ignore=shutil.ignore_patterns(".flash"))
    build(clean)
    assert made == ["made"]  # the clean build made its manifest
    for name in ("flash_manifest.json", "artifact.tar.gz"):
        assert (app / ".flash" / name).read_bytes() == (clean / ".flash" / name).read_bytes(), name
    text.write_text(text.read_text().replace("workers=2", "workers=(1, 4)"))
    build(app)
    assert made == ["made", "made"]
    assert json.loads((app / ".flash" / "flash_manifest.json").read_text())["resources"]["text-tools"] != after["resources"]["text-tools"]


def test_a_requirement_file_replaced_by_a_pipe_is_refused_not_waited_for(app: Path, tmp_path: Path) -> None:
    """The lock plan's record re-reads the files it was made from: never by waiting on a pipe."""
    extra = tmp_path / "reqs" / "extra.txt"
    extra.parent.mkdir()
    extra.write_text("tinydep==1.0\n")
    (app / "requirements.txt").write_text(f"-r {extra}\n")
    build(app)
    extra.unlink()
    os.mkfifo(extra)
    command = [sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *index_flags()]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "is not a regular file" in result.stderr and "Traceback" not in result.stderr
