"""The SDK's package in ``.flash/.build``: copied from the shared cache straight into the build.

A cold build of an app whose SDK the shared cache already holds copies each file from the
cache into ``.flash/.build/runpod_flash``, checked against its digest on the way, and keeps no
second copy under ``.flash/.state/sdk``. These tests damage the shared cache, the app's own
copy and the build folder, and leave behind what a kill would, then compare every artifact
byte for byte with a build of the same sources without any cache.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from wheelfactory import make_wheel

from flash_tasks.cache import TreeAction, restore_tree, store_tree, tree_files
from flash_tasks.cache.local import LocalCache
from flash_tasks.cli import main
from flash_tasks.deps import sdk
from flash_tasks.handlers import RESOURCE_CONFIG_PATH
from flash_tasks.store import Blob, Stamp, TreeRecord, copy_recorded, hash_file, load, make_folders, record_tree

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2)
def work(payload: dict) -> dict:
    return payload
'''

BULK = "".join(f"CONSTANT_{i} = {i * 7919 % 10007}\n" for i in range(2000))
#: An SDK stand-in with nested folders, dotfiles and the placeholder the handlers phase replaces.
SDK_FILES = {
    "runpod_flash/__init__.py": "__version__ = '1.21.0'\n",
    "runpod_flash/runtime/__init__.py": "",
    "runpod_flash/runtime/_flash_resource_config.py": "RESOURCE_CONFIG = {}\n",
    "runpod_flash/core/__init__.py": "",
    "runpod_flash/core/api/client.py": BULK,
    "runpod_flash/cli/utils/skeleton_template/.env.example": "RUNPOD_API_KEY=\n",
    "runpod_flash/cli/utils/skeleton_template/main.py": "print('skeleton')\n",
}
VICTIM = "runpod_flash/core/api/client.py"


@pytest.fixture(scope="module")
def sdk_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sdk-wheels")
    make_wheel(folder, "runpod-flash", "1.21.0", files=SDK_FILES)
    make_wheel(folder, "tinydep", "1.0", files={"tinydep/__init__.py": "VALUE = 1\n"})
    return folder


class Builds:
    def __init__(self, index: Path, capsys: pytest.CaptureFixture[str], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.index = index
        self.capsys = capsys
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.cleans = 0
        #: Where the SDK was fetched through uv (the shared cache did not give it), clean builds aside.
        self.fetched: list[Path] = []
        real = sdk.bundle_runpod_flash

        def counting(target: Path, *args: Any, **kwargs: Any) -> Path:
            if not target.resolve().is_relative_to(self.tmp.resolve() / "clean"):
                self.fetched.append(target)
            return real(target, *args, **kwargs)

        monkeypatch.setattr(sdk, "bundle_runpod_flash", counting)

    def run(self, app: Path, *extra: str) -> tuple[int, str]:
        code = main(["build", "-C", str(app), "--no-index", "--find-links", str(self.index), "-q", *extra])
        return code, self.capsys.readouterr().err

    def ok(self, app: Path, *extra: str) -> str:
        code, err = self.run(app, *extra)
        assert code == 0 and "Traceback" not in err, err
        return err

    def assert_clean(self, app: Path) -> None:
        """The artifact equals, byte for byte, a build of the same sources in a fresh folder of the same name with no cache."""
        self.cleans += 1
        copy = self.tmp / "clean" / str(self.cleans) / app.name
        shutil.copytree(app, copy, ignore=shutil.ignore_patterns(".flash"))
        with self.monkeypatch.context() as m:
            m.setenv("FLASH_TASKS_CACHE_MAX", "0")
            self.ok(copy)
        got = (app / ".flash" / "artifact.tar.gz").read_bytes()
        gzip.decompress(got)
        assert got == (copy / ".flash" / "artifact.tar.gz").read_bytes(), "the artifact differs from a build without caches"


@pytest.fixture()
def builds(sdk_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Builds:
    return Builds(sdk_index, capsys, tmp_path, monkeypatch)


def make_app(parent: Path) -> Path:
    root = parent / "app"
    root.mkdir(parents=True)
    (root / "main.py").write_text(MAIN)
    (root / "util.py").write_text("HELPER = 1\n")
    (root / "requirements.txt").write_text("tinydep==1.0\n")
    return root


def sdk_tree(app: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry of the build's SDK copy: its kind, permission bits and, for files, bytes."""
    root = app / ".flash" / ".build"
    out: dict[str, tuple[str, int, bytes]] = {}
    for path in sorted((root / "runpod_flash").rglob("*")):
        info = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        out[path.relative_to(root).as_posix()] = (kind, info.st_mode & 0o777, path.read_bytes() if kind == "file" else b"")
    return out


