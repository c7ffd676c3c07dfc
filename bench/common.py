"""Shared helpers for the side-by-side benchmarks in ``bench/``.

* ``reference_flash()``: runpod-flash 1.21.0 (the reference ``flash build``) in its own
  virtual environment under ``$FLASH_BENCH_DIR`` (default ``/tmp/flash-bench``), created
  with ``python -m venv`` + ``pip install`` on first use and reused afterwards.
* ``ours_cmd()``: this checkout's ``flash build``, as ``<this interpreter> -m flash_tasks``.
* ``run()``: one command, with wall time and peak resident memory. The command runs under
  a small launcher (``_LAUNCHER``) that times it and reads its ``wait4`` rusage: peak RSS
  is the largest single process in the command's tree, like ``/usr/bin/time -f %M``, and
  not the bench's own peak (which a child spawned straight from the bench inherits); with
  ``sample_tree=True`` a sampler also sums the RSS of the whole process tree every 20 ms
  (catches uv/pip subprocesses running beside the parent).
* app generators (``write_realistic_app``, ``write_many_files_app``, ``write_dep_app``),
  the synthetic wheel factory (``build_blob_wheel``) and ``stats()`` (median/min/max).

Nothing here asserts on time: the scripts print numbers and a PASS/FAIL per target.
"""

from __future__ import annotations

import base64
import compileall
import hashlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REFERENCE_VERSION = "1.21.0"
BENCH_DIR = Path(os.environ.get("FLASH_BENCH_DIR", "/tmp/flash-bench"))
REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# The two tools
# ---------------------------------------------------------------------------


def reference_flash() -> Path:
    """Path of the reference ``flash`` executable; creates its venv on first use."""
    venv = BENCH_DIR / "refvenv"
    exe = venv / "bin" / "flash"
    python = venv / "bin" / "python"
    if exe.exists() and _installed_version(python, "runpod-flash") == REFERENCE_VERSION:
        return exe
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log(f"creating the reference venv in {venv} (runpod-flash=={REFERENCE_VERSION})")
    if not python.exists():
        # The reference shells out to ``sys.executable -m pip``: keep pip in the venv.
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            f"runpod-flash=={REFERENCE_VERSION}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(
            f"installing runpod-flash=={REFERENCE_VERSION} failed:\n{proc.stderr[-3000:]}"
        )
    if not exe.exists():
        raise SystemExit(f"runpod-flash installed but {exe} is missing")
    return exe


