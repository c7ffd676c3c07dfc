"""Reproducible, incremental ``.tar.gz`` writer for the build artifact.

Why this exists instead of ``tarfile.open(out, "w:gz")``:

* **Reproducible.** The same build folder gives the same bytes wherever it
  lives and whatever its files' timestamps, owners or umask: every entry gets
  the mtime of ``SOURCE_DATE_EPOCH`` (else 1980-01-01), uid/gid 0, empty
  user/group names and a mode of 0o755 or 0o644; the gzip headers carry no
  file name, mtime 0 and OS byte 255. The tar headers are encoded by
  ``flash_tasks.tarheader`` rather than by ``tarfile.TarInfo.tobuf`` so that
  the bytes do not drift between Python releases: today's ``tobuf`` writes
  the same bytes (tests/test_archive.py compares them for every kind of
  entry), but older releases wrote ``0000000`` where current ones leave a
  file's device numbers empty, and a segment cached by one Python must match
  what another writes from scratch.
* **Incremental.** A gzip file may be several gzip members back to back, and a
  tar stream may be cut between entries. So an archive is a run of
  independently compressed *segments* (say, hundreds of MB of unchanged
  dependencies, kept from the last build, plus a fresh small one for the
  app's sources) followed by one small member holding the tar end-of-archive
  marker. ``gzip``/``tarfile``/GNU tar read the result as one archive, and
  because each segment depends only on its own entries, rewriting one segment
  gives the same bytes as building everything from scratch.

Layout, as the reference ``flash build`` writes it (``tarfile.add`` of the
build folder under ``.``): the first entry is ``./``, then a depth-first
pre-order walk with each directory's children sorted by name, names being
``./`` + the relative POSIX path and directories ending in ``/``. Symlinks
are stored as symlink entries with their target text unchanged, as
``tarfile.add`` does; every regular file is stored whole (hard links are not
detected, so the output does not depend on how the files were linked in).
Sockets are skipped like ``tarfile`` skips them; FIFOs and device files are a
``BuildError``. Names that are longer than 100 bytes or not ASCII get a POSIX
pax ``path``/``linkpath`` record, as ``tarfile.PAX_FORMAT`` does; no record
ever carries a time.

Compression: raw deflate from the fastest library found at import time,
wrapped in gzip framing written here. Measured with
``bench/bench_compress.py`` on 2 cores, single thread, on the tar of a
216.6 MB site-packages (boto3/botocore/aiohttp/...; numpy's 45.6 MB tree
gave the same ranking)::

    codec       MB/s   ratio  size vs zlib -9
    zlib -6     39.9   3.089  +0.7%
    zlib -9      9.0   3.112   0.0%
    zlib-ng -4 116.5   3.002  +3.7%
    zlib-ng -6  89.9   3.055  +1.9%   <- chosen when installed
    zlib-ng -9  29.0   3.116  -0.1%
    isal -1    562.7   2.754 +13.0%
    isal -3    296.6   2.822 +10.3%

ISA-L is the fastest by far but ~10-17% larger, past the ~3% budget; so the
choice is ``zlib_ng`` level 6 when ``zlib-ng`` is installed, else the
standard library's ``zlib`` at level 6. All of them release the GIL while
compressing (two threads on two halves ran 1.9-2.0x as fast), which is what
``write_segments_parallel`` relies on. End to end through this module
(walk, read and compress 193 MB of files in 13,248 entries, zlib-ng -6):
one segment 70 MB/s; two segments of 92 + 111 MB on two threads 108 MB/s.
Output bytes are a pure function of the input for one library build, but
different libraries (or versions of one) produce different, equally valid
bytes: ``COMPRESSOR`` names the one in use so that a cache of segments can
be keyed on it, and a machine without ``zlib-ng`` builds other bytes than
one with it.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
import stat
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from flash_tasks.archive_entries import ROOT, DamagedSource, Entry, walk_entries
from flash_tasks.errors import BuildError
from flash_tasks.store import record_digest
from flash_tasks.tarheader import BLOCK, DEFAULT_MTIME, archive_mtime, padding, tar_header, tar_name

if TYPE_CHECKING:
    from concurrent.futures import Future

__all__ = [
    "COMPRESSOR",
    "DEFAULT_MTIME",
    "END_MEMBER_SIZE",
    "FORMAT_VERSION",
    "ROOT",
    "DamagedSource",
    "Entry",
    "SegmentInfo",
    "archive_mtime",
    "assemble",
    "walk_entries",
    "write_segment",
    "write_segments_parallel",
]

#: Bumped whenever the bytes written for the same entries change, so cached
#: segments from an older version are never mixed with new ones.
FORMAT_VERSION = 1

#: Size of the uncompressed slices fed to the compressor. Fixed slice
#: boundaries keep the output independent of how files happen to be read.
CHUNK = 1 << 20

_COMPRESS_LEVEL = 6
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}


# --------------------------------------------------------------------------
# Compressor choice


class _Compressor(Protocol):
    def compress(self, data: bytes | memoryview, /) -> bytes: ...

    def flush(self, /) -> bytes: ...


@dataclass(frozen=True)
class _Codec:
    name: str
    compressobj: Callable[[], _Compressor]
    crc32: Callable[[bytes | memoryview, int], int]


def _pick_codec() -> _Codec:
    """zlib-ng at level 6 when installed (2.25x zlib's speed, +1.9% size), else zlib."""
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        return _Codec(
            name=f"zlib {zlib.ZLIB_RUNTIME_VERSION} level {_COMPRESS_LEVEL}",
            compressobj=lambda: zlib.compressobj(_COMPRESS_LEVEL, zlib.DEFLATED, -15),
            crc32=zlib.crc32,
        )
    return _Codec(
        name=f"zlib-ng {zlib_ng.ZLIBNG_VERSION} level {_COMPRESS_LEVEL}",
        compressobj=lambda: zlib_ng.compressobj(_COMPRESS_LEVEL, zlib_ng.DEFLATED, -15),
        crc32=zlib_ng.crc32,
    )


_CODEC = _pick_codec()

#: Which deflate library and level produce the bytes; part of any cache key
#: for segments, together with ``FORMAT_VERSION`` and ``archive_mtime()``.
COMPRESSOR = _CODEC.name


def _new_compressor() -> _Compressor:
    """A raw-deflate compressor (looked up at call time so tests can swap it)."""
    return _CODEC.compressobj()


# gzip member header: magic, CM=deflate, FLG=0 (no name/comment/extra),
# MTIME=0, XFL=0, OS=255 "unknown" -- the same on every platform and library.
_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


# --------------------------------------------------------------------------
# gzip member writer


class _GzipMember:
    """Writes one gzip member: header, raw deflate of fixed 1 MiB slices, trailer.

    The uncompressed stream is collected in a 1 MiB buffer, and file contents
    are read straight into it, so no file is ever held whole in memory.
    """

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._compressor = _new_compressor()
        self._buf = bytearray(CHUNK)
        self._view = memoryview(self._buf)
        self._fill = 0
        self._crc = 0
        self.raw_size = 0
        self.compressed_size = len(_GZIP_HEADER)
        out.write(_GZIP_HEADER)

    def write(self, data: bytes) -> None:
        """Append ``data`` to the uncompressed stream."""
        view = memoryview(data)
        while view:
            n = min(len(view), CHUNK - self._fill)
            self._view[self._fill : self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == CHUNK:
                self._flush_chunk()

    def copy_from(self, src: io.RawIOBase, size: int, path: Path, digest: Any = None) -> None:
        """Append exactly ``size`` bytes read from ``src`` (the file at ``path``), hashing them into ``digest``."""
        remaining = size
        while remaining:
            want = min(remaining, CHUNK - self._fill)
            try:
                got = src.readinto(self._view[self._fill : self._fill + want])
            except OSError as exc:
                raise BuildError(f"cannot read {path}: {exc.strerror}") from exc
            if not got:
                raise BuildError(
                    f"{path} shrank while it was being archived",
                    hint="make sure nothing writes to the build folder during the build",
                )
            if digest is not None:
                digest.update(self._view[self._fill : self._fill + got])
            self._fill += got
            remaining -= got
            if self._fill == CHUNK:
                self._flush_chunk()

    def _flush_chunk(self) -> None:
        chunk = self._view[: self._fill]
        self._crc = _CODEC.crc32(chunk, self._crc)
        self.raw_size += self._fill
        self._emit(self._compressor.compress(chunk))
        self._fill = 0

    def _emit(self, data: bytes) -> None:
        if data:
            self._out.write(data)
            self.compressed_size += len(data)

    def close(self) -> None:
        """Compress what is buffered and write the CRC-32/ISIZE trailer."""
        if self._fill:
            self._flush_chunk()
        self._emit(self._compressor.flush())
        self._emit(struct.pack("<II", self._crc, self.raw_size & 0xFFFFFFFF))


def _member_bytes(data: bytes) -> bytes:
    """``data`` as a complete gzip member, in memory (for small, fixed members)."""
    c = _CODEC.compressobj()
    body = c.compress(data) + c.flush()
    return _GZIP_HEADER + body + struct.pack("<II", _CODEC.crc32(data, 0), len(data))


#: The last member of every archive: the tar end-of-archive marker (two zero
#: blocks). ``tarfile`` would pad further to a 10240-byte record; readers
#: don't need that.
_END_MEMBER = _member_bytes(b"\0" * (2 * BLOCK))
END_MEMBER_SIZE = len(_END_MEMBER)
END_MEMBER_SHA256 = hashlib.sha256(_END_MEMBER).hexdigest()


def _write_entry(member: _GzipMember, entry: Entry, mtime: int) -> int:
    """Write one entry's header and data; returns its raw tar size."""
    name = tar_name(entry.arcname, entry.is_dir)
    if entry.is_dir:
        header = tar_header(name, 0o755, 0, mtime, b"5")
        member.write(header)
        return len(header)
    if entry.link_target is not None:
        header = tar_header(name, 0o777, 0, mtime, b"2", entry.link_target)
        member.write(header)
        return len(header)
    if entry.source is None:
        raise ValueError(f"file entry {entry.arcname!r} has no source")
    try:
        src = open(entry.source, "rb", buffering=0)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BuildError(f"cannot read {entry.source}: {exc.strerror}") from exc
    with src:
        st = os.fstat(src.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BuildError(f"cannot archive {entry.source}: not a regular file")
        mode = 0o755 if st.st_mode & 0o111 else 0o644
        header = tar_header(name, mode, st.st_size, mtime, b"0")
        member.write(header)
        digest = hashlib.sha256() if entry.expect is not None else None
        member.copy_from(src, st.st_size, entry.source, digest)
        if digest is not None and record_digest(digest.digest()) != entry.expect:
            raise DamagedSource(entry.source)
    pad = padding(st.st_size)
    member.write(pad)
    return len(header) + st.st_size + len(pad)


# --------------------------------------------------------------------------
# Atomic output


@contextmanager
def _atomic_output(out: Path, *, durable: bool = True) -> Iterator[BinaryIO]:
    """A buffered file that becomes ``out`` only once fully written (and, if ``durable``, synced).

    Data goes to ``.<name>.tmp-<pid>-<thread>`` beside ``out``; on any failure
    the temp file is removed and ``out`` is left as it was. Running out of
    disk space becomes a ``BuildError``; other OS errors propagate. Segments
    are not synced (``durable=False``): they are caches checked against their
    records before use, or scratch read once and deleted, and syncing one makes
    the file system write out everything the build wrote before it (the
    installed dependencies): most of a cold build's wait, 1 to 40 ms of an edit's.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}-{threading.get_native_id()}")
    done = False
    try:
        with open(tmp, "wb", buffering=CHUNK) as f:
            yield f
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, out)
        done = True
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise BuildError(
                f"no space left on device while writing {out}",
                hint="free some disk space and build again; the previous artifact was left as it was",
            ) from exc
        raise
    finally:
        if not done:
            tmp.unlink(missing_ok=True)
    if durable:
        _fsync_dir(out.parent)


def _fsync_dir(path: Path) -> None:
    """Make the rename durable; some filesystems cannot sync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------
# Public writers


@dataclass(frozen=True)
class SegmentInfo:
    """What one written segment (or whole archive) holds.

    ``compressed_size`` is the file's size in bytes (what counts against
    ``catalog.MAX_ARTIFACT_MB``), ``raw_size`` the uncompressed tar bytes and
    ``entries`` the number of entries.
    """

    path: Path
    compressed_size: int
    raw_size: int
    entries: int
    #: sha256 (hex) of the file's bytes, computed while writing.
    sha256: str = ""


def _write_entries(f: BinaryIO, entries: Iterable[Entry], mtime: int) -> tuple[int, int, int]:
    member = _GzipMember(f)
    count = 0
    for entry in entries:
        _write_entry(member, entry, mtime)
        count += 1
    member.close()
    return member.compressed_size, member.raw_size, count


def write_segment(
    entries: Iterable[Entry], out: Path, *, include_root: bool = False
) -> SegmentInfo:
    """Write ``entries`` as one gzip member of tar records, without end marker.

    The segment can be cached and later concatenated by ``assemble``. Its
    bytes depend only on the entries (names, file contents, exec bits, link
    targets), ``archive_mtime()`` and ``COMPRESSOR``. ``include_root`` puts
    the ``./`` entry first; exactly one segment of an archive, the first,
    should have it. It is not synced to disk (see ``_atomic_output``).
    """
    mtime = archive_mtime()
    items: Iterable[Entry] = entries
    if include_root:
        items = [ROOT, *entries]
    with _atomic_output(out, durable=False) as f:
        hashing = _HashingWriter(f)
        compressed, raw, count = _write_entries(hashing, items, mtime)  # type: ignore[arg-type]
    return SegmentInfo(out, compressed, raw, count, hashing.digest.hexdigest())


class _HashingWriter:
    """Passes writes through to a file, hashing them on the way (the segment's record)."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.digest = hashlib.sha256()

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        return self._out.write(data)


def write_segments_parallel(
    jobs: Sequence[tuple[Sequence[Entry], Path]], workers: int | None = None
) -> list[SegmentInfo]:
    """``write_segment`` for independent jobs at once, results in job order.

    Threads suffice because the compressors and file reads release the GIL:
    compressing two halves of a stream on two threads ran 1.9-2.0x as fast
    as one thread (``bench/bench_compress.py``), for every library above.
    None of the jobs include the root: put ``ROOT`` first in the first job's
    entries. On failure the first failing job's error (in job order) is
    raised after the running ones finish; jobs not yet started are dropped.
    """
    outs = [out.resolve() for _, out in jobs]
    if len(set(outs)) != len(outs):
        raise ValueError("write_segments_parallel: two jobs write the same file")
    n = min(workers or os.cpu_count() or 1, len(jobs))
    if n <= 1:
        return [write_segment(entries, out) for entries, out in jobs]
    from concurrent.futures import ThreadPoolExecutor  # an edit writes one segment: no pool, no import

    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="flash-archive") as pool:
        futures: list[Future[SegmentInfo]] = [
            pool.submit(write_segment, entries, out) for entries, out in jobs
        ]
        results: list[SegmentInfo] = []
        for i, fut in enumerate(futures):
            if fut.exception() is not None:
                for rest in futures[i + 1 :]:
                    rest.cancel()
            results.append(fut.result())
    return results


def assemble(segments: Sequence[Path], out: Path) -> int:
    """Concatenate segment files plus the end-of-archive member into ``out``.

    Written atomically: an existing ``out`` stays intact if anything fails,
    including a missing or damaged segment. Returns ``out``'s size in bytes.
    """
    for seg in segments:
        _check_segment(seg)
    size = 0
    with _atomic_output(out) as f:
        for seg in segments:
            with open(seg, "rb") as src:
                size += copy_all(src, f)
        f.write(_END_MEMBER)
        size += END_MEMBER_SIZE
    return size


def copy_all(src: BinaryIO, dst: BinaryIO) -> int:
    """Append all of ``src`` to ``dst``, in the kernel when it can (no trip through Python).

    Cached dependency segments can be hundreds of MB; ``copy_file_range`` copies
    them without reading them into this process (and shares extents on
    filesystems that support it).
    """
    total = os.fstat(src.fileno()).st_size
    dst.flush()
    copied = 0
    if hasattr(os, "copy_file_range"):
        try:
            while copied < total:
                n = os.copy_file_range(src.fileno(), dst.fileno(), total - copied)
                if n == 0:
                    break
                copied += n
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP) or copied:
                raise
    if copied < total:
        src.seek(copied)
        shutil.copyfileobj(src, dst, CHUNK)
        copied = total
    return copied


def replace_tail(path: Path, keep: int, segments: Sequence[Path]) -> int:
    """Cut ``path`` after its first ``keep`` bytes, append ``segments`` and the end marker.

    This is how an edit costs only the size of what changed: the caller keeps
    the unchanged leading segments of an older, unpublished copy and replaces
    the rest. ``path`` must not be a published file: it is changed in place.
    Returns the new size.
    """
    for seg in segments:
        _check_segment(seg)
    try:
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.seek(keep)
            size = keep
            for seg in segments:
                with open(seg, "rb") as src:
                    size += copy_all(src, f)
            f.write(_END_MEMBER)
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise BuildError(
                f"no space left on device while writing {path}",
                hint="free some disk space and build again; the previous artifact was left as it was",
            ) from exc
        raise
    return size + END_MEMBER_SIZE


def _check_segment(seg: Path) -> None:
    """Refuse a segment that is missing or does not start like our gzip member."""
    try:
        with open(seg, "rb") as f:
            head = f.read(len(_GZIP_HEADER))
            f.seek(0, os.SEEK_END)
            size = f.tell()
    except OSError as exc:
        raise BuildError(
            f"cannot read archive segment {seg}: {exc.strerror}",
            hint="delete the .flash folder and rebuild",
        ) from exc
    if head != _GZIP_HEADER or size < len(_GZIP_HEADER) + 8:
        raise BuildError(
            f"archive segment {seg} is damaged",
            hint="delete the .flash folder and rebuild",
        )

