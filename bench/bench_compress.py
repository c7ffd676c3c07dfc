"""Compare deflate libraries and levels for the build archive.

Run: ``python bench/bench_compress.py [--segments] [DIR]``. DIR defaults to
numpy's installed tree if importable, else this interpreter's site-packages;
the numbers in ``flash_tasks/archive.py`` came from a 216.6 MB
site-packages and a numpy 2.4 tree.

By default, builds the uncompressed tar stream of DIR in memory once, then
compresses it in 1 MiB slices -- the way ``flash_tasks.archive`` feeds its
compressor -- with every available library/level, single-threaded and with
two threads on two halves (to see whether the library releases the GIL).
``--segments`` times ``flash_tasks.archive`` end to end instead: one
segment, then two segments written in parallel.
"""

from __future__ import annotations

import importlib.util
import io
import sys
import sysconfig
import tarfile
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 1 << 20


def default_dir() -> Path:
    """numpy's installed tree if importable (a realistic .py/.so mix), else site-packages."""
    spec = importlib.util.find_spec("numpy")
    if spec is not None and spec.origin is not None:
        return Path(spec.origin).parent
    return Path(sysconfig.get_paths()["purelib"])


def tar_stream(root: Path) -> bytes:
    """The plain tar bytes of ``root``, so every codec sees identical input."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.add(str(root), arcname=".")
    return buf.getvalue()


def codecs() -> list[tuple[str, Callable[[], Any]]]:
    """Every (label, raw-deflate compressobj factory) that imports here."""
    out: list[tuple[str, Callable[[], Any]]] = []
    for level in (1, 6, 9):
        out.append((f"zlib-{level}", lambda lv=level: zlib.compressobj(lv, zlib.DEFLATED, -15)))
    try:
        from zlib_ng import zlib_ng
    except ImportError:
        pass
    else:
        for level in (1, 4, 6, 9):
            out.append(
                (
                    f"zlib-ng-{level}",
                    lambda lv=level: zlib_ng.compressobj(lv, zlib_ng.DEFLATED, -15),
                )
            )
    try:
        from isal import isal_zlib
    except ImportError:
        pass
    else:
        for level in (1, 2, 3):
            out.append(
                (
                    f"isal-{level}",
                    lambda lv=level: isal_zlib.compressobj(lv, isal_zlib.DEFLATED, -15),
                )
            )
    return out


def compress(factory: Callable[[], Any], data: memoryview) -> int:
    """Compressed size of ``data`` fed in CHUNK slices."""
    c = factory()
    n = 0
    for i in range(0, len(data), CHUNK):
        n += len(c.compress(data[i : i + CHUNK]))
    return n + len(c.flush())


def main() -> None:
    args = sys.argv[1:]
    segments = "--segments" in args
    args = [a for a in args if a != "--segments"]
    root = Path(args[0]) if args else default_dir()
    if segments:
        with tempfile.TemporaryDirectory() as d:
            bench_segments(root, Path(d))
        return
    data = memoryview(tar_stream(root))
    mb = len(data) / 1e6
    print(f"input: {root} -> {mb:.1f} MB tar")
    base9 = compress(lambda: zlib.compressobj(9, zlib.DEFLATED, -15), data)
    print(f"{'codec':<11} {'MB/s 1T':>8} {'MB/s 2T':>8} {'ratio':>6} {'vs zlib-9':>9}")
    for label, factory in codecs():
        t = time.perf_counter()
        size = compress(factory, data)
        one = time.perf_counter() - t
        half = len(data) // 2
        threads = [
            threading.Thread(target=compress, args=(factory, part))
            for part in (data[:half], data[half:])
        ]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        two = time.perf_counter() - t
        print(
            f"{label:<11} {mb / one:8.1f} {mb / two:8.1f} {len(data) / size:6.3f} "
            f"{(size / base9 - 1) * 100:+8.1f}%"
        )


def bench_segments(root: Path, outdir: Path) -> None:
    """End to end through ``flash_tasks.archive``: one segment vs two in parallel."""
    from flash_tasks.archive import (
        COMPRESSOR,
        walk_entries,
        write_segment,
        write_segments_parallel,
    )

    entries = walk_entries(root)
    total = sum(e.source.stat().st_size for e in entries if e.source and e.link_target is None)
    tops = sorted({e.arcname.split("/")[0] for e in entries})
    first = set(tops[: len(tops) // 2])
    a = [e for e in entries if e.arcname.split("/")[0] in first]
    b = [e for e in entries if e.arcname.split("/")[0] not in first]
    outdir.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    write_segment(entries, outdir / "one.gz")
    one = time.perf_counter() - t
    t = time.perf_counter()
    infos = write_segments_parallel([(a, outdir / "a.gz"), (b, outdir / "b.gz")], workers=2)
    two = time.perf_counter() - t
    split = [i.raw_size for i in infos]
    print(f"{COMPRESSOR}: {total / 1e6:.1f} MB of files")
    print(f"  one segment      {one:6.2f} s  {total / 1e6 / one:6.1f} MB/s")
    print(
        f"  2 parallel (raw {split[0] / 1e6:.0f}+{split[1] / 1e6:.0f} MB) {two:6.2f} s  "
        f"{total / 1e6 / two:6.1f} MB/s"
    )


if __name__ == "__main__":
    main()
