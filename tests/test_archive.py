"""Tests for the reproducible, segmented ``.tar.gz`` writer."""

from __future__ import annotations

import errno
import gzip
import io
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flash_tasks import archive
from flash_tasks.archive import (
    DEFAULT_MTIME,
    END_MEMBER_SIZE,
    ROOT,
    Entry,
    SegmentInfo,
    assemble,
    walk_entries,
    write_segment,
    write_segments_parallel,
)
from flash_tasks.errors import BuildError
from flash_tasks.tarheader import tar_header

GNU_TAR = shutil.which("tar")
needs_tar = pytest.mark.skipif(GNU_TAR is None, reason="GNU tar not installed")

LONG_DIR = "d" * 60 + "/" + "e" * 60
BIG = os.urandom(3 * 1024 * 1024 + 17)


@pytest.fixture(autouse=True)
def _no_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def make_tree(root: Path) -> Path:
    """A build folder with the awkward cases: nesting, unicode, long paths, exec bits."""
    (root / "api" / "sub").mkdir(parents=True)
    (root / "api" / "__init__.py").write_text("")
    (root / "api" / "handler.py").write_text("def handler():\n    return 1\n")
    (root / "api" / "sub" / "deep.txt").write_text("deep\n")
    (root / "a b").mkdir()
    (root / "a b" / "ünïcødé ✓.txt").write_text("unicode\n", encoding="utf-8")
    (root / "empty").write_bytes(b"")
    run = root / "run.sh"
    run.write_text("#!/bin/sh\necho hi\n")
    run.chmod(0o750)
    (root / LONG_DIR).mkdir(parents=True)
    (root / LONG_DIR / "file-with-a-long-name.txt").write_text("long\n")
    (root / "big.bin").write_bytes(BIG)
    (root / "link").symlink_to("api/handler.py")
    return root


def expected_names(root: Path) -> list[str]:
    """``tar tzf`` names in tarfile.add order: root, then sorted pre-order."""
    names = ["./"]

    def visit(d: Path, prefix: str) -> None:
        for child in sorted(os.listdir(d)):
            p = d / child
            if p.is_dir() and not p.is_symlink():
                names.append(f"./{prefix}{child}/")
                visit(p, f"{prefix}{child}/")
            else:
                names.append(f"./{prefix}{child}")

    visit(root, "")
    return names


