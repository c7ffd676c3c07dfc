"""Reproducibility: the same inputs give a byte-identical artifact.

Run: ``python bench/bench_repro.py [--no-reference]``.

1. The realistic app (``common.REALISTIC_FILES``) is written into two folders,
   ``$FLASH_BENCH_DIR/repro/one/app`` and ``.../two/app`` (same base name: the
   project name comes from it), and built in ``one``.
2. A few seconds later every file of ``two`` gets a different, scattered mtime
   (``os.utime``), and ``two`` is built with another time zone (``TZ``).
3. Every file of ``one`` is touched to "now" and ``one`` is rebuilt (incremental).
4. The three artifacts' sha256 must be equal (manifests compared too).
5. With ``SOURCE_DATE_EPOCH=1700000000``: ``one`` rebuilt (incremental) and a fresh
   copy ``three`` built from scratch; both artifacts must be equal, every tar member's
   mtime must be 1700000000 and the manifest's ``generated_at`` 2023-11-14T22:13:20Z.
   Also printed: the gzip header MTIME of each member, uid/gid/uname/gname values,
   whether member names are sorted.
6. Unless ``--no-reference``: the reference built in two folders, for comparison.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import struct
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    log,
    machine_info,
    reference_flash,
    reset_dir,
    run_ours,
    run_ref,
    verdict,
    write_realistic_app,
)

EPOCH = 1700000000


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def scatter_mtimes(root: Path, seed: int) -> int:
    rng = random.Random(seed)
    n = 0
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".flash"]
        for name in names + dirnames:
            t = time.time() - rng.randint(0, 10 * 365 * 86400)
            os.utime(os.path.join(dirpath, name), (t, t))
            n += 1
    return n


def gzip_member_mtimes(path: Path) -> list[int]:
    """The MTIME field of each gzip member (walks the multi-member stream)."""
    data = path.read_bytes()
    mtimes = []
    pos = 0
    import zlib

    while pos < len(data):
        if data[pos : pos + 2] != b"\x1f\x8b":
            break
        mtimes.append(struct.unpack("<I", data[pos + 4 : pos + 8])[0])
        d = zlib.decompressobj(-zlib.MAX_WBITS)
        # skip the header (no FEXTRA/FNAME/FCOMMENT expected; handle FNAME just in case)
        flags = data[pos + 3]
        hdr = pos + 10
        if flags & 4:
            (xlen,) = struct.unpack("<H", data[hdr : hdr + 2])
            hdr += 2 + xlen
        for bit in (8, 16):
            if flags & bit:
                hdr = data.index(b"\x00", hdr) + 1
        if flags & 2:
            hdr += 2
        d.decompress(data[hdr:])
        consumed = len(data) - hdr - len(d.unused_data)
        pos = hdr + consumed + 8  # CRC32 + ISIZE
    return mtimes


def describe_tar(path: Path) -> dict[str, Any]:
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    return {
        "members": len(members),
        "mtimes": sorted({m.mtime for m in members}),
        "uid_gid": sorted({(m.uid, m.gid) for m in members}),
        "uname_gname": sorted({(m.uname, m.gname) for m in members}),
        "sorted_names": names == sorted(names),
        "modes": sorted({oct(m.mode) for m in members}),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--no-reference", action="store_true", help="skip the reference comparison"
    )
    args = parser.parse_args()
    print(machine_info())
    root = reset_dir(BENCH_DIR / "repro")
    one = write_realistic_app(root / "one" / "app")
    two = root / "two" / "app"
    three = root / "three" / "app"
    env = {k: v for k, v in os.environ.items()}
    env.pop("SOURCE_DATE_EPOCH", None)
    os.environ.pop("SOURCE_DATE_EPOCH", None)

    results: list[tuple[str, bool]] = []

    log("build 1: folder one")
    run_ours(one)
    art1 = one / ".flash" / "artifact.tar.gz"
    sha1, man1 = sha256(art1), (one / ".flash" / "flash_manifest.json").read_bytes()
    time.sleep(3)

    log("build 2: folder two, scattered mtimes, TZ=Asia/Tokyo")
    shutil.copytree(one, two, ignore=shutil.ignore_patterns(".flash"))
    touched = scatter_mtimes(two, seed=2)
    run_ours(two, env={"TZ": "Asia/Tokyo"})
    sha2, man2 = (
        sha256(two / ".flash" / "artifact.tar.gz"),
        (two / ".flash" / "flash_manifest.json").read_bytes(),
    )

    log("build 3: folder one again after touching every file (incremental)")
    now = time.time()
    for dirpath, dirnames, names in os.walk(one):
        dirnames[:] = [d for d in dirnames if d != ".flash"]
        for name in names:
            os.utime(os.path.join(dirpath, name), (now, now))
    run_ours(one)
    sha3 = sha256(art1)

    print()
    print("ours, default timestamp (SOURCE_DATE_EPOCH unset):")
    print(f"  one/app (fresh)                          {sha1}")
    print(f"  two/app (fresh, {touched} mtimes scattered, TZ)  {sha2}")
    print(f"  one/app (incremental after touch)        {sha3}")
    same = sha1 == sha2 == sha3
    print(
        f"  identical artifacts: {verdict(same)}; identical manifests: {verdict(man1 == man2)}"
    )
    results.append(("byte-identical artifact across folders/times/mtimes", same))
    results.append(("identical manifest across folders", man1 == man2))
    info = describe_tar(art1)
    print(
        f"  tar: {info['members']} members, mtimes {info['mtimes']}, uid/gid {info['uid_gid']}, uname/gname {info['uname_gname']}, sorted names {info['sorted_names']}, modes {info['modes']}"
    )
    gz = gzip_member_mtimes(art1)
    print(f"  gzip members: {len(gz)}, header MTIME values {sorted(set(gz))}")

    log(
        f"builds 4 and 5: SOURCE_DATE_EPOCH={EPOCH}, folder one (incremental) and three (fresh)"
    )
    epoch_env = {"SOURCE_DATE_EPOCH": str(EPOCH)}
    run_ours(one, env=epoch_env)
    shutil.copytree(two, three, ignore=shutil.ignore_patterns(".flash"))
    scatter_mtimes(three, seed=3)
    run_ours(three, env=epoch_env)
    sha4, sha5 = sha256(art1), sha256(three / ".flash" / "artifact.tar.gz")
    info4 = describe_tar(art1)
    gz4 = gzip_member_mtimes(art1)
    manifest4 = json.loads((one / ".flash" / "flash_manifest.json").read_text())
    print()
    print(f"ours, SOURCE_DATE_EPOCH={EPOCH}:")
    print(f"  one/app (incremental)  {sha4}")
    print(f"  three/app (fresh)      {sha5}")
    epoch_ok = info4["mtimes"] == [EPOCH]
    gen_ok = manifest4.get("generated_at") == "2023-11-14T22:13:20Z"
    print(
        f"  identical: {verdict(sha4 == sha5)}; differs from the default-epoch artifact: {sha4 != sha1}"
    )
    print(f"  tar member mtimes {info4['mtimes']}: {verdict(epoch_ok)}")
    print(
        f"  manifest generated_at {manifest4.get('generated_at')!r}: {verdict(gen_ok)}"
    )
    print(f"  gzip header MTIME values {sorted(set(gz4))}")
    results.append(("SOURCE_DATE_EPOCH: identical incremental vs fresh", sha4 == sha5))
    results.append(("SOURCE_DATE_EPOCH: every member mtime == epoch", epoch_ok))
    results.append(("SOURCE_DATE_EPOCH: manifest generated_at", gen_ok))

    if not args.no_reference:
        reference_flash()
        log("reference: folders one and two")
        r1 = write_realistic_app(root / "ref-one" / "app")
        r2 = write_realistic_app(root / "ref-two" / "app")
        run_ref(r1, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
        time.sleep(2)
        run_ref(r2, env={"SOURCE_DATE_EPOCH": str(EPOCH)})
        s1, s2 = (
            sha256(r1 / ".flash" / "artifact.tar.gz"),
            sha256(r2 / ".flash" / "artifact.tar.gz"),
        )
        rinfo = describe_tar(r1 / ".flash" / "artifact.tar.gz")
        print()
        print(f"reference (for comparison, SOURCE_DATE_EPOCH={EPOCH} set):")
        print(
            f"  ref-one {s1}\n  ref-two {s2}\n  identical: {s1 == s2}; distinct member mtimes: {len(rinfo['mtimes'])}, uid/gid {rinfo['uid_gid']}, sorted names {rinfo['sorted_names']}"
        )
        print(
            f"  gzip header MTIME values {sorted(set(gzip_member_mtimes(r1 / '.flash' / 'artifact.tar.gz')))}"
        )

    print()
    for name, ok in results:
        print(f"{verdict(ok)}  {name}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
