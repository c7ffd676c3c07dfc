"""Compare deflate libraries and levels for the build archive.

Run: ``python bench/bench_compress.py [DIR]`` (default: a site-packages tree).
Builds the uncompressed tar stream of DIR in memory once, then compresses it
in 1 MiB slices -- the way ``flash_tasks.archive`` feeds its compressor -- with
every available library/level, single-threaded and with two threads on two
halves (to see whether the library releases the GIL).
"""

from __future__ import annotations

import io
import sys
import tarfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

CHUNK = 1 << 20

DEFAULT_DIRS = (
    Path("/tmp/refvenv/lib/python3.11/site-packages/numpy"),
    Path("/tmp/refvenv/lib/python3.11/site-packages"),
)


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
                (f"zlib-ng-{level}", lambda lv=level: zlib_ng.compressobj(lv, zlib_ng.DEFLATED, -15))
            )
    try:
        from isal import isal_zlib
    except ImportError:
        pass
    else:
        for level in (1, 2, 3):
            out.append(
                (f"isal-{level}", lambda lv=level: isal_zlib.compressobj(lv, isal_zlib.DEFLATED, -15))
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
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else next(d for d in DEFAULT_DIRS if d.is_dir())
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


if __name__ == "__main__":
    main()