def _installed_version(python: Path, dist: str) -> str | None:
    if not python.exists():
        return None
    proc = subprocess.run(
        [
            str(python),
            "-c",
            f"import importlib.metadata as m; print(m.version({dist!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() if proc.returncode == 0 else None


def ours_cmd(app: Path, *extra: str) -> list[str]:
    """``flash build`` of this checkout, run by the current interpreter."""
    return [sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *extra]


_SNAPSHOT: Path | None = None


def snapshot_ours() -> str:
    """Freeze the code under test: copy ``flash_tasks/`` once and run that copy.

    Other people edit ``flash_tasks/`` while benchmarks run; an edit mid-run changes
    the tool's fingerprint (every task reruns) and mixes versions in one table. The
    copy goes first on ``PYTHONPATH`` (ahead of the editable install's finder).
    ``FLASH_BENCH_LIVE=1`` runs the live checkout instead. Returns a description.
    """
    global _SNAPSHOT
    if os.environ.get("FLASH_BENCH_LIVE"):
        return "live checkout " + ours_version()
    package = REPO / "flash_tasks"
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            digest.update(
                path.relative_to(package).as_posix().encode()
                + b"\0"
                + path.read_bytes()
            )
    key = digest.hexdigest()[:12]
    target = BENCH_DIR / "snapshots" / key
    if not (target / "flash_tasks" / "__init__.py").exists():
        tmp = BENCH_DIR / "snapshots" / f".{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(
            package, tmp / "flash_tasks", ignore=shutil.ignore_patterns("__pycache__")
        )
        # Bytecode, as `pip install` compiles it (the reference's venv has it): with
        # PYTHONDONTWRITEBYTECODE set, every run would otherwise compile the modules again.
        compileall.compile_dir(tmp / "flash_tasks", quiet=1)
        tmp.rename(target)
    _SNAPSHOT = target
    # ``python -m`` puts the working directory first on sys.path: run ours from a folder
    # without a flash_tasks package (see ``run_ours``), and check the copy is what loads.
    probe = subprocess.run(
        [sys.executable, "-c", "import flash_tasks; print(flash_tasks.__file__)"],
        cwd=BENCH_DIR,
        env={**os.environ, **ours_env()},
        capture_output=True,
        text=True,
        check=False,
    )
    if not probe.stdout.strip().startswith(str(target)):
        raise SystemExit(
            f"the snapshot is not what loads: {probe.stdout.strip()} {probe.stderr[-500:]}"
        )
    return f"snapshot {key} of {ours_version()} in {target}"


def ours_env() -> dict[str, str]:
    if _SNAPSHOT is None:
        return {}
    return {
        "PYTHONPATH": str(_SNAPSHOT)
        + (
            os.pathsep + os.environ["PYTHONPATH"]
            if os.environ.get("PYTHONPATH")
            else ""
        )
    }


def ref_cmd(*extra: str) -> list[str]:
    """The reference ``flash build``; run it with ``cwd=app``."""
    return [str(reference_flash()), "build", *extra]


def ours_version() -> str:
    proc = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    dirty = subprocess.run(
        ["git", "-C", str(REPO), "status", "--porcelain", "flash_tasks"],
        capture_output=True,
        text=True,
        check=False,
    )
    rev = proc.stdout.strip() or "?"
    return rev + ("+dirty(flash_tasks)" if dirty.stdout.strip() else "")


def cpu_probe() -> float:
    """Milliseconds one core takes for a fixed piece of pure-Python work (best of 5).

    Start-up and small edits are CPU-bound, the reference's builds much less so:
    on this shared virtual machine the same code measured 1.6-1.9x slower on some
    days with no load of our own, which moves the ratios. The probe, printed at
    the start and the end of a run, says how fast the machine was meanwhile.
    """

    def work() -> int:
        total = 0
        for i in range(300_000):
            total += len(str(i)) ^ (i & 7)
        return total

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _cpu_times() -> tuple[int, int]:
    """(all, steal) jiffies of every CPU since boot, from /proc/stat ((0, 0) elsewhere)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


_STARTED = _cpu_times()


def machine_info() -> str:
    """One line about the machine and the code measured; freezes our code (``snapshot_ours``)."""
    global _STARTED
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    ours = snapshot_ours()
    _STARTED = _cpu_times()
    return (
        f"host: {platform.node()} {platform.machine()}, {os.cpu_count()} cpus, python {platform.python_version()}, "
        f"loadavg at start {load}, cpu probe {cpu_probe():.1f} ms\n"
        f"ours: {ours}; reference: runpod-flash {REFERENCE_VERSION}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
    )


def machine_end() -> str:
    """The closing line: load, the CPU probe again, and the share of CPU time the host took (steal)."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    total, steal = _cpu_times()
    spent = total - _STARTED[0]
    share = f"{100 * (steal - _STARTED[1]) / spent:.1f}%" if spent > 0 else "?"
    return f"loadavg at end: {load}, cpu probe {cpu_probe():.1f} ms, steal during the run {share}"


# ---------------------------------------------------------------------------
# Running a command with time and memory
# ---------------------------------------------------------------------------


@dataclass
class Run:
    cmd: list[str]
    returncode: int
    wall: float
    #: peak RSS of the largest single process in the tree (kB), from wait4.
    maxrss_kb: int
    #: peak of the summed RSS of the process tree (kB), sampled; 0 unless asked for.
    tree_rss_kb: int = 0
    stdout: str = ""
    stderr: str = ""

    @property
    def maxrss_mb(self) -> float:
        return self.maxrss_kb / 1024

    @property
    def tree_rss_mb(self) -> float:
        return self.tree_rss_kb / 1024


class RunFailed(RuntimeError):
    pass


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        kids.setdefault(ppid, []).append(int(entry.name))
    return kids


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)
    except (OSError, IndexError, ValueError):
        return 0


