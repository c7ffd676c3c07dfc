"""What the verified store costs: no-op and edit rebuilds, this checkout against an older revision.

Issue 9's target: checking records before reuse must keep no-op and edit rebuilds within 10% of
the times before it (they must not read dependency bytes while stamps are unchanged). Both
versions build the same app (6,000 dependency files plus a 100 MB wheel, like a real app's
numpy/pillow tree) from the same find-links folder; every round runs both, alternating, so
background load hits both alike.

    python bench/bench_trust.py [--base REV] [--runs N]

Prints medians, spreads and the ratio this/base per case.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import (  # noqa: E402
    BENCH_DIR,
    REPO,
    append_comment,
    build_blob_wheel,
    delete_flash,
    log,
    machine_info,
    run,
    snapshot_ours,
    ours_env,
    stats,
    table,
    write_dep_app,
)


def many_files_wheel(directory: Path, count: int) -> str:
    """A pure wheel with ``count`` small modules (the shape of a big scientific package)."""
    name = f"benchmany{count}"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    if wheel.exists():
        return name
    info = f"{name}-1.0.dist-info"
    record = []
    import base64
    import hashlib

    with zipfile.ZipFile(wheel, "w") as zf:
        for i in range(count):
            arc = f"{name}/sub{i % 50:02d}/mod{i:05d}.py"
            data = (f"VALUE_{i} = {i}\n" * 40).encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        zf.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        zf.writestr(f"{info}/WHEEL", "Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        record += [f"{info}/METADATA,,", f"{info}/WHEEL,,", f"{info}/RECORD,,"]
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return name


def base_checkout(rev: str) -> Path:
    """``flash_tasks/`` as it was at ``rev``, extracted once under the bench folder."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True, check=True).stdout.strip()
    target = BENCH_DIR / "base" / sha
    if not (target / "flash_tasks" / "__init__.py").exists():
        target.mkdir(parents=True, exist_ok=True)
        archive = target / "src.tar"
        subprocess.run(["git", "-C", str(REPO), "archive", "-o", str(archive), sha, "flash_tasks"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target)
        archive.unlink()
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", default="7a86f78", help="the revision to compare with (before the verified store)")
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()

    print(machine_info())
    print("this:", snapshot_ours())
    base = base_checkout(args.base)
    print("base:", args.base, base)
    wheels = BENCH_DIR / "trust-wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    if not list(wheels.glob("runpod_flash-1.21.0-*.whl")):
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), "runpod-flash==1.21.0"], check=True)
    many = many_files_wheel(wheels, 6000)
    build_blob_wheel(wheels, 100)
    flags = ("--no-index", "--find-links", str(wheels), "-q")
    envs = {"this": ours_env(), "base": {"PYTHONPATH": str(base)}}
    apps = {}
    for label in envs:
        app = write_dep_app(BENCH_DIR / f"trust-app-{label}" / "app", [many, "benchblob100"])
        delete_flash(app)
        log(f"cold build ({label})")
        run([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *flags], cwd=BENCH_DIR, env=envs[label])
        apps[label] = app

    times: dict[tuple[str, str], list[float]] = {}
    for round_no in range(args.runs):
        for case in ("no-op", "edit"):
            order = ("this", "base") if round_no % 2 == 0 else ("base", "this")
            for label in order:
                app = apps[label]
                if case == "edit":
                    append_comment(app / "helpers.py", f"{round_no}")
                result = run([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *flags], cwd=BENCH_DIR, env=envs[label])
                times.setdefault((case, label), []).append(result.wall)
    rows = []
    for case in ("no-op", "edit"):
        this, old = stats(times[(case, "this")]), stats(times[(case, "base")])
        rows.append([case, f"{old.median:.3f} {old.spread()}", f"{this.median:.3f} {this.spread()}", f"{this.median / old.median:.2f}"])
    print(table(["case", f"base {args.base}", "this checkout", "this/base"], rows))


if __name__ == "__main__":
    main()
