"""Unit tests of the archive step's planning and keeping functions in ``flash_tasks.package``.

Each test lays out a small build folder by hand (a distribution's files and its wheel RECORD,
as an installer leaves them) and checks what the functions say about it against what the
module's docstrings promise: which files ship, which distribution owns a file, how a
distribution is cut into chunks, which manifest differences a deploy may make.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from flash_tasks import archive, catalog, package
from flash_tasks.archive import Entry
from flash_tasks.config import BuildConfig
from flash_tasks.errors import BuildError
from flash_tasks.store import content_hash, read_record


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    package._DIST_FILES.clear()


def digest_of(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def install(build: Path, name: str, files: dict[str, bytes], *, record_extra: list[tuple[str, str, str]] = (), unlisted: dict[str, bytes] | None = None) -> dict[str, Any]:
    """Lay ``files`` out in ``build`` with a wheel RECORD, as an installer does; return the install record."""
    dist_info = f"{name}-1.0.dist-info"
    files = {**files, f"{dist_info}/METADATA": f"Name: {name}\nVersion: 1.0\n".encode()}
    for rel, data in {**files, **(unlisted or {})}.items():
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_bytes(data)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for rel, data in sorted(files.items()):
        writer.writerow([rel, digest_of(data), len(data)])
    for row in record_extra:
        writer.writerow(row)
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    (build / dist_info / "RECORD").write_text(out.getvalue(), encoding="utf-8")
    rows = read_record(build / dist_info / "RECORD")
    tops = sorted({r.split("/", 1)[0] for r, _, _ in rows if not r.startswith("..")})
    return {
        "name": name,
        "version": "1.0",
        "dist_info": dist_info,
        "top_level": tops,
        "size": sum(len(d) for d in files.values()),
        "content_hash": content_hash(build, dist_info, rows),
    }


# -- _keep -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rel", "ships"),
    [
        ("pkg/mod.py", True),
        ("pkg/data.tmp", True),  # not hidden: a data file like any other
        ("pkg/.hidden", True),  # hidden but not a temporary
        ("pkg/.keep/file.txt", True),
        ("pkg/__pycache__/mod.cpython-311.pyc", False),
        ("__pycache__/x.txt", False),
        ("pkg/__pycache__", False),
        ("pkg/mod.pyc", False),
        ("pkg/mod.pyo", False),
        ("pkg/mod.pyc.txt", True),
        ("pkg/.mod.py.tmp-123", False),
        ("pkg/.tmp-install/inner.py", False),
        (".x.tmp/a.py", False),
        ("pkg/mod.py/.tmp", False),
    ],
)
def test_keep_drops_bytecode_and_hidden_temporaries_only(rel: str, ships: bool) -> None:
    assert package._keep(rel) is ships


# -- _walk_files ------------------------------------------------------------------------------------


def test_walk_files_lists_files_and_links_but_not_cache_or_hidden_folders(tmp_path: Path) -> None:
    build = tmp_path / "build"
    for rel in ["pkg/a.py", "pkg/sub/b.py", "pkg/.hidden-file", "pkg/__pycache__/a.pyc", "pkg/.git/config", "other/c.py"]:
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_text("x")
    (build / "pkg" / "link").symlink_to("a.py")
    assert sorted(package._walk_files(build, "pkg")) == ["pkg/.hidden-file", "pkg/a.py", "pkg/link", "pkg/sub/b.py"]
    assert package._walk_files(build, "missing") == []
    (build / "plain").write_text("x")
    assert package._walk_files(build, "plain") == []


# -- a distribution's files -----------------------------------------------------------------------


def test_dist_files_are_the_record_plus_unlisted_dist_info_files(tmp_path: Path) -> None:
    build = tmp_path / "build"
    files = {"pkg/__init__.py": b"A = 1\n", "pkg/sub/m.py": b"B = 2\n", "pkg-1.0.data/x": b"data"}
    dist = install(
        build,
        "pkg",
        files,
        record_extra=[("../outside.txt", digest_of(b"t"), "1"), ("pkg/gone.py", digest_of(b"g"), "1")],
        unlisted={"pkg-1.0.dist-info/INSTALLER": b"uv\n", "pkg/unlisted.py": b"u"},
    )
    (tmp_path / "outside.txt").write_bytes(b"t")  # a script installed next to the build folder: never ships
    got = package._dist_files(build, dist)
    metadata = (build / "pkg-1.0.dist-info/METADATA").read_bytes()
    assert got == [
        ("pkg-1.0.data/x", digest_of(b"data")),
        ("pkg-1.0.dist-info/INSTALLER", None),  # in the dist-info folder but not in RECORD
        ("pkg-1.0.dist-info/METADATA", digest_of(metadata)),
        ("pkg-1.0.dist-info/RECORD", None),  # RECORD lists itself without a digest
        ("pkg/__init__.py", digest_of(b"A = 1\n")),
        ("pkg/sub/m.py", digest_of(b"B = 2\n")),
    ]


def test_damaged_record_is_refused_and_names_the_distribution(tmp_path: Path) -> None:
    build = tmp_path / "build"
    dist = install(build, "pkg", {"pkg/__init__.py": b"A = 1\n"})
    (build / "pkg/__init__.py").write_bytes(b"A = 2\n")  # a listed file changed: so did the content hash
    (build / dist["dist_info"] / "RECORD").write_text(
        (build / dist["dist_info"] / "RECORD").read_text().replace(digest_of(b"A = 1\n"), digest_of(b"A = 2\n"))
    )
    with pytest.raises(package.DamagedDistribution) as info:
        package._dist_files(build, dist)
    assert info.value.name == "pkg"
    text = info.value.render()
    assert "the installed distribution pkg was changed in .flash/.build" in text
    assert "hint: the build reinstalls it" in text
    assert isinstance(info.value, BuildError)


def test_missing_record_of_a_distribution_without_files_is_damage(tmp_path: Path) -> None:
    build = tmp_path / "build"
    dist_info = build / "empty-1.0.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "RECORD").write_text("empty-1.0.dist-info/RECORD,,\n")
    rows = read_record(dist_info / "RECORD")
    dist = {"name": "empty", "dist_info": dist_info.name, "content_hash": content_hash(build, dist_info.name, rows)}
    assert package._dist_files(build, dist) == [("empty-1.0.dist-info/RECORD", None)]
    package._DIST_FILES.clear()
    (dist_info / "RECORD").unlink()
    with pytest.raises(package.DamagedDistribution):
        package._dist_files(build, dist)


@pytest.mark.parametrize("damage", ["missing", "not-utf8"])
def test_unreadable_record_is_a_damaged_distribution(tmp_path: Path, damage: str) -> None:
    build = tmp_path / "build"
    dist = install(build, "pkg", {"pkg/__init__.py": b"A = 1\n"})
    record = build / dist["dist_info"] / "RECORD"
    if damage == "missing":
        record.unlink()
    else:
        record.write_bytes(b"\xff\xfe\xfa")
    with pytest.raises(package.DamagedDistribution) as info:
        package._dist_files(build, dist)
    assert info.value.name == "pkg"


def test_remembered_files_are_per_build_record_and_content_hash(tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    a = install(one, "pkg", {"pkg/__init__.py": b"A", "pkg/extra.py": b"E"})
    b = install(two, "pkg", {"pkg/__init__.py": b"A", "pkg/extra.py": b"E"})
    assert a == b
    (two / "pkg-1.0.dist-info" / "INSTALLER").write_text("uv\n")  # not in RECORD: same content hash
    assert [f for f, _ in package._dist_files(one, a)] == ["pkg-1.0.dist-info/METADATA", "pkg-1.0.dist-info/RECORD", "pkg/__init__.py", "pkg/extra.py"]
    assert [f for f, _ in package._dist_files(two, b)] == [
        "pkg-1.0.dist-info/INSTALLER",
        "pkg-1.0.dist-info/METADATA",
        "pkg-1.0.dist-info/RECORD",
        "pkg/__init__.py",
        "pkg/extra.py",
    ]
    # Another distribution's record with this one's digest: it does not vouch for the other's files.
    other = install(one, "other", {"other/__init__.py": b"O"})
    with pytest.raises(package.DamagedDistribution):
        package._dist_files(one, {**other, "content_hash": a["content_hash"]})
    # The same record under a changed install digest is read again (and found not to match).
    with pytest.raises(package.DamagedDistribution):
        package._dist_files(one, {**a, "content_hash": "sha256:" + "0" * 64})


# -- which distribution owns a changed file --------------------------------------------------------


@pytest.fixture()
def config(tmp_path: Path) -> BuildConfig:
    app = tmp_path / "app"
    app.mkdir()
    config = BuildConfig(app_dir=app)
    config.paths.build.mkdir(parents=True)
    return config


def test_owner_is_the_distribution_that_lists_the_file(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    build = config.paths.build
    ns_one = install(build, "nsone", {"shared/one/m.py": b"1"})
    ns_two = install(build, "nstwo", {"shared/two/m.py": b"2"})
    solo = install(build, "solo", {"solo/a.py": b"s"})
    monkeypatch.setattr(package, "_distributions", lambda c: {"nsone": ns_one, "nstwo": ns_two, "solo": solo} if c is config else {})
    assert package._owner(config, build / "shared/two/m.py") == "nstwo"
    assert package._owner(config, build / "shared/one/m.py") == "nsone"
    assert package._owner(config, build / "solo/a.py") == "solo"
    assert package._owner(config, build / "solo-1.0.dist-info/METADATA") == "solo"


def test_owner_of_a_damaged_distribution_is_that_distribution(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    build = config.paths.build
    solo = install(build, "solo", {"solo/a.py": b"s"})
    monkeypatch.setattr(package, "_distributions", lambda c: {"solo": {**solo, "content_hash": "sha256:" + "1" * 64}})
    assert package._owner(config, build / "solo/other.py") == "solo"


def test_a_file_nobody_lists_is_a_build_error(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    build = config.paths.build
    solo = install(build, "solo", {"solo/a.py": b"s"})
    monkeypatch.setattr(package, "_distributions", lambda c: {"solo": solo})
    for rel in ("solo/stray.py", "main.py"):
        with pytest.raises(BuildError) as info:
            package._owner(config, build / rel)
        assert info.value.render() == f"error: {rel} in .flash/.build changed during the build\n  hint: build again"


def test_repair_reinstalls_the_named_distribution(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.deps import tasks

    calls: list[tuple[BuildConfig, str]] = []
    monkeypatch.setattr(tasks, "reinstall", lambda c, name: calls.append((c, name)))
    package._repair(config, "solo")
    assert calls == [(config, "solo")]


# -- chunks --------------------------------------------------------------------------------------


def entries_of(tmp_path: Path, spec: list[tuple[str, int | None]]) -> list[Entry]:
    """Entries in order: a size is a file of that many bytes, None a directory, -1 a symlink."""
    out = []
    for name, size in spec:
        path = tmp_path / name
        if size is None:
            out.append(Entry(name, None, True))
        elif size == -1:
            path.symlink_to("/nowhere/" + "x" * 50)
            out.append(Entry(name, path, False, "/nowhere/" + "x" * 50))
        else:
            path.write_bytes(b"x" * size)
            out.append(Entry(name, path, False))
    return out


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        # equal files: equal runs
        ([("a", 1), ("b", 1)], 2, [["a"], ["b"]]),
        ([("a", 5), ("b", 5), ("c", 5), ("d", 5)], 2, [["a", "b"], ["c", "d"]]),
        ([("a", 3), ("b", 3), ("c", 3)], 3, [["a"], ["b"], ["c"]]),
        # a run starts once the bytes before an entry reach its share; directories and links weigh nothing
        ([("a", 2), ("d", None), ("b", 2)], 2, [["a"], ["d", "b"]]),
        ([("d", None), ("e", None), ("a", 4), ("l", -1), ("b", 4)], 2, [["d", "e", "a"], ["l", "b"]]),
        ([("a", 1), ("b", 1), ("l", -1), ("d", None)], 2, [["a"], ["b", "l", "d"]]),
        ([("big", 90), ("s1", 5), ("s2", 5)], 2, [["big"], ["s1", "s2"]]),
        ([("s1", 5), ("s2", 5), ("big", 90)], 2, [["s1", "s2", "big"], []]),
        ([("a", 1), ("b", 1)], 1, [["a", "b"]]),
        ([("d", None), ("e", None)], 2, [["d", "e"], []]),
        ([], 2, [[], []]),
    ],
)
def test_chunks_are_runs_of_about_equal_bytes_in_order(tmp_path: Path, spec: list[tuple[str, int | None]], count: int, expected: list[list[str]]) -> None:
    got = package._chunks(entries_of(tmp_path, spec), count)
    assert [[e.arcname for e in run] for run in got] == expected


# -- entries for a list of files -------------------------------------------------------------------


def test_entries_add_the_folders_in_tarfile_order_with_links_and_digests(tmp_path: Path) -> None:
    build = tmp_path / "build"
    for rel in ["a/b/c.py", "a/z.py", "a-b.py", "a/b.txt"]:
        (build / rel).parent.mkdir(parents=True, exist_ok=True)
        (build / rel).write_text(rel)
    (build / "a" / "l").symlink_to("z.py")
    expect = {"a/z.py": digest_of(b"a/z.py"), "a/l": "ignored"}
    got = package._entries(build, ["a/z.py", "a-b.py", "a/b/c.py", "a/l", "a/b.txt"], with_root=True, expect=expect)
    # the order of tarfile.add: each folder's children sorted by name, depth first ("a" sorts before "a-b.py")
    assert [(e.arcname, e.is_dir, e.link_target, e.expect) for e in got] == [
        ("", True, None, None),
        ("a", True, None, None),
        ("a/b", True, None, None),
        ("a/b/c.py", False, None, None),
        ("a/b.txt", False, None, None),
        ("a/l", False, "z.py", None),
        ("a/z.py", False, None, digest_of(b"a/z.py")),
        ("a-b.py", False, None, None),
    ]
    assert got[3].source == build / "a/b/c.py" and got[1].source is None
    assert [e.arcname for e in package._entries(build, ["a/z.py"], with_root=False)] == ["a", "a/z.py"]


# -- the manifest a deploy annotated ----------------------------------------------------------------


BUILT = {
    "version": "1.0",
    "resources": {
        "worker": {"resource_type": "LiveServerless", "env": {"LOG_LEVEL": "INFO"}, "functions": ["work"]},
        "other": {"resource_type": "CpuLiveServerless", "functions": ["f"]},
    },
}


def annotated(manifest: dict[str, Any]) -> dict[str, Any]:
    """``manifest`` with what runpod-flash's deploy writes into it (the module's DEPLOY_* lists)."""
    out = json.loads(json.dumps(manifest))
    out["resources_endpoints"] = {"worker": "https://api.example/v2/abc"}
    for name, resource in out["resources"].items():
        resource["endpoint_id"] = f"id-{name}"
        resource["aiKey"] = "key"
        resource.setdefault("env", {})["_FLASH_SOURCE_FINGERPRINT"] = "f00d"
    return out


def changed(path: list[str], value: Any) -> dict[str, Any]:
    out = annotated(BUILT)
    node = out
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return out


@pytest.mark.parametrize(
    ("published", "kept"),
    [
        (BUILT, True),
        (annotated(BUILT), True),
        ({**BUILT, "resources_endpoints": {}}, True),
        (changed(["version"], "2.0"), False),
        (changed(["resources", "worker", "env", "LOG_LEVEL"], "DEBUG"), False),
        (changed(["resources", "other", "env", "EXTRA"], "1"), False),
        (changed(["resources", "other", "functions"], []), False),
        (changed(["resources", "worker", "endpoint"], "x"), False),
        (changed(["extra"], 1), False),
        ({**annotated(BUILT), "resources": {**annotated(BUILT)["resources"], "third": {"functions": []}}}, False),
        ({"version": "1.0"}, False),
        ([], False),
    ],
)
def test_annotated_copy_allows_only_what_a_deploy_records(tmp_path: Path, published: Any, kept: bool) -> None:
    built = tmp_path / "flash_manifest.json"
    built.write_text(json.dumps(BUILT))
    assert package._annotated_copy(json.dumps(published).encode(), built) is kept


def test_annotated_copy_of_unreadable_manifests_is_false(tmp_path: Path) -> None:
    built = tmp_path / "flash_manifest.json"
    assert package._annotated_copy(json.dumps(BUILT).encode(), built) is False  # not there
    built.write_text(json.dumps(BUILT))
    assert package._annotated_copy(b"{not json", built) is False
    built.write_text("{not json")
    assert package._annotated_copy(json.dumps(BUILT).encode(), built) is False


@pytest.mark.parametrize(
    "manifest",
    [
        [1, 2],
        "text",
        {"resources": []},
        {"resources_endpoints": {"a": 1}},  # no resources: not a manifest this tool wrote; left alone
        {"resources": {"r": "not a dict", "s": {"env": "not a dict", "aiKey": "k"}}},
    ],
)
def test_without_deploy_notes_of_odd_manifests(manifest: Any) -> None:
    got = package._without_deploy_notes(manifest)
    if isinstance(manifest, dict) and isinstance(manifest.get("resources"), dict):
        assert got == {"resources": {"r": "not a dict", "s": {"env": "not a dict"}}}
    else:
        assert got == manifest


def test_without_deploy_notes_removes_exactly_the_deploy_fields() -> None:
    got = package._without_deploy_notes(annotated(BUILT))
    assert got == {
        "version": "1.0",
        "resources": {
            "worker": {"resource_type": "LiveServerless", "env": {"LOG_LEVEL": "INFO"}, "functions": ["work"]},
            "other": {"resource_type": "CpuLiveServerless", "functions": ["f"]},  # env held only the fingerprint
        },
    }


# -- size limit ------------------------------------------------------------------------------------


def test_size_limit_names_the_biggest_packages(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    limit = catalog.MAX_ARTIFACT_MB * 1024 * 1024
    dists = {f"p{i}": {"name": f"p{i}", "version": f"{i}.0", "size": i * 1_000_000} for i in range(1, 13)}
    dists["huge"] = {"name": "huge", "version": "9", "size": 10**12}
    monkeypatch.setattr(package, "_distributions", lambda c: dists if c is config else {})
    package.check_size(config, limit)  # at the limit: fine
    with pytest.raises(BuildError) as info:
        package.check_size(config, limit + 1)
    text = info.value.render()
    assert f"the artifact would be {catalog.MAX_ARTIFACT_MB:,} MB, over the {catalog.MAX_ARTIFACT_MB} MB limit" in text
    listed = [line.strip() for line in text.splitlines() if line.startswith(("  p", "  huge"))]
    assert listed == ["huge 9: 1,000,000 MB installed"] + [f"p{i} {i}.0: {i} MB installed" for i in range(12, 3, -1)]  # the ten biggest, biggest first
    assert "hint: leave large packages out with --exclude a,b (torch" in text
    assert text.endswith("or install only direct dependencies with --no-deps; the previous artifact was left as it was")


def test_size_limit_without_packages(config: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(package, "_distributions", lambda c: {})
    with pytest.raises(BuildError) as info:
        package.check_size(config, 3 * catalog.MAX_ARTIFACT_MB * 1024 * 1024)
    assert info.value.message == f"the artifact would be {3 * catalog.MAX_ARTIFACT_MB:,} MB, over the {catalog.MAX_ARTIFACT_MB} MB limit"


# -- segments that are kept ----------------------------------------------------------------------


def segment_file(tmp_path: Path, name: str, content: bytes) -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    return archive.write_segment([Entry(name, src, False)], tmp_path / "segments" / f"{name}.gz").path


def test_valid_segments_keep_what_checks_out_and_delete_the_rest(tmp_path: Path) -> None:
    from flash_tasks.store import Blob, BlobRecord, Stamp

    good = segment_file(tmp_path, "good", b"g" * 100)
    changed_ = segment_file(tmp_path, "changed", b"c" * 100)
    unknown = segment_file(tmp_path, "unknown", b"u")
    absent = tmp_path / "segments" / "absent.gz"

    def record(p: Path) -> BlobRecord:
        data = p.read_bytes()
        stamp = Stamp.of(p)
        assert stamp is not None
        return BlobRecord(blob=Blob(sha256=hashlib.sha256(data).hexdigest(), size=len(data)), stamp=stamp)

    index = package.SegmentIndex(segments={p.name: record(p) for p in (good, changed_)})
    data = bytearray(changed_.read_bytes())
    data[20] ^= 0xFF
    mtime_ns = changed_.stat().st_mtime_ns
    changed_.write_bytes(bytes(data))  # same file, same size: and its mtime put back
    os.utime(changed_, ns=(mtime_ns, mtime_ns))
    group = package.DistSegments("x-1.0", {}, ["x"], [good, changed_, unknown, absent])
    # Without verify the stamp is trusted: the change goes unseen (the unknown file is still dropped).
    unknown_bytes = unknown.read_bytes()
    assert set(package._valid_segments([group], False, index, [])) == {"good.gz", "changed.gz"}
    unknown.write_bytes(unknown_bytes)
    repairs: list[str] = []
    valid = package._valid_segments([group], True, index, repairs)
    assert valid == {"good.gz": index.segments["good.gz"]}
    assert good.exists() and not changed_.exists() and not unknown.exists()
    assert repairs == [
        "cached segment changed.gz failed its check: made again",
        "cached segment unknown.gz failed its check: made again",
    ]
    assert package._valid_segments([group], False, None, []) == {}
    assert not good.exists()


def test_segment_file_bytes_read_back(tmp_path: Path) -> None:
    seg = segment_file(tmp_path, "a.txt", b"hello")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(seg.read_bytes()) + b"\0" * 1024)) as tar:
        assert [m.name for m in tar.getmembers()] == ["./a.txt"]
    assert os.path.getsize(seg) == seg.stat().st_size


# -- a whole archive step over a real (offline, tiny) build ------------------------------------------

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2, dependencies=["tinydep==1.0", "nsone", "nstwo"])
def work(x: int) -> int:
    return x
'''


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, local_index: Path) -> BuildConfig:
    from wheelfactory import make_wheel

    from flash_tasks.runner import run_tasks

    shared = tmp_path_factory.mktemp("ns-wheels")
    make_wheel(shared, "nsone", "1.0", files={"sharedns/one.py": "ONE = 1\n"})
    make_wheel(shared, "nstwo", "1.0", files={"sharedns/two.py": "TWO = 2\n"})
    app = tmp_path_factory.mktemp("segments-app") / "app"
    app.mkdir()
    (app / "main.py").write_text(MAIN, encoding="utf-8")
    config = BuildConfig(app_dir=app, find_links=(str(local_index), str(shared)), no_index=True)
    run_tasks(config)
    return config


def artifact_files(config: BuildConfig) -> dict[str, bytes | None]:
    with tarfile.open(config.paths.artifact, "r:gz") as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}  # type: ignore[union-attr]


def test_artifact_holds_exactly_the_tracked_files_with_their_bytes(built: BuildConfig) -> None:
    build = built.paths.build
    stray = build / "tinydep" / "stray.txt"
    stray.write_text("never ships")
    (build / "tinydep" / "__pycache__").mkdir(exist_ok=True)
    (build / "tinydep" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"pyc")
    try:
        package.build_archive(built)
        files = artifact_files(built)
    finally:
        stray.unlink()
    shipped = {name.removeprefix("./"): data for name, data in files.items() if data is not None}
    assert "tinydep/stray.txt" not in shipped and not any("__pycache__" in n for n in files)
    for rel in ["main.py", "handler_worker.py", "flash_manifest.json", "tinydep/__init__.py", "sharedns/one.py", "sharedns/two.py"]:
        assert shipped[rel] == (build / rel).read_bytes(), rel
    assert files["."] is None  # the root entry
    assert built.paths.manifest.read_bytes() == built.paths.build_manifest.read_bytes()
    # every cached segment the plan names exists, with the SDK's, and nothing else is left in the segments folder
    _fresh, cached = package.plan_segments(built)
    left = sorted(p.name for p in built.paths.segments.iterdir())
    sdk = [name for name in left if name.startswith("runpod_flash-sdk-")]
    assert len(sdk) == 1 and sorted(set(left) - set(sdk)) == sorted(p.name for g in cached for p in g.paths)


def test_a_changed_installed_file_is_repaired_and_said(built: BuildConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.deps import tasks
    from flash_tasks.store import repairs_path

    build = built.paths.build
    target = build / "tinydep" / "__init__.py"
    good = target.read_bytes()
    for p in built.paths.segments.glob("tinydep-*"):
        p.unlink()  # the segment is made again, from the files: so they are read and checked
    target.write_bytes(b"X" * len(good))  # same size, other bytes
    calls: list[str] = []

    def reinstall(config: BuildConfig, name: str) -> None:
        calls.append(name)
        target.write_bytes(good)

    monkeypatch.setattr(tasks, "reinstall", reinstall)
    repairs_path(built).unlink(missing_ok=True)
    package.build_archive(built)
    assert calls == ["tinydep"]
    assert artifact_files(built)["./tinydep/__init__.py"] == good
    said = json.loads(repairs_path(built).read_text())["data"]
    assert "tinydep/__init__.py in .flash/.build was changed: tinydep reinstalled" in said


def test_a_changed_staged_source_is_restored_before_archiving(built: BuildConfig) -> None:
    main = built.paths.build / "main.py"
    main.write_text("tampered = True\n")
    repairs: list[str] = []
    package._ensure_fresh(built, repairs)
    assert main.read_bytes() == (built.app_dir / "main.py").read_bytes()
    assert repairs == ["files written by the stage task in .flash/.build were changed: restored"]
    handler = built.paths.build / "handler_worker.py"
    kept = handler.read_bytes()
    handler.write_text("tampered = True\n")
    repairs = []
    package._ensure_fresh(built, repairs)
    assert handler.read_bytes() == kept
    assert repairs == ["files written by the handlers task in .flash/.build were changed: restored"]
    repairs = []
    package._ensure_fresh(built, repairs)
    assert repairs == []
    sdk = built.paths.build / "runpod_flash" / "__init__.py"
    kept = sdk.read_bytes()
    sdk.write_text("tampered = True\n")
    repairs = []
    package._ensure_fresh(built, repairs)
    assert sdk.read_bytes() == kept
    # a new SDK copy replaces the handlers phase's resource-config module too: it is written again
    assert repairs == [
        "the SDK copy in .flash/.build was changed: copied again",
        "files written by the handlers task in .flash/.build were changed: restored",
    ]
    repairs = []
    package._ensure_fresh(built, repairs)
    assert repairs == []


SDK_MAIN = MAIN.replace(', "nsone", "nstwo"', "")


def test_the_sdk_ships_in_its_own_segment_compressed_once(tmp_path: Path, local_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.runner import run_tasks
    from flash_tasks.store import repairs_path

    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(SDK_MAIN, encoding="utf-8")
    config = BuildConfig(app_dir=app, find_links=(str(local_index),), no_index=True)
    run_tasks(config)
    build = config.paths.build
    first = config.paths.artifact.read_bytes()
    [sdk] = config.paths.segments.glob("runpod_flash-sdk-*.gz")
    # the SDK's package files and folders, and nothing written for this app (its resource config)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(sdk.read_bytes()) + b"\0" * 1024)) as tar:
        names = {m.name.removeprefix("./") for m in tar}
    on_disk = {"runpod_flash"} | {p.relative_to(build).as_posix() for p in (build / "runpod_flash").rglob("*") if "__pycache__" not in p.parts}
    assert names == on_disk - {"runpod_flash/runtime/_flash_resource_config.py"}
    # the artifact has one entry per path, the resource config among them
    with tarfile.open(config.paths.artifact, "r:gz") as tar:
        listed = [m.name.removeprefix("./") for m in tar]
    assert len(listed) == len(set(listed)) and "runpod_flash/runtime/_flash_resource_config.py" in listed

    jobs: list[int] = []
    real = archive.write_segments_parallel

    def counting(todo: Any, workers: int | None = None, **options: Any) -> Any:
        jobs.append(len(todo))
        return real(todo, workers, **options)

    monkeypatch.setattr(archive, "write_segments_parallel", counting)
    before = os.stat(sdk)
    (app / "main.py").write_text(SDK_MAIN + "# edited\n", encoding="utf-8")
    run_tasks(config)
    assert jobs == [1]  # only the fresh segment: the SDK's is used as it is
    assert (os.stat(sdk).st_ino, os.stat(sdk).st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    edited = config.paths.artifact.read_bytes()
    assert edited != first

    # a damaged SDK segment is noticed, made again (no shared cache has it), and the artifact is the same bytes
    monkeypatch.setenv("FLASH_TASKS_CACHE_DIR", str(tmp_path / "empty-cache"))
    data = bytearray(sdk.read_bytes())
    data[len(data) // 2] ^= 0xFF
    sdk.write_bytes(bytes(data))
    jobs.clear()
    package.build_archive(config)
    assert jobs == [2] and config.paths.artifact.read_bytes() == edited
    assert f"cached segment {sdk.name} failed its check: made again" in json.loads(repairs_path(config).read_text())["data"]

    # the clean build of the same sources gives the same bytes
    clean = tmp_path / "clean" / "app"
    clean.mkdir(parents=True)
    (clean / "main.py").write_text(SDK_MAIN + "# edited\n", encoding="utf-8")
    clean_config = BuildConfig(app_dir=clean, find_links=(str(local_index),), no_index=True)
    run_tasks(clean_config)
    assert clean_config.paths.artifact.read_bytes() == edited


def test_shared_files_are_remembered_and_a_damaged_one_is_repaired(tmp_path: Path, local_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files under shared top-level entries (here the namespace package ``sharedns``) are listed from a memo
    while their distribution's RECORD is unchanged; a file of theirs deleted or changed is still repaired."""
    from wheelfactory import make_wheel

    from flash_tasks.runner import run_tasks

    wheels = tmp_path / "ns-wheels"
    make_wheel(wheels, "nsone", "1.0", files={"sharedns/one.py": "ONE = 1\n"})
    make_wheel(wheels, "nstwo", "1.0", files={"sharedns/two.py": "TWO = 2\n"})
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text(MAIN, encoding="utf-8")
    config = BuildConfig(app_dir=app, find_links=(str(local_index), str(wheels)), no_index=True)
    run_tasks(config)
    build = config.paths.build
    first = config.paths.artifact.read_bytes()
    memo = json.loads(package.shared_files_path(config.paths).read_text())["data"]
    assert sorted(memo) == ["nsone", "nstwo"] and memo["nsone"]["files"][0][0] == "sharedns/one.py"

    reads: list[str] = []
    real = package._read_dist_files
    monkeypatch.setattr(package, "_read_dist_files", lambda b, d: reads.append(d["name"]) or real(b, d))
    package.build_archive(config)
    assert reads == [] and config.paths.artifact.read_bytes() == first  # from the memo, same bytes

    (build / "sharedns" / "one.py").unlink()
    package.build_archive(config)
    assert "nsone" in reads and (build / "sharedns" / "one.py").read_text() == "ONE = 1\n"
    assert config.paths.artifact.read_bytes() == first

    reads.clear()
    (build / "sharedns" / "two.py").write_text("TWO = 3\n")  # same size, other bytes: RECORD unchanged
    package.build_archive(config)
    assert (build / "sharedns" / "two.py").read_text() == "TWO = 2\n"
    assert config.paths.artifact.read_bytes() == first

    # a damaged memo is a miss: the RECORDs are read and checked again
    reads.clear()
    package.shared_files_path(config.paths).write_text("not a state file")
    package.build_archive(config)
    assert sorted(reads) == ["nsone", "nstwo"] and config.paths.artifact.read_bytes() == first