def _tree_sampler(
    root: int, stop: threading.Event, out: list[int], interval: float = 0.02
) -> None:
    """Peak of the summed RSS of ``root``'s descendants (``root``, the launcher, not counted)."""
    peak = 0
    while not stop.is_set():
        kids = _children_map()
        todo, total = list(kids.get(root, ())), 0
        while todo:
            pid = todo.pop()
            total += _rss_kb(pid)
            todo.extend(kids.get(pid, ()))
        peak = max(peak, total)
        stop.wait(interval)
    out.append(peak)


#: Runs argv[2:] and writes "wall maxrss_kb exit_code" to the file descriptor argv[1].
#: ``ru_maxrss`` of a process includes the high-water RSS of the process it was forked
#: from (Linux keeps the larger of the old and new address space's peaks across exec),
#: so a command spawned straight from the bench would report at least the bench's own
#: peak. This launcher starts small (``python -S``, ~10 MB) and its child's figure is
#: the command's own: the largest single process of its tree, as ``/usr/bin/time -f %M``.
_LAUNCHER = """
import os, sys, time
fd, argv = int(sys.argv[1]), sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        os.write(2, f"cannot run {argv[0]}: {exc}\\n".encode())
    os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
os.write(fd, f"{wall!r} {usage.ru_maxrss} {os.waitstatus_to_exitcode(status)}".encode())
"""