def local_cache() -> LocalCache:
    return LocalCache(Path(os.environ["FLASH_TASKS_CACHE_DIR"]), 1 << 30)


def sdk_action(local: LocalCache) -> tuple[Path, TreeAction]:
    """The shared cache's record of the SDK's tree, and where it is."""
    found = []
    for path in (local.base / "ac").rglob("*"):
        record = load(TreeAction, path) if path.is_file() else None
        if record is not None and record.kind == "sdk":
            found.append((path, record))
    assert len(found) == 1, found
    return found[0]


def assert_copy_recorded(app: Path) -> None:
    """``sdk-copy.json`` names exactly the SDK files in ``.build`` (the handlers' module aside), each with its bytes' digest and stamp."""
    build = app / ".flash" / ".build"
    record = load(TreeRecord, app / ".flash" / ".state" / "sdk-copy.json")
    assert record is not None
    on_disk = {p.relative_to(build).as_posix() for p in (build / "runpod_flash").rglob("*") if p.is_file()}
    assert set(record.files) == on_disk - {RESOURCE_CONFIG_PATH}
    for rel, entry in record.files.items():
        assert entry.blob == hash_file(build / rel), rel
        assert entry.stamp == Stamp.of(build / rel), rel


def expected_bytes(rel: str) -> bytes:
    return SDK_FILES[rel].encode()


# -- the cold build of a second app --------------------------------------------------------------


