"""Shared caches: cold builds that reuse segments compressed by another app or machine.

Run: ``python bench/bench_cache.py [--runs N] [--no-reference]`` with the interpreter that
has flash-tasks and wsgidav installed (``pip install -e '.[test]'``).

The app is the realistic one of ``bench_realistic.py`` (numpy, pillow, requests, pyyaml;
three endpoints). Cases, each timed ``--runs`` times (median, min-max):

* ``ref cold``: the reference's cold build (``.flash/`` deleted; pip's cache warm);
* ``ours cold, no cache``: ours with the shared cache off (``FLASH_TASKS_CACHE_MAX=0``);
* ``second app, warm local``: a second app with the same dependencies, empty ``.flash/``,
  the shared cache filled by the first app's build;
* ``fresh machine, warm remote``: empty ``.flash/``, empty local cache, empty uv cache, and
  a remote cache (WsgiDAV on 127.0.0.1, filled by the first app) — uv downloads the wheels
  from the index again, the segments come from the remote;
* ``remote down``: empty ``.flash/`` and local cache, uv cache warm, a remote URL nobody
  answers on: the time lost against ``ours cold, no cache``.

Every artifact is compared byte for byte with the no-cache build of the same app (same
folder name). Prints a table with ratios against the reference and peak RSS.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    delete_flash,
    log,
    machine_info,
    run_ours,
    run_ref,
    stats,
    table,
    verdict,
    write_realistic_app,
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_wsgidav(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``wsgidav --auth anonymous`` on a free port, serving ``root`` (with ``cas/`` and ``ac/``)."""
    (root / "cas").mkdir(parents=True, exist_ok=True)
    (root / "ac").mkdir(parents=True, exist_ok=True)
    port = free_port()
    exe = Path(sys.executable).parent / "wsgidav"
    proc = subprocess.Popen(
        [str(exe), "--host", "127.0.0.1", "--port", str(port), "--root", str(root), "--auth", "anonymous", "--no-config", "-q", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("wsgidav did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="skip the reference's cold build")
    args = parser.parse_args()
    print(machine_info())
    work = BENCH_DIR / "cache-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # Same folder name everywhere: the project name is part of the manifest.
    first = write_realistic_app(work / "first" / "app")
    baseline_app = write_realistic_app(work / "baseline" / "app")
    second = write_realistic_app(work / "second" / "app")
    fresh = write_realistic_app(work / "fresh" / "app")
    down = write_realistic_app(work / "down" / "app")
    ref_app = write_realistic_app(work / "ref" / "app")
    uv_cache = work / "uv-cache"
    shared = work / "shared-cache"
    off = {"FLASH_TASKS_CACHE_MAX": "0", "UV_CACHE_DIR": str(uv_cache)}
    server, url = start_wsgidav(work / "remote")
    times: dict[str, list[float]] = {}
    rss: dict[str, list[float]] = {}
    identical: dict[str, list[bool]] = {}

    def record(case: str, result: object, app: Path | None = None) -> None:
        times.setdefault(case, []).append(result.wall)  # type: ignore[attr-defined]
        rss.setdefault(case, []).append(result.maxrss_mb)  # type: ignore[attr-defined]
        if app is not None:
            identical.setdefault(case, []).append((app / ".flash" / "artifact.tar.gz").read_bytes() == baseline)

    try:
        log("warming uv's cache and filling the shared and remote caches with the first app")
        run_ours(baseline_app, "-q", env=off)
        baseline = (baseline_app / ".flash" / "artifact.tar.gz").read_bytes()
        run_ours(first, "-q", env={"FLASH_TASKS_CACHE_DIR": str(shared), "UV_CACHE_DIR": str(uv_cache), "FLASH_TASKS_REMOTE_CACHE": url})
        if not args.no_reference:
            run_ref(ref_app)  # pip's cache warm for the reference
        for n in range(args.runs):
            log(f"round {n + 1}/{args.runs}")
            if not args.no_reference:
                delete_flash(ref_app)
                record("ref cold", run_ref(ref_app))
            delete_flash(baseline_app)
            record("ours cold, no cache", run_ours(baseline_app, "-q", env=off), baseline_app)
            delete_flash(second)
            record("second app, warm local", run_ours(second, "-q", env={"FLASH_TASKS_CACHE_DIR": str(shared), "UV_CACHE_DIR": str(uv_cache)}), second)
            delete_flash(fresh)
            with tempfile.TemporaryDirectory(dir=work) as machine:
                env = {
                    "FLASH_TASKS_CACHE_DIR": f"{machine}/cache",
                    "UV_CACHE_DIR": f"{machine}/uv",
                    "FLASH_TASKS_REMOTE_CACHE": url,
                    "FLASH_TASKS_REMOTE_CACHE_READ_ONLY": "1",
                }
                record("fresh machine, warm remote", run_ours(fresh, "-q", env=env), fresh)
            delete_flash(down)
            with tempfile.TemporaryDirectory(dir=work) as machine:
                env = {"FLASH_TASKS_CACHE_DIR": f"{machine}/cache", "UV_CACHE_DIR": str(uv_cache), "FLASH_TASKS_REMOTE_CACHE": f"http://127.0.0.1:{free_port()}"}
                result = run_ours(down, "--color", "never", env=env)
                warnings = [line for line in result.stderr.splitlines() if "warning" in line]
                if len(warnings) != 1:
                    log(f"remote down: expected one warning, got {warnings}")
                record("remote down", result, down)
    finally:
        server.terminate()
        server.wait(10)

    ref = stats(times["ref cold"]).median if "ref cold" in times else None
    base = stats(times["ours cold, no cache"]).median
    targets = {"second app, warm local": 20.0, "fresh machine, warm remote": 8.0}
    rows = []
    for case, values in times.items():
        s = stats(values)
        ratio = f"{ref / s.median:.1f}x" if ref else "-"
        target = targets.get(case)
        ok: bool | None = None
        if target is not None and ref:
            ok = ref / s.median >= target
        if case == "remote down":
            ok = s.median - base <= 2.0
            target_text = f"<= +2 s vs no cache ({s.median - base:+.2f} s)"
        else:
            target_text = f">= {target:.0f}x ref" if target else ""
        same = identical.get(case)
        rows.append([case, f"{s.median:.3f}", s.spread(), ratio, "yes" if same and all(same) else ("-" if same is None else "NO"), target_text, verdict(ok)])
    print()
    print(f"realistic app (numpy, pillow, requests, pyyaml), {args.runs} runs per case; wall seconds")
    print(table(["case", "median", "min-max", "ref/ours", "byte-identical", "target", "result"], rows))
    print()
    print("peak RSS (MB, largest single process, median)")
    print(table(["case", "MB"], [[c, f"{stats(v).median:.0f}"] for c, v in rss.items()]))


if __name__ == "__main__":
    main()
