"""Trust: whatever happened to ``.flash/``, an incremental build is the clean build, byte for byte.

Each test starts from a good build, damages or interrupts something the way a user (or a
crash) would, builds again, and compares the artifact's bytes with a clean build of the same
sources in another folder of the same name. Where the damage cannot be repaired, the build
must fail with one clear message and leave the previous artifact unchanged.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from wheelfactory import make_wheel

from flash_tasks.cli import main

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint

from util import HELPER


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2, workers={workers})
def work(payload: dict) -> dict:
    return {{"helper": HELPER, **payload}}
'''

SKELETON = "runpod_flash/cli/utils/skeleton_template"


@pytest.fixture(scope="module")
def trust_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links folder: an SDK stand-in with dotfiles, and wheels for the clash and RECORD cases."""
    folder = tmp_path_factory.mktemp("trust-wheels")
    make_wheel(
        folder,
        "runpod-flash",
        "1.21.0",
        files={
            "runpod_flash/__init__.py": "__version__ = '1.21.0'\n",
            "runpod_flash/runtime/__init__.py": "",
            f"{SKELETON}/.env.example": "RUNPOD_API_KEY=\n",
            f"{SKELETON}/.gitignore": ".env\n",
            f"{SKELETON}/main.py": "print('skeleton')\n",
        },
    )
    # Enough bytes that its segment is more than a header and a trailer.
    bulk = "".join(f"LINE_{i} = {i * 7919 % 10007}\n" for i in range(4000))
    make_wheel(folder, "tinydep", "1.0", files={"tinydep/__init__.py": "VALUE = 1\n", "tinydep/bulk.py": bulk})
    make_wheel(folder, "leafdep", "1.0")
    make_wheel(folder, "six", "1.16.0", files={"six.py": "# the six stand-in\n"})
    make_wheel(folder, "paddle-cpu", "3.2.0", files={"paddle/__init__.py": "KIND = 'cpu'\n", "paddle/libphi.py": "CPU = 1\n"})
    make_wheel(folder, "paddle-gpu", "3.2.0", files={"paddle/__init__.py": "KIND = 'gpu'\n", "paddle/libphi.py": "GPU = 1\n"})
    make_wheel(
        folder,
        "oddnames",
        "1.0",
        files={"oddnames/__init__.py": "", "oddnames/a,b.py": "A = 1\n", "oddnames/with space.py": "B = 2\n", 'oddnames/q"uote.py': "C = 3\n"},
    )
    return folder


class Builder:
    def __init__(self, index: Path, capsys: pytest.CaptureFixture[str], scratch: Path) -> None:
        self.index = index
        self.capsys = capsys
        self.scratch = scratch
        self.cleans = 0

    def run(self, app: Path, *extra: str) -> tuple[int, str, str]:
        code = main(["build", "-C", str(app), "--no-index", "--find-links", str(self.index), "-q", *extra])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def ok(self, app: Path, *extra: str) -> None:
        code, out, err = self.run(app, *extra)
        assert code == 0, f"exit {code}\n{out}\n{err}"
        assert "Traceback" not in err

    def clean(self, app: Path, output: str = "artifact.tar.gz") -> bytes:
        """The artifact of a clean build of ``app``'s sources in a fresh folder of the same name."""
        self.cleans += 1
        copy = self.scratch / f"clean-{self.cleans}" / app.name
        shutil.copytree(app, copy, ignore=shutil.ignore_patterns(".flash"))
        self.ok(copy, "-o", output)
        return (copy / ".flash" / output).read_bytes()

    def assert_clean(self, app: Path, output: str = "artifact.tar.gz") -> None:
        artifact = app / ".flash" / output
        assert artifact.is_file(), f"{artifact} is not a file"
        got = artifact.read_bytes()
        gzip.decompress(got)  # a valid gzip stream, whatever else
        assert got == self.clean(app, output), "the incremental artifact differs from a clean build"
        published = (app / ".flash" / "flash_manifest.json").read_bytes()
        assert published == (app / ".flash" / ".build" / "flash_manifest.json").read_bytes()


