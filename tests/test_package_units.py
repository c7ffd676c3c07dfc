"""Unit tests for what the build's archive step uses: package.plan_segments, package.publish
and archive.replace_tail.

plan_segments is given a real (offline, tiny) build's state and then that state
with one field changed; publish and replace_tail get gzip segments written
here, and every claim about the artifact compares bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from pathlib import Path

import pytest
from wheelfactory import make_wheel

from flash_tasks import archive, package
from flash_tasks.archive import Entry, replace_tail, write_segment
from flash_tasks.config import BuildConfig
from flash_tasks.errors import BuildError
from flash_tasks.runner import run_tasks
from flash_tasks.store import Blob

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2, dependencies={deps!r})
def work(x: int) -> int:
    return x
'''


# -- plan_segments ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two distributions that install into one namespace folder, ``sharedns/``."""
    folder = tmp_path_factory.mktemp("shared-wheels")
    make_wheel(folder, "nsone", "1.0", files={"sharedns/one.py": "ONE = 1\n"})
    make_wheel(folder, "nstwo", "1.0", files={"sharedns/two.py": "TWO = 2\n"})
    return folder


def make_config(root: Path, local_index: Path, shared_index: Path, deps: list[str], python: str | None = None) -> BuildConfig:
    app = root / "app"
    app.mkdir(parents=True, exist_ok=True)
    (app / "main.py").write_text(MAIN.format(deps=deps), encoding="utf-8")
    (app / "helper.py").write_text("HELPER = 1\n", encoding="utf-8")
    return BuildConfig(app_dir=app, find_links=(str(local_index), str(shared_index)), no_index=True, python_version=python)


@pytest.fixture()
def built(tmp_path: Path, local_index: Path, shared_index: Path) -> BuildConfig:
    config = make_config(tmp_path, local_index, shared_index, ["tinydep==1.0", "middep", "nsone", "nstwo"])
    run_tasks(config)
    return config


def rewrite_distribution(config: BuildConfig, name: str, **changes: object) -> None:
    """Change one distribution's install record, keeping the record valid (its digest recomputed)."""
    from flash_tasks.deps.installer import InstallState, load_install_state

    state = load_install_state(config.paths.install_json)
    assert state is not None
    dists = dict(state.distributions)
    dists[name] = dists[name].model_copy(update=changes)
    changed = InstallState.model_validate({**state.model_dump(), "distributions": dists, "digest": ""})
    changed = changed.model_copy(update={"digest": changed.computed_digest()})
    config.paths.install_json.write_text(changed.model_dump_json(), encoding="utf-8")


def segment_names(config: BuildConfig) -> dict[str, list[str]]:
    _fresh, cached = package.plan_segments(config)
    return {group.name: [p.name for p in group.paths] for group in cached}


def test_fresh_segment_holds_sources_generated_files_sdk_and_shared_tops(built: BuildConfig) -> None:
    fresh, cached = package.plan_segments(built)
    assert {"main.py", "helper.py", "handler_worker.py", "flash_manifest.json", "runpod_flash/__init__.py"} <= set(fresh)
    assert {"sharedns/one.py", "sharedns/two.py"} <= set(fresh)  # shared by two owners: never cached
    assert fresh == sorted(set(fresh))
    assert not any(f.split("/")[0] in {"tinydep", "middep", "leafdep"} for f in fresh)
    assert [group.name for group in cached] == ["leafdep-1.0", "middep-1.0", "nsone-1.0", "nstwo-1.0", "tinydep-1.0"]
    tops = {group.name: group.own_tops for group in cached}
    assert tops["tinydep-1.0"] == ["tinydep", "tinydep-1.0.dist-info"]
    assert tops["nsone-1.0"] == ["nsone-1.0.dist-info"]  # only its metadata is its own
    for group in cached:
        assert all(p.parent == built.paths.segments for p in group.paths)


def test_segment_key_changes_with_the_content_hash_and_only_for_that_distribution(built: BuildConfig) -> None:
    before = segment_names(built)
    rewrite_distribution(built, "tinydep", content_hash="sha256:" + "0" * 64)
    after = segment_names(built)
    assert after["tinydep-1.0"] != before["tinydep-1.0"]
    assert {k: v for k, v in after.items() if k != "tinydep-1.0"} == {k: v for k, v in before.items() if k != "tinydep-1.0"}