def snapshot(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """Every path under ``root`` -> (kind, permission bits, content or link target)."""
    out: dict[str, tuple[str, int, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            st_ = os.lstat(p)
            if stat.S_ISLNK(st_.st_mode):
                out[rel] = ("link", 0, os.readlink(p))
            elif stat.S_ISDIR(st_.st_mode):
                out[rel] = ("dir", stat.S_IMODE(st_.st_mode), b"")
            else:
                out[rel] = ("file", stat.S_IMODE(st_.st_mode), p.read_bytes())
    return out


def normalized_modes(root: Path) -> dict[str, tuple[str, int, bytes | str]]:
    """What ``snapshot`` should show after extraction of a normalized archive."""
    snap = snapshot(root)
    for rel, (kind, mode, data) in snap.items():
        if kind == "dir":
            snap[rel] = (kind, 0o755, data)
        elif kind == "file":
            snap[rel] = (kind, 0o755 if mode & 0o111 else 0o644, data)
    return snap


def extract_tarfile(arc: Path, dest: Path) -> None:
    dest.mkdir()
    with tarfile.open(arc, "r:gz") as tar:
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(dest, filter="fully_trusted")
        else:  # pragma: no cover - Pythons without extraction filters
            tar.extractall(dest)


def extract_gnu(arc: Path, dest: Path) -> None:
    dest.mkdir()
    subprocess.run([GNU_TAR, "-xzf", str(arc), "-C", str(dest)], check=True)


def gnu_list(arc: Path) -> list[str]:
    out = subprocess.run([GNU_TAR, "-tzf", str(arc)], check=True, capture_output=True)
    return out.stdout.decode("utf-8").splitlines()


def members(arc: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(arc, "r:gz") as tar:
        return tar.getmembers()


def gzip_members(data: bytes) -> Iterator[bytes]:
    """Split a multi-member gzip file into its members' raw bytes."""
    while data:
        d = zlib.decompressobj(31)
        d.decompress(data)
        consumed = len(data) - len(d.unused_data)
        yield data[:consumed]
        data = d.unused_data


def build_archive(root: Path, out: Path) -> SegmentInfo:
    """``root`` as one archive, the way the build writes one: a segment with the root entry, then ``assemble``.

    The segment lives in a scratch folder, so ``out``'s folder holds nothing but ``out``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        segment = write_segment(walk_entries(root), Path(scratch) / "all.gz", include_root=True)
        assemble([segment.path], out)
    return segment


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "build")


# ---------------------------------------------------------------------------
# Round trip and layout


def test_round_trip_with_tarfile(tree: Path, tmp_path: Path) -> None:
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    extract_tarfile(arc, tmp_path / "x")
    assert snapshot(tmp_path / "x") == normalized_modes(tree)


@needs_tar
def test_round_trip_with_gnu_tar(tree: Path, tmp_path: Path) -> None:
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    extract_gnu(arc, tmp_path / "x")
    got = snapshot(tmp_path / "x")
    assert got == normalized_modes(tree)
    assert got["run.sh"][1] == 0o755
    assert got["big.bin"][2] == BIG


@needs_tar
def test_gnu_listing_is_preorder_with_root_first(tree: Path, tmp_path: Path) -> None:
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    listing = gnu_list(arc)
    assert listing[0] == "./"
    assert listing == expected_names(tree)
    assert f"./{LONG_DIR}/file-with-a-long-name.txt" in listing
    assert len(f"./{LONG_DIR}/file-with-a-long-name.txt") > 100


def test_walk_entries_order_and_kinds(tree: Path) -> None:
    entries = walk_entries(tree)
    names = ["./"] + [f"./{e.arcname}" + ("/" if e.is_dir else "") for e in entries]
    assert names == expected_names(tree)
    by_name = {e.arcname: e for e in entries}
    assert by_name["api"] == Entry("api", None, True)
    assert by_name["link"].link_target == "api/handler.py"
    assert by_name["big.bin"].source == tree / "big.bin"


def test_tar_stream_matches_tarfile_add_layout(tree: Path, tmp_path: Path) -> None:
    """Same bytes as the reference's ``tarfile.add`` walk once metadata is normalized."""

    def normalize(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        ti.mtime = DEFAULT_MTIME
        if ti.isdir():
            ti.mode = 0o755
        elif ti.issym():
            ti.mode = 0o777
        else:
            ti.mode = 0o755 if ti.mode & 0o111 else 0o644
        return ti

    ref = io.BytesIO()
    with tarfile.open(fileobj=ref, mode="w", format=tarfile.PAX_FORMAT, encoding="utf-8") as tar:
        tar.add(str(tree), arcname=".", recursive=False, filter=normalize)
        for item in sorted(tree.iterdir()):
            tar.add(str(item), arcname=f"./{item.name}", filter=normalize)

    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    ours = gzip.decompress(arc.read_bytes())
    assert ours[-1024:] == b"\0" * 1024
    assert ref.getvalue()[: len(ours)] == ours


def _tarfile_leaves_device_fields_empty() -> bool:
    """Whether this Python's ``tarfile`` writes NULs, not ``0000000``, as a file's devmajor/devminor.

    Older releases write zeros there: ``TarInfo.tobuf`` has changed its bytes between
    Python releases, which is why ``archive`` encodes headers itself.
    """
    header = tarfile.TarInfo("x").tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    return header[329:345] == b"\0" * 16


HEADER_CASES = [
    # (name, mode, size, typeflag, link target)
    ("./", 0o755, 0, tarfile.DIRTYPE, ""),
    ("./api/", 0o755, 0, tarfile.DIRTYPE, ""),
    ("./api/handler.py", 0o644, 27, tarfile.REGTYPE, ""),
    ("./run.sh", 0o755, 19, tarfile.REGTYPE, ""),
    ("./empty", 0o644, 0, tarfile.REGTYPE, ""),
    ("./" + "n" * 98, 0o644, 1, tarfile.REGTYPE, ""),  # exactly 100 bytes: still ustar
    ("./" + "n" * 99, 0o644, 1, tarfile.REGTYPE, ""),  # 101 bytes: pax path
    (f"./{LONG_DIR}/", 0o755, 0, tarfile.DIRTYPE, ""),
    (f"./{LONG_DIR}/file-with-a-long-name.txt", 0o644, 5, tarfile.REGTYPE, ""),
    ("./a b/ünïcødé ✓.txt", 0o644, 8, tarfile.REGTYPE, ""),
    ("./日本/", 0o755, 0, tarfile.DIRTYPE, ""),
    ("./link", 0o777, 0, tarfile.SYMTYPE, "api/handler.py"),
    ("./link-ü", 0o777, 0, tarfile.SYMTYPE, "zïel/ü.py"),
    ("./far", 0o777, 0, tarfile.SYMTYPE, "../" * 40 + "target"),
    ("./" + "é" * 80, 0o777, 0, tarfile.SYMTYPE, "é" * 80),
    ("./big.bin", 0o644, 3 * 1024 * 1024 + 17, tarfile.REGTYPE, ""),
    ("./huge.bin", 0o644, 8**11 - 1, tarfile.REGTYPE, ""),  # the largest ustar size
    ("./huger.bin", 0o644, 8**11, tarfile.REGTYPE, ""),  # 8 GiB: pax size
    ("./" + "x" * 150 + "/ü", 0o755, 9 * 2**30, tarfile.REGTYPE, ""),  # pax path and size together
]


@pytest.mark.skipif(not _tarfile_leaves_device_fields_empty(), reason="this Python's tarfile writes other device fields")
@pytest.mark.parametrize(("name", "mode", "size", "typeflag", "link"), HEADER_CASES)
@pytest.mark.parametrize("mtime", [DEFAULT_MTIME, 1_700_000_000])
def test_headers_are_the_bytes_tarfile_tobuf_writes(
    name: str, mode: int, size: int, typeflag: bytes, link: str, mtime: int
) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.size, info.mtime, info.type, info.linkname = mode, size, mtime, typeflag, link
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    expected = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    assert tar_header(name, mode, size, mtime, typeflag, link) == expected


def test_metadata_is_normalized_and_carries_no_times(tree: Path, tmp_path: Path) -> None:
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    for m in members(arc):
        assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", "")
        assert m.mtime == DEFAULT_MTIME
        assert set(m.pax_headers) <= {"path", "linkpath"}
        assert m.isdir() or m.isfile() or m.issym()
        if m.isdir():
            assert m.mode == 0o755
        elif m.isfile():
            assert m.mode in (0o644, 0o755)


def test_gzip_members_have_no_name_and_zero_mtime(tree: Path, tmp_path: Path) -> None:
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    data = arc.read_bytes()
    parts = list(gzip_members(data))
    assert len(parts) == 2  # content + end-of-archive
    assert len(parts[-1]) == END_MEMBER_SIZE
    for part in parts:
        assert part[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    assert b"artifact" not in data[:64]
    assert zlib.decompress(parts[-1], 31) == b"\0" * 1024


@needs_tar
def test_gzip_tool_accepts_multi_member(tree: Path, tmp_path: Path) -> None:
    a, b = walk_entries(tree)[:4], walk_entries(tree)[4:]
    s1 = write_segment(a, tmp_path / "s1.gz", include_root=True)
    s2 = write_segment(b, tmp_path / "s2.gz")
    arc = tmp_path / "artifact.tar.gz"
    assemble([s1.path, s2.path], arc)
    subprocess.run(["gzip", "-t", str(arc)], check=True)
    assert gnu_list(arc) == expected_names(tree)


# ---------------------------------------------------------------------------
# Segments


def split_by_top(tree: Path, deps: set[str]) -> tuple[list[Entry], list[Entry]]:
    entries = walk_entries(tree)
    a = [e for e in entries if e.arcname.split("/")[0] in deps]
    b = [e for e in entries if e.arcname.split("/")[0] not in deps]
    return a, b


def test_two_segments_assemble_into_one_archive(tree: Path, tmp_path: Path) -> None:
    dep_entries, src_entries = split_by_top(tree, {"a b", "big.bin", LONG_DIR.split("/")[0]})
    s1 = write_segment(dep_entries, tmp_path / "deps.gz", include_root=True)
    s2 = write_segment(src_entries, tmp_path / "src.gz")
    assert (s1.entries, s2.entries) == (len(dep_entries) + 1, len(src_entries))
    assert s1.compressed_size == s1.path.stat().st_size
    assert s1.raw_size % 512 == 0
    arc = tmp_path / "artifact.tar.gz"
    size = assemble([s1.path, s2.path], arc)
    assert size == arc.stat().st_size == s1.compressed_size + s2.compressed_size + END_MEMBER_SIZE
    names = [m.name for m in members(arc)]
    want = ["."] + [f"./{e.arcname}" for e in dep_entries + src_entries]
    assert names == want
    extract_tarfile(arc, tmp_path / "x")
    assert snapshot(tmp_path / "x") == normalized_modes(tree)


def test_rewriting_one_segment_equals_from_scratch(tree: Path, tmp_path: Path) -> None:
    """Incremental rebuild: only the changed segment is rewritten, same bytes as a clean build."""
    deps = {"a b", "big.bin"}
    dep_entries, src_entries = split_by_top(tree, deps)
    s1 = write_segment(dep_entries, tmp_path / "deps.gz", include_root=True)
    s2 = write_segment(src_entries, tmp_path / "src.gz")
    assemble([s1.path, s2.path], tmp_path / "old.tar.gz")
    deps_before = s1.path.read_bytes()

    (tree / "api" / "handler.py").write_text("def handler():\n    return 2\n")
    _, src_entries = split_by_top(tree, deps)
    write_segment(src_entries, tmp_path / "src.gz")
    incremental = tmp_path / "incremental.tar.gz"
    assemble([s1.path, s2.path], incremental)

    clean = tmp_path / "clean"
    c1 = write_segment(split_by_top(tree, deps)[0], clean / "deps.gz", include_root=True)
    c2 = write_segment(split_by_top(tree, deps)[1], clean / "src.gz")
    assemble([c1.path, c2.path], clean / "artifact.tar.gz")

    assert c1.path.read_bytes() == deps_before
    assert incremental.read_bytes() == (clean / "artifact.tar.gz").read_bytes()
    assert incremental.read_bytes() != (tmp_path / "old.tar.gz").read_bytes()
    with tarfile.open(incremental, "r:gz") as tar:
        f = tar.extractfile("./api/handler.py")
        assert f is not None and b"return 2" in f.read()


def test_parallel_segments_equal_serial(tree: Path, tmp_path: Path) -> None:
    dep_entries, src_entries = split_by_top(tree, {"big.bin", "a b"})
    jobs = [([ROOT, *dep_entries], tmp_path / "p1.gz"), (src_entries, tmp_path / "p2.gz")]
    infos = write_segments_parallel(jobs, workers=2)
    assert [i.path for i in infos] == [tmp_path / "p1.gz", tmp_path / "p2.gz"]
    s1 = write_segment(dep_entries, tmp_path / "s1.gz", include_root=True)
    s2 = write_segment(src_entries, tmp_path / "s2.gz")
    assert infos[0].path.read_bytes() == s1.path.read_bytes()
    assert infos[1].path.read_bytes() == s2.path.read_bytes()


def test_parallel_rejects_duplicate_outputs_and_raises_first_error(tmp_path: Path) -> None:
    out = tmp_path / "same.gz"
    with pytest.raises(ValueError):
        write_segments_parallel([([], out), ([], out)])
    missing = Entry("gone.txt", tmp_path / "gone.txt", False)
    with pytest.raises(BuildError, match="gone.txt"):
        write_segments_parallel([([], tmp_path / "ok.gz"), ([missing], tmp_path / "bad.gz")], 2)
    assert not (tmp_path / "bad.gz").exists()
    assert not list(tmp_path.glob(".*tmp*"))


def test_exclude_top_skips_only_top_level(tree: Path) -> None:
    (tree / "api" / "big.bin").write_bytes(b"nested")
    entries = walk_entries(tree, exclude_top=lambda name: name in {"big.bin", "a b"})
    names = {e.arcname for e in entries}
    assert "big.bin" not in names and "a b" not in names
    assert not any(n.startswith("a b/") for n in names)
    assert "api/big.bin" in names


def test_assemble_refuses_damaged_segment(tmp_path: Path) -> None:
    out = tmp_path / "artifact.tar.gz"
    out.write_bytes(b"previous")
    bad = tmp_path / "bad.gz"
    bad.write_bytes(b"not gzip at all")
    for seg in (bad, tmp_path / "missing.gz"):
        with pytest.raises(BuildError, match="segment"):
            assemble([seg], out)
    assert out.read_bytes() == b"previous"


# ---------------------------------------------------------------------------
# Determinism


def test_same_tree_elsewhere_with_other_mtimes_is_identical(tree: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "deeper" / "build"
    shutil.copytree(tree, other, symlinks=True)
    for dirpath, dirnames, filenames in os.walk(other):
        for name in dirnames + filenames:
            os.utime(Path(dirpath) / name, (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    (other / "empty").chmod(0o600)  # no exec bit either way -> 0o644
    (other / "run.sh").chmod(0o700)  # exec bit either way -> 0o755
    build_archive(tree, tmp_path / "a.tar.gz")
    build_archive(other, tmp_path / "b.tar.gz")
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()


def test_source_date_epoch_is_honoured(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    build_archive(tree, tmp_path / "default.tar.gz")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    build_archive(tree, tmp_path / "epoch.tar.gz")
    assert {m.mtime for m in members(tmp_path / "epoch.tar.gz")} == {1700000000}
    assert (tmp_path / "default.tar.gz").read_bytes() != (tmp_path / "epoch.tar.gz").read_bytes()
    build_archive(tree, tmp_path / "epoch2.tar.gz")
    assert (tmp_path / "epoch.tar.gz").read_bytes() == (tmp_path / "epoch2.tar.gz").read_bytes()


@pytest.mark.parametrize("value", ["yesterday", "-5", "1.5", str(8**11)])
def test_bad_source_date_epoch_is_a_build_error(
    value: str, tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", value)
    with pytest.raises(BuildError, match="SOURCE_DATE_EPOCH"):
        build_archive(tree, tmp_path / "a.tar.gz")


def test_stdlib_zlib_fallback_round_trips(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "zlib_ng", None)
    codec = archive._pick_codec()
    assert codec.name.startswith("zlib ")
    monkeypatch.setattr(archive, "_CODEC", codec)
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    extract_tarfile(arc, tmp_path / "x")
    assert snapshot(tmp_path / "x") == normalized_modes(tree)


def test_small_chunks_round_trip(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files straddling many compressor slices come out whole."""
    monkeypatch.setattr(archive, "CHUNK", 1000)
    arc = tmp_path / "artifact.tar.gz"
    build_archive(tree, arc)
    extract_tarfile(arc, tmp_path / "x")
    assert snapshot(tmp_path / "x") == normalized_modes(tree)


# ---------------------------------------------------------------------------
# Failures and atomicity


class FailingCompressor:
    """Wraps a real compressor and fails with ``err`` once ``limit`` bytes went in."""

    def __init__(self, inner: object, limit: int, err: int) -> None:
        self.inner = inner
        self.seen = 0
        self.limit = limit
        self.err = err

    def compress(self, data: bytes) -> bytes:
        self.seen += len(data)
        if self.seen > self.limit:
            raise OSError(self.err, os.strerror(self.err))
        return self.inner.compress(data)  # type: ignore[attr-defined]

    def flush(self) -> bytes:
        return self.inner.flush()  # type: ignore[attr-defined]


def fail_after(monkeypatch: pytest.MonkeyPatch, limit: int, err: int = errno.ENOSPC) -> None:
    real = archive._new_compressor
    monkeypatch.setattr(archive, "_new_compressor", lambda: FailingCompressor(real(), limit, err))


def test_enospc_leaves_previous_archive_untouched(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out" / "artifact.tar.gz"
    build_archive(tree, out)
    before = out.read_bytes()
    (tree / "api" / "handler.py").write_text("changed\n")
    fail_after(monkeypatch, 2 * 1024 * 1024)
    with pytest.raises(BuildError, match="no space left") as info:
        build_archive(tree, out)
    assert "space" in info.value.render()
    assert out.read_bytes() == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["artifact.tar.gz"]


def test_enospc_in_segment_leaves_no_temp(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_after(monkeypatch, 0)
    with pytest.raises(BuildError, match="space"):
        write_segment(walk_entries(tree), tmp_path / "seg" / "s.gz")
    assert list((tmp_path / "seg").iterdir()) == []


def test_other_os_errors_propagate_and_clean_up(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_after(monkeypatch, 100, errno.EIO)
    with pytest.raises(OSError) as info:
        build_archive(tree, tmp_path / "o" / "a.tar.gz")
    assert not isinstance(info.value, BuildError)
    assert info.value.errno == errno.EIO
    assert list((tmp_path / "o").iterdir()) == []


def test_enospc_during_assemble(
    tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seg = write_segment(walk_entries(tree), tmp_path / "s.gz", include_root=True)
    out = tmp_path / "o" / "artifact.tar.gz"
    assemble([seg.path], out)
    before = out.read_bytes()

    def copy_then_fail(src: io.BufferedReader, dst: io.BufferedWriter) -> int:
        dst.write(src.read(1000))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "copy_all", copy_then_fail)
    with pytest.raises(BuildError, match="no space left"):
        assemble([seg.path], out)
    assert out.read_bytes() == before
    assert [p.name for p in out.parent.iterdir()] == ["artifact.tar.gz"]


def test_fifo_is_a_build_error_and_socket_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    (root / "ok.txt").write_text("ok")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "s.sock"))
        assert [e.arcname for e in walk_entries(root)] == ["ok.txt"]
    finally:
        sock.close()
    os.mkfifo(root / "pipe")
    with pytest.raises(BuildError, match="special file"):
        walk_entries(root)


def test_non_utf8_name_is_a_build_error(tmp_path: Path) -> None:
    root = tmp_path / "b"
    root.mkdir()
    open(os.path.join(os.fsencode(root), b"bad\xffname"), "wb").close()
    with pytest.raises(BuildError, match="UTF-8"):
        build_archive(root, tmp_path / "a.tar.gz")
    assert not (tmp_path / "a.tar.gz").exists()


def test_missing_build_folder(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="does not exist"):
        build_archive(tmp_path / "nope", tmp_path / "a.tar.gz")


def test_invalid_arcname_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_segment([Entry("../escape", None, True)], tmp_path / "s.gz")


# ---------------------------------------------------------------------------
# Property: arbitrary small trees round-trip

NAME = st.text(
    alphabet=st.characters(
        codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="/\\\0"
    ),
    min_size=1,
    max_size=12,
).filter(lambda s: s not in (".", ".."))


def trees(depth: int) -> st.SearchStrategy[dict[str, object]]:
    leaf = st.binary(max_size=2048)
    child = leaf if depth <= 1 else st.one_of(leaf, trees(depth - 1))
    return st.dictionaries(NAME, child, max_size=4)


def materialize(root: Path, spec: dict[str, object]) -> None:
    root.mkdir(exist_ok=True)
    for name, value in spec.items():
        if isinstance(value, bytes):
            (root / name).write_bytes(value)
        else:
            assert isinstance(value, dict)
            materialize(root / name, value)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=trees(3))
def test_property_round_trip(spec: dict[str, object]) -> None:
    with tempfile.TemporaryDirectory() as d:
        base = Path(d)
        materialize(base / "src", spec)
        arc = base / "a.tar.gz"
        build_archive(base / "src", arc)
        assert [m.name.rstrip("/") or "." for m in members(arc)] == [
            n.rstrip("/") if n != "./" else "." for n in expected_names(base / "src")
        ]
        extract_tarfile(arc, base / "x")
        assert snapshot(base / "x") == normalized_modes(base / "src")