@pytest.fixture()
def builder(trust_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Builder:
    return Builder(trust_index, capsys, tmp_path / "scratch")


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    root = tmp_path / "trustapp"
    root.mkdir()
    (root / "main.py").write_text(MAIN.format(workers=2))
    (root / "util.py").write_text("HELPER = 1\n")
    (root / "requirements.txt").write_text("tinydep==1.0\n")
    return root


def edit(app: Path, n: int) -> None:
    (app / "util.py").write_text(f"HELPER = {n}\n")


def flip_byte(path: Path, offset: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    at = len(data) // 2 if offset is None else offset
    data[at] ^= 0x55
    with open(path, "r+b") as handle:
        handle.seek(at)
        handle.write(bytes([data[at]]))


def names(artifact: Path) -> set[str]:
    with tarfile.open(artifact, "r:gz") as tar:
        return {m.name.removeprefix("./") for m in tar}


def segments(app: Path) -> list[Path]:
    return sorted((app / ".flash" / ".state" / "segments").glob("tinydep-*.gz"))


# -- 1. interrupted builds ------------------------------------------------------------------


def test_an_interrupted_build_keeps_the_sdk_dotfiles(app: Path, builder: Builder) -> None:
    builder.ok(app)
    assert f"{SKELETON}/.env.example" in names(app / ".flash" / "artifact.tar.gz")
    # What a killed build leaves behind: its marker and a few temporaries.
    state = app / ".flash" / ".state"
    (state / "running").touch()
    (state / ".groups.json.tmp-99999").write_text("half")
    (app / ".flash" / ".build" / ".main.py.tmp-99999").write_text("half")
    edit(app, 2)
    builder.ok(app)
    shipped = names(app / ".flash" / "artifact.tar.gz")
    assert {f"{SKELETON}/.env.example", f"{SKELETON}/.gitignore"} <= shipped
    assert not (state / ".groups.json.tmp-99999").exists()
    assert not (app / ".flash" / ".build" / ".main.py.tmp-99999").exists()
    cached = list((state / "sdk").rglob(".env.example"))
    assert cached, "recovery deleted the SDK cache's dotfiles"
    builder.assert_clean(app)


def test_a_killed_build_then_a_build_equals_a_clean_build(app: Path, builder: Builder, trust_index: Path) -> None:
    builder.ok(app)
    edit(app, 3)
    (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    command = [
        "python", "-m", "flash_tasks", "build", "-C", str(app), "--no-index", "--find-links", str(trust_index), "-q",
    ]
    for delay in (0.3, 0.6, 0.9):
        proc = subprocess.Popen(command, start_new_session=True, stderr=subprocess.DEVNULL)
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        builder.ok(app)
        builder.assert_clean(app)
        leftovers = [p for p in (app / ".flash").rglob("*") if re.search(r"\.tmp(-\d+)?|^\.fresh-|^\.next\.", p.name)]
        assert not leftovers, leftovers
        edit(app, 4 + int(delay * 10))


# -- 2. damaged cached bytes ----------------------------------------------------------------


@pytest.mark.parametrize("damage", ["flip spare", "flip segment", "truncate segment", "flip segment, same stamp"])
def test_damaged_cached_bytes_never_reach_the_artifact(app: Path, builder: Builder, damage: str) -> None:
    builder.ok(app)
    edit(app, 2)
    builder.ok(app)  # now the spare is the previous artifact
    spare = app / ".flash" / ".state" / "spare.tar.gz"
    assert spare.is_file() and segments(app)
    target = spare if damage == "flip spare" else segments(app)[0]
    before = target.stat()
    if damage.startswith("flip"):
        flip_byte(target, 40)
    else:
        with open(target, "r+b") as handle:
            handle.truncate(before.st_size // 2)
    extra: tuple[str, ...] = ()
    if damage.endswith("same stamp"):
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        extra = ("--verify",)  # a stamp that lies is only caught by re-reading
    edit(app, 3)
    builder.ok(app, *extra)
    subprocess.run(["gzip", "-t", str(app / ".flash" / "artifact.tar.gz")], check=True)
    builder.assert_clean(app)


def test_a_damaged_published_artifact_is_rebuilt_by_a_no_op_build(app: Path, builder: Builder) -> None:
    builder.ok(app)
    flip_byte(app / ".flash" / "artifact.tar.gz", 100)
    builder.ok(app)
    builder.assert_clean(app)


# -- 3, 5. state files that are valid JSON but not ours, or garbage ------------------------------


@pytest.mark.parametrize("content", ['{"x": 1}', "[1, 2, 3]", "", "\x00garbage"])
@pytest.mark.parametrize(
    "state_file", ["installed.json", "stage.json", "groups.json", "handlers.json", "files.json", "segments.json", "artifact.json"]
)
def test_foreign_state_files_mean_absent(app: Path, builder: Builder, state_file: str, content: str) -> None:
    builder.ok(app)
    (app / ".flash" / ".state" / state_file).write_text(content)
    edit(app, 2)
    code, out, err = builder.run(app)
    assert code == 0 and "Traceback" not in err, err
    assert "tinydep/bulk.py" in names(app / ".flash" / "artifact.tar.gz")
    builder.assert_clean(app)
    builder.ok(app)  # and the build after that is still right
    builder.assert_clean(app)


def test_garbage_lock_file_is_resolved_again(app: Path, builder: Builder) -> None:
    builder.ok(app)
    lock = app / ".flash" / "locks" / "worker.txt"
    assert lock.is_file()
    lock.write_text("this is not a lock\n==\n")
    builder.ok(app)
    builder.assert_clean(app)
    lock.write_text("garbage again\n")
    builder.ok(app, "--upgrade")
    builder.assert_clean(app)


def test_an_undecodable_record_in_build_does_not_stop_a_reinstall(app: Path, builder: Builder) -> None:
    """A byte of an installed RECORD turned into invalid UTF-8; later a dependency change reinstalls that distribution."""
    builder.ok(app)
    record = next((app / ".flash" / ".build").glob("tinydep-*.dist-info")) / "RECORD"
    data = bytearray(record.read_bytes())
    data[len(data) // 2] = 0x8E
    record.write_bytes(bytes(data))
    builder.ok(app)
    (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    builder.ok(app)
    builder.assert_clean(app)


def test_a_lock_pin_changed_by_hand_is_noticed(app: Path, builder: Builder) -> None:
    """A lock that still parses but was edited must not pick what gets installed."""
    (app / "requirements.txt").write_text("tinydep\n")
    builder.ok(app)
    lock = app / ".flash" / "locks" / "worker.txt"
    text = lock.read_text()
    assert "tinydep==1.0" in text
    lock.write_text(text.replace("tinydep==1.0", "tinydep==2.0"))
    edit(app, 5)
    builder.ok(app)
    builder.assert_clean(app)


# -- 4, 5. the layout of .flash itself -----------------------------------------------------------


def test_artifact_path_is_a_directory(app: Path, builder: Builder) -> None:
    builder.ok(app)
    artifact = app / ".flash" / "artifact.tar.gz"
    artifact.unlink()
    artifact.mkdir()
    (artifact / "junk").write_text("x")
    builder.ok(app)
    builder.assert_clean(app)
    (app / ".flash" / "artifact.tar.gz").unlink()
    (app / ".flash" / "artifact.tar.gz").mkdir()
    code, out, err = builder.run(app, "--json")
    assert code == 0 and "Traceback" not in err + out
    assert json.loads(out)["artifact"]


def test_lock_file_is_a_directory(app: Path, builder: Builder) -> None:
    builder.ok(app)
    (app / ".flash" / ".lock").unlink()
    (app / ".flash" / ".lock").mkdir()
    edit(app, 2)
    builder.ok(app)
    builder.assert_clean(app)


def test_flash_is_a_file(app: Path, builder: Builder) -> None:
    (app / ".flash").write_text("not a folder")
    builder.ok(app)
    builder.assert_clean(app)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_flash_is_one_clear_error(app: Path, builder: Builder) -> None:
    builder.ok(app)
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    os.chmod(app / ".flash", 0o500)
    try:
        edit(app, 2)
        code, out, err = builder.run(app)
    finally:
        os.chmod(app / ".flash", 0o755)
    assert code == 1 and "Traceback" not in err and "hint:" in err
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


@pytest.mark.parametrize("victim", ["doit.db flipped", "doit.db garbage", "doit.db folder", "scan flipped", "manifest in .build flipped"])
def test_damaged_records_and_outputs_heal(app: Path, builder: Builder, victim: str) -> None:
    builder.ok(app)
    flash = app / ".flash"
    if victim == "doit.db flipped":
        flip_byte(flash / ".doit.db", 120)
    elif victim == "doit.db garbage":
        (flash / ".doit.db").write_bytes(b"SQLite format 3\x00" + b"\xff" * 3000)
    elif victim == "doit.db folder":
        (flash / ".doit.db").unlink()
        (flash / ".doit.db").mkdir()
    elif victim == "scan flipped":
        scan = next((flash / ".state" / "scan").glob("*.json"))
        text = scan.read_text()
        scan.write_text(text.replace("worker", "wrkr"))  # still valid JSON
    else:
        manifest = flash / ".build" / "flash_manifest.json"
        manifest.write_text(manifest.read_text().replace("worker", "wrkr"))
    builder.ok(app)
    builder.assert_clean(app)
    edit(app, 7)
    builder.ok(app)
    builder.assert_clean(app)


# -- 6. output names -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".lock", ".doit.db", "flash_manifest.json", "locks", ".build", ".state", ".hidden.tar.gz"])
def test_output_names_that_collide_with_the_tool_are_refused(app: Path, builder: Builder, name: str) -> None:
    builder.ok(app)
    lock_before = (app / ".flash" / ".lock").stat().st_ino
    artifact = (app / ".flash" / "artifact.tar.gz").read_bytes()
    code, out, err = builder.run(app, "-o", name)
    assert code == 2, err
    assert "Traceback" not in err and len(re.findall(r"(?m)^error: ", err)) == 1 and "hint:" in err
    assert (app / ".flash" / ".lock").stat().st_ino == lock_before
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == artifact
    builder.ok(app)


def test_a_plain_output_name_works(app: Path, builder: Builder) -> None:
    builder.ok(app, "-o", "my-app.tar.gz")
    builder.assert_clean(app, "my-app.tar.gz")


# -- 8. .build is output, not input ----------------------------------------------------------------


@pytest.mark.parametrize(
    "victim", ["main.py edited", "main.py deleted", "handler edited", "sdk file edited", "sdk dotfile deleted", "dependency file edited"]
)
def test_hand_edits_in_build_folder_never_ship(app: Path, builder: Builder, victim: str) -> None:
    builder.ok(app)
    build = app / ".flash" / ".build"
    target = {
        "main.py edited": build / "main.py",
        "main.py deleted": build / "main.py",
        "handler edited": build / "handler_worker.py",
        "sdk file edited": build / "runpod_flash" / "__init__.py",
        "sdk dotfile deleted": build / SKELETON / ".env.example",
        "dependency file edited": build / "tinydep" / "bulk.py",
    }[victim]
    original = target.read_bytes()
    if victim.endswith("deleted"):
        target.unlink()
    else:
        target.write_bytes(original + b"\nHACKED = True\n")
    if victim == "dependency file edited":
        # The dependency's cached segment must be rebuilt for the file to be read again.
        for seg in segments(app):
            seg.unlink()
    edit(app, 2)
    builder.ok(app)
    builder.assert_clean(app)
    if victim != "dependency file edited":
        assert target.read_bytes() == original, "the changed file in .flash/.build was not restored"


def test_verify_rereads_and_restores_a_dependency_file(app: Path, builder: Builder) -> None:
    builder.ok(app)
    target = app / ".flash" / ".build" / "tinydep" / "bulk.py"
    original = target.read_bytes()
    st = target.stat()
    target.write_bytes(original.replace(b"LINE_1 ", b"LINE_X "))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    for seg in segments(app):
        seg.unlink()
    builder.ok(app, "--verify")
    assert target.read_bytes() == original
    builder.assert_clean(app)


# -- 9. files owned twice ------------------------------------------------------------------------


def test_app_file_clashing_with_a_dependency_is_refused(app: Path, builder: Builder) -> None:
    builder.ok(app)
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    (app / "six.py").write_text("# the app's own six\n")
    (app / "requirements.txt").write_text("tinydep==1.0\nsix==1.16.0\n")
    code, out, err = builder.run(app)
    assert code == 1, err
    assert "Traceback" not in err and "six.py" in err and "six" in err and "hint:" in err
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before
    # Dropping the requirement builds again, with the app's own six.py.
    (app / "requirements.txt").write_text("tinydep==1.0\n")
    builder.ok(app)
    builder.assert_clean(app)
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        member = tar.extractfile("./six.py") or tar.extractfile("six.py")
        assert member is not None and member.read() == b"# the app's own six\n"


def test_two_distributions_owning_the_same_files_are_refused(app: Path, builder: Builder) -> None:
    builder.ok(app)
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    (app / "requirements.txt").write_text("tinydep==1.0\npaddle-gpu==3.2.0\n")
    (app / "main.py").write_text(MAIN.format(workers=2).replace('workers=2', 'workers=2, dependencies=["paddle-cpu==3.2.0"]'))
    code, out, err = builder.run(app)
    assert code == 1, err
    assert "Traceback" not in err and "paddle-cpu" in err and "paddle-gpu" in err and "paddle/" in err
    assert "--exclude" in err
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


# -- 10. RECORD is CSV -----------------------------------------------------------------------------


def test_quoted_record_paths_ship(app: Path, builder: Builder) -> None:
    (app / "requirements.txt").write_text("oddnames==1.0\n")
    builder.ok(app)
    shipped = names(app / ".flash" / "artifact.tar.gz")
    assert {"oddnames/a,b.py", "oddnames/with space.py", 'oddnames/q"uote.py'} <= shipped
    builder.assert_clean(app)


@pytest.fixture(autouse=True)
def _no_stray_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    yield


# -- 11, 12. requirement files that are not requirement files --------------------------------------


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "big", "/etc/passwd"])
def test_requirement_includes_are_bounded_and_never_echoed(app: Path, builder: Builder, tmp_path: Path, target: str) -> None:
    builder.ok(app)
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    if target == "fifo":
        path = tmp_path / "pipe"
        os.mkfifo(path)
    elif target == "big":
        path = tmp_path / "big.txt"
        path.write_text("leafdep\n" + "# padding\n" * 600_000)
    else:
        path = Path(target)
        if not path.exists():
            pytest.skip(f"{target} does not exist here")
    (app / "requirements.txt").write_text(f"tinydep==1.0\n-r {path}\n")
    command = ["python", "-m", "flash_tasks", "build", "-C", str(app), "--no-index", "--find-links", str(builder.index)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "hint:" in result.stderr
    assert re.search(r"(?m)^requirements\.txt:2: error: ", result.stderr), result.stderr
    if target == "/etc/passwd":
        first_line = Path(target).read_text().splitlines()[0]
        assert first_line not in result.stderr and "root:" not in result.stderr
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


@pytest.mark.parametrize("damage", ["flip", "other json", "deploy annotation"])
def test_the_published_manifest_is_checked_by_a_no_op_build(app: Path, builder: Builder, damage: str) -> None:
    builder.ok(app)
    published = app / ".flash" / "flash_manifest.json"
    original = json.loads(published.read_text())
    if damage == "flip":
        published.write_text(published.read_text().replace('"worker"', '"wOrker"', 1))
    elif damage == "other json":
        published.write_text('{"resources": {}}')
    else:
        # What runpod-flash's deploy records next to the artifact is kept as it is.
        annotated = json.loads(published.read_text())
        annotated["resources_endpoints"] = {"worker": "https://example.invalid/worker"}
        annotated["resources"]["worker"]["endpoint_id"] = "ep-123"
        published.write_text(json.dumps(annotated, indent=2))
    before = published.read_bytes()
    builder.ok(app)
    if damage == "deploy annotation":
        assert published.read_bytes() == before
    else:
        assert json.loads(published.read_text()) == original
        builder.assert_clean(app)


# -- state that checks itself but is out of date (found by tests/test_model.py) -----------------------


@pytest.mark.parametrize("state_file", ["files.json", "warnings.json", "install-report.json", "groups.json", "stage.json"])
def test_a_state_file_replaced_by_a_folder(app: Path, builder: Builder, state_file: str) -> None:
    builder.ok(app)
    target = app / ".flash" / ".state" / state_file
    target.unlink()
    target.mkdir()
    (target / "inside").write_text("x")
    edit(app, 2)
    builder.ok(app)
    builder.assert_clean(app)


def test_an_earlier_install_record_put_back(app: Path, builder: Builder) -> None:
    builder.ok(app)
    installed = app / ".flash" / ".state" / "installed.json"
    old = installed.read_bytes()
    (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    builder.ok(app)
    installed.write_bytes(old)
    edit(app, 2)
    builder.ok(app)
    builder.assert_clean(app)


@pytest.mark.parametrize("change", ["requirement", "workers", "edit"])
def test_an_earlier_state_folder_put_back(app: Path, builder: Builder, tmp_path: Path, change: str) -> None:
    builder.ok(app)
    saved = tmp_path / "saved"
    shutil.copytree(app / ".flash", saved)
    if change == "edit":
        edit(app, 2)
    elif change == "requirement":
        (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    else:
        (app / "main.py").write_text((app / "main.py").read_text().replace("workers=2", "workers=5"))
    builder.ok(app)
    shutil.rmtree(app / ".flash" / ".state")
    shutil.copytree(saved / ".state", app / ".flash" / ".state")
    builder.ok(app)
    builder.assert_clean(app)
