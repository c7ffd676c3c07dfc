"""Byte-level checks of the artifact's tar headers and gzip members against the standard library.

Every expectation comes from ``tarfile``, ``gzip`` and ``zlib`` reading back (or writing) the
same thing, or from the format rules the modules' docstrings state: pax record lengths,
ustar limits, gzip framing, 1 MiB compressor slices.
"""

from __future__ import annotations

import calendar
import errno
import gzip
import hashlib
import io
import os
import struct
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

from flash_tasks import archive, tarheader
from flash_tasks.archive import Entry, assemble, replace_tail, write_segment, write_segments_parallel
from flash_tasks.errors import BuildError
from flash_tasks.tarheader import BLOCK, archive_mtime, padding, tar_header, tar_name

GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, mtime 0, OS 255: the module docstring


@pytest.fixture(autouse=True)
def _no_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def read_tar(data: bytes) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    """Every member of an uncompressed tar stream with its bytes (None for non-files)."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        return [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]  # type: ignore[union-attr]


def expected_header(name: str, mode: int, size: int, mtime: int, typeflag: bytes, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.mode, info.size, info.mtime, info.type, info.linkname = mode, size, mtime, typeflag, link
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


# -- archive_mtime -----------------------------------------------------------------------------------


def test_default_mtime_is_1980_01_01_utc() -> None:
    assert calendar.timegm((1980, 1, 1, 0, 0, 0)) == tarheader.DEFAULT_MTIME
    assert archive_mtime() == tarheader.DEFAULT_MTIME


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", calendar.timegm((1980, 1, 1, 0, 0, 0))),
        ("   ", calendar.timegm((1980, 1, 1, 0, 0, 0))),
        ("0", 0),
        (" 1700000000\n", 1_700_000_000),
        (str(8**11 - 1), 8**11 - 1),  # the largest mtime a 12-byte octal field holds
    ],
)
def test_source_date_epoch_values_accepted(monkeypatch: pytest.MonkeyPatch, raw: str, expected: int) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", raw)
    assert archive_mtime() == expected


@pytest.mark.parametrize("raw", ["-1", str(8**11), "1.5", "soon", "0x10"])
def test_source_date_epoch_values_refused(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", raw)
    with pytest.raises(BuildError) as info:
        archive_mtime()
    text = info.value.render()
    assert "SOURCE_DATE_EPOCH" in text and repr(raw) in text
    assert "hint: unset it or set it to e.g. the last commit time: git log -1 --format=%ct" in text


def test_largest_mtime_round_trips_through_tarfile() -> None:
    header = tar_header("./f", 0o644, 0, 8**11 - 1, tarfile.REGTYPE)
    info = tarfile.TarInfo.frombuf(header, "utf-8", "surrogateescape")
    assert info.mtime == 8**11 - 1


# -- pax records -------------------------------------------------------------------------------------


def names_of_byte_length(total: int) -> list[str]:
    """Names of exactly ``total`` UTF-8 bytes: plain ASCII and with two-byte characters."""
    return ["./" + "a" * (total - 2), "./é" + "b" * (total - 4)]


# A pax record "<len> path=<value>\n" has a length of 2 digits up to a value of 90 bytes and 3 digits
# from 91 bytes, 3 digits up to 989 bytes and 4 from 990: values around both edges.
PAX_LENGTHS = [88, 89, 90, 91, 92, 99, 100, 101, 102, 986, 987, 988, 989, 990, 991, 992]


@pytest.mark.parametrize("length", PAX_LENGTHS)
def test_pax_path_records_match_tarfile_at_digit_boundaries(length: int) -> None:
    for name in names_of_byte_length(length):
        for size in (0, 5):
            header = tar_header(name, 0o644, size, tarheader.DEFAULT_MTIME, tarfile.REGTYPE)
            assert header == expected_header(name, 0o644, size, tarheader.DEFAULT_MTIME, tarfile.REGTYPE)
            (info, data), = read_tar(header + b"x" * size + padding(size) + b"\0" * 1024)
            assert info.name == name
            assert data == b"x" * size


@pytest.mark.parametrize("length", PAX_LENGTHS)
def test_pax_linkpath_records_match_tarfile_at_digit_boundaries(length: int) -> None:
    for target in ("t" * length, "é" + "u" * (length - 2)):
        header = tar_header("./link", 0o777, 0, 0, tarfile.SYMTYPE, target)
        assert header == expected_header("./link", 0o777, 0, 0, tarfile.SYMTYPE, target)
        (info, _), = read_tar(header + b"\0" * 1024)
        assert info.issym() and info.linkname == target


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("./" + "n" * 200, "t" * 200),  # both long
        ("./ü", "ziel-ü"),  # both non-ASCII, short
        ("./plain", "ü" * 60),  # only the target
    ],
)
def test_name_and_target_both_in_pax_read_back(name: str, target: str) -> None:
    header = tar_header(name, 0o777, 0, 1_700_000_000, tarfile.SYMTYPE, target)
    assert header == expected_header(name, 0o777, 0, 1_700_000_000, tarfile.SYMTYPE, target)
    (info, _), = read_tar(header + b"\0" * 1024)
    assert (info.name, info.linkname, info.mtime, info.mode) == (name, target, 1_700_000_000, 0o777)
    assert set(info.pax_headers) <= {"path", "linkpath"}


def test_pax_header_block_is_a_typeflag_x_entry_with_zero_mtime() -> None:
    header = tar_header("./" + "q" * 120, 0o644, 0, 1_700_000_000, tarfile.REGTYPE)
    pax = tarfile.TarInfo.frombuf(header[:BLOCK], "utf-8", "surrogateescape")
    assert pax.type == tarfile.XHDTYPE
    assert pax.name == "././@PaxHeader"
    assert (pax.mtime, pax.mode, pax.uid, pax.gid, pax.uname, pax.gname) == (0, 0, 0, 0, "", "")
    record = header[BLOCK : BLOCK + pax.size]
    n, rest = record.split(b" ", 1)
    assert int(n) == len(record)
    assert rest == b"path=./" + b"q" * 120 + b"\n"
    assert len(header) == 3 * BLOCK


def test_sizes_at_the_ustar_limit() -> None:
    below = tar_header("./f", 0o644, 8**11 - 1, 0, tarfile.REGTYPE)
    assert len(below) == BLOCK
    assert tarfile.TarInfo.frombuf(below, "utf-8", "surrogateescape").size == 8**11 - 1
    at = tar_header("./f", 0o644, 8**11, 0, tarfile.REGTYPE)
    assert len(at) == 3 * BLOCK
    assert b"size=" + str(8**11).encode() + b"\n" in at[BLOCK : 2 * BLOCK]
    main = tarfile.TarInfo.frombuf(at[2 * BLOCK :], "utf-8", "surrogateescape")
    assert main.size == 0  # the real size lives in the pax record


@pytest.mark.parametrize(("name", "link", "what"), [("./bad\udcff", "", "file name"), ("./l", "bad\udcff", "symlink target")])
def test_names_that_are_not_utf8_are_refused_with_what_they_are(name: str, link: str, what: str) -> None:
    with pytest.raises(BuildError) as info:
        tar_header(name, 0o644, 0, 0, tarfile.SYMTYPE if link else tarfile.REGTYPE, link)
    text = info.value.render()
    assert f"cannot archive {what}" in text and "UTF-8" in text
    assert "hint: rename it; deployed file names must be UTF-8" in text


# -- names and padding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("arcname", "is_dir", "expected"),
    [("", True, "./"), ("a", False, "./a"), ("a", True, "./a/"), ("a/b.py", False, "./a/b.py"), ("a/.b", True, "./a/.b/")],
)
def test_tar_name(arcname: str, is_dir: bool, expected: str) -> None:
    assert tar_name(arcname, is_dir) == expected


@pytest.mark.parametrize("arcname", ["/a", "a/", "a//b", ".", "..", "./a", "a/../b", "a/.", "a/.."])
def test_tar_name_refuses_unnormalized_paths(arcname: str) -> None:
    with pytest.raises(ValueError, match="invalid arcname"):
        tar_name(arcname, False)


@pytest.mark.parametrize(("size", "pad"), [(0, 0), (1, 511), (511, 1), (512, 0), (513, 511), (1024, 0)])
def test_padding_fills_to_a_whole_block(size: int, pad: int) -> None:
    assert padding(size) == b"\0" * pad


# -- gzip members ------------------------------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", b"x", b"\0" * 1024, os.urandom(70_000)])
def test_member_bytes_is_a_complete_gzip_member(data: bytes) -> None:
    member = archive._member_bytes(data)
    assert member.startswith(GZIP_HEADER)
    d = zlib.decompressobj(31)  # checks CRC-32 and ISIZE
    assert d.decompress(member) == data and d.eof and d.unused_data == b""
    assert gzip.decompress(member) == data
    assert struct.unpack("<II", member[-8:]) == (zlib.crc32(data), len(data))


def test_end_member_is_two_zero_blocks() -> None:
    end = archive._member_bytes(b"\0" * 1024)
    assert gzip.decompress(end) == b"\0" * 1024
    assert len(end) == archive.END_MEMBER_SIZE
    assert hashlib.sha256(end).hexdigest() == archive.END_MEMBER_SHA256


def repetitive(size: int) -> bytes:
    """Data whose repeats lie 20 KiB apart: past a 16 KiB window, within the 32 KiB one."""
    block = os.urandom(20 * 1024)
    return (block * (size // len(block) + 1))[:size]


def check_codec(codec: archive._Codec, lib: object, version: str, label: str) -> None:
    assert codec.name == f"{label} {version} level 6"
    data = repetitive(200_000)
    c = codec.compressobj()
    raw = c.compress(data) + c.flush()
    ref = lib.compressobj(6, lib.DEFLATED, -15)  # type: ignore[attr-defined]
    assert raw == ref.compress(data) + ref.flush()
    assert zlib.decompress(raw, -15) == data
    assert len(raw) < len(data) // 5  # the 32 KiB window finds the repeats
    for start in (0, 12345):
        assert codec.crc32(data, start) == zlib.crc32(data, start)


def test_codec_with_zlib_ng() -> None:
    zlib_ng = pytest.importorskip("zlib_ng.zlib_ng")
    check_codec(archive._pick_codec(), zlib_ng, zlib_ng.ZLIBNG_VERSION, "zlib-ng")


def test_codec_falls_back_to_zlib(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "zlib_ng", None)
    monkeypatch.setitem(sys.modules, "zlib_ng.zlib_ng", None)
    check_codec(archive._pick_codec(), zlib, zlib.ZLIB_RUNTIME_VERSION, "zlib")


# -- segments around the 1 MiB slice ------------------------------------------------------------------


@pytest.mark.parametrize("size", [archive.CHUNK - 513, archive.CHUNK - 512, archive.CHUNK - 1, archive.CHUNK, archive.CHUNK + 1])
def test_segment_around_the_slice_size_reads_back(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f.bin").write_bytes(data)
    (tmp_path / "g.txt").write_bytes(b"tail")
    entries = [Entry("f.bin", tmp_path / "f.bin", False), Entry("g.txt", tmp_path / "g.txt", False)]
    info = write_segment(entries, tmp_path / "seg.gz", include_root=True)
    blob = (tmp_path / "seg.gz").read_bytes()
    raw = gzip.decompress(blob)
    assert blob.startswith(GZIP_HEADER)
    assert (info.compressed_size, info.sha256, info.entries) == (len(blob), hashlib.sha256(blob).hexdigest(), 3)
    # root header, f.bin's header, data and padding, g.txt's header and one padded block
    assert info.raw_size == len(raw) == BLOCK + BLOCK + size + (-size % BLOCK) + BLOCK + BLOCK
    got = read_tar(raw + b"\0" * 1024)
    assert [(m.name, m.type, m.size, m.mode) for m, _ in got] == [
        (".", tarfile.DIRTYPE, 0, 0o755),  # tarfile drops the trailing slash
        ("./f.bin", tarfile.REGTYPE, size, 0o644),
        ("./g.txt", tarfile.REGTYPE, 4, 0o644),
    ]
    assert got[1][1] == data and got[2][1] == b"tail"


def test_segment_of_several_slices_is_one_member_with_a_correct_trailer(tmp_path: Path) -> None:
    data = os.urandom(2 * archive.CHUNK + 100)
    (tmp_path / "big").write_bytes(data)
    write_segment([Entry("big", tmp_path / "big", False)], tmp_path / "seg.gz")
    blob = (tmp_path / "seg.gz").read_bytes()
    d = zlib.decompressobj(31)
    raw = d.decompress(blob)
    assert d.eof and d.unused_data == b""
    assert struct.unpack("<II", blob[-8:]) == (zlib.crc32(raw), len(raw) & 0xFFFFFFFF)
    (m, got), = read_tar(raw + b"\0" * 1024)
    assert got == data and m.mode == 0o644


def test_exec_bit_and_digest_check(tmp_path: Path) -> None:
    from flash_tasks.store import record_digest

    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\n")
    script.chmod(0o700)
    good = record_digest(hashlib.sha256(b"#!/bin/sh\n").digest())
    write_segment([Entry("run.sh", script, False, expect=good)], tmp_path / "ok.gz")
    (m, data), = read_tar(gzip.decompress((tmp_path / "ok.gz").read_bytes()) + b"\0" * 1024)
    assert (m.mode, data) == (0o755, b"#!/bin/sh\n")
    with pytest.raises(archive.DamagedSource) as info:
        write_segment([Entry("run.sh", script, False, expect=record_digest(b"\0" * 32))], tmp_path / "bad.gz")
    assert info.value.source == script
    assert info.value.render() == f"error: {script} changed since it was installed\n  hint: the build repairs it; run again"
    assert not (tmp_path / "bad.gz").exists()


# -- assembling: segment checks, kernel copy and its fallback ----------------------------------------------


def seg(tmp_path: Path, name: str, content: bytes, root: bool = False) -> Path:
    src = tmp_path / "src" / name
    src.parent.mkdir(parents=True, exist_ok=True)
    src.write_bytes(content)
    return write_segment([Entry(name, src, False)], tmp_path / f"{name}.gz", include_root=root).path


def tar_contents(path: Path) -> dict[str, bytes | None]:
    with tarfile.open(path, "r:gz") as tar:
        return {m.name: (tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}  # type: ignore[union-attr]


@pytest.mark.parametrize("way", ["assemble", "replace_tail"])
@pytest.mark.parametrize("kernel", ["absent", "copies-nothing", "EXDEV", "ENOSYS", "EINVAL", "EOPNOTSUPP"])
def test_copy_without_the_kernel_gives_the_same_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, way: str, kernel: str) -> None:
    a = seg(tmp_path, "a.txt", os.urandom(3000), root=True)
    b = seg(tmp_path, "b.txt", b"bee")
    expected = a.read_bytes() + b.read_bytes() + archive._member_bytes(b"\0" * 1024)
    if kernel == "absent":
        monkeypatch.delattr(os, "copy_file_range", raising=False)
    elif kernel == "copies-nothing":  # some filesystems answer 0 bytes copied
        monkeypatch.setattr(os, "copy_file_range", lambda *_args: 0)
    else:
        code = getattr(errno, kernel)

        def refuse(*_args: object) -> int:
            raise OSError(code, os.strerror(code))

        monkeypatch.setattr(os, "copy_file_range", refuse)
    out = tmp_path / "out.tar.gz"
    if way == "assemble":
        size = assemble([a, b], out)
    else:
        out.write_bytes(a.read_bytes() + b"old tail that goes")
        size = replace_tail(out, a.stat().st_size, [b])
    assert out.read_bytes() == expected and size == len(expected)
    assert tar_contents(out)["./b.txt"] == b"bee"


def test_copy_stops_on_other_kernel_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = seg(tmp_path, "a.txt", b"aaa", root=True)

    def broken(*_args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "copy_file_range", broken)
    out = tmp_path / "out.tar.gz"
    with pytest.raises(OSError) as info:
        assemble([a], out)
    assert info.value.errno == errno.EIO
    assert not out.exists()


def test_copy_that_fails_midway_is_not_restarted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = seg(tmp_path, "a.txt", os.urandom(5000), root=True)
    real = os.copy_file_range
    calls: list[int] = []

    def once_then_exdev(src: int, dst: int, count: int, *rest: object) -> int:
        calls.append(count)
        if len(calls) == 1:
            return real(src, dst, 100)
        raise OSError(errno.EXDEV, "cross-device")

    monkeypatch.setattr(os, "copy_file_range", once_then_exdev)
    with pytest.raises(OSError) as info:
        assemble([a], tmp_path / "out.tar.gz")
    assert info.value.errno == errno.EXDEV
    assert calls[0] == a.stat().st_size


def test_copy_all_counts_what_it_copied(tmp_path: Path) -> None:
    data = os.urandom(3 * archive.CHUNK // 2)
    (tmp_path / "src").write_bytes(data)
    with open(tmp_path / "src", "rb") as src, open(tmp_path / "dst", "wb") as dst:
        dst.write(b"head")
        assert archive.copy_all(src, dst) == len(data)
    assert (tmp_path / "dst").read_bytes() == b"head" + data


@pytest.mark.parametrize("damage", ["missing", "short", "not-gzip", "header-only"])
def test_damaged_segments_are_refused_before_writing(tmp_path: Path, damage: str) -> None:
    good = seg(tmp_path, "a.txt", b"a", root=True)
    bad = tmp_path / "bad.gz"
    if damage == "short":
        bad.write_bytes(GZIP_HEADER + b"\0" * 7)
    elif damage == "not-gzip":
        bad.write_bytes(b"\0" * 100)
    elif damage == "header-only":
        bad.write_bytes(GZIP_HEADER)
    out = tmp_path / "out.tar.gz"
    out.write_bytes(b"previous")
    for call in (lambda: assemble([good, bad], out), lambda: replace_tail(out, 3, [good, bad])):
        with pytest.raises(BuildError) as info:
            call()
        text = info.value.render()
        assert str(bad) in text and "hint: delete the .flash folder and rebuild" in text
        assert ("cannot read archive segment" if damage == "missing" else "is damaged") in text
        assert out.read_bytes() == b"previous"


def test_shortest_valid_segment_is_accepted(tmp_path: Path) -> None:
    smallest = tmp_path / "tiny.gz"
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    smallest.write_bytes(GZIP_HEADER + c.compress(b"") + c.flush() + struct.pack("<II", 0, 0))
    out = tmp_path / "out.tar.gz"
    assemble([smallest], out)
    assert gzip.decompress(out.read_bytes()) == b"\0" * 1024


def test_replace_tail_out_of_space_is_a_build_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = seg(tmp_path, "a.txt", b"aaa", root=True)
    out = tmp_path / "out.tar.gz"
    out.write_bytes(a.read_bytes())

    def full(*_args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "copy_file_range", full)
    with pytest.raises(BuildError) as info:
        replace_tail(out, 0, [a])
    text = info.value.render()
    assert f"no space left on device while writing {out}" in text
    assert "hint: free some disk space and build again; the previous artifact was left as it was" in text


def test_replace_tail_other_errors_propagate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = seg(tmp_path, "a.txt", b"aaa", root=True)
    out = tmp_path / "out.tar.gz"
    out.write_bytes(a.read_bytes())

    def broken(*_args: object) -> int:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "copy_file_range", broken)
    with pytest.raises(OSError) as info:
        replace_tail(out, 0, [a])
    assert not isinstance(info.value, BuildError) and info.value.errno == errno.EIO


# -- parallel writing -----------------------------------------------------------------------------


@pytest.mark.parametrize("workers", [None, 1, 2, 8])
def test_parallel_results_are_in_job_order_and_equal_serial_bytes(tmp_path: Path, workers: int | None) -> None:
    src = tmp_path / "src"
    src.mkdir()
    jobs = []
    for i in range(4):
        (src / f"f{i}").write_bytes(os.urandom(1000 * (4 - i)))
        jobs.append(([Entry(f"f{i}", src / f"f{i}", False)], tmp_path / "par" / f"s{i}.gz"))
    infos = write_segments_parallel(jobs, workers)
    assert [i.path for i in infos] == [out for _, out in jobs]
    for i, (entries, out) in enumerate(jobs):
        serial = write_segment(entries, tmp_path / "ser" / f"s{i}.gz")
        assert out.read_bytes() == serial.path.read_bytes()
        assert infos[i].entries == 1 and infos[i].sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert sorted(p.name for p in (tmp_path / "par").iterdir()) == [f"s{i}.gz" for i in range(4)]


# -- walking the build folder: errors name the path and the reason ------------------------------------


@pytest.mark.parametrize(
    ("call", "expected"),
    [("readlink", "cannot read symlink {path}: Permission denied"), ("lstat", "cannot stat {path}: Permission denied")],
)
def test_walk_errors_name_the_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, call: str, expected: str) -> None:
    import socket

    from flash_tasks import archive_entries

    root = tmp_path / "build"
    root.mkdir()
    if call == "readlink":
        path = root / "link"
        path.symlink_to("target")
    else:
        path = root / "sock"
        sock = socket.socket(socket.AF_UNIX)
        try:
            sock.bind(str(path))
        except OSError:
            pytest.skip("no unix sockets here")
        finally:
            sock.close()

    def denied(*_args: object, **_kw: object) -> object:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(archive_entries.os, call, denied)
    with pytest.raises(BuildError) as info:
        archive_entries.walk_entries(root)
    assert info.value.message == expected.format(path=path)


def test_unlistable_folder_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks import archive_entries

    root = tmp_path / "build"
    (root / "sub").mkdir(parents=True)
    real = os.scandir

    def scandir(path: object) -> object:
        if Path(str(path)).name == "sub":
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        return real(path)  # type: ignore[arg-type]

    monkeypatch.setattr(archive_entries.os, "scandir", scandir)
    with pytest.raises(BuildError) as info:
        archive_entries.walk_entries(root)
    assert info.value.message == f"cannot list {root / 'sub'}: Permission denied"


def test_sockets_are_skipped_and_the_walk_goes_on_but_fifos_are_refused(tmp_path: Path) -> None:
    import socket

    from flash_tasks import archive_entries

    root = tmp_path / "build"
    (root / "a").mkdir(parents=True)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "a" / "a.sock"))
    except OSError:
        pytest.skip("no unix sockets here")
    finally:
        sock.close()
    (root / "a" / "b.txt").write_text("b")
    (root / "c.txt").write_text("c")
    assert [(e.arcname, e.is_dir) for e in archive_entries.walk_entries(root)] == [("a", True), ("a/b.txt", False), ("c.txt", False)]
    os.mkfifo(root / "a" / "fifo")
    with pytest.raises(BuildError) as info:
        archive_entries.walk_entries(root)
    assert info.value.render() == (
        f"error: cannot archive special file {root / 'a' / 'fifo'} (not a file, directory or symlink)\n"
        "  hint: remove it from the build folder"
    )


def test_a_file_that_shrinks_while_archived_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = tmp_path / "f.txt"
    src.write_bytes(b"12345")
    real = os.fstat

    def fstat_before_truncation(fd: int) -> os.stat_result:
        st = list(real(fd))
        st[6] = 10  # st_size: the file was 10 bytes when it was opened
        return os.stat_result(st)

    monkeypatch.setattr(archive.os, "fstat", fstat_before_truncation)
    with pytest.raises(BuildError) as info:
        write_segment([Entry("f.txt", src, False)], tmp_path / "seg.gz")
    assert info.value.render() == (
        f"error: {src} shrank while it was being archived\n"
        "  hint: make sure nothing writes to the build folder during the build"
    )
    assert not (tmp_path / "seg.gz").exists()