def run(
    cmd: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    sample_tree: bool = False,
    check: bool = True,
) -> Run:
    """Run ``cmd``; return wall time and peak RSS. Output is captured (to temp files)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    out_path = BENCH_DIR / f".run-{os.getpid()}.out"
    err_path = BENCH_DIR / f".run-{os.getpid()}.err"
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    report_r, report_w = os.pipe()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        started = time.perf_counter()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-S", "-c", _LAUNCHER, str(report_w), *cmd],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                pass_fds=(report_w,),
            )
        finally:
            os.close(report_w)
        stop = threading.Event()
        peaks: list[int] = []
        sampler = None
        if sample_tree:
            sampler = threading.Thread(
                target=_tree_sampler, args=(proc.pid, stop, peaks), daemon=True
            )
            sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - started
        stop.set()
        if sampler is not None:
            sampler.join()
    with os.fdopen(report_r, "rb") as fh:
        report = fh.read().decode().split()
    if len(report) == 3:
        # The command's own figures (the launcher's start-up is outside its wall time).
        wall, maxrss_kb, returncode = float(report[0]), int(report[1]), int(report[2])
    else:  # the launcher itself failed: its own figures, which include the bench's
        maxrss_kb, returncode = usage.ru_maxrss, os.waitstatus_to_exitcode(status)
    proc.returncode = returncode
    result = Run(
        cmd=list(cmd),
        returncode=returncode,
        wall=wall,
        maxrss_kb=maxrss_kb,
        tree_rss_kb=peaks[0] if peaks else 0,
        stdout=out_path.read_text(errors="replace"),
        stderr=err_path.read_text(errors="replace"),
    )
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    if check and result.returncode != 0:
        raise RunFailed(
            f"command failed (exit {result.returncode}) in {cwd}: {' '.join(cmd)}\n"
            f"--- stdout ---\n{result.stdout[-3000:]}\n--- stderr ---\n{result.stderr[-3000:]}"
        )
    return result


def run_ours(
    app: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    sample_tree: bool = False,
    check: bool = True,
) -> Run:
    # cwd: never the repository, or ``python -m flash_tasks`` would load the live checkout.
    return run(
        ours_cmd(app, *extra),
        cwd=BENCH_DIR,
        env={**ours_env(), **(env or {})},
        sample_tree=sample_tree,
        check=check,
    )


def run_ref(
    app: Path,
    *extra: str,
    env: Mapping[str, str] | None = None,
    sample_tree: bool = False,
) -> Run:
    return run(ref_cmd(*extra), cwd=app, env=env, sample_tree=sample_tree)


# ---------------------------------------------------------------------------
# Statistics and printing
# ---------------------------------------------------------------------------


@dataclass
class Stats:
    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    @property
    def min(self) -> float:
        return min(self.values) if self.values else float("nan")

    @property
    def max(self) -> float:
        return max(self.values) if self.values else float("nan")

    def spread(self) -> str:
        """``min-max`` and the spread relative to the median, to show how noisy runs were."""
        if not self.values:
            return "-"
        rel = (self.max - self.min) / self.median * 100 if self.median else 0.0
        return f"{self.min:.3f}-{self.max:.3f} (±{rel / 2:.0f}%)"


def stats(values: Iterable[float]) -> Stats:
    return Stats(list(values))


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


# ---------------------------------------------------------------------------
# Apps
# ---------------------------------------------------------------------------


def reset_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def write_files(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


REALISTIC_FILES: dict[str, str] = {
    "config.py": '''"""Settings shared by the endpoints."""

from runpod_flash import CpuInstanceType, DataCenter, GpuGroup

MODEL_NAME = "resnet-50"
GPU = GpuGroup.ADA_24
CPU = CpuInstanceType.CPU3C_2_4
REGION = DataCenter.EU_RO_1
MAX_BATCH = 16
''',
    "workers/__init__.py": "",
    "workers/vision.py": '''"""Queue GPU endpoint: classifies images."""

import io

from runpod_flash import Endpoint

from config import GPU, MAX_BATCH, MODEL_NAME, REGION


@Endpoint(name="vision", gpu=GPU, workers=(0, 3), idle_timeout=60, datacenter=REGION,
          env={"MODEL_NAME": MODEL_NAME, "MAX_BATCH": str(MAX_BATCH)})
async def classify(images: list) -> dict:
    import numpy as np
    from PIL import Image

    out = []
    for raw in images[:MAX_BATCH]:
        img = Image.open(io.BytesIO(bytes(raw))).convert("L")
        out.append(float(np.asarray(img).mean()))
    return {"model": MODEL_NAME, "means": out}
''',
    "workers/text.py": '''"""CPU class endpoint: small text utilities."""

import yaml
from runpod_flash import Endpoint

from config import CPU


@Endpoint(name="text-tools", cpu=CPU, workers=2)
class TextTools:
    def __init__(self):
        self.calls = 0

    def word_count(self, text: str) -> dict:
        self.calls += 1
        return {"words": len(text.split()), "calls": self.calls}

    def to_yaml(self, data: dict) -> str:
        return yaml.safe_dump(data)
''',
    "api/__init__.py": "",
    "api/routes.py": '''"""Load-balanced HTTP API (does not import other endpoints' functions)."""

import requests
from runpod_flash import CpuInstanceType, Endpoint

from config import REGION

api = Endpoint(name="api", cpu=CpuInstanceType.CPU3C_1_2, workers=(1, 3), datacenter=REGION)


@api.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@api.post("/fetch")
async def fetch(body: dict) -> dict:
    response = requests.get(body["url"], timeout=10)
    return {"status": response.status_code, "bytes": len(response.content)}
''',
    "utils/__init__.py": "",
    "utils/imaging.py": '''"""Plain helpers (no endpoints)."""


def clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return max(low, min(high, value))
''',
    "requirements.txt": "numpy\npillow\nrequests\npyyaml\n",
    "pyproject.toml": '[project]\nname = "bench-realistic"\nversion = "0.1.0"\nrequires-python = ">=3.10"\ndependencies = ["runpod-flash"]\n',
    ".gitignore": "__pycache__/\n*.pyc\n",
    "README.md": "# bench-realistic\n",
}

#: The file the "edit one source file" case appends a comment to.
REALISTIC_EDIT_FILE = "utils/imaging.py"


def write_realistic_app(root: Path) -> Path:
    reset_dir(root)
    write_files(root, REALISTIC_FILES)
    return root


ENDPOINT_MODULE = """from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="worker", gpu=GpuGroup.ADA_24, workers=(0, 2))
async def work(payload: dict) -> dict:
    return payload
"""


def plain_module(i: int) -> str:
    return (
        f'"""Plain module {i}: no endpoints."""\n\n'
        f"CONSTANT_{i} = {i}\n\n\n"
        f"def helper_{i}(x: int) -> int:\n"
        f"    return x * {i} + CONSTANT_{i}\n\n\n"
        f"class Thing{i}:\n"
        f"    def value(self) -> int:\n"
        f"        return helper_{i}({i})\n"
    )


def write_many_files_app(root: Path, n: int) -> Path:
    """One endpoint plus ``n`` plain modules in packages of 50, no dependencies."""
    reset_dir(root)
    files = {"main.py": ENDPOINT_MODULE, ".gitignore": "__pycache__/\n"}
    for i in range(n):
        pkg = f"pkg{i // 50:03d}"
        files[f"{pkg}/__init__.py"] = ""
        files[f"{pkg}/mod{i:05d}.py"] = plain_module(i)
    write_files(root, files)
    return root


def write_dep_app(root: Path, requirements: Sequence[str]) -> Path:
    """One endpoint and a requirements.txt."""
    reset_dir(root)
    write_files(
        root,
        {
            "main.py": ENDPOINT_MODULE,
            "helpers.py": plain_module(1),
            "requirements.txt": "".join(r + "\n" for r in requirements),
            ".gitignore": "__pycache__/\n",
        },
    )
    return root


def append_comment(path: Path, tag: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"# bench edit {tag} {time.time_ns()}\n")


def wait_for_fill(app: Path) -> float:
    """Wait until no process holds the app's build lock; the seconds waited.

    A cold build whose dependencies all come from cached segments publishes the artifact
    and leaves ``.flash/.build`` to a process of its own, which holds the lock until the
    build folder is complete (``flash_tasks.cache.fill``).
    """
    import fcntl

    started = time.perf_counter()
    try:
        fd = os.open(app / ".flash" / ".lock", os.O_RDWR)
    except FileNotFoundError:
        return 0.0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def build_complete(app: Path) -> bool:
    """Whether ``.flash/.build`` holds everything (no fill pending or failed)."""
    return not (app / ".flash" / ".state" / "filling.json").exists()


def same_tree(one: Path, other: Path) -> bool:
    """Whether two folders hold the same entries: kinds, permission bits and file bytes."""

    def entries(root: Path) -> dict[str, tuple[str, int, bytes]]:
        out: dict[str, tuple[str, int, bytes]] = {}
        for path in sorted(root.rglob("*")):
            info = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            out[path.relative_to(root).as_posix()] = (kind, info.st_mode & 0o777, path.read_bytes() if kind == "file" else b"")
        return out

    return entries(one) == entries(other)


def delete_flash(app: Path) -> None:
    wait_for_fill(app)
    shutil.rmtree(app / ".flash", ignore_errors=True)


# ---------------------------------------------------------------------------
# Synthetic wheels of a given installed size
# ---------------------------------------------------------------------------

_TEXT = (
    b"The quick brown fox jumps over the lazy dog; runpod flash benchmark filler text. "
    * 64
)[:4096]


def _blob(rng: random.Random, size: int) -> bytes:
    """``size`` bytes, about half incompressible: 4 KiB random blocks alternate with text."""
    parts = []
    left = size
    n = 0
    while left > 0:
        take = min(4096, left)
        parts.append(rng.randbytes(take) if n % 2 == 0 else _TEXT[:take])
        left -= take
        n += 1
    return b"".join(parts)


def _record_hash(data: bytes) -> str:
    return (
        "sha256="
        + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    )


def blob_wheel_name(mb: int, *, incompressible: bool = False) -> str:
    return f"benchrand{mb}" if incompressible else f"benchblob{mb}"


def build_blob_wheel(
    directory: Path, mb: int, *, version: str = "1.0", incompressible: bool = False
) -> Path:
    """A ``py3-none-any`` wheel whose package holds ~``mb`` MB of half-compressible data.

    Deterministic (seeded, fixed zip times); built once and reused from ``directory``.
    Files are 8 MiB at most (so 1000 MB is ~125 files), plus an ``__init__.py``.
    ``incompressible=True`` makes ``benchrand<MB>`` instead, whose data files are all
    random bytes (stored, not deflated, in the wheel): its compressed segments are as
    big as the installed package.
    """
    name = blob_wheel_name(mb, incompressible=incompressible)
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    if wheel.exists():
        return wheel
    directory.mkdir(parents=True, exist_ok=True)
    total = mb * 1_000_000
    file_size = min(8 << 20, max(64 << 10, total // 8))
    rng = random.Random(f"rand{mb}" if incompressible else mb)
    tmp = wheel.with_suffix(".tmp")
    record: list[str] = []
    info = f"{name}-{version}.dist-info"
    zt = (2020, 1, 1, 0, 0, 0)

    def add(zf: zipfile.ZipFile, arc: str, data: bytes, stored: bool = False) -> None:
        zi = zipfile.ZipInfo(arc, zt)
        zi.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, data, compresslevel=None if stored else 1)
        record.append(f"{arc},{_record_hash(data)},{len(data)}")

    log(
        f"building {wheel.name} (~{mb} MB installed{', incompressible' if incompressible else ''})"
    )
    with zipfile.ZipFile(tmp, "w") as zf:
        add(
            zf,
            f"{name}/__init__.py",
            f'"""{mb} MB of benchmark data."""\n__version__ = "{version}"\n'.encode(),
        )
        written, i = 0, 0
        while written < total:
            size = min(file_size, total - written)
            data = rng.randbytes(size) if incompressible else _blob(rng, size)
            add(zf, f"{name}/data/blob{i:04d}.bin", data, stored=incompressible)
            written += size
            i += 1
        add(
            zf,
            f"{info}/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        )
        add(
            zf,
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: flash-bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        add(zf, f"{info}/top_level.txt", f"{name}\n".encode())
        record.append(f"{info}/RECORD,,")
        zi = zipfile.ZipInfo(f"{info}/RECORD", zt)
        zi.external_attr = 0o644 << 16
        zf.writestr(zi, "\n".join(record) + "\n")
    tmp.rename(wheel)
    return wheel


def ensure_sdk_wheel(directory: Path) -> None:
    """Put the runpod-flash wheel into a find-links folder (ours bundles the SDK's code)."""
    if any(directory.glob(f"runpod_flash-{REFERENCE_VERSION}-*.whl")):
        return
    python = reference_flash().parent / "python"
    subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "-d",
            str(directory),
            f"runpod-flash=={REFERENCE_VERSION}",
        ],
        check=True,
    )


def du_mb(path: Path) -> float:
    total = 0
    for dirpath, _, names in os.walk(path):
        for n in names:
            try:
                total += os.lstat(os.path.join(dirpath, n)).st_size
            except OSError:
                pass
    return total / 1e6
