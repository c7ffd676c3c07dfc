"""Growth curves: how build times scale with dependency size and with source-file count.

Run: ``python bench/bench_growth.py [--runs N] [--big] [--only deps|files]``.

(a) dependency size. Local ``py3-none-any`` wheels ``benchblob<MB>`` of about 1, 10 and
    100 MB installed (``--big`` adds 1000 MB), half incompressible, built once into
    ``$FLASH_BENCH_DIR/wheels`` and served to both tools from that folder:
    reference: ``PIP_FIND_LINKS=DIR PIP_NO_INDEX=1`` (it runs ``pip install --target``);
    ours: ``--no-index --find-links DIR`` (the folder also holds the runpod-flash wheel,
    whose package ours bundles). The app is one endpoint, one helper module and
    ``requirements.txt`` = ``benchblob<MB>==1.0``. Cases per size: ``noop``, ``edit``
    (comment appended to helpers.py), ``cold`` (``.flash/`` deleted; both tools built
    the app once before, so pip's/uv's caches hold the wheel). Also our peak RSS
    (largest process, and the whole process tree sampled every 20 ms) for a cold build
    of the largest size (target: < 200 MB).

(b) source files. One endpoint plus 10, 100, 1000 plain modules (packages of 50), no
    dependencies; cases ``noop``, ``edit`` (comment appended to one module), ``cold``.

The 1000 MB reference builds take minutes each, so ``--big-runs`` (default 2) caps
the runs at that size.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    append_comment,
    blob_wheel_name,
    build_blob_wheel,
    delete_flash,
    du_mb,
    ensure_sdk_wheel,
    log,
    machine_end,
    machine_info,
    reference_flash,
    run_ours,
    run_ref,
    stats,
    table,
    verdict,
    write_dep_app,
    write_many_files_app,
)

CASES = ("noop", "edit", "cold")


def time_cases(
    ours_app: Path,
    ref_app: Path,
    edit_rel: str,
    runs: int,
    ours_extra: tuple[str, ...] = (),
    ref_env: dict[str, str] | None = None,
) -> tuple[dict[tuple[str, str], list[float]], dict[tuple[str, str], list[float]]]:
    """Warm up both tools, then ``runs`` rounds of noop/edit/cold, tools alternating."""
    times: dict[tuple[str, str], list[float]] = {
        (c, t): [] for c in CASES for t in ("ours", "ref")
    }
    rss: dict[tuple[str, str], list[float]] = {
        (c, t): [] for c in CASES for t in ("ours", "ref")
    }
    run_ours(ours_app, *ours_extra)
    run_ref(ref_app, env=ref_env)
    for i in range(runs):
        for case in CASES:
            for tool in ("ours", "ref"):
                app = ours_app if tool == "ours" else ref_app
                if case == "edit":
                    append_comment(app / edit_rel, str(i))
                elif case == "cold":
                    delete_flash(app)
                artifact = app / ".flash" / "artifact.tar.gz"
                before = artifact.stat().st_mtime_ns if artifact.exists() else None
                result = (
                    run_ours(app, *ours_extra)
                    if tool == "ours"
                    else run_ref(app, env=ref_env)
                )
                if (
                    case == "noop"
                    and tool == "ours"
                    and artifact.stat().st_mtime_ns != before
                ):
                    log(
                        f"  WARNING: our no-op rebuilt the artifact: {result.stdout.strip()[-200:]}"
                    )
                times[(case, tool)].append(result.wall)
                rss[(case, tool)].append(result.maxrss_mb)
    return times, rss


def rows_for(
    label: str,
    times: dict[tuple[str, str], list[float]],
    rss: dict[tuple[str, str], list[float]],
) -> list[list[str]]:
    rows = []
    for case in CASES:
        ref, ours = stats(times[(case, "ref")]), stats(times[(case, "ours")])
        rows.append(
            [
                label,
                case,
                f"{ref.median:.3f}",
                ref.spread(),
                f"{ours.median:.3f}",
                ours.spread(),
                f"{ref.median / ours.median:.1f}x",
                f"{max(rss[(case, 'ref')]):.0f}",
                f"{max(rss[(case, 'ours')]):.0f}",
            ]
        )
    return rows


HEADERS = [
    "size",
    "case",
    "ref median s",
    "ref min-max",
    "ours median s",
    "ours min-max",
    "ratio",
    "ref RSS MB",
    "ours RSS MB",
]


def bench_deps(sizes: list[int], runs: int, big_runs: int) -> None:
    wheels = BENCH_DIR / "wheels"
    for mb in sizes:
        build_blob_wheel(wheels, mb)
    ensure_sdk_wheel(wheels)
    ours_extra = ("--no-index", "--find-links", str(wheels))
    ref_env = {"PIP_FIND_LINKS": str(wheels), "PIP_NO_INDEX": "1"}
    rows: list[list[str]] = []
    edit_medians: dict[int, float] = {}
    noop_medians: dict[int, float] = {}
    for mb in sizes:
        n = big_runs if mb >= 1000 else runs
        log(f"deps {mb} MB: {n} runs")
        req = [f"{blob_wheel_name(mb)}==1.0"]
        ours_app = write_dep_app(
            BENCH_DIR / "growth" / f"deps{mb}" / "ours" / "app", req
        )
        ref_app = write_dep_app(BENCH_DIR / "growth" / f"deps{mb}" / "ref" / "app", req)
        times, rss = time_cases(ours_app, ref_app, "helpers.py", n, ours_extra, ref_env)
        label = f"{mb} MB"
        rows.extend(rows_for(label, times, rss))
        edit_medians[mb] = stats(times[("edit", "ours")]).median
        noop_medians[mb] = stats(times[("noop", "ours")]).median
        art = ours_app / ".flash" / "artifact.tar.gz"
        ref_art = ref_app / ".flash" / "artifact.tar.gz"
        log(
            f"  installed {du_mb(ours_app / '.flash' / '.build'):.0f} MB; artifact ours {art.stat().st_size / 1e6:.0f} MB, "
            f"ref {ref_art.stat().st_size / 1e6:.0f} MB"
        )
        if mb == max(sizes):
            log(
                f"  memory: one more cold build of ours at {mb} MB with the process tree sampled"
            )
            delete_flash(ours_app)
            cold = run_ours(ours_app, *ours_extra, sample_tree=True)
            mem = (mb, cold.wall, cold.maxrss_mb, cold.tree_rss_mb)
            log("  memory: one edit build of ours, sampled")
            append_comment(ours_app / "helpers.py", "mem")
            edit = run_ours(ours_app, *ours_extra, sample_tree=True)
            mem_edit = (edit.maxrss_mb, edit.tree_rss_mb)
            log("  memory: one cold build of the reference, sampled")
            delete_flash(ref_app)
            ref_cold = run_ref(ref_app, env=ref_env, sample_tree=True)
            mem_ref = (ref_cold.maxrss_mb, ref_cold.tree_rss_mb)
            sizes_line = f"artifact sizes at {mb} MB: ours {art.stat().st_size / 1e6:.0f} MB, reference {ref_art.stat().st_size / 1e6:.0f} MB"
    print()
    print(
        f"(a) dependency size: one local wheel, {runs} runs per case ({big_runs} at >= 1000 MB); wall seconds; RSS = max over runs, largest process"
    )
    print(table(HEADERS, rows))
    print(sizes_line)
    smallest, largest = min(sizes), max(sizes)
    flat = edit_medians[largest] / edit_medians[smallest]
    print()
    print(
        "ours, edit one source file, by dependency size: "
        + ", ".join(f"{mb} MB {edit_medians[mb]:.3f} s" for mb in sizes)
    )
    print(
        f"  largest/smallest = {flat:.2f} (target 'flat': <= 1.5): {verdict(flat <= 1.5)}"
    )
    print(
        "ours, no-op, by dependency size: "
        + ", ".join(f"{mb} MB {noop_medians[mb]:.3f} s" for mb in sizes)
    )
    mb, wall, single, tree = mem
    print()
    print(f"peak memory, cold build with {mb} MB of dependencies (wall {wall:.1f} s):")
    print(
        f"  ours: largest process {single:.0f} MB, whole tree (sampled) {tree:.0f} MB; target < 200 MB: {verdict(max(single, tree) < 200)}"
    )
    print(
        f"  ours, edit build: largest process {mem_edit[0]:.0f} MB, whole tree {mem_edit[1]:.0f} MB"
    )
    print(
        f"  reference: largest process {mem_ref[0]:.0f} MB, whole tree (sampled) {mem_ref[1]:.0f} MB"
    )
    if largest < 1000:
        print("  (the 1000 MB target needs --big)")


def bench_files(counts: list[int], runs: int) -> None:
    rows: list[list[str]] = []
    for n in counts:
        log(f"files {n}: {runs} runs")
        ours_app = write_many_files_app(
            BENCH_DIR / "growth" / f"files{n}" / "ours" / "app", n
        )
        ref_app = write_many_files_app(
            BENCH_DIR / "growth" / f"files{n}" / "ref" / "app", n
        )
        times, rss = time_cases(ours_app, ref_app, "pkg000/mod00000.py", runs)
        rows.extend(rows_for(f"{n} files", times, rss))
    print()
    print(
        f"(b) source files: one endpoint + N plain modules, no dependencies, {runs} runs per case; wall seconds"
    )
    print(table(HEADERS, rows))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="timed runs per case and tool (default 3)"
    )
    parser.add_argument(
        "--big",
        action="store_true",
        help="add the 1000 MB dependency case (slow: minutes per reference build)",
    )
    parser.add_argument(
        "--big-runs", type=int, default=2, help="runs at 1000 MB (default 2)"
    )
    parser.add_argument(
        "--only", choices=("deps", "files"), help="run one of the two curves"
    )
    args = parser.parse_args()

    print(machine_info())
    reference_flash()
    if args.only in (None, "deps"):
        sizes = [1, 10, 100] + ([1000] if args.big else [])
        bench_deps(sizes, args.runs, args.big_runs)
    if args.only in (None, "files"):
        bench_files([10, 100, 1000], args.runs)
    print(machine_end())
    return 0


if __name__ == "__main__":
    sys.exit(main())