def test_segment_key_changes_with_the_archive_timestamp(built: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    before = segment_names(built)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    after = segment_names(built)
    assert set(after) == set(before)
    assert all(after[name] != before[name] for name in before)


def test_big_distribution_is_split_into_numbered_chunks(built: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    rewrite_distribution(built, "tinydep", size=2 * package.CHUNK_BYTES + 1)
    names = segment_names(built)["tinydep-1.0"]
    assert len(names) == 3
    assert [n.rsplit(".", 2)[-2] for n in names] == ["1of3", "2of3", "3of3"]
    assert len({n.rsplit(".", 2)[0] for n in names}) == 1  # one key for all chunks


def test_python_version_change_gives_native_wheels_new_segments(tmp_path: Path, local_index: Path, shared_index: Path) -> None:
    """nativedep 1.0 has a cp311 and a cp312 wheel: same name and version, other bytes."""
    config_311 = make_config(tmp_path, local_index, shared_index, ["nativedep"], python="3.11")
    run_tasks(config_311)
    names_311 = segment_names(config_311)["nativedep-1.0"]
    config_312 = make_config(tmp_path, local_index, shared_index, ["nativedep"], python="3.12")
    run_tasks(config_312)
    names_312 = segment_names(config_312)["nativedep-1.0"]
    assert names_311 != names_312
    artifact = config_312.paths.artifact
    with tarfile.open(artifact, "r:gz") as tar:
        member = tar.extractfile("./nativedep/__init__.py")
        assert member is not None and member.read() == b"NATIVE = 312\n"


# -- segments for publish and replace_tail ----------------------------------------------------------


def segment(tmp_path: Path, name: str, files: dict[str, bytes], *, root: bool = False) -> Path:
    """A gzip member of tar records for ``files`` (no end marker), as the build writes them."""
    src = tmp_path / f"src-{name}"
    entries = []
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
        entries.append(Entry(rel, src / rel, False))
    out = tmp_path / f"{name}.gz"
    write_segment(entries, out, include_root=root)
    return out


def end_marker(tmp_path: Path) -> bytes:
    """The end-of-archive member: what assembling no segments at all writes."""
    out = tmp_path / "empty.tar.gz"
    archive.assemble([], out)
    data = out.read_bytes()
    assert gzip.decompress(data) == b"\0" * 1024
    return data


def contents(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_replace_tail_keeps_the_head_and_appends_segments(tmp_path: Path) -> None:
    a = segment(tmp_path, "a", {"a.txt": b"A" * 5000}, root=True)
    b = segment(tmp_path, "b", {"b.txt": b"old tail"})
    c = segment(tmp_path, "c", {"c.txt": b"new tail"})
    d = segment(tmp_path, "d", {"d.txt": b"more"})
    end = end_marker(tmp_path)
    target = tmp_path / "work.tar.gz"
    target.write_bytes(a.read_bytes() + b.read_bytes() + end)
    size = replace_tail(target, a.stat().st_size, [c, d])
    expected = a.read_bytes() + c.read_bytes() + d.read_bytes() + end
    assert target.read_bytes() == expected
    assert size == len(expected)
    assert contents(expected) == {"./a.txt": b"A" * 5000, "./c.txt": b"new tail", "./d.txt": b"more"}


def test_replace_tail_with_nothing_kept(tmp_path: Path) -> None:
    c = segment(tmp_path, "c", {"c.txt": b"only"}, root=True)
    target = tmp_path / "work.tar.gz"
    target.write_bytes(b"x" * 10_000)
    assert replace_tail(target, 0, [c]) == c.stat().st_size + len(end_marker(tmp_path))
    assert target.read_bytes() == c.read_bytes() + end_marker(tmp_path)


@pytest.mark.parametrize("problem", ["missing", "not gzip", "truncated"])
def test_replace_tail_refuses_a_bad_segment_before_touching_the_file(tmp_path: Path, problem: str) -> None:
    good = segment(tmp_path, "good", {"g.txt": b"g"}, root=True)
    bad = tmp_path / "bad.gz"
    if problem == "not gzip":
        bad.write_bytes(b"PK\x03\x04" + b"\0" * 100)
    elif problem == "truncated":
        bad.write_bytes(good.read_bytes()[:12])
    target = tmp_path / "work.tar.gz"
    original = good.read_bytes() + end_marker(tmp_path)
    target.write_bytes(original)
    with pytest.raises(BuildError) as info:
        replace_tail(target, good.stat().st_size, [bad])
    assert str(bad) in str(info.value)
    assert target.read_bytes() == original


# -- publish -----------------------------------------------------------------------------------------


def blob(path: Path) -> Blob:
    data = path.read_bytes()
    return Blob(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def publish(config: BuildConfig, prefix: list[Path], fresh: Path) -> None:
    """``package.publish`` with the records the archive step hands it."""
    end = blob_of_bytes(archive._END_MEMBER)
    package.publish(config, prefix, [blob(p) for p in prefix], fresh, [blob(fresh), end])


def blob_of_bytes(data: bytes) -> Blob:
    return Blob(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


@pytest.fixture()
def config(tmp_path: Path) -> BuildConfig:
    app = tmp_path / "app"
    app.mkdir()
    config = BuildConfig(app_dir=app)
    config.paths.state.mkdir(parents=True)
    config.paths.build.mkdir(parents=True)
    config.paths.build_manifest.write_text("{}")  # publish records the manifest that goes with the artifact
    return config


def test_first_publish_writes_the_artifact_and_a_separate_spare(config: BuildConfig, tmp_path: Path) -> None:
    deps = segment(tmp_path, "deps", {"dep/__init__.py": b"D" * 3000})
    fresh = segment(tmp_path, "fresh", {"main.py": b"v1"}, root=True)
    publish(config, [deps], fresh)
    expected = deps.read_bytes() + fresh.read_bytes() + end_marker(tmp_path)
    artifact = config.paths.artifact
    spare = config.paths.state / "spare.tar.gz"
    assert artifact.read_bytes() == expected
    assert spare.read_bytes() == expected
    assert artifact.stat().st_ino != spare.stat().st_ino and artifact.stat().st_nlink == 1
    # The spare and the records of both; no temporaries left.
    assert sorted(p.name for p in config.paths.state.iterdir()) == ["artifact.json", "spare.json", "spare.tar.gz"]


def test_publish_cuts_the_spare_when_it_starts_with_the_same_segments(config: BuildConfig, tmp_path: Path) -> None:
    deps = segment(tmp_path, "deps", {"dep/__init__.py": b"D" * 3000})
    first = segment(tmp_path, "first", {"main.py": b"v1"}, root=True)
    second = segment(tmp_path, "second", {"main.py": b"version two"}, root=True)
    publish(config, [deps], first)
    artifact = config.paths.artifact
    spare = config.paths.state / "spare.tar.gz"
    old_bytes = artifact.read_bytes()
    spare_inode = spare.stat().st_ino
    old_inode = artifact.stat().st_ino
    publish(config, [deps], second)
    assert artifact.read_bytes() == deps.read_bytes() + second.read_bytes() + end_marker(tmp_path)
    assert artifact.stat().st_ino == spare_inode  # the spare was cut and renamed into place
    # The previously published file was never changed: it is the new spare, by hard link.
    assert spare.stat().st_ino == old_inode
    assert spare.read_bytes() == old_bytes


def test_publish_never_trusts_a_spare_with_other_segments(config: BuildConfig, tmp_path: Path) -> None:
    deps = segment(tmp_path, "deps", {"dep/__init__.py": b"D" * 3000})
    other = segment(tmp_path, "other", {"dep/__init__.py": b"E" * 3000})
    fresh = segment(tmp_path, "fresh", {"main.py": b"v1"}, root=True)
    spare = config.paths.state / "spare.tar.gz"
    spare.write_bytes(other.read_bytes() + fresh.read_bytes() + end_marker(tmp_path))
    publish(config, [deps], fresh)
    assert config.paths.artifact.read_bytes() == deps.read_bytes() + fresh.read_bytes() + end_marker(tmp_path)
    assert contents(config.paths.artifact.read_bytes())["./dep/__init__.py"] == b"D" * 3000


def test_publish_leaves_a_spare_with_another_link_alone(config: BuildConfig, tmp_path: Path) -> None:
    """Cutting a file that has another name would change that name's bytes too."""
    deps = segment(tmp_path, "deps", {"dep/__init__.py": b"D" * 3000})
    first = segment(tmp_path, "first", {"main.py": b"v1"}, root=True)
    second = segment(tmp_path, "second", {"main.py": b"two"}, root=True)
    publish(config, [deps], first)
    spare = config.paths.state / "spare.tar.gz"
    outside = tmp_path / "someone-elses-link"
    os.link(spare, outside)
    kept = outside.read_bytes()
    publish(config, [deps], second)
    assert outside.read_bytes() == kept
    assert config.paths.artifact.read_bytes() == deps.read_bytes() + second.read_bytes() + end_marker(tmp_path)


def test_an_edit_syncs_the_artifact_and_not_the_segment_it_deletes(built: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fresh segment is read once, into the artifact, and deleted: only the artifact must reach the disk."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    (built.app_dir / "main.py").write_text((built.app_dir / "main.py").read_text() + "# edited\n")
    assert "archive" in run_tasks(built).ran
    names = [Path(p).name for p in synced]
    assert any(name.startswith(".next.tar.gz") for name in names), names  # the new artifact, before its rename
    assert not any(".fresh-" in name for name in names), names