def test_a_cold_build_copies_the_sdk_from_the_shared_cache_into_the_build(builds: Builds, tmp_path: Path) -> None:
    first = make_app(tmp_path / "one")
    builds.ok(first)
    assert len(builds.fetched) == 1
    second = make_app(tmp_path / "two")
    builds.ok(second)
    assert len(builds.fetched) == 1, "the second app fetched the SDK again"
    assert not (second / ".flash" / ".state" / "sdk").exists(), "the app kept a second copy of what the shared cache holds"
    # The same files, bytes, modes and folders as the copy made from the fetched package.
    assert sdk_tree(second) == sdk_tree(first)
    assert (second / ".flash" / ".build" / VICTIM).read_bytes() == expected_bytes(VICTIM)
    assert_copy_recorded(second)
    builds.assert_clean(second)
    # Nothing to do the next time, with every byte read again.
    before = (second / ".flash" / "artifact.tar.gz").read_bytes()
    builds.ok(second, "--verify")
    assert (second / ".flash" / "artifact.tar.gz").read_bytes() == before
    assert len(builds.fetched) == 1


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "missing", "grown"])
def test_a_damaged_sdk_file_in_the_shared_cache_never_ships(builds: Builds, tmp_path: Path, damage: str) -> None:
    builds.ok(make_app(tmp_path / "one"))
    local = local_cache()
    _, action = sdk_action(local)
    blob = local.blob_path(action.files[VICTIM].blob.sha256)
    data = bytearray(blob.read_bytes())
    if damage == "flipped byte":
        data[len(data) // 2] ^= 0x55
        blob.write_bytes(bytes(data))
    elif damage == "truncated":
        blob.write_bytes(bytes(data[: len(data) // 2]))
    elif damage == "grown":
        blob.write_bytes(bytes(data) + b"EXTRA = 1\n")
    else:
        blob.unlink()
    second = make_app(tmp_path / "two")
    builds.ok(second)
    assert (second / ".flash" / ".build" / VICTIM).read_bytes() == expected_bytes(VICTIM)
    assert not list((second / ".flash" / ".build").glob(".*sdk*")), "a partial copy was left in .flash/.build"
    assert_copy_recorded(second)
    builds.assert_clean(second)
    # Healed: fetched again once, and the cache holds the right bytes under that name again.
    assert len(builds.fetched) == 2
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == action.files[VICTIM].blob.sha256
    third = make_app(tmp_path / "three")
    builds.ok(third)
    assert len(builds.fetched) == 2
    assert sdk_tree(third) == sdk_tree(second)


@pytest.mark.parametrize("damage", ["not JSON", "a file outside the package", "a path leaving the tree"])
def test_a_damaged_sdk_record_in_the_shared_cache_is_not_followed(builds: Builds, tmp_path: Path, damage: str) -> None:
    builds.ok(make_app(tmp_path / "one"))
    path, action = sdk_action(local_cache())
    entry = action.files[VICTIM]
    if damage == "not JSON":
        path.write_bytes(path.read_bytes()[:-7])
    else:
        rel = "elsewhere/client.py" if damage == "a file outside the package" else "runpod_flash/../../evil.py"
        path.write_text(TreeAction(kind="sdk", files={**action.files, rel: entry}).model_dump_json())
    second = make_app(tmp_path / "two")
    builds.ok(second)
    assert len(builds.fetched) == 2
    assert not (tmp_path / "two" / "evil.py").exists() and not (second / ".flash" / "evil.py").exists()
    assert sdk_tree(second) == sdk_tree(tmp_path / "one" / "app")
    assert_copy_recorded(second)
    builds.assert_clean(second)
    # The record was made again from the fetched package.
    assert sdk_action(local_cache())[1].files == action.files


# -- the build's copy and the app's own copy -----------------------------------------------------


@pytest.mark.parametrize("shared", ["shared cache", "no shared cache"])
def test_a_hand_edited_sdk_file_is_restored_without_an_own_copy(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: str) -> None:
    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    builds.ok(app)
    assert not (app / ".flash" / ".state" / "sdk").exists()
    if shared == "no shared cache":
        monkeypatch.setenv("FLASH_TASKS_CACHE_MAX", "0")
    victim = app / ".flash" / ".build" / VICTIM
    victim.write_bytes(victim.read_bytes() + b"HACKED = True\n")
    (app / "util.py").write_text("HELPER = 2\n")
    builds.ok(app)
    assert victim.read_bytes() == expected_bytes(VICTIM)
    assert len(builds.fetched) == (1 if shared == "shared cache" else 2)
    assert_copy_recorded(app)
    builds.assert_clean(app)


def damaged_own_copy(builds: Builds, tmp_path: Path, *, keep_stamp: bool) -> tuple[Path, Path]:
    """An app built once, then one byte of a file of its own copy of the SDK flipped (``keep_stamp``:
    same size, mtime and inode, so only the bytes tell); the app and that file."""
    app = make_app(tmp_path / "one")
    builds.ok(app)
    own = next((app / ".flash" / ".state" / "sdk").glob(f"*/{VICTIM}"))
    st = own.stat()
    data = bytearray(own.read_bytes())
    data[len(data) // 2] ^= 0x55
    own.write_bytes(bytes(data))
    if keep_stamp:
        os.utime(own, ns=(st.st_atime_ns, st.st_mtime_ns))
    return app, own


@pytest.mark.parametrize("verify", [False, True])
def test_a_damaged_own_copy_of_the_sdk_is_not_copied(builds: Builds, tmp_path: Path, verify: bool) -> None:
    """The app's own copy (made when the SDK was fetched) changed: with or without its stamp kept, it never reaches .build."""
    app, own = damaged_own_copy(builds, tmp_path, keep_stamp=verify)
    # The build's copy must be made again from somewhere.
    (app / ".flash" / ".build" / VICTIM).unlink()
    (app / "util.py").write_text("HELPER = 2\n")
    builds.ok(app, *(["--verify"] if verify else []))
    assert (app / ".flash" / ".build" / VICTIM).read_bytes() == expected_bytes(VICTIM)
    assert not own.exists() or own.read_bytes() == expected_bytes(VICTIM)
    assert_copy_recorded(app)
    builds.assert_clean(app)


def test_a_stamp_keeping_change_to_the_own_copy_is_caught_while_copying(builds: Builds, tmp_path: Path) -> None:
    """Without --verify the own copy is trusted by its stamps, but each byte copied into .build is still checked."""
    app, _own = damaged_own_copy(builds, tmp_path, keep_stamp=True)
    (app / ".flash" / ".build" / VICTIM).unlink()
    (app / "util.py").write_text("HELPER = 2\n")
    builds.ok(app)
    assert (app / ".flash" / ".build" / VICTIM).read_bytes() == expected_bytes(VICTIM)
    assert_copy_recorded(app)
    builds.assert_clean(app)


# -- kills ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["while restoring", "before the rename", "before the record", "after removing a file"])
def test_a_build_killed_while_copying_the_sdk_is_healed(builds: Builds, tmp_path: Path, moment: str) -> None:
    """What a kill leaves at each point of the copy from the shared cache; the next build heals it."""
    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    builds.ok(app)
    flash = app / ".flash"
    build = flash / ".build"
    staging = build / ".flash-sdk-restore-99999-1"
    if moment in ("while restoring", "before the rename"):
        shutil.copytree(build / "runpod_flash", staging)
        if moment == "while restoring":
            (staging / VICTIM.removeprefix("runpod_flash/")).write_bytes(b"CONST")  # half written
        shutil.rmtree(build / "runpod_flash")
    elif moment == "before the record":
        # The new copy is in place (new inodes), the record is the previous one.
        shutil.copytree(build / "runpod_flash", staging)
        shutil.rmtree(build / "runpod_flash")
        staging.rename(build / "runpod_flash")
    else:
        (build / VICTIM).unlink()
    (flash / ".state" / "running").touch()
    (app / "util.py").write_text("HELPER = 2\n")
    builds.ok(app)
    assert not staging.exists()
    assert (build / VICTIM).read_bytes() == expected_bytes(VICTIM)
    assert len(builds.fetched) == 1
    assert_copy_recorded(app)
    builds.assert_clean(app)


def test_an_interrupted_restore_leaves_the_build_folder_as_it_was(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    app = make_app(tmp_path / "two")
    real = LocalCache.fetch_new
    calls: list[str] = []

    def interrupted(self: LocalCache, blob: Blob, dest: str, mode: int) -> Any:
        calls.append(dest)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, blob, dest, mode)

    with monkeypatch.context() as m:
        m.setattr(LocalCache, "fetch_new", interrupted)
        try:
            code, _ = builds.run(app)
        except KeyboardInterrupt:
            code = 130
    assert code != 0 and len(calls) == 3
    build = app / ".flash" / ".build"
    assert not (build / "runpod_flash").exists() and not list(build.glob(".flash-sdk-*"))
    builds.ok(app)
    assert_copy_recorded(app)
    builds.assert_clean(app)


# -- the pieces ----------------------------------------------------------------------------------


def test_copy_recorded_checks_the_bytes_and_records_the_copy(tmp_path: Path) -> None:
    src = tmp_path / "src.py"
    src.write_bytes(BULK.encode())
    blob = hash_file(src)
    assert blob is not None
    old_umask = os.umask(0o077)
    try:
        record = copy_recorded(src, tmp_path / "copy.py", blob, 0o755)
    finally:
        os.umask(old_umask)
    assert record is not None
    assert (tmp_path / "copy.py").read_bytes() == src.read_bytes()
    assert record.blob == hash_file(tmp_path / "copy.py") and record.stamp == Stamp.of(tmp_path / "copy.py")
    assert record.stamp.mode == 0o755
    # Other bytes, fewer or more of them: no copy, no record.
    for name, wrong in (("flipped", BULK.replace("CONSTANT_5 ", "CONSTANT_6 ")), ("short", BULK[:-1]), ("long", BULK + "\n")):
        src.write_text(wrong)
        assert copy_recorded(src, tmp_path / f"{name}.py", blob, 0o644) is None
        assert not (tmp_path / f"{name}.py").exists()
    # An existing file is never written over.
    (tmp_path / "there.py").write_text("mine\n")
    src.write_text(BULK)
    with pytest.raises(FileExistsError):
        copy_recorded(src, tmp_path / "there.py", blob, 0o644)
    assert (tmp_path / "there.py").read_text() == "mine\n"


def test_make_folders_makes_each_folder_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_folders(root, ["a.py", "x/b.py", "x/y/z/c.py", "x/y/d.py", "w/e.py"])
    made = sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))
    assert made == ["w", "x", "x/y", "x/y/z"]


def _shared_tree(tmp_path: Path) -> tuple[str, dict[str, str]]:
    """A tree stored in the shared cache: its material and files."""
    source = tmp_path / "source"
    files = {"pkg/__init__.py": "A = 1\n", "pkg/sub/tool.sh": "#!/bin/sh\n", "pkg/.hidden": "x\n"}
    for rel, text in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_text(text)
    os.chmod(source / "pkg/sub/tool.sh", 0o755)
    material = f"test-tree-{tmp_path.name}"
    store_tree("sdk", material, source, record_tree(source, sorted(files)).files)
    return material, files


def test_restore_tree_replaces_the_target_with_the_checked_folder(tmp_path: Path) -> None:
    material, files = _shared_tree(tmp_path)
    target = tmp_path / "build" / "pkg"
    target.mkdir(parents=True)
    (target / "stale.py").write_text("old\n")
    restored = restore_tree("sdk", material, target, folder="pkg")
    assert restored is not None and sorted(restored) == sorted(files)
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == [".hidden", "__init__.py", "sub/tool.sh"]
    assert (target / "sub" / "tool.sh").stat().st_mode & 0o777 == 0o755
    for rel, record in restored.items():
        path = tmp_path / "build" / rel
        assert path.read_text() == files[rel] and record.blob == hash_file(path) and record.stamp == Stamp.of(path)
    assert not list((tmp_path / "build").glob(".flash-sdk-*"))


def test_restore_tree_with_a_damaged_blob_leaves_the_target(tmp_path: Path) -> None:
    material, _ = _shared_tree(tmp_path)
    local = local_cache()
    shared = tree_files("sdk", material)
    assert shared is not None
    blob = local.blob_path(shared["pkg/sub/tool.sh"].blob.sha256)
    blob.write_bytes(b"X" * shared["pkg/sub/tool.sh"].blob.size)  # the same size, other bytes
    target = tmp_path / "build" / "pkg"
    target.mkdir(parents=True)
    (target / "kept.py").write_text("kept\n")
    assert restore_tree("sdk", material, target, folder="pkg") is None
    assert [p.name for p in target.iterdir()] == ["kept.py"]
    assert not blob.exists(), "the damaged blob was kept"
    assert not list((tmp_path / "build").glob(".flash-sdk-*"))
    # A folder the tree's files do not all lie in is refused without writing anything.
    assert restore_tree("sdk", material, tmp_path / "other", folder="pkg/sub") is None
    assert not (tmp_path / "other").exists()
