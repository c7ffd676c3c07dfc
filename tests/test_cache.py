"""Shared caches: a cold build reuses segments compressed by another app, checkout or machine.

The local cache is a folder per test (see ``conftest._isolated_flash_cache``). The remote
cache is a real WsgiDAV server on 127.0.0.1 (skipped when wsgidav is not installed), serving
Bazel's HTTP cache layout from a folder the test can look into and damage. Every build that
used a cache is compared byte for byte with a clean build of the same sources, in a folder of
the same name, with every cache turned off.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import socket
import tarfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wheelfactory import make_wheel

from flash_tasks import archive, cache
from flash_tasks.cache.local import ActionRecord, LocalCache
from flash_tasks.cli import main
from flash_tasks.deps import speculation
from flash_tasks.store import Blob

MAIN = '''\
from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2)
def work(payload: dict) -> dict:
    return {"app": "APPNAME", **payload}
'''

DEPS = ("alpha", "beta", "gamma")
#: The cached segments of an app that has DEPS: one per dependency, and the SDK's.
SEGMENTS = len(DEPS) + 1


@pytest.fixture(scope="module")
def cache_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Wheels with enough bytes that a segment is more than a header."""
    folder = tmp_path_factory.mktemp("cache-wheels")
    make_wheel(folder, "runpod-flash", "1.21.0", files={"runpod_flash/__init__.py": "__version__ = '1.21.0'\n"})
    for n, name in enumerate(DEPS):
        bulk = "".join(f"{name.upper()}_{i} = {i * (7919 + n) % 10007}\n" for i in range(3000))
        # Two of them install a script into bin/, which they share (so it ships in the fresh segment).
        scripts = {f"{name}-tool": f"{name}:main"} if name != "alpha" else None
        make_wheel(folder, name, "1.0", files={f"{name}/__init__.py": "def main() -> None:\n    pass\n", f"{name}/bulk.py": bulk}, console_scripts=scripts)
    return folder


def make_app(parent: Path, name: str = "app") -> Path:
    root = parent / name
    root.mkdir(parents=True)
    (root / "main.py").write_text(MAIN.replace("APPNAME", f"{parent.name}/{name}"))
    (root / "requirements.txt").write_text("".join(f"{d}==1.0\n" for d in DEPS))
    return root


class Compressions:
    """Counts the segments the archive step compresses (the fresh one is always among them)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.jobs: list[int] = []
        real = archive.write_segments_parallel

        def counting(jobs: Any, workers: int | None = None, **options: Any) -> Any:
            self.jobs.append(len(jobs))
            return real(jobs, workers, **options)

        monkeypatch.setattr(archive, "write_segments_parallel", counting)

    def dependency_segments(self) -> int:
        return sum(self.jobs) - len(self.jobs)


class Builds:
    def __init__(self, index: Path, capsys: pytest.CaptureFixture[str], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.index = index
        self.capsys = capsys
        self.tmp = tmp
        self.monkeypatch = monkeypatch
        self.count = 0

    def run(self, app: Path, *extra: str) -> tuple[int, str, str]:
        """A build; ``--color never`` (to read warnings) replaces ``-q``."""
        quiet = [] if "--color" in extra else ["-q"]
        code = main(["build", "-C", str(app), "--no-index", "--find-links", str(self.index), *quiet, *extra])
        out, err = self.capsys.readouterr()
        return code, out, err

    def ok(self, app: Path, *extra: str) -> str:
        code, out, err = self.run(app, *extra)
        assert code == 0, f"exit {code}\n{out}\n{err}"
        assert "Traceback" not in err
        return err

    def clean_bytes(self, app: Path) -> bytes:
        """A build of ``app``'s sources in a fresh folder of the same name, with every cache off."""
        self.count += 1
        copy = self.tmp / f"clean-{self.count}" / app.name
        shutil.copytree(app, copy, ignore=shutil.ignore_patterns(".flash"))
        with self.monkeypatch.context() as m:
            m.setenv("FLASH_TASKS_CACHE_MAX", "0")
            m.delenv("FLASH_TASKS_REMOTE_CACHE", raising=False)
            self.ok(copy)
        assert cache.last_stats().local_hits == cache.last_stats().remote_hits == 0
        return (copy / ".flash" / "artifact.tar.gz").read_bytes()

    def assert_clean(self, app: Path) -> None:
        got = (app / ".flash" / "artifact.tar.gz").read_bytes()
        gzip.decompress(got)
        assert got == self.clean_bytes(app), "the artifact differs from a build without caches"

    def last_clean(self, app: Path) -> Path:
        """The folder of the last clean build of ``app`` (``clean_bytes``)."""
        return self.tmp / f"clean-{self.count}" / app.name


