"""Shared caches: cold builds that reuse segments compressed by another app or machine,
and what a broken cache costs.

Run: ``python bench/bench_cache.py [--runs N] [--no-reference] [--cases LIST] [--keep-big]``
with the interpreter that has flash-tasks and wsgidav installed (``pip install -e '.[test]'``).
``--cases`` takes case names and group names separated by commas (``--list`` prints them).

The app is the realistic one of ``bench_realistic.py`` (numpy, pillow, requests, pyyaml;
three endpoints). Cases, each timed ``--runs`` times (median, min-max), ``.flash/`` empty:

* ``ref-cold``: the reference's cold build (pip's cache warm);
* ``no-cache``: ours with the shared cache off (``FLASH_TASKS_CACHE_MAX=0``);
* ``empty-local``: ours with an empty local cache and no remote, uv's cache warm: the
  baseline of "time lost" for the failure cases;
* ``warm-local``: a second app with the same dependencies, the local cache filled by the
  first app's build;
* ``warm-remote``: a fresh machine: empty local cache, empty uv cache, and a remote
  (WsgiDAV on 127.0.0.1, filled by the first app) — uv downloads the wheels from the index
  again, the segments come from the remote;
* remote failures, each with an empty local cache and uv's cache warm, as ``empty-local``:
  ``remote-down`` (a port nobody listens on), ``remote-401`` (WsgiDAV asking for
  credentials the build does not have: 401 to every request), ``remote-slow`` (every
  request answered after 5 s), ``remote-corrupt`` (every ``cas/`` object replaced by other
  bytes of the same size before each run) and ``remote-truncated`` (every ``cas/`` object
  cut to half its size before each run); the remote is writable, so the build's repair
  uploads are part of its time;
* local failures, no remote: ``local-notdir`` (the cache folder's parent is a regular file:
  ENOTDIR), ``local-readonly`` (a read-only tmpfs: EROFS), ``local-full`` (an empty 2 MB
  tmpfs, emptied before each run: ENOSPC once ~2 MB are written). The mounts need
  ``mount``; where it is not permitted those cases print "not measured".

Every artifact is compared byte for byte with the no-cache build of the same app (same
folder name), every build's stderr lines containing "warning" are counted. A cold build
whose dependencies all come from cached segments publishes the artifact and leaves
``.flash/.build`` to a process of its own (``flash_tasks.cache.fill``): the times are those
of the build command; ".build complete" adds the wait until that process let go of the
app's build lock, after which ``.flash/.build`` is compared with the no-cache build's
(bytes and permission bits).

Memory (``mem-local``, ``mem-remote``): an app whose only dependency is ``benchrand1000``,
a synthetic wheel of ~1 GB of random bytes (``common.build_blob_wheel(incompressible=True)``,
served from a ``--find-links`` folder), so its segments are ~1 GB. A first app fills a local
cache and a remote (WsgiDAV); then, each run, a second app with empty ``.flash/`` restores
from the warm local cache (uv's cache warm), and a fresh machine (empty local and uv caches,
read-only remote) restores from the remote, in the build's own process
(``FLASH_TASKS_BACKGROUND_FILL=0``: the sampler would lose a process left running after
the build's has exited; it runs the same extraction). Peak RSS: the largest single process (wait4)
and the whole process tree summed (sampled every 20 ms). Needs ~16 GB free under
``$FLASH_BENCH_DIR``; the big files are deleted at the end unless ``--keep-big``.

Prints the table of times with ratios against the reference, warnings per run, the memory
table, peak RSS, and a markdown summary to paste into ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    BENCH_DIR,
    Run,
    blob_wheel_name,
    build_blob_wheel,
    build_complete,
    delete_flash,
    du_mb,
    ensure_sdk_wheel,
    log,
    machine_end,
    machine_info,
    run_ours,
    run_ref,
    same_tree,
    stats,
    table,
    verdict,
    wait_for_fill,
    write_dep_app,
    write_realistic_app,
)

DAV_SERVER = Path(__file__).resolve().parent / "dav_server.py"
#: The memory cases extract the segments in the measured process, not in the process a cold
#: build leaves that to (``flash_tasks.cache.fill``, the same extraction code), which the
#: process-tree sampler loses once the build's process has exited.
IN_PROCESS = {"FLASH_TASKS_BACKGROUND_FILL": "0"}

#: Case name -> label in the tables (the labels of the first four cases are those of earlier results files).
LABELS: dict[str, str] = {
    "ref-cold": "ref cold",
    "no-cache": "ours cold, no cache",
    "empty-local": "ours cold, empty local, no remote",
    "warm-local": "second app, warm local",
    "warm-remote": "fresh machine, warm remote",
    "remote-down": "remote down",
    "remote-401": "remote 401",
    "remote-slow": "remote slow (5 s per request)",
    "remote-corrupt": "remote objects corrupted",
    "remote-truncated": "remote objects truncated",
    "local-notdir": "local unwritable (ENOTDIR)",
    "local-readonly": "local unwritable (read-only mount)",
    "local-full": "local full (2 MB tmpfs)",
    "mem-local": "1 GB, warm local",
    "mem-remote": "1 GB, fresh machine, warm remote",
}
REMOTE_FAILURES = ("remote-down", "remote-401", "remote-slow", "remote-corrupt", "remote-truncated")
LOCAL_FAILURES = ("local-notdir", "local-readonly", "local-full")
MEMORY = ("mem-local", "mem-remote")
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(LABELS),
    "warm": ("ref-cold", "no-cache", "warm-local", "warm-remote"),
    "remote-failures": REMOTE_FAILURES,
    "local-failures": LOCAL_FAILURES,
    "memory": MEMORY,
}
RATIO_TARGETS = {"warm-local": 20.0, "warm-remote": 8.0}
MAX_LOST_SECONDS = 2.0
MAX_PEAK_MB = 200.0
SLOW_DELAY = 5.0
FULL_TMPFS = "2m"
MEM_MB = 1000
MEM_FREE_NEEDED = 16e9
#: The cache settings of the environment this script runs in must not leak into a case.
CLEAN_ENV = {
    "FLASH_TASKS_REMOTE_CACHE": "",
    "FLASH_TASKS_REMOTE_CACHE_TOKEN": "",
    "FLASH_TASKS_REMOTE_CACHE_READ_ONLY": "",
    "FLASH_TASKS_CACHE_MAX": "",
}


@dataclass
class Outcome:
    """What the runs of one case measured."""

    walls: list[float] = field(default_factory=list)
    #: Seconds from the start until ``.flash/.build`` was complete too (the build's process may
    #: have left it to a process of its own, ``flash_tasks.cache.fill``).
    complete: list[float] = field(default_factory=list)
    #: Whether ``.flash/.build`` then equals the no-cache build's, file for file (bytes and modes).
    same_build: list[bool] = field(default_factory=list)
    #: Largest single process (wait4), MB.
    rss: list[float] = field(default_factory=list)
    #: Whole process tree, sampled (memory cases only), MB.
    tree: list[float] = field(default_factory=list)
    identical: list[bool] = field(default_factory=list)
    exits: list[int] = field(default_factory=list)
    warnings: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    not_measured: str | None = None

    def built(self) -> bool:
        return bool(self.exits) and all(code == 0 for code in self.exits)

    def all_identical(self) -> bool:
        return bool(self.identical) and all(self.identical)

    def one_warning_each(self) -> bool:
        return bool(self.warnings) and all(len(w) == 1 for w in self.warnings)


# -- servers and mounts --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One WsgiDAV process and the log of the requests it got (see ``dav_server.py``)."""

    url: str
    log: Path

    def mark(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0

    def since(self, mark: int, settle: float = 1.0) -> list[str]:
        """The log lines written after ``mark``; waits up to ``settle`` s for answers still being logged."""
        deadline = time.monotonic() + settle
        while True:
            with open(self.log, "rb") as fh:
                fh.seek(mark)
                lines = fh.read().decode().splitlines()
            arrived = sum(1 for line in lines if line.startswith(">"))
            answered = sum(1 for line in lines if line.startswith("<"))
            if answered >= arrived or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def summarize_requests(lines: list[str]) -> str:
    """``GET ac 200 x8, GET cas 200 x8 (24.5 MB); GET 0.41 s, PUT 1.20 s`` for one build.

    The seconds are each method's span, from its first request's arrival to its last
    answer; requests not answered yet are counted apart.
    """
    counts: dict[str, list[int]] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    arrived = 0
    for line in lines:
        parts = line.split()
        when, method = float(parts[1]), parts[2]
        if parts[0] == ">":
            arrived += 1
            first.setdefault(method, when)
            continue
        path, status, sent = parts[3], parts[4], int(parts[5])
        kind = path.strip("/").split("/", 1)[0]
        entry = counts.setdefault(f"{method} {kind} {status}", [0, 0])
        entry[0] += 1
        entry[1] += sent
        last[method] = when
    answered = sum(n for n, _ in counts.values())
    text = [f"{key} x{n}" + (f" ({size / 1e6:.1f} MB)" if size >= 100_000 else "") for key, (n, size) in sorted(counts.items())]
    if arrived > answered:
        text.append(f"{arrived - answered} not answered yet")
    spans = [f"{method} {last[method] - first[method]:.2f} s" for method in sorted(last) if method in first]
    return (", ".join(text) if text else "no request") + (f"; {', '.join(spans)}" if spans else "")


class Servers:
    """WsgiDAV processes (``dav_server.py``) started by this script, stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, root: Path, log: Path, *, delay: float = 0.0, require_auth: bool = False) -> Server:
        port = free_port()
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text("")
        cmd = [sys.executable, str(DAV_SERVER), "--root", str(root), "--port", str(port), "--log", str(log)]
        if delay:
            cmd += ["--delay", str(delay)]
        if require_auth:
            cmd.append("--require-auth")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != b"ready":
            raise SystemExit(f"the WebDAV server for {root} did not start (exit {proc.wait(10)})")
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return Server(f"http://127.0.0.1:{port}", log)
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"the WebDAV server for {root} does not accept connections")

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def blobs_used_since(cache_dir: Path, since: float) -> str:
    """Blobs of a local cache whose mtime (set on every read) is at or after ``since``."""
    used = [p for p in (cache_dir / "v1" / "cas").glob("*/*") if p.stat().st_mtime >= since]
    return f"{len(used)} blobs, {sum(p.stat().st_size for p in used) / 1e6:.1f} MB read from the local cache"


class Mounts:
    """tmpfs mounts made by this script, unmounted at the end."""

    def __init__(self) -> None:
        self.points: list[Path] = []

    def tmpfs(self, point: Path, options: str) -> str | None:
        """Mount a tmpfs at ``point``; None on success, else why it could not be mounted."""
        if shutil.which("mount") is None:
            return "no mount command"
        point.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(point)], capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            return f"mount -t tmpfs -o {options} failed: {(proc.stderr or proc.stdout).strip() or f'exit {proc.returncode}'}"
        self.points.append(point)
        return None

    def unmount_all(self) -> None:
        for point in reversed(self.points):
            proc = subprocess.run(["umount", str(point)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                log(f"umount {point} failed: {proc.stderr.strip()}")
        self.points.clear()


def empty_folder(path: Path) -> None:
    for child in path.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def damage_remote(pristine: Path, target: Path, how: str) -> int:
    """Copy ``pristine`` (a filled remote) to ``target`` with every ``cas/`` object damaged.

    ``how``: ``corrupt`` (other bytes of the same size) or ``truncate`` (the first half).
    Returns the number of objects damaged. Action records are copied as they are.
    """
    for kind in ("ac", "cas"):
        folder = target / kind
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
    for record in (pristine / "ac").iterdir():
        shutil.copyfile(record, target / "ac" / record.name)
    count = 0
    for blob in sorted((pristine / "cas").iterdir()):
        data = blob.read_bytes()
        if how == "corrupt":
            damaged = random.Random(blob.name).randbytes(len(data))
            if damaged == data:  # pragma: no cover - 2**-(8n)
                damaged = bytes(b ^ 0xFF for b in data)
        else:
            damaged = data[: len(data) // 2]
        (target / "cas" / blob.name).write_bytes(damaged)
        count += 1
    return count


def repaired(pristine: Path, target: Path) -> int:
    """How many of the damaged objects the build uploaded back with their right bytes."""
    return sum(1 for blob in (pristine / "cas").iterdir() if (target / "cas" / blob.name).is_file() and filecmp.cmp(blob, target / "cas" / blob.name, shallow=False))


# -- measuring -------------------------------------------------------------------------------------


class Bench:
    def __init__(self, work: Path, runs: int) -> None:
        self.work = work
        self.runs = runs
        self.outcomes: dict[str, Outcome] = {}
        #: The no-cache build's ``.flash/.build`` (moved aside), to compare the others' with.
        self.baseline_build: Path | None = None

    def outcome(self, key: str) -> Outcome:
        return self.outcomes.setdefault(key, Outcome())

    def skip(self, key: str, reason: str) -> None:
        self.outcome(key).not_measured = reason
        log(f"{key}: not measured: {reason}")

    def ours(
        self,
        key: str,
        app: Path,
        baseline: Path,
        env: Mapping[str, str],
        *extra: str,
        sample_tree: bool = False,
        server: Server | None = None,
        read_from: Path | None = None,
    ) -> Run:
        """One cold build of ours (``.flash/`` deleted), recorded under ``key``.

        ``server``: note what the remote was asked during the build; ``read_from``: note
        which blobs of that local cache were read.
        """
        delete_flash(app)
        mark = server.mark() if server is not None else 0
        started = time.time()
        result = run_ours(app, "--color", "never", *extra, env={**CLEAN_ENV, **env}, sample_tree=sample_tree, check=False)
        waited = wait_for_fill(app)
        out = self.outcome(key)
        out.walls.append(result.wall)
        out.complete.append(result.wall + waited)
        if self.baseline_build is not None and result.returncode == 0:
            out.same_build.append(build_complete(app) and same_tree(app / ".flash" / ".build", self.baseline_build))
        out.rss.append(result.maxrss_mb)
        if sample_tree:
            out.tree.append(result.tree_rss_mb)
        out.exits.append(result.returncode)
        artifact = app / ".flash" / "artifact.tar.gz"
        out.identical.append(result.returncode == 0 and artifact.is_file() and filecmp.cmp(artifact, baseline, shallow=False))
        out.warnings.append([line.strip() for line in result.stderr.splitlines() if "warning" in line.lower()])
        if server is not None:
            out.notes.append("remote saw " + summarize_requests(server.since(mark)))
        if read_from is not None:
            out.notes.append(blobs_used_since(read_from, started))
        if result.returncode != 0 or "Traceback" in result.stderr:
            log(f"  {key}: exit {result.returncode}\n{result.stderr[-2000:]}")
        return result

    def ref(self, app: Path) -> None:
        delete_flash(app)
        result = run_ref(app)
        out = self.outcome("ref-cold")
        out.walls.append(result.wall)
        out.rss.append(result.maxrss_mb)
        out.exits.append(result.returncode)


def realistic_phase(bench: Bench, selected: list[str], servers: Servers, mounts: Mounts) -> None:
    work = bench.work
    # Same folder name everywhere: the project name is part of the manifest.
    first = write_realistic_app(work / "first" / "app")
    baseline_app = write_realistic_app(work / "baseline" / "app")
    apps = {key: write_realistic_app(work / key / "app") for key in selected if key not in ("ref-cold", "no-cache", *MEMORY)}
    apps["no-cache"] = baseline_app
    ref_app = write_realistic_app(work / "ref" / "app")
    uv_cache = work / "uv-cache"
    shared = work / "shared-cache"
    off = {"FLASH_TASKS_CACHE_MAX": "0", "UV_CACHE_DIR": str(uv_cache)}
    pristine = work / "remote"
    logs = work / "servers"
    main_server = servers.start(pristine, logs / "remote.log")
    url = main_server.url

    log("warming uv's cache and filling the shared and remote caches with the first app")
    run_ours(baseline_app, "-q", env={**CLEAN_ENV, **off})
    baseline = work / "baseline-artifact.tar.gz"
    shutil.copyfile(baseline_app / ".flash" / "artifact.tar.gz", baseline)
    bench.baseline_build = work / "baseline-build"
    shutil.rmtree(bench.baseline_build, ignore_errors=True)
    shutil.copytree(baseline_app / ".flash" / ".build", bench.baseline_build, symlinks=True)
    run_ours(first, "-q", env={**CLEAN_ENV, "FLASH_TASKS_CACHE_DIR": str(shared), "UV_CACHE_DIR": str(uv_cache), "FLASH_TASKS_REMOTE_CACHE": url})
    objects = sorted((pristine / "cas").iterdir())
    log(f"  remote: {len(objects)} objects, {sum(p.stat().st_size for p in objects) / 1e6:.1f} MB")
    if "ref-cold" in selected:
        run_ref(ref_app)  # pip's cache warm for the reference

    remotes: dict[str, Server] = {}
    damaged: dict[str, tuple[Path, str]] = {}
    if "remote-401" in selected:
        root = logs / "remote-401"
        shutil.copytree(pristine, root)
        remotes["remote-401"] = servers.start(root, logs / "remote-401.log", require_auth=True)
    if "remote-slow" in selected:
        root = logs / "remote-slow"
        shutil.copytree(pristine, root)
        remotes["remote-slow"] = servers.start(root, logs / "remote-slow.log", delay=SLOW_DELAY)
    for key, how in (("remote-corrupt", "corrupt"), ("remote-truncated", "truncate")):
        if key in selected:
            root = logs / key
            damage_remote(pristine, root, how)
            damaged[key] = (root, how)
            remotes[key] = servers.start(root, logs / f"{key}.log")
    blocker = work / "not-a-folder"
    blocker.write_text("a regular file where the cache folder's parent should be\n")
    readonly_point = work / "readonly-mount"
    full_point = work / "full-mount"
    if "local-readonly" in selected and (why := mounts.tmpfs(readonly_point, "ro,size=1m")):
        bench.skip("local-readonly", why)
    if "local-full" in selected and (why := mounts.tmpfs(full_point, f"size={FULL_TMPFS}")):
        bench.skip("local-full", why)

    for n in range(bench.runs):
        log(f"round {n + 1}/{bench.runs}")
        for key in selected:
            if key in MEMORY or bench.outcome(key).not_measured:
                continue
            if key == "ref-cold":
                bench.ref(ref_app)
                continue
            app = apps[key]
            with tempfile.TemporaryDirectory(dir=work) as machine:
                empty_local = {"FLASH_TASKS_CACHE_DIR": f"{machine}/cache", "UV_CACHE_DIR": str(uv_cache)}
                if key == "no-cache":
                    bench.ours(key, app, baseline, off)
                elif key == "empty-local":
                    bench.ours(key, app, baseline, empty_local)
                elif key == "warm-local":
                    bench.ours(key, app, baseline, {"FLASH_TASKS_CACHE_DIR": str(shared), "UV_CACHE_DIR": str(uv_cache)}, read_from=shared)
                elif key == "warm-remote":
                    env = {
                        "FLASH_TASKS_CACHE_DIR": f"{machine}/cache",
                        "UV_CACHE_DIR": f"{machine}/uv",
                        "FLASH_TASKS_REMOTE_CACHE": url,
                        "FLASH_TASKS_REMOTE_CACHE_READ_ONLY": "1",
                    }
                    bench.ours(key, app, baseline, env, server=main_server)
                elif key == "remote-down":
                    bench.ours(key, app, baseline, {**empty_local, "FLASH_TASKS_REMOTE_CACHE": f"http://127.0.0.1:{free_port()}"})
                elif key == "remote-401":
                    env = {**empty_local, "FLASH_TASKS_REMOTE_CACHE": remotes[key].url, "FLASH_TASKS_REMOTE_CACHE_TOKEN": "expired-token"}
                    bench.ours(key, app, baseline, env, server=remotes[key])
                elif key == "remote-slow":
                    bench.ours(key, app, baseline, {**empty_local, "FLASH_TASKS_REMOTE_CACHE": remotes[key].url}, server=remotes[key])
                elif key in damaged:
                    root, how = damaged[key]
                    count = damage_remote(pristine, root, how)
                    bench.ours(key, app, baseline, {**empty_local, "FLASH_TASKS_REMOTE_CACHE": remotes[key].url}, server=remotes[key])
                    bench.outcome(key).notes.append(f"{repaired(pristine, root)}/{count} damaged objects uploaded again with the right bytes")
                elif key == "local-notdir":
                    bench.ours(key, app, baseline, {"FLASH_TASKS_CACHE_DIR": str(blocker / "cache"), "UV_CACHE_DIR": str(uv_cache)})
                elif key == "local-readonly":
                    bench.ours(key, app, baseline, {"FLASH_TASKS_CACHE_DIR": str(readonly_point / "cache"), "UV_CACHE_DIR": str(uv_cache)})
                elif key == "local-full":
                    empty_folder(full_point)
                    bench.ours(key, app, baseline, {"FLASH_TASKS_CACHE_DIR": str(full_point / "cache"), "UV_CACHE_DIR": str(uv_cache)})
                    usage = shutil.disk_usage(full_point)
                    bench.outcome(key).notes.append(f"tmpfs {usage.used / 1e6:.1f} of {usage.total / 1e6:.1f} MB used after the build")


def memory_phase(bench: Bench, selected: list[str], servers: Servers, keep_big: bool) -> None:
    bench.baseline_build = None  # another app: its artifact alone is compared
    wanted = [key for key in MEMORY if key in selected]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    df = subprocess.run(["df", "-h", str(BENCH_DIR)], capture_output=True, text=True, check=False).stdout.strip()
    log(f"memory cases: disk under {BENCH_DIR}:\n{df}")
    free = shutil.disk_usage(BENCH_DIR).free
    if free < MEM_FREE_NEEDED:
        for key in wanted:
            bench.skip(key, f"{free / 1e9:.0f} GB free under {BENCH_DIR}, the 1 GB cases need ~{MEM_FREE_NEEDED / 1e9:.0f} GB")
        return
    wheels = BENCH_DIR / "wheels"
    mem = bench.work / "mem"
    wheel = build_blob_wheel(wheels, MEM_MB, incompressible=True)
    try:
        ensure_sdk_wheel(wheels)
        extra = ("--no-index", "--find-links", str(wheels))
        req = [f"{blob_wheel_name(MEM_MB, incompressible=True)}==1.0"]
        uv_cache = mem / "uv-cache"
        local = mem / "local-cache"
        remote = mem / "remote"
        server = servers.start(remote, mem / "remote.log")
        url = server.url
        log(f"memory: the no-cache build of the {MEM_MB} MB app (the bytes every restore is compared with)")
        base_app = write_dep_app(mem / "base" / "app", req)
        run_ours(base_app, "-q", *extra, env={**CLEAN_ENV, "FLASH_TASKS_CACHE_MAX": "0", "UV_CACHE_DIR": str(uv_cache)})
        baseline = mem / "baseline-artifact.tar.gz"
        os.replace(base_app / ".flash" / "artifact.tar.gz", baseline)
        shutil.rmtree(mem / "base")
        log("memory: the first app fills the local cache and the remote")
        first = write_dep_app(mem / "first" / "app", req)
        filled = run_ours(
            first, "-q", *extra, env={**CLEAN_ENV, "FLASH_TASKS_CACHE_DIR": str(local), "UV_CACHE_DIR": str(uv_cache), "FLASH_TASKS_REMOTE_CACHE": url}
        )
        shutil.rmtree(mem / "first")
        sizes = f"artifact {baseline.stat().st_size / 1e6:.0f} MB, local cache {du_mb(local):.0f} MB, remote {du_mb(remote / 'cas'):.0f} MB (filled in {filled.wall:.1f} s)"
        log(f"  {sizes}")
        second = write_dep_app(mem / "second" / "app", req)
        fresh = write_dep_app(mem / "fresh" / "app", req)
        for n in range(bench.runs):
            log(f"memory round {n + 1}/{bench.runs}")
            if "mem-local" in wanted:
                env = {"FLASH_TASKS_CACHE_DIR": str(local), "UV_CACHE_DIR": str(uv_cache), **IN_PROCESS}
                bench.ours("mem-local", second, baseline, env, *extra, sample_tree=True, read_from=local)
                delete_flash(second)
            if "mem-remote" in wanted:
                with tempfile.TemporaryDirectory(dir=mem) as machine:
                    env = {
                        "FLASH_TASKS_CACHE_DIR": f"{machine}/cache",
                        "UV_CACHE_DIR": f"{machine}/uv",
                        "FLASH_TASKS_REMOTE_CACHE": url,
                        "FLASH_TASKS_REMOTE_CACHE_READ_ONLY": "1",
                        **IN_PROCESS,
                    }
                    bench.ours("mem-remote", fresh, baseline, env, *extra, sample_tree=True, server=server)
                delete_flash(fresh)
        for key in wanted:
            bench.outcome(key).notes.insert(0, sizes)
    finally:
        if not keep_big:
            log(f"memory: deleting {mem} and {wheel.name}")
            shutil.rmtree(mem, ignore_errors=True)
            wheel.unlink(missing_ok=True)


# -- reporting -------------------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    ours: str
    ref: str
    ratio: str
    target: str
    ok: bool | None


def judge(bench: Bench, selected: list[str]) -> list[Row]:
    outcomes = bench.outcomes
    ref = stats(outcomes["ref-cold"].walls).median if "ref-cold" in outcomes and outcomes["ref-cold"].walls else None
    base = outcomes.get("empty-local")
    base_median = stats(base.walls).median if base and base.walls else None
    rows: list[Row] = []
    for key in selected:
        out = outcomes.get(key)
        if out is None:
            continue
        if out.not_measured:
            rows.append(Row(key, f"not measured: {out.not_measured}", "-", "-", "", None))
            continue
        if key in MEMORY:
            peaks = [max(single, tree) for single, tree in zip(out.rss, out.tree, strict=True)]
            mem_ok = out.built() and out.all_identical() and max(peaks) < MAX_PEAK_MB
            ours = f"{stats(out.tree).median:.0f} MB tree, {stats(out.rss).median:.0f} MB largest"
            rows.append(Row(key, ours, "-", "-", f"peak < {MAX_PEAK_MB:.0f} MB, identical (worst run {max(peaks):.0f} MB)", mem_ok))
            continue
        median = stats(out.walls).median
        ratio = f"{ref / median:.1f}x" if ref else "-"
        ok: bool | None = None
        target = ""
        if key in RATIO_TARGETS:
            goal = RATIO_TARGETS[key]
            target = f">= {goal:.0f}x ref, identical"
            ok = (ref / median >= goal and out.built() and out.all_identical()) if ref else None
        elif key in REMOTE_FAILURES:
            if base_median is None:
                target = "1 warning, identical, lost <= 2 s (no empty-local baseline)"
                ok = None
            else:
                lost = median - base_median
                target = f"1 warning, identical, lost <= {MAX_LOST_SECONDS:.0f} s ({lost:+.2f} s)"
                ok = out.built() and out.all_identical() and out.one_warning_each() and lost <= MAX_LOST_SECONDS
        elif key in LOCAL_FAILURES:
            lost_text = f", {median - base_median:+.2f} s vs empty local" if base_median is not None else ""
            target = f"1 warning, identical{lost_text}"
            ok = out.built() and out.all_identical() and out.one_warning_each()
        elif key != "ref-cold" and not (out.built() and out.all_identical()):
            ok = False
        rows.append(Row(key, f"{median:.2f} s", f"{ref:.2f} s" if ref else "-", ratio, target, ok))
    return rows


def report(bench: Bench, selected: list[str]) -> None:
    outcomes = bench.outcomes
    rows = judge(bench, selected)
    by_key = {row.key: row for row in rows}
    time_keys = [k for k in selected if k in outcomes and k not in MEMORY]
    if time_keys:
        print()
        print(f"realistic app (numpy, pillow, requests, pyyaml), {bench.runs} runs per case; wall seconds")
        lines = []
        for key in time_keys:
            out = outcomes[key]
            row = by_key[key]
            if out.not_measured:
                lines.append([LABELS[key], "-", "-", "-", "-", f"not measured: {out.not_measured}", "n/a"])
                continue
            s = stats(out.walls)
            same = "-" if key == "ref-cold" else ("yes" if out.all_identical() else "NO")
            if out.same_build:
                same += ", .build " + ("same" if all(out.same_build) else "DIFFERS")
            complete = f"{stats(out.complete).median:.3f}" if out.complete else "-"
            lines.append([LABELS[key], f"{s.median:.3f}", s.spread(), complete, row.ratio, same, row.target, verdict(row.ok)])
        print(table(["case", "median", "min-max", ".build complete", "ref/ours", "byte-identical", "target", "result"], lines))
        print(
            "(.build complete: seconds from the start until .flash/.build was complete too; a cold build whose\n"
            " dependencies all come from cached segments leaves that to a process of its own, and the next\n"
            " build of the app waits for it. .build same: equal to the no-cache build's, bytes and modes)"
        )

    print()
    print("exit codes and stderr lines containing 'warning', per run")
    lines = []
    for key in selected:
        measured = outcomes.get(key)
        if key == "ref-cold" or measured is None or measured.not_measured:
            continue
        out = measured
        counts = ",".join(str(len(w)) for w in out.warnings)
        first = next((w[0] for w in out.warnings if w), "")
        lines.append([LABELS[key], ",".join(map(str, out.exits)), counts, first[:150]])
    print(table(["case", "exit", "warnings", "first warning"], lines))
    notes = [(key, note) for key in selected if key in outcomes for note in dict.fromkeys(outcomes[key].notes)]
    if notes:
        print()
        for key, note in notes:
            print(f"{LABELS[key]}: {note}")

    mem_keys = [k for k in MEMORY if k in selected and k in outcomes]
    if mem_keys:
        print()
        print(f"peak memory restoring ~1 GB of segments ({MEM_MB} MB incompressible wheel), {bench.runs} runs; MB")
        lines = []
        for key in mem_keys:
            out = outcomes[key]
            row = by_key[key]
            if out.not_measured:
                lines.append([LABELS[key], "-", "-", "-", "-", "-", f"not measured: {out.not_measured}", "n/a"])
                continue
            single, tree = stats(out.rss), stats(out.tree)
            lines.append(
                [
                    LABELS[key],
                    f"{stats(out.walls).median:.1f} s",
                    f"{single.median:.0f} ({single.min:.0f}-{single.max:.0f})",
                    f"{tree.median:.0f} ({tree.min:.0f}-{tree.max:.0f})",
                    "yes" if out.all_identical() else "NO",
                    ",".join(str(len(w)) for w in out.warnings),
                    row.target,
                    verdict(row.ok),
                ]
            )
        print(table(["case", "wall median", "largest process", "whole tree", "byte-identical", "warnings", "target", "result"], lines))

    rss_rows = [[LABELS[k], f"{stats(outcomes[k].rss).median:.0f}"] for k in time_keys if outcomes[k].rss]
    if rss_rows:
        print()
        print("peak RSS (MB, largest single process, median)")
        print(table(["case", "MB"], rss_rows))

    print()
    print("markdown summary:")
    print()
    print("| case | ours median | ref median | ratio | target | result |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {LABELS[row.key]} | {row.ours} | {row.ref} | {row.ratio} | {row.target or '-'} | {verdict(row.ok)} |")


def parse_cases(text: str | None, parser: argparse.ArgumentParser) -> list[str]:
    if not text:
        return list(LABELS)
    chosen: set[str] = set()
    for name in (part.strip() for part in text.split(",")):
        if not name:
            continue
        if name in GROUPS:
            chosen.update(GROUPS[name])
        elif name in LABELS:
            chosen.add(name)
        else:
            parser.error(f"unknown case {name!r}; cases: {', '.join(LABELS)}; groups: {', '.join(GROUPS)}")
    return [key for key in LABELS if key in chosen]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="timed runs per case (default 3; the tables show the median)")
    parser.add_argument("--no-reference", action="store_true", help="skip the reference's cold build (ref-cold)")
    parser.add_argument("--cases", help="comma-separated case or group names to run (default: all); see --list")
    parser.add_argument("--list", action="store_true", help="print the case and group names and exit")
    parser.add_argument("--keep-big", action="store_true", help="keep the 1 GB wheel and the memory cases' caches and apps")
    args = parser.parse_args()
    if args.list:
        for key, label in LABELS.items():
            print(f"{key:18} {label}")
        for name, keys in GROUPS.items():
            print(f"{name:18} group: {', '.join(keys)}")
        return
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    selected = parse_cases(args.cases, parser)
    if args.no_reference and "ref-cold" in selected:
        selected.remove("ref-cold")
    if any(k in selected for k in REMOTE_FAILURES + LOCAL_FAILURES) and "empty-local" not in selected:
        selected = [k for k in LABELS if k in selected or k == "empty-local"]
        log("adding empty-local: the failure cases' time lost is measured against it")
    if not selected:
        parser.error("no case selected")
    print(machine_info())
    print(f"cases: {', '.join(selected)}")
    work = BENCH_DIR / "cache-bench"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(work, args.runs)
    servers = Servers()
    mounts = Mounts()
    try:
        if any(k not in MEMORY for k in selected):
            realistic_phase(bench, [k for k in selected if k not in MEMORY], servers, mounts)
        servers.stop()
        if any(k in MEMORY for k in selected):
            memory_phase(bench, selected, servers, args.keep_big)
    finally:
        servers.stop()
        mounts.unmount_all()
    report(bench, selected)
    print()
    print(machine_end())


if __name__ == "__main__":
    main()