@pytest.fixture()
def builds(cache_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Builds:
    return Builds(cache_index, capsys, tmp_path, monkeypatch)


def segment_records(root: Path) -> list[ActionRecord]:
    """The segment records of a local cache folder (the SDK's tree records are another shape)."""
    from flash_tasks.store import load

    records = [load(ActionRecord, p) for p in sorted((root / "v1" / "ac").glob("*/*"))]
    return [r for r in records if r is not None and r.kind == "segment"]


def warnings_in(err: str) -> list[str]:
    return [line for line in err.splitlines() if "warning" in line.lower()]


# -- local cache -------------------------------------------------------------------------------


def test_second_app_compresses_nothing_and_is_byte_identical(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = make_app(tmp_path / "one")
    builds.ok(first)
    compressions = Compressions(monkeypatch)
    second = make_app(tmp_path / "two")
    err = builds.ok(second)
    assert compressions.dependency_segments() == 0
    assert cache.last_stats().local_hits == SEGMENTS
    assert not warnings_in(err)
    builds.assert_clean(second)


def test_second_app_takes_the_sdk_from_the_cache(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.deps import sdk

    fetched: list[str] = []
    real = sdk.bundle_runpod_flash

    def counting(target: Path, *args: Any, **kwargs: Any) -> Any:
        fetched.append(str(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(sdk, "bundle_runpod_flash", counting)
    builds.ok(make_app(tmp_path / "one"))
    assert len(fetched) == 1
    second = make_app(tmp_path / "two")
    builds.ok(second)
    assert len(fetched) == 1, "the second app fetched the SDK again"
    assert sorted(p.relative_to(second / ".flash" / ".build").as_posix() for p in (second / ".flash" / ".build" / "runpod_flash").rglob("*")) == sorted(
        p.relative_to(tmp_path / "one" / "app" / ".flash" / ".build").as_posix() for p in (tmp_path / "one" / "app" / ".flash" / ".build" / "runpod_flash").rglob("*")
    )
    builds.assert_clean(second)


def test_an_edit_rebuild_does_not_load_the_caches(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    app = make_app(tmp_path / "one")
    builds.ok(app)
    (app / "main.py").write_text((app / "main.py").read_text() + "# edited\n")
    for name in [m for m in sys.modules if m == "flash_tasks.cache" or m.startswith("flash_tasks.cache.")]:
        monkeypatch.delitem(sys.modules, name)
    builds.ok(app)
    assert "flash_tasks.cache" not in sys.modules
    builds.assert_clean(app)


def test_a_cache_off_compresses_everything(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    monkeypatch.setenv("FLASH_TASKS_CACHE_MAX", "0")
    compressions = Compressions(monkeypatch)
    builds.ok(make_app(tmp_path / "two"))
    assert compressions.dependency_segments() == SEGMENTS


def test_cache_dir_option_overrides_the_environment(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = tmp_path / "chosen-cache"
    builds.ok(make_app(tmp_path / "one"), "--cache-dir", str(chosen))
    assert len(segment_records(chosen)) == SEGMENTS
    assert LocalCache(Path(os.environ["FLASH_TASKS_CACHE_DIR"]), 1 << 30).usage().actions == 0


def test_a_damaged_local_blob_is_a_miss_and_deleted(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    root = Path(os.environ["FLASH_TASKS_CACHE_DIR"])
    blobs = [LocalCache(root, 1 << 30).blob_path(b.sha256) for r in segment_records(root) for b in r.blobs]
    assert len(blobs) == SEGMENTS
    victim = blobs[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x55
    victim.write_bytes(bytes(data))
    compressions = Compressions(monkeypatch)
    second = make_app(tmp_path / "two")
    builds.ok(second)
    assert compressions.dependency_segments() == 1
    assert cache.last_stats().local_hits == SEGMENTS - 1
    builds.assert_clean(second)
    # Compressed again, and put back with the right bytes.
    import hashlib

    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name


def test_an_unusable_cache_folder_costs_one_warning(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be\n")
    monkeypatch.setenv("FLASH_TASKS_CACHE_DIR", str(blocker))
    app = make_app(tmp_path / "one")
    err = builds.ok(app, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and str(blocker) in found[0], err
    builds.assert_clean(app)


def test_bad_cache_size_is_a_usage_error(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASH_TASKS_CACHE_MAX", "lots")
    code, _, err = builds.run(make_app(tmp_path / "one"), "--cache-dir", str(tmp_path / "c"))
    assert code == 2
    assert "FLASH_TASKS_CACHE_MAX" in err and "Traceback" not in err


def _blob_file(cache_root: LocalCache, data: bytes, tmp: Path) -> Blob:
    import hashlib

    source = tmp / "source"
    source.write_bytes(data)
    blob = Blob(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    assert cache_root.put_blob(source, blob)
    return blob


def test_prune_evicts_least_recently_used(tmp_path: Path) -> None:
    local = LocalCache(tmp_path / "c", max_bytes=2500)
    blobs = [_blob_file(local, bytes([n]) * 1000, tmp_path) for n in range(3)]
    for age, blob in zip((300, 200, 100), blobs):
        past = time.time() - age
        os.utime(local.blob_path(blob.sha256), (past, past))
    # Using the oldest makes it the most recent.
    assert local.fetch(blobs[0], tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == bytes([0]) * 1000
    local.put_action("k" * 64, ActionRecord(kind="segment", name="x", blobs=[blobs[1]]))
    pruned = local.prune()
    assert (pruned.blobs, pruned.blob_bytes, pruned.actions) == (1, 1000, 1)
    assert [local.has_blob(b) for b in blobs] == [True, False, True]
    assert local.get_action("k" * 64) is None


def test_prune_keeps_the_records_whose_blobs_stay(tmp_path: Path) -> None:
    from flash_tasks.cache import TreeAction, TreeFile
    from flash_tasks.cache.installs import INSTALL_KIND, InstallAction
    from flash_tasks.cache.resolutions import RESOLUTION_KIND, ResolutionAction

    local = LocalCache(tmp_path / "c", max_bytes=2500)
    old, kept, newest = [_blob_file(local, bytes([n]) * 1000, tmp_path) for n in range(3)]
    for age, blob in zip((300, 200, 100), (old, kept, newest), strict=True):
        past = time.time() - age
        os.utime(local.blob_path(blob.sha256), (past, past))

    def tree(blob: Blob) -> TreeAction:
        return TreeAction(kind="sdk", files={"pkg/a.py": TreeFile(blob=blob, mode=0o644)})

    def install(*extra: Blob) -> InstallAction:
        return InstallAction(kind=INSTALL_KIND, dist={"name": "x"}, extra={f"bin/{b.sha256[:6]}": TreeFile(blob=b, mode=0o755) for b in extra})

    records: dict[str, tuple[Any, int, bool]] = {  # key: (record, seconds since last use, kept)
        "segment-kept": (ActionRecord(kind="segment", name="x", blobs=[kept, newest]), 10, True),
        "segment-gone": (ActionRecord(kind="segment", name="x", blobs=[kept, old]), 10, False),
        "tree-kept": (tree(newest), 10, True),
        "tree-gone": (tree(old), 10, False),
        "install-kept": (install(kept), 10, True),
        "install-plain": (install(), 10, True),
        "install-gone": (install(newest, old), 10, False),
        "resolution-used": (ResolutionAction(kind=RESOLUTION_KIND, key="k", body="a==1\n"), 250, True),
        "resolution-unused": (ResolutionAction(kind=RESOLUTION_KIND, key="k", body="a==1\n"), 400, False),
        "not-a-record": (None, 10, False),
    }
    for name, (record, age, _) in records.items():
        key = name.ljust(64, "0")
        local.put_bytes(key, record.model_dump_json().encode() if record is not None else b"{not json")
        past = time.time() - age
        os.utime(local.action_path(key), (past, past))
    pruned = local.prune()
    assert (pruned.blobs, pruned.blob_bytes) == (1, 1000)
    assert [local.has_blob(b) for b in (old, kept, newest)] == [False, True, True]
    left = {name for name in records if local.action_path(name.ljust(64, "0")).is_file()}
    assert left == {name for name, (_, _, keep) in records.items() if keep}
    assert pruned.actions == len(records) - len(left)


def test_pruning_one_stale_blob_keeps_a_build_s_records(builds: Builds, tmp_path: Path) -> None:
    root = tmp_path / "own-cache"
    builds.ok(make_app(tmp_path / "one"), "--cache-dir", str(root))
    records = sorted((root / "v1" / "ac").glob("*/*"))
    kinds = {json.loads(p.read_bytes())["kind"] for p in records}
    assert kinds == {"segment", "install", "sdk", "resolution"}, kinds
    contents = {p: p.read_bytes() for p in records}
    local = LocalCache(root, max_bytes=1 << 40)
    total = local.usage().blob_bytes
    stale = _blob_file(local, b"left by another app", tmp_path)
    past = time.time() - 3600
    os.utime(local.blob_path(stale.sha256), (past, past))
    assert main(["cache", "prune", "--max", str(total), "--cache-dir", str(root)]) == 0
    assert not local.has_blob(stale)
    assert {p: p.read_bytes() for p in sorted((root / "v1" / "ac").glob("*/*"))} == contents


def test_a_blob_with_other_bytes_is_refused(tmp_path: Path) -> None:
    local = LocalCache(tmp_path / "c", max_bytes=1 << 20)
    source = tmp_path / "source"
    source.write_bytes(b"not what the name says")
    assert not local.put_blob(source, Blob(sha256="0" * 64, size=22))
    assert not local.has_blob(Blob(sha256="0" * 64, size=22))
    assert not list((tmp_path / "c" / "v1" / "tmp").iterdir())


def test_cache_commands(builds: Builds, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    root = tmp_path / "own-cache"
    builds.ok(make_app(tmp_path / "one"), "--cache-dir", str(root))
    (root / "keep-me.txt").write_text("not the cache's\n")
    assert main(["cache", "info", "--json", "--cache-dir", str(root)]) == 0
    info = json.loads(capsys.readouterr().out)
    on_disk = sorted((root / "v1" / "cas").glob("*/*"))
    assert info["blobs"] == len(on_disk) > len(DEPS)  # the segments and the SDK's files
    assert info["bytes"] == sum(p.stat().st_size for p in on_disk)
    assert main(["cache", "prune", "--max", "0", "--cache-dir", str(root)]) == 0
    assert not list((root / "v1" / "cas").glob("*/*"))
    builds.ok(make_app(tmp_path / "two"), "--cache-dir", str(root))
    assert list((root / "v1" / "cas").glob("*/*"))
    assert main(["cache", "clear", "--cache-dir", str(root)]) == 0
    assert not (root / "v1").exists()
    assert (root / "keep-me.txt").read_text() == "not the cache's\n"
    capsys.readouterr()


# -- remote cache (WsgiDAV) ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class DavServer:
    """WsgiDAV on 127.0.0.1 serving ``root`` (with ``cas/`` and ``ac/``), optionally behind a middleware."""

    def __init__(
        self, root: Path, *, users: dict[str, str] | None = None, wrap: Callable[[Any], Any] | None = None, readonly: bool = False
    ) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.root = root
        (root / "cas").mkdir(parents=True, exist_ok=True)
        (root / "ac").mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {
            "host": "127.0.0.1",
            "provider_mapping": {"/": {"root": str(root), "readonly": readonly}},
            "verbose": 0,
            "logging": {"enable": False, "enable_loggers": []},
            "property_manager": None,
            "lock_storage": None,
        }
        if users is None:
            config["simple_dc"] = {"user_mapping": {"*": True}}
        else:
            config["http_authenticator"] = {"accept_basic": True, "accept_digest": False, "default_to_digest": False}
            config["simple_dc"] = {"user_mapping": {"*": {name: {"password": pw} for name, pw in users.items()}}}
        app: Any = WsgiDAVApp(config)
        self.requests: list[str] = []

        def logged(environ: dict[str, Any], start_response: Any) -> Any:
            self.requests.append(f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}")
            return inner(environ, start_response)

        inner = wrap(app) if wrap is not None else app
        self.port = _free_port()
        self.server = wsgi.Server(("127.0.0.1", self.port), logged, numthreads=8)
        self.server.prepare()
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop()
        self.thread.join(5)

    def objects(self, kind: str) -> list[Path]:
        return sorted(p for p in (self.root / kind).iterdir() if p.is_file())


@pytest.fixture()
def dav(tmp_path: Path) -> Iterator[Callable[..., DavServer]]:
    pytest.importorskip("wsgidav", reason="wsgidav is not installed (pip install -e '.[test]')")
    pytest.importorskip("cheroot", reason="cheroot (wsgidav's server) is not installed")
    servers: list[DavServer] = []

    def start(**kwargs: Any) -> DavServer:
        server = DavServer(tmp_path / f"dav-{len(servers)}", **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def fresh_machine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, n: int) -> None:
    """An empty local cache and an empty uv cache, as on a new CI machine."""
    monkeypatch.setenv("FLASH_TASKS_CACHE_DIR", str(tmp_path / f"machine-{n}-cache"))
    empty_uv_cache(monkeypatch, tmp_path, n)


def empty_uv_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, n: int) -> None:
    """uv's cache empty (a new checkout on a cleaned machine): uv would have to fetch every wheel."""
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / f"machine-{n}-uv"))


def populate(builds: Builds, server: DavServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fresh_machine(monkeypatch, tmp_path, 1)
    builds.ok(make_app(tmp_path / "first-machine"), "--remote-cache", server.url)
    # One segment per dependency, the two scripts in bin/ (install records name them) and the SDK's package.
    assert len(server.objects("cas")) == SEGMENTS + 3
    # A segment record and an install record per dependency, the SDK's, and the group's resolution.
    kinds = sorted(json.loads(p.read_bytes())["kind"] for p in server.objects("ac"))
    assert kinds == ["install"] * len(DEPS) + ["resolution", "sdk"] + ["segment"] * SEGMENTS


def test_fresh_machine_gets_segments_from_the_remote(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    populate(builds, server, tmp_path, monkeypatch)
    fresh_machine(monkeypatch, tmp_path, 2)
    compressions = Compressions(monkeypatch)
    app = make_app(tmp_path / "second-machine")
    err = builds.ok(app, "--remote-cache", server.url)
    assert compressions.dependency_segments() == 0
    assert cache.last_stats().remote_hits == SEGMENTS
    # The group's lock came from the remote's resolution, and uv confirmed it meanwhile.
    assert [r.outcome for r in speculation.last_results()] == ["confirmed"]
    assert not warnings_in(err)
    builds.assert_clean(app)
    # What was downloaded is now in this machine's local cache too.
    local = LocalCache(tmp_path / "machine-2-cache", 1 << 30)
    records = segment_records(local.root)
    assert len(records) == SEGMENTS and all(local.has_blob(b) for r in records for b in r.blobs)


def test_only_dependency_segments_are_uploaded(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    populate(builds, server, tmp_path, monkeypatch)
    app_files = {"main.py", "requirements.txt", "flash_manifest.json"}
    shipped: set[str] = set()
    build = tmp_path / "first-machine" / "app" / ".flash" / ".build"
    scripts = {(build / "bin" / f"{name}-tool").read_bytes() for name in DEPS if name != "alpha"}
    sdk_files = {p.relative_to(build).as_posix() for p in (build / "runpod_flash").rglob("*") if p.is_file()}
    for blob in server.objects("cas"):
        data = blob.read_bytes()
        if data[257:262] == b"ustar":
            # The SDK's package (from its public wheel), as one tar: nothing of the app.
            with tarfile.open(fileobj=__import__("io").BytesIO(data)) as tar:
                assert {m.name for m in tar} <= sdk_files
            continue
        if not data.startswith(b"\x1f\x8b"):
            # Not a segment: one of the dependencies' scripts, which an install record names.
            assert data in scripts, blob
            continue
        with tarfile.open(fileobj=__import__("io").BytesIO(gzip.decompress(blob.read_bytes()) + b"\0" * 1024)) as tar:
            names = [m.name.removeprefix("./") for m in tar]
        assert names, blob
        if all(n.split("/", 1)[0] == "runpod_flash" for n in names):
            # The SDK's segment: its package's files only, not the resource config written for this app.
            files = {n for n in names if not (build / n).is_dir()}
            assert files == sdk_files - {"runpod_flash/runtime/_flash_resource_config.py"}, blob
            continue
        shipped.update(n.split("/", 1)[0] for n in names)
        assert not app_files & {n.rsplit("/", 1)[-1] for n in names}
        assert not any(n.startswith(("handler_", "runpod_flash")) for n in names)
    assert {top for top in shipped if not top.endswith(".dist-info")} == set(DEPS)


def test_read_only_remote_is_never_written(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    builds.ok(make_app(tmp_path / "one"), "--remote-cache", server.url, "--remote-cache-read-only")
    assert not [r for r in server.requests if r.startswith("PUT")]
    assert server.objects("cas") == server.objects("ac") == []


def test_corrupted_remote_object_is_ignored_and_rebuilt(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    populate(builds, server, tmp_path, monkeypatch)
    victim = next(p for p in server.objects("cas") if p.read_bytes().startswith(b"\x1f\x8b"))  # a segment
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x55
    victim.write_bytes(bytes(data))
    fresh_machine(monkeypatch, tmp_path, 2)
    compressions = Compressions(monkeypatch)
    app = make_app(tmp_path / "second-machine")
    err = builds.ok(app, "--remote-cache", server.url, "--color", "never")
    assert compressions.dependency_segments() == 1
    assert cache.last_stats().remote_hits == SEGMENTS - 1
    assert len(warnings_in(err)) == 1, err
    builds.assert_clean(app)
    # The rebuilt segment was uploaded over the damaged object.
    import hashlib

    assert hashlib.sha256(victim.read_bytes()).hexdigest() == victim.name


def time_restores(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds spent asking the caches in one build (where remote lookups wait), summed:
    installs from cached segments (the install step) and segments (the archive step)."""
    from flash_tasks.cache import installs

    waited = [0.0]

    def timing(module: Any, name: str) -> None:
        real = getattr(module, name)

        def timed(*args: Any) -> Any:
            started = time.monotonic()
            try:
                return real(*args)
            finally:
                waited[0] += time.monotonic() - started

        monkeypatch.setattr(module, name, timed)

    timing(cache, "restore_segments")
    timing(installs, "restore_installs")
    return waited


def test_server_down_costs_one_warning(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    app = make_app(tmp_path / "one")
    waited = time_restores(monkeypatch)
    err = builds.ok(app, "--remote-cache", url, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and "connection refused" in found[0], err
    assert len(waited) == 1 and waited[0] < 2.0, waited
    builds.assert_clean(app)


def test_refused_token_costs_one_warning(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav(users={"ci": "secret"})
    monkeypatch.setenv("FLASH_TASKS_REMOTE_CACHE_TOKEN", "wrong-token")
    app = make_app(tmp_path / "one")
    err = builds.ok(app, "--remote-cache", server.url, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and "401" in found[0], err
    assert "wrong-token" not in err
    assert server.objects("cas") == []
    builds.assert_clean(app)


def test_refused_upload_costs_one_warning(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path) -> None:
    server = dav(readonly=True)
    app = make_app(tmp_path / "one")
    err = builds.ok(app, "--remote-cache", server.url, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and "403" in found[0], err
    assert [r for r in server.requests if r.startswith("PUT")], server.requests
    assert server.objects("cas") == []
    builds.assert_clean(app)


def test_slow_server_costs_at_most_two_seconds(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(app: Any) -> Any:
        def handler(environ: dict[str, Any], start_response: Any) -> Any:
            time.sleep(5)
            return app(environ, start_response)

        return handler

    server = dav(wrap=slow)
    app = make_app(tmp_path / "one")
    waited = time_restores(monkeypatch)
    err = builds.ok(app, "--remote-cache", server.url, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and "timed out" in found[0], err
    # The first lookups (made in parallel), then the remote is left alone for the rest of the build.
    assert server.requests and all(r.startswith("GET /ac/") for r in server.requests), server.requests
    assert len(server.requests) <= min(len(DEPS), cache.FETCH_WORKERS)
    assert len(waited) == 1 and waited[0] < 2.0, waited
    builds.assert_clean(app)


def test_temporaries_are_swept_after_a_kill(tmp_path: Path) -> None:
    """A build killed while copying a segment out of a cache leaves names the recovery deletes."""
    from flash_tasks.cache.local import temporary_name
    from flash_tasks.runner import TEMPORARY_NAMES

    assert TEMPORARY_NAMES.match(temporary_name("numpy-2.0-0123456789abcdef0123.1of1.gz"))
    assert TEMPORARY_NAMES.match(f".flash-sdk-restore-{os.getpid()}-1")


def _big_blob(path: Path, mib: int) -> Blob:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for n in range(mib):
            chunk = n.to_bytes(4, "big") * (1 << 18)
            digest.update(chunk)
            out.write(chunk)
    return Blob(sha256=digest.hexdigest(), size=mib << 20)


def test_blobs_are_streamed_not_loaded_whole(dav: Callable[..., DavServer], tmp_path: Path) -> None:
    """Copying a blob out of either cache keeps a few MB in memory, whatever its size."""
    import tracemalloc

    from flash_tasks.cache.remote import RemoteCache

    source = tmp_path / "big"
    blob = _big_blob(source, 48)
    local = LocalCache(tmp_path / "c", max_bytes=1 << 30)
    assert local.put_blob(source, blob)
    server = dav()
    shutil.copyfile(source, server.root / "cas" / blob.sha256)
    remote = RemoteCache(server.url)
    tracemalloc.start()
    try:
        assert local.fetch(blob, tmp_path / "from-local")
        assert remote.download(blob, tmp_path / "from-remote") == "ok"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"
    assert (tmp_path / "from-local").read_bytes() == (tmp_path / "from-remote").read_bytes() == source.read_bytes()


@pytest.mark.slow
def test_concurrent_builds_share_one_cache(builds: Builds, tmp_path: Path, cache_index: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two builds of different apps filling one empty cache at once: both correct, the cache whole."""
    import subprocess
    import sys

    apps = [make_app(tmp_path / f"racer-{n}") for n in range(2)]
    argv = ["--no-index", "--find-links", str(cache_index), "-q"]
    procs = [
        subprocess.Popen([sys.executable, "-m", "flash_tasks", "build", "-C", str(app), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for app in apps
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"{out}\n{err}"
        assert not warnings_in(err) and "Traceback" not in err, err
    root = Path(os.environ["FLASH_TASKS_CACHE_DIR"])
    assert len(segment_records(root)) == SEGMENTS
    assert not list((root / "v1" / "tmp").iterdir())
    for app in apps:
        builds.assert_clean(app)
    compressions = Compressions(monkeypatch)
    third = make_app(tmp_path / "third")
    builds.ok(third)
    assert compressions.dependency_segments() == 0
    builds.assert_clean(third)


# -- installs from cached segments (no wheel installed, nothing compressed) ----------------------


def tree(root: Path) -> dict[str, tuple[str, int, bytes]]:
    """Every entry under ``root``: its kind, permission bits and, for files, bytes."""
    out: dict[str, tuple[str, int, bytes]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        kind = "dir" if path.is_dir() and not path.is_symlink() else "link" if path.is_symlink() else "file"
        out[path.relative_to(root).as_posix()] = (kind, info.st_mode & 0o777, path.read_bytes() if kind == "file" else b"")
    return out


class UvInstalls:
    """Counts the distributions uv installed (the SDK is fetched elsewhere).

    ``cache_empty``: uv answers an install it may not go online for as it does when its cache
    lacks a wheel (here the wheels lie in a local folder, which uv reads offline too).
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, *, cache_empty: bool = True) -> None:
        from flash_tasks.deps import installer
        from flash_tasks.deps.uv import _UvRun

        self.names: list[str] = []
        real = installer._install_entries

        def counting(entries: Any, *args: Any, **options: Any) -> Any:
            if cache_empty and options.get("online") is False:
                miss = "error: Network connectivity is disabled, but the requested data wasn't found in the cache"
                return _UvRun(returncode=2, stdout="", stderr=miss), False
            run, online = real(entries, *args, **options)
            if run.returncode == 0:
                self.names.extend(e.name for e in entries)
            return run, online

        monkeypatch.setattr(installer, "_install_entries", counting)


def test_second_app_installs_from_the_local_cache_without_uv(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    empty_uv_cache(monkeypatch, tmp_path, 2)
    uv = UvInstalls(monkeypatch)
    compressions = Compressions(monkeypatch)
    app = make_app(tmp_path / "two")
    err = builds.ok(app, "--color", "never")
    assert uv.names == [] and compressions.dependency_segments() == 0
    assert cache.last_stats().installs_restored == len(DEPS)
    assert not warnings_in(err), err
    builds.assert_clean(app)
    # .flash/.build is what uv would have installed: same files, bytes and modes (the scripts in bin/ too).
    built = tree(app / ".flash" / ".build")
    assert built == tree(builds.last_clean(app) / ".flash" / ".build")
    assert {"bin/beta-tool", "bin/gamma-tool"} <= set(built)
    # A rebuild trusts what was restored: nothing runs again, the artifact stays.
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    builds.ok(app, "--verify")
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


def test_fresh_machine_installs_from_the_remote(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    populate(builds, server, tmp_path, monkeypatch)
    fresh_machine(monkeypatch, tmp_path, 2)
    uv = UvInstalls(monkeypatch)
    compressions = Compressions(monkeypatch)
    from flash_tasks.deps import sdk

    fetched_sdk: list[Path] = []
    real_fetch = sdk.bundle_runpod_flash
    monkeypatch.setattr(sdk, "bundle_runpod_flash", lambda target, *a, **k: (fetched_sdk.append(target), real_fetch(target, *a, **k))[1])
    app = make_app(tmp_path / "second-machine")
    err = builds.ok(app, "--remote-cache", server.url, "--color", "never")
    assert uv.names == [] and compressions.dependency_segments() == 0
    stats = cache.last_stats()
    assert stats.installs_restored == len(DEPS) and stats.remote_hits == SEGMENTS
    assert stats.trees_from_remote == 1 and fetched_sdk == []
    assert not warnings_in(err), err
    builds.assert_clean(app)
    assert tree(app / ".flash" / ".build") == tree(builds.last_clean(app) / ".flash" / ".build")
    # The records came along into this machine's local cache: a third app needs no remote.
    server.stop()
    empty_uv_cache(monkeypatch, tmp_path, 3)
    uv.names.clear()
    third = make_app(tmp_path / "third")
    builds.ok(third, "--color", "never")
    assert uv.names == [] and cache.last_stats().installs_restored == len(DEPS)
    builds.assert_clean(third)


def _tamper_segment(local: LocalCache, name: str) -> None:
    """Change one byte of a file inside ``name``'s cached segment and re-record it: the cache's own
    digests agree with the damage, only the distribution's RECORD can tell."""
    import hashlib

    record = next(r for r in segment_records(local.root) if r.name.startswith(f"{name}-"))
    blob = record.blobs[0]
    raw = bytearray(gzip.decompress(local.blob_path(blob.sha256).read_bytes()))
    at = raw.index(f"{name.upper()}_5 = ".encode()) + len(f"{name.upper()}_5 = ")
    raw[at] = ord("9") if raw[at] != ord("9") else ord("8")
    data = gzip.compress(bytes(raw), mtime=0)
    new = Blob(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    local.blob_path(new.sha256).parent.mkdir(parents=True, exist_ok=True)
    local.blob_path(new.sha256).write_bytes(data)
    key = next(p for p in sorted((local.root / "v1" / "ac").glob("*/*")) if f'"name":"{record.name}"' in p.read_text())
    key.write_text(ActionRecord(kind="segment", name=record.name, blobs=[new]).model_dump_json())


def test_a_segment_that_disagrees_with_its_record_is_not_used(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    builds.ok(make_app(tmp_path / "one"))
    local = LocalCache(Path(os.environ["FLASH_TASKS_CACHE_DIR"]), 1 << 30)
    _tamper_segment(local, "alpha")
    empty_uv_cache(monkeypatch, tmp_path, 2)
    uv = UvInstalls(monkeypatch)
    app = make_app(tmp_path / "two")
    err = builds.ok(app, "--color", "never")
    found = warnings_in(err)
    assert len(found) == 1 and "alpha 1.0" in found[0], err
    assert uv.names == ["alpha"]
    builds.assert_clean(app)
    # The damaged records left the cache; the segment compressed instead took their place.
    empty_uv_cache(monkeypatch, tmp_path, 3)
    uv.names.clear()
    third = make_app(tmp_path / "three")
    assert not warnings_in(builds.ok(third, "--color", "never"))
    assert uv.names == []
    builds.assert_clean(third)


def test_a_remote_without_install_records_gets_them(dav: Callable[..., DavServer], builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = dav()
    populate(builds, server, tmp_path, monkeypatch)
    # As a remote filled before install records existed: segments only.
    for path in server.objects("ac"):
        if json.loads(path.read_bytes())["kind"] == "install":
            path.unlink()
    fresh_machine(monkeypatch, tmp_path, 2)
    uv = UvInstalls(monkeypatch)
    builds.ok(make_app(tmp_path / "second-machine"), "--remote-cache", server.url)
    assert sorted(uv.names) == sorted(DEPS) and cache.last_stats().remote_hits == SEGMENTS
    kinds = sorted(json.loads(p.read_bytes())["kind"] for p in server.objects("ac"))
    assert kinds == ["install"] * len(DEPS) + ["resolution", "sdk"] + ["segment"] * SEGMENTS
    fresh_machine(monkeypatch, tmp_path, 3)
    uv.names.clear()
    app = make_app(tmp_path / "third-machine")
    builds.ok(app, "--remote-cache", server.url)
    assert uv.names == [] and cache.last_stats().installs_restored == len(DEPS)
    builds.assert_clean(app)


def test_uv_installs_from_its_own_cache_before_segments_are_extracted(builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With every wheel in uv's cache, uv installs (faster than extracting); segments still spare the compression."""
    builds.ok(make_app(tmp_path / "one"))
    uv = UvInstalls(monkeypatch, cache_empty=False)
    compressions = Compressions(monkeypatch)
    app = make_app(tmp_path / "two")
    builds.ok(app)
    assert sorted(uv.names) == sorted(DEPS) and cache.last_stats().installs_restored == 0
    assert compressions.dependency_segments() == 0 and cache.last_stats().local_hits == SEGMENTS
    builds.assert_clean(app)
