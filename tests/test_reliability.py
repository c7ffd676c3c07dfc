"""Reliability: whatever the input and whatever happens mid-build, ``flash build`` either
produces a correct artifact or fails with one clear message, and never leaves a broken or
stale artifact or a cache that poisons the next build.

* one named test per error case: exit code, ``file:line[:col]`` location, a hint, no traceback;
  each one starts from a good build and checks that the previous artifact is byte-for-byte
  unchanged and that the build after the fix equals a clean build of the fixed app;
* crash safety: a seeded loop of SIGKILL / SIGINT at random points of real builds, each
  followed by a normal build that must equal a clean build and then be a no-op;
* concurrency, network failures and a full disk.

The kill loop takes minutes and is marked ``slow`` (run by ``.ci/run``, not the README's test command).
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import hashlib
import http.server
import io
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from wheelfactory import make_wheel

from flash_tasks import catalog, graph
from flash_tasks.cli import main
from flash_tasks.config import BuildConfig
from flash_tasks.runner import run_tasks

EXIT_BUILD, EXIT_USAGE, EXIT_DEPS, EXIT_INTERRUPTED = 1, 2, 3, 130

MAIN = '''\
"""The app's endpoint."""

from runpod_flash import CpuInstanceType, DataCenter, Endpoint, GpuGroup

from util import HELPER


@Endpoint(name="worker", cpu=CpuInstanceType.CPU3C_1_2, workers={workers}{extra})
def work(payload: dict) -> dict:
    return {{"helper": HELPER, **payload}}
'''

UTIL = "HELPER = 1\n"


def main_py(workers: object = 2, extra: str = "") -> str:
    return MAIN.format(workers=workers, extra=extra)


# -- helpers -----------------------------------------------------------------------------------


class Builds:
    """How a test builds: the CLI flags and the matching BuildConfig options, kept in step."""

    def __init__(self, find_links: list[Path], **options: Any) -> None:
        self.find_links = [str(p) for p in find_links]
        self.options = options

    def args(self, app: Path, *extra: str) -> list[str]:
        out = ["build", "-C", str(app), "--no-index"]
        for link in self.find_links:
            out += ["--find-links", link]
        if self.options.get("python_version"):
            out += ["--python-version", self.options["python_version"]]
        if self.options.get("exclude"):
            out += ["--exclude", ",".join(self.options["exclude"])]
        return out + list(extra)

    def config(self, app: Path) -> BuildConfig:
        return BuildConfig(app_dir=app, find_links=tuple(self.find_links), no_index=True, **self.options)

    def with_options(self, **options: Any) -> Builds:
        clone = Builds([Path(p) for p in self.find_links], **{**self.options, **options})
        return clone


def cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def listing(artifact: Path) -> list[tuple[str, str, int]]:
    """The artifact as sorted (name, content sha256 / link target / kind, mode)."""
    out = []
    with tarfile.open(artifact, "r:gz") as tar:
        for member in tar:
            if member.isfile():
                handle = tar.extractfile(member)
                assert handle is not None
                what = hashlib.sha256(handle.read()).hexdigest()
            elif member.issym():
                what = "-> " + member.linkname
            else:
                what = "dir" if member.isdir() else f"type {member.type!r}"
            out.append((member.name, what, member.mode))
    return sorted(out)


_clean_counter = iter(range(10**6))


def clean_build(app: Path, builds: Builds, scratch: Path) -> tuple[list[tuple[str, str, int]], str, bytes]:
    """Listing, published manifest and bytes of a clean build of ``app``'s current sources elsewhere.

    The copy keeps the folder name: it is the manifest's project name.
    """
    copy = scratch / f"clean-{next(_clean_counter)}" / app.name
    shutil.copytree(app, copy, symlinks=True, ignore=shutil.ignore_patterns(".flash"))
    run_tasks(builds.config(copy))
    artifact = copy / ".flash" / "artifact.tar.gz"
    return listing(artifact), (copy / ".flash" / "flash_manifest.json").read_text(), artifact.read_bytes()


def assert_same_as_clean(artifact: Path, app: Path, builds: Builds, scratch: Path) -> None:
    """The artifact is a clean build's: same files first (a readable difference), then the same bytes."""
    expected_listing, _manifest, expected_bytes = clean_build(app, builds, scratch)
    assert listing(artifact) == expected_listing
    assert artifact.read_bytes() == expected_bytes, "same files as a clean build, but not the same bytes"


def error_lines(err: str) -> list[str]:
    """Lines that start an error message (``[location: ]error: ...`` at column 0)."""
    return re.findall(r"(?m)^(?:\S.*?: )?error: .*$", err)


def assert_one_clear_error(code: int, out: str, err: str, expected_code: int, *patterns: str) -> None:
    assert code == expected_code, f"exit {code}, expected {expected_code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in err and "Traceback" not in out, err
    assert len(error_lines(err)) == 1, f"expected exactly one error message:\n{err}"
    assert re.search(r"(?im)^\s*hint: \S", err), f"no hint:\n{err}"
    for pattern in patterns:
        assert re.search(pattern, err), f"{pattern!r} not in:\n{err}"


def write_app(app: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = app / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return app


def bump_mtime(path: Path) -> None:
    """Make sure the next stat sees a new mtime (coarse clocks)."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))


@pytest.fixture()
def builds(local_index: Path) -> Builds:
    return Builds([local_index])


@pytest.fixture()
def app(tmp_path: Path) -> Path:
    """A small app with one endpoint, a helper module and one dependency."""
    return write_app(
        tmp_path / "relapp",
        {
            "main.py": main_py(),
            "util.py": UTIL,
            "requirements.txt": "tinydep==1.0\n",
            "README.md": "# relapp\n",
        },
    )


def failure_keeps_artifact(
    app: Path,
    builds: Builds,
    capsys: pytest.CaptureFixture[str],
    scratch: Path,
    *,
    break_app: Callable[[Path], None],
    fix_app: Callable[[Path], None],
    expected_code: int,
    patterns: tuple[str, ...],
    fail_args: tuple[str, ...] = (),
) -> str:
    """Good build, break, failed build (checked), fix, build == clean build, then a no-op."""
    code, out, err = cli(builds.args(app, "-q"), capsys)
    assert code == 0, err
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()

    break_app(app)
    code, out, err = cli(builds.args(app, *fail_args), capsys)
    assert_one_clear_error(code, out, err, expected_code, *patterns)
    assert artifact.read_bytes() == before, "a failed build changed the previous artifact"
    assert not list(app.glob(".flash/*.tmp*")), "a failed build left a temporary artifact"

    fix_app(app)
    code, out2, err2 = cli(builds.args(app, "-q"), capsys)
    assert code == 0, err2
    expected_listing, expected_manifest, expected_bytes = clean_build(app, builds, scratch)
    assert listing(artifact) == expected_listing
    assert artifact.read_bytes() == expected_bytes
    assert (app / ".flash" / "flash_manifest.json").read_text() == expected_manifest
    assert run_tasks(builds.config(app)).ran == []
    return err


# -- error cases: the app's source ---------------------------------------------------------------


def test_syntax_error_in_a_non_endpoint_file(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "util.py").write_text("HELPER = 1\n\ndef broken(:\n    pass\n"),
        fix_app=lambda a: (a / "util.py").write_text("HELPER = 2\n"),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^util\.py:3:\d+: error: .*syntax",),
    )


def test_no_endpoints(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    good = (app / "main.py").read_text()
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "main.py").write_text("def work(payload):\n    return payload\n"),
        fix_app=lambda a: (a / "main.py").write_text(good.replace("workers=2", "workers=3")),
        expected_code=EXIT_BUILD,
        patterns=(r"no endpoints", r"@Endpoint"),
    )


def test_same_endpoint_name_in_two_files(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    other = main_py(workers=1).replace("def work(", "def other_work(")
    err = failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "other.py").write_text(other),
        fix_app=lambda a: (a / "other.py").write_text(other.replace('name="worker"', 'name="other"')),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^(main|other)\.py:\d+(:\d+)?: error: ", r"main\.py", r"other\.py", r"worker"),
    )
    # Both files are named in the message itself, not only in the location.
    message = error_lines(err)[0]
    assert "main.py" in message.split("error:", 1)[1] and "other.py" in message.split("error:", 1)[1]


def test_same_endpoint_name_in_two_files_has_a_column(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "other.py").write_text(main_py(workers=1).replace("def work(", "def other_work("))
    code, out, err = cli(builds.args(app), capsys)
    assert code == EXIT_BUILD
    assert re.search(r"(?m)^(main|other)\.py:\d+:\d+: error: ", err), err


def test_endpoint_argument_that_cannot_be_evaluated_statically(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    def break_app(a: Path) -> None:
        (a / "main.py").write_text("import random\n" + main_py(workers="random.randint(1, 3)"))

    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=break_app,
        fix_app=lambda a: (a / "main.py").write_text(main_py(workers=3)),
        expected_code=EXIT_BUILD,
        # line 9 (one import line added): the decorator; the column points into the call.
        patterns=(r"(?m)^main\.py:9:\d+: error: ", r"random"),
    )


@pytest.mark.parametrize(
    ("extra", "bad", "suggestion"),
    [
        (", gpu=GpuGroup.ADA_42", "ADA_42", "ADA_24"),
        (", datacenter=DataCenter.EU_RO_2", "EU_RO_2", "EU_RO_1"),
        (', datacenter="EU-RO-2"', "EU-RO-2", "EU-RO-1"),
    ],
    ids=["gpu-enum", "datacenter-enum", "datacenter-string"],
)
def test_unknown_gpu_or_datacenter_suggests_the_closest(
    app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path, extra: str, bad: str, suggestion: str
) -> None:
    def break_app(a: Path) -> None:
        text = main_py(extra=extra)
        if "gpu=" in extra:
            text = text.replace("cpu=CpuInstanceType.CPU3C_1_2, ", "")
        (a / "main.py").write_text(text)

    err = failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=break_app,
        fix_app=lambda a: (a / "main.py").write_text(main_py(workers=4)),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^main\.py:8:\d+: error: ", re.escape(bad)),
    )
    hint = err[err.lower().index("hint:"):]
    assert suggestion in hint, err


@pytest.mark.parametrize(
    ("cpu", "bad", "suggestion"),
    [("CpuInstanceType.CPU3C_1_3", "CPU3C_1_3", "CPU3C_1_2"), ('"cpu3c-1-3"', "cpu3c-1-3", "cpu3c-1-2")],
    ids=["cpu-enum", "cpu-string"],
)
def test_unknown_cpu_suggests_the_closest(
    app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path, cpu: str, bad: str, suggestion: str
) -> None:
    err = failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "main.py").write_text(main_py().replace("CpuInstanceType.CPU3C_1_2", cpu)),
        fix_app=lambda a: (a / "main.py").write_text(main_py(workers=5)),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^main\.py:8:\d+: error: ", re.escape(bad)),
    )
    assert suggestion in err[err.lower().index("hint:"):], err


ROUTES = '''\
from runpod_flash import Endpoint

api = Endpoint(name="api", cpu="cpu3c-1-2", workers=(1, 2))


@api.get("/health")
async def health() -> dict:
    return {{"ok": True}}


@api.{method}("{path}")
async def second(payload: dict) -> dict:
    return payload
'''


@pytest.mark.parametrize(
    ("method", "path", "pattern"),
    [
        ("get", "/ping", r"/ping.*reserved|reserved.*/ping"),
        ("post", "/execute", r"/execute.*reserved|reserved.*/execute"),
        ("get", "/health", r"GET /health"),
    ],
    ids=["reserved-ping", "reserved-execute", "duplicate-method-and-path"],
)
def test_bad_routes(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path, method: str, path: str, pattern: str) -> None:
    (app / "api.py").write_text(ROUTES.format(method="post", path="/echo"))
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "api.py").write_text(ROUTES.format(method=method, path=path)),
        fix_app=lambda a: (a / "api.py").write_text(ROUTES.format(method="put", path="/echo")),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^api\.py:11:\d+: error: ", pattern),
    )


def test_non_utf8_source_file(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "latin.py").write_bytes(b'X = 1\nNAME = "caf\xe9"\n'),
        fix_app=lambda a: (a / "latin.py").write_text('X = 1\nNAME = "caf\u00e9"\n', encoding="utf-8"),
        expected_code=EXIT_BUILD,
        patterns=(r"(?m)^latin\.py(:\d+)*: error: ", r"UTF-8|utf-8|decode"),
    )


def test_non_utf8_source_file_points_at_the_line(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str]) -> None:
    (app / "latin.py").write_bytes(b'X = 1\nNAME = "caf\xe9"\n')
    code, out, err = cli(builds.args(app), capsys)
    assert code == EXIT_BUILD
    assert re.search(r"(?m)^latin\.py:2:\d+: error: ", err), err


# -- unreadable files ----------------------------------------------------------------------------


@contextlib.contextmanager
def unreadable(path: Path) -> Iterator[None]:
    """``chmod 000 path``; where that does not stop this process (root), refuse opens in-process too."""
    mode = path.stat().st_mode & 0o777
    path.chmod(0)
    try:
        with pytest.MonkeyPatch.context() as patch:
            try:
                with open(path, "rb"):
                    readable = True
            except PermissionError:
                readable = False
            if readable:
                target = os.path.realpath(path)
                real_open = builtins.open

                def guarded_open(file: Any, *args: Any, **kwargs: Any) -> Any:
                    if isinstance(file, (str, bytes, os.PathLike)) and os.path.realpath(os.fsdecode(file)) == target:
                        raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
                    return real_open(file, *args, **kwargs)

                patch.setattr(builtins, "open", guarded_open)
                patch.setattr(io, "open", guarded_open)
            yield
    finally:
        path.chmod(mode)


def test_unreadable_file(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(builds.args(app, "-q"), capsys)
    assert code == 0, err
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()
    secret = app / "secret.py"
    secret.write_text("VALUE = 'a new file, not readable'\n")
    with unreadable(secret):
        code, out, err = cli(builds.args(app), capsys)
    assert_one_clear_error(code, out, err, EXIT_BUILD, r"(?m)^secret\.py(:\d+)*: error: ", r"(?i)permission|read")
    assert artifact.read_bytes() == before
    secret.write_text("VALUE = 2\n")
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    assert_same_as_clean(artifact, app, builds, tmp_path)


def test_unreadable_file_after_a_good_build(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(builds.args(app, "-q"), capsys)
    assert code == 0, err
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    util = app / "util.py"
    bump_mtime(util)
    with unreadable(util):
        code, out, err = cli(builds.args(app), capsys)
    assert_one_clear_error(code, out, err, EXIT_BUILD, r"(?m)^util\.py(:\d+)*: error: ")
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


# -- error cases: the command line and the dependencies -------------------------------------------


def test_unsupported_python_version(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = cli(builds.args(app, "-q"), capsys)
    assert code == 0, err
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    code, out, err = cli(builds.args(app, "--python-version", "3.9"), capsys)
    assert_one_clear_error(code, out, err, EXIT_USAGE, r"3\.9", r"3\.10, 3\.11, 3\.12")
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


def test_package_that_does_not_exist(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "requirements.txt").write_text("tinydep==1.0\nno-such-package-anywhere\n"),
        fix_app=lambda a: (a / "requirements.txt").write_text("tinydep==1.0\nleafdep\n"),
        expected_code=EXIT_DEPS,
        patterns=(r"(?m)^requirements\.txt:2: error: ", r"no-such-package-anywhere"),
    )


@pytest.fixture()
def mac_only_index(tmp_path: Path) -> Path:
    folder = tmp_path / "mac-wheels"
    make_wheel(folder, "maconly", "1.0", tag="cp312-cp312-macosx_11_0_arm64", files={"maconly/__init__.py": "X = 1\n"})
    make_wheel(folder, "maconly", "1.0", tag="py3-none-macosx_10_9_x86_64", files={"maconly/__init__.py": "X = 1\n"})
    return folder


def test_package_without_a_linux_x86_64_wheel(
    app: Path, local_index: Path, mac_only_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    builds = Builds([local_index, mac_only_index])
    failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "requirements.txt").write_text("tinydep==1.0\nmaconly\n"),
        fix_app=lambda a: (a / "requirements.txt").write_text("tinydep==2.0\n"),
        expected_code=EXIT_DEPS,
        patterns=(r"(?m)^requirements\.txt:2: error: ", r"maconly", r"(?i)linux|manylinux"),
    )


def test_conflict_between_two_groups(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (app / "requirements.txt").write_text("")
    (app / "main.py").write_text(main_py(extra=', dependencies=["tinydep==1.0"]'))
    second = main_py().replace('name="worker"', 'name="second"').replace("def work(", "def second_work(")

    err = failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "second.py").write_text(second.replace("workers=2", 'workers=2, dependencies=["tinydep==2.0"]')),
        fix_app=lambda a: (a / "second.py").write_text(second.replace("workers=2", 'workers=2, dependencies=["tinydep==1.0", "leafdep"]')),
        expected_code=EXIT_DEPS,
        patterns=(r"(?m)^(main|second)\.py:\d+(:\d+)?: error: ", r"'worker'", r"'second'", r"tinydep==1\.0", r"tinydep==2\.0"),
    )
    assert "main.py" in err and "second.py" in err


def test_local_project_requirement_is_a_located_error(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    project = write_app(tmp_path / "localproj", {"pyproject.toml": '[project]\nname = "localproj"\nversion = "1.0"\n', "localproj/__init__.py": ""})
    (app / "requirements.txt").write_text(f"tinydep==1.0\nlocalproj @ {project.as_uri()}\n")
    code, out, err = cli(builds.args(app), capsys)
    assert_one_clear_error(code, out, err, EXIT_DEPS, r"(?m)^requirements\.txt:2: error: ", r"localproj")


@pytest.fixture()
def bulky_index(tmp_path: Path) -> Path:
    """A wheel of ~2 MB of incompressible data, to push an artifact over a (lowered) size limit."""
    folder = tmp_path / "bulky-wheels"
    rng = random.Random(7)
    make_wheel(folder, "bulkydep", "1.0", files={"bulkydep/__init__.py": "", "bulkydep/blob.bin": rng.randbytes(2_200_000)})
    return folder


def test_artifact_over_the_size_limit(
    app: Path, local_index: Path, bulky_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(catalog, "MAX_ARTIFACT_MB", 1)
    builds = Builds([local_index, bulky_index])
    err = failure_keeps_artifact(
        app, builds, capsys, tmp_path,
        break_app=lambda a: (a / "requirements.txt").write_text("tinydep==1.0\nbulkydep\nleafdep\n"),
        fix_app=lambda a: (a / "requirements.txt").write_text("tinydep==1.0\nleafdep\n"),
        expected_code=EXIT_BUILD,
        patterns=(r"(?i)limit|too (big|large)|exceeds", r"bulkydep", r"--exclude", r"--no-deps"),
    )
    # The biggest package is named first among the packages listed.
    listed = [name for name in ("bulkydep", "tinydep", "leafdep") if name in err]
    assert listed and listed[0] == "bulkydep" and err.index("bulkydep") < min((err.index(n) for n in listed[1:]), default=len(err))


# -- a failed build must not leave a manifest that disagrees with the artifact ----------------------


def test_failed_build_keeps_the_published_manifest_with_its_artifact(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    manifest = app / ".flash" / "flash_manifest.json"
    before = manifest.read_text()
    (app / "main.py").write_text(main_py(workers=5))
    (app / "requirements.txt").write_text("tinydep==1.0\nno-such-package-anywhere\n")
    code, _, err = cli(builds.args(app), capsys)
    assert code == EXIT_DEPS, err
    with tarfile.open(app / ".flash" / "artifact.tar.gz") as tar:
        inside = tar.extractfile("./flash_manifest.json").read().decode()  # type: ignore[union-attr]
    assert manifest.read_text() == inside == before


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture()
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 8 MiB tmpfs (root on Linux only); skipped where it cannot be mounted."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount_point = tmp_path / "small-disk"
    mount_point.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount_point)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def fill_disk(mount_point: Path, leave: int) -> Path:
    """Take all free space on ``mount_point`` but ``leave`` bytes."""
    st = os.statvfs(mount_point)
    free = st.f_bavail * st.f_frsize
    filler = mount_point / "filler"
    with open(filler, "wb") as handle:
        handle.truncate(0)
        remaining = max(free - leave, 0)
        chunk = b"\0" * (1 << 20)
        while remaining:
            n = handle.write(chunk[: min(len(chunk), remaining)])
            remaining -= n
    return filler


def test_disk_full_while_writing_the_artifact(small_disk: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    size = 700_000
    rng = random.Random(3)
    app = write_app(small_disk / "diskapp", {"main.py": main_py(), "util.py": UTIL, "data.bin": rng.randbytes(size)})
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()
    # An edit rewrites only the artifact's tail (the spare copy is cut and extended), so the
    # build needs about one more copy of the new data at a time: leave less than that.
    filler = fill_disk(small_disk, leave=int(size * 0.9))
    (app / "data.bin").write_bytes(rng.randbytes(size))
    code, out, err = cli(builds.args(app), capsys)
    assert code == EXIT_BUILD, err
    assert "Traceback" not in err and len(error_lines(err)) == 1, err
    assert re.search(r"(?i)no space left", err), err
    assert artifact.read_bytes() == before
    assert not [p for p in app.rglob("*") if ".tmp-" in p.name or p.name.startswith(".fresh-")], "temporary files left behind"
    filler.unlink()
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    assert_same_as_clean(artifact, app, builds, tmp_path)
    assert run_tasks(builds.config(app)).ran == []


def test_disk_full_message_has_a_hint(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks import archive

    assert cli(builds.args(app, "-q"), capsys)[0] == 0

    def copy_then_fail(src: Any, dst: Any) -> int:
        dst.write(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "copy_all", copy_then_fail)
    (app / "util.py").write_text("HELPER = 3\n")
    code, out, err = cli(builds.args(app), capsys)
    assert_one_clear_error(code, out, err, EXIT_BUILD, r"(?i)no space left")


def test_disk_full_simulated_while_assembling(app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same as the tmpfs test, everywhere: the archive writer fails with ENOSPC after some bytes."""
    from flash_tasks import archive

    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    artifact = app / ".flash" / "artifact.tar.gz"
    before = artifact.read_bytes()
    real_copy = archive.copy_all

    def copy_then_fail(src: Any, dst: Any) -> int:
        dst.write(b"\0" * 4096)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(archive, "copy_all", copy_then_fail)
    (app / "util.py").write_text("HELPER = 3\n")
    code, out, err = cli(builds.args(app), capsys)
    assert code == EXIT_BUILD and "Traceback" not in err and re.search(r"(?i)no space left", err), err
    assert artifact.read_bytes() == before
    assert not list(artifact.parent.glob(".*.tmp-*"))
    monkeypatch.setattr(archive, "copy_all", real_copy)
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    assert_same_as_clean(artifact, app, builds, tmp_path)


def test_disk_full_while_installing_many_files(small_disk: Path, local_index: Path, heavy_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builds = Builds([local_index, heavy_index])
    app = write_app(small_disk / "diskapp", {"main.py": main_py(), "util.py": UTIL, "requirements.txt": "tinydep==1.0\n"})
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    filler = fill_disk(small_disk, leave=1_200_000)
    (app / "requirements.txt").write_text("tinydep==1.0\nmanyfiles\n")
    code, out, err = cli(builds.args(app), capsys)
    filler.unlink()
    assert code in (EXIT_BUILD, EXIT_DEPS)
    assert "Traceback" not in err and len(error_lines(err)) == 1, err
    assert re.search(r"(?i)no space left|disk is full", err)
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


def test_disk_full_while_installing_a_large_file(small_disk: Path, local_index: Path, bulky_index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    builds = Builds([local_index, bulky_index])
    app = write_app(small_disk / "diskapp", {"main.py": main_py(), "util.py": UTIL, "requirements.txt": "tinydep==1.0\n"})
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    filler = fill_disk(small_disk, leave=1_200_000)
    (app / "requirements.txt").write_text("tinydep==1.0\nbulkydep\n")
    code, out, err = cli(builds.args(app), capsys)
    filler.unlink()
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before
    assert_one_clear_error(code, out, err, EXIT_BUILD, r"(?i)no space left")


def test_build_recovers_after_disk_full_during_install(
    small_disk: Path, local_index: Path, heavy_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    builds = Builds([local_index, heavy_index])
    app = write_app(small_disk / "diskapp", {"main.py": main_py(), "util.py": UTIL, "requirements.txt": "tinydep==1.0\n"})
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    filler = fill_disk(small_disk, leave=1_200_000)
    (app / "requirements.txt").write_text("tinydep==1.0\nmanyfiles\n")
    assert cli(builds.args(app), capsys)[0] != 0
    filler.unlink()
    (app / "requirements.txt").write_text("tinydep==1.0\n")
    code, out, err = cli(builds.args(app), capsys)
    assert code == 0, err
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


# -- state files damaged by a power cut -----------------------------------------------------------------

_TRUNCATED_REASON = (
    "stage.write_bytes_atomic renames its temporary file into place without fsync, so after a power cut a state file "
    "can be empty; stage.read_json then raises json.JSONDecodeError, from doit's uptodate checks (graph.OutputsPresent, "
    "InstallPresent, EnvUnchanged), commands/build.py (files.json) or runner._save_task_configs, and every later build "
    "fails with a traceback ('the build graph failed: doit exit code 3') until .flash is deleted. Fix: read_json treats "
    "unparsable JSON as missing (the task reruns), and fsync before os.replace (or once at the end of a build)"
)
_TRUNCATED_LOCK_REASON = (
    "an empty (power-cut) lock file: lock:<group> is up to date for doit, deps.combine_locks finds no '# inputs:' digest "
    "and raises ValueError('lock of group ... is out of date; run lock_group first'), a traceback on every build. Fix: "
    "a lock uptodate check that compares the lock's digest with LockPlan.digest(group), and fsync lock writes"
)


@pytest.mark.parametrize(
    "state_file",
    [
        ".state/stage.json",
        ".state/installed.json",
        ".state/files.json",
        ".state/handlers.json",
        ".state/env.json",
        ".state/task-configs.json",
        ".state/scan/" + hashlib.sha1(b"main.py").hexdigest() + ".json",  # main.py's scan
        "locks/worker.txt",
        ".state/groups.json",
        "locks/install.lock",
        ".doit.db",
        "flash_manifest.json",
    ],
)
def test_empty_state_file_does_not_poison_the_next_build(
    app: Path, builds: Builds, capsys: pytest.CaptureFixture[str], tmp_path: Path, state_file: str
) -> None:
    assert cli(builds.args(app, "-q"), capsys)[0] == 0
    damaged = app / ".flash" / state_file
    assert damaged.is_file(), sorted(str(p.relative_to(app)) for p in (app / ".flash").rglob("*"))
    damaged.write_bytes(b"")
    (app / "util.py").write_text("HELPER = 'after the power cut'\n")
    code, out, err = cli(builds.args(app, "-q"), capsys)
    assert code == 0 and "Traceback" not in err, err
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)
    assert run_tasks(builds.config(app)).ran == []


# -- the network -----------------------------------------------------------------------------------


def test_unreachable_index(app: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # the message is the point, not uv's back-off
    (app / "requirements.txt").write_text("some-package-never-cached-anywhere==1.0\n")
    code, out, err = cli(["build", "-C", str(app), "--index-url", "http://127.0.0.1:9/simple"], capsys)
    assert_one_clear_error(code, out, err, EXIT_DEPS, r"(?i)reach|unreachable|connect", r"(?i)offline")
    assert re.search(r"(?i)lock", err), err
    assert not (app / ".flash" / "artifact.tar.gz").exists()


def make_simple_index(wheels: list[Path], root: Path) -> None:
    """A static PEP 503 index of ``wheels`` under ``root/simple``."""
    files = root / "files"
    files.mkdir(parents=True)
    projects: dict[str, list[Path]] = {}
    for folder in wheels:
        for wheel in sorted(folder.glob("*.whl")):
            shutil.copy(wheel, files / wheel.name)
            projects.setdefault(re.sub(r"[-_.]+", "-", wheel.name.split("-")[0]).lower(), []).append(wheel)
    for name, found in projects.items():
        page = root / "simple" / name / "index.html"
        page.parent.mkdir(parents=True)
        links = "".join(
            f'<a href="../../files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">{w.name}</a>\n' for w in found
        )
        page.write_text(f"<!DOCTYPE html><html><body>\n{links}</body></html>\n")
    (root / "simple" / "index.html").write_text("".join(f'<a href="{n}/">{n}</a>\n' for n in sorted(projects)))


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture()
def http_index(local_index: Path, tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A package index on a local port, and a function that takes it down (the port then refuses)."""
    root = tmp_path / "www"
    make_simple_index([local_index], root)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            server.shutdown()
            server.server_close()
            thread.join()
            stopped = True

    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple", stop
    finally:
        stop()


def test_source_edit_rebuilds_with_the_index_down(
    app: Path, http_index: tuple[str, Callable[[], None]], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Locks exist: changing only a source file needs no network at all."""
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    monkeypatch.setenv("UV_CACHE_DIR", str(tmp_path / "own-uv-cache"))  # nothing cached for this index before
    url, stop = http_index
    (app / "requirements.txt").write_text("tinydep==1.0\nmiddep\n")
    args = ["build", "-C", str(app), "--index-url", url, "-q"]
    assert cli(args, capsys)[0] == 0
    # The expected result, built while the index is still up.
    reference = tmp_path / "reference" / app.name
    shutil.copytree(app, reference, ignore=shutil.ignore_patterns(".flash"))
    (reference / "util.py").write_text("HELPER = 'offline edit'\n")
    run_tasks(BuildConfig(app_dir=reference, index_url=url))
    stop()

    (app / "util.py").write_text("HELPER = 'offline edit'\n")
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert listing(app / ".flash" / "artifact.tar.gz") == listing(reference / ".flash" / "artifact.tar.gz")
    # Even a lost build folder comes back from the locks and uv's cache, offline.
    shutil.rmtree(app / ".flash" / ".build")
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert listing(app / ".flash" / "artifact.tar.gz") == listing(reference / ".flash" / "artifact.tar.gz")


# -- concurrency -----------------------------------------------------------------------------------


def build_command(app: Path, builds: Builds, *extra: str) -> list[str]:
    return [sys.executable, "-m", "flash_tasks", *builds.args(app, *extra)]


@pytest.fixture(scope="module")
def heavy_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few MB in many files, so installing and archiving take a while (kill targets)."""
    folder = tmp_path_factory.mktemp("heavy-wheels")
    rng = random.Random(11)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    files: dict[str, str | bytes] = {"manyfiles/__init__.py": "VERSION = 1\n"}
    for i in range(900):
        text = " ".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(250))
        files[f"manyfiles/part_{i // 100}/mod_{i:04d}.py"] = f'TEXT = """{text}"""\n'
    files["manyfiles/blob.bin"] = rng.randbytes(1_200_000)
    make_wheel(folder, "manyfiles", "1.0", files=files)
    return folder


def heavy_app(root: Path, name: str, requirements: str) -> Path:
    return write_app(root / name, {"main.py": main_py(), "util.py": UTIL, "requirements.txt": requirements})


@pytest.mark.slow
def test_two_builds_of_one_app_at_once(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    app = heavy_app(tmp_path, "together", "manyfiles\ntinydep==1.0\n")
    procs = [subprocess.Popen(build_command(app, builds, "-q"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)
    assert run_tasks(builds.config(app)).ran == []


@pytest.mark.slow
def test_two_apps_sharing_one_uv_cache_at_once(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    first = heavy_app(tmp_path, "first", "manyfiles\ntinydep==1.0\n")
    second = heavy_app(tmp_path, "second", "manyfiles\ntinydep==2.0\nmiddep\n")
    env = {**os.environ, "UV_CACHE_DIR": str(tmp_path / "shared-uv-cache")}  # empty: both fill it at once
    procs = [
        subprocess.Popen(build_command(app, builds, "-q"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for app in (first, second)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    for app in (first, second):
        assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


# -- crash safety --------------------------------------------------------------------------------

KILL_ROUNDS = int(os.environ.get("FLASH_KILL_ROUNDS", "50"))
KILL_SEED = int(os.environ.get("FLASH_KILL_SEED", "20261130"))
HELPER_VARIANTS = ("HELPER = 1\n", "HELPER = 2  # edited\n", "HELPER = {'three': 3}\n")
REQUIREMENT_VARIANTS = ("manyfiles\ntinydep==1.0\n", "manyfiles\ntinydep==2.0\nmiddep\n")
WORKER_VARIANTS = (1, 2, 3)


def children_of(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def wait_group_gone(pgid: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    os.killpg(pgid, signal.SIGKILL)


_TASK_ORDER = ("files", "scan", "stage", "manifest", "lock", "install", "handlers", "archive")
_NEXT_PHASE = {None: "startup", "files": "scan", "scan": "scan", "stage": "manifest", "manifest": "lock",
               "lock": "lock", "install": "handlers", "handlers": "archive", "archive": "finished"}


def phase_of(proc: subprocess.Popen[bytes], app: Path, verbose_output: Path) -> str:
    """Roughly where a running build is, from the outside: in uv, or the phase after the last task it reported."""
    if proc.poll() is not None:
        return "finished"
    if children_of(proc.pid):
        return "uv"
    flash = app / ".flash"
    if list(flash.glob(".state/segments/.*")) or list(flash.glob(".*.tmp-*")):
        return "archive"
    try:
        text = verbose_output.read_text(errors="replace")
    except OSError:
        text = ""
    done = re.findall(r"\b(?:ran|run|skip(?:ped)?)\s+(files|scan|stage|manifest|lock|install|handlers|archive)\b", text)
    return _NEXT_PHASE[done[-1] if done else None]


def leftover_temp_files(app: Path) -> list[str]:
    flash = app / ".flash"
    found = []
    for path in flash.rglob("*"):
        name = path.name
        if ".tmp-" in name or name.startswith((".fresh-", ".flash-sdk-", ".tmp")) or (path.parent == flash / ".build" and name == ".lock"):
            found.append(str(path.relative_to(flash)))
    return found


class KillApp:
    """The kill loop's app and its current state (what a clean build must reproduce)."""

    def __init__(self, root: Path) -> None:
        self.app = root / "crashapp"
        self.helper = 0
        self.requirements = 0
        self.workers = 0
        self.python = "3.12"
        self.write()

    def write(self) -> None:
        write_app(
            self.app,
            {
                "main.py": main_py(workers=WORKER_VARIANTS[self.workers]),
                "util.py": HELPER_VARIANTS[self.helper],
                "requirements.txt": REQUIREMENT_VARIANTS[self.requirements],
            },
        )

    def key(self) -> tuple[object, ...]:
        return (self.helper, self.requirements, self.workers, self.python)


@pytest.mark.slow
def test_kill_loop(local_index: Path, heavy_index: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Kill real builds at random moments; the next build must always be right, then a no-op."""
    rng = random.Random(KILL_SEED)
    base = Builds([local_index, heavy_index])
    state = KillApp(tmp_path)
    app = state.app
    references: dict[tuple[object, ...], tuple[list[tuple[str, str, int]], bytes]] = {}

    def builds() -> Builds:
        return base.with_options(python_version=state.python)

    def reference() -> tuple[list[tuple[str, str, int]], bytes]:
        # Other people may edit flash_tasks/ while this runs: a new tool version is a new reference.
        key = (*state.key(), graph.tool_fingerprint())
        if key not in references:
            expected_listing, _manifest, expected_bytes = clean_build(app, builds(), tmp_path)
            references[key] = (expected_listing, expected_bytes)
        return references[key]

    def timed_build() -> float:
        started = time.monotonic()
        result = subprocess.run(build_command(app, builds(), "-q"), capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        return time.monotonic() - started

    # Calibrate: how long a full build and an incremental one take here (bounds for the delays).
    timed_build()  # fills uv's cache
    shutil.rmtree(app / ".flash")
    full = timed_build()
    state.helper = 1
    state.write()
    incremental = timed_build()

    windows = {name: (full if name in ("clean", "python") else incremental * 2) * 1.2 for name in ("clean", "touch", "edit", "requirements", "python")}
    survived = 0
    failures: list[str] = []
    phases: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    scenarios: Counter[str] = Counter()
    leaks: set[str] = set()
    started = time.monotonic()

    for round_no in range(KILL_ROUNDS):
        scenario = rng.choices(["clean", "touch", "edit", "requirements", "python"], weights=[4, 2, 3, 3, 2])[0]
        if scenario == "clean":
            shutil.rmtree(app / ".flash", ignore_errors=True)
        elif scenario == "touch":
            bump_mtime(app / rng.choice(["main.py", "util.py", "requirements.txt"]))
        elif scenario == "edit":
            if rng.random() < 0.5:
                state.helper = (state.helper + rng.randint(1, 2)) % len(HELPER_VARIANTS)
            else:
                state.workers = (state.workers + rng.randint(1, 2)) % len(WORKER_VARIANTS)
            state.write()
        elif scenario == "requirements":
            state.requirements = 1 - state.requirements
            state.write()
        else:
            state.python = "3.11" if state.python == "3.12" else "3.12"
        scenarios[scenario] += 1

        how = rng.choices(["SIGKILL group", "SIGINT group", "SIGKILL main"], weights=[5, 3, 2])[0]
        low = 0.1 if how == "SIGINT group" else 0.0  # Ctrl-C while Python starts: test_sigint_while_starting_...
        delay = rng.uniform(low, max(low + 0.05, min(2.0, windows[scenario])))

        with open(tmp_path / "killed.out", "wb") as out, open(tmp_path / "killed.err", "wb") as err:
            proc = subprocess.Popen(build_command(app, builds(), "-v"), stdout=out, stderr=err, start_new_session=True)
            time.sleep(delay)
            phase = phase_of(proc, app, tmp_path / "killed.out")
            try:
                if how == "SIGKILL group":
                    os.killpg(proc.pid, signal.SIGKILL)
                elif how == "SIGINT group":
                    os.killpg(proc.pid, signal.SIGINT)
                else:
                    os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                code = proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                code = proc.wait()
                failures.append(f"round {round_no}: {how} at {delay:.2f}s ({phase}) did not stop the build")
            wait_group_gone(proc.pid)  # an orphaned uv finishes (or dies) before the next build
        phases[phase] += 1
        signals[how] += 1
        # Aim the next kills of this kind of build inside it: shrink the window after a kill that came too late.
        windows[scenario] = max(0.25, windows[scenario] * 0.8) if phase == "finished" else min(2.0, windows[scenario] * 1.05)
        label = f"round {round_no} ({scenario}, {how} after {delay:.2f}s, during {phase})"
        stderr = (tmp_path / "killed.err").read_text(errors="replace")
        if how == "SIGINT group" and "init_import_site" in stderr:
            pass  # the signal landed while Python itself was starting, before any of the tool's code ran
        elif how == "SIGINT group":
            # 130, or 0 when the build had finished. CPython 3.11 sometimes ends a process that handled the
            # KeyboardInterrupt by re-raising SIGINT on itself (or the signal lands during interpreter
            # shutdown, after the build finished): -SIGINT, which a shell reports as 130 as well.
            if code == EXIT_INTERRUPTED:
                if "interrupted" not in stderr.lower():
                    failures.append(f"{label}: exit 130 without saying 'interrupted':\n{stderr[-2000:]}")
            elif code not in (0, -signal.SIGINT):
                failures.append(f"{label}: SIGINT gave exit code {code}, expected 130:\n{stderr[-2000:]}")
            if "Traceback" in stderr and "KeyboardInterrupt" in stderr:
                failures.append(f"{label}: SIGINT printed a traceback:\n{stderr[-2000:]}")

        # The next normal build must succeed and equal a clean build of the same sources.
        tool_before = graph.tool_fingerprint()
        try:
            run_tasks(builds().config(app))
        except Exception as exc:  # noqa: BLE001 - any failure here is the finding
            failures.append(f"{label}: the build after the kill failed: {exc!r}")
            shutil.rmtree(app / ".flash", ignore_errors=True)
            continue
        got = listing(app / ".flash" / "artifact.tar.gz")
        expected, expected_bytes = reference()
        if got == expected and (app / ".flash" / "artifact.tar.gz").read_bytes() != expected_bytes:
            failures.append(f"{label}: artifact has the clean build's files but not its bytes")
            shutil.rmtree(app / ".flash", ignore_errors=True)
            continue
        if got != expected:
            extra = sorted(set(got) - set(expected))
            missing = sorted(set(expected) - set(got))
            failures.append(f"{label}: artifact differs from a clean build: extra {extra[:5]}, missing {missing[:5]}")
            shutil.rmtree(app / ".flash", ignore_errors=True)
            continue
        again = run_tasks(builds().config(app))
        if again.ran and graph.tool_fingerprint() != tool_before:
            again = run_tasks(builds().config(app))  # flash_tasks/ was edited meanwhile: everything reran once
        if again.ran:
            failures.append(f"{label}: the build after the recovery build still ran {again.ran}")
        leaks.update(leftover_temp_files(app))
        survived += 1

    took = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nkill loop: {survived}/{KILL_ROUNDS} kills survived in {took:.0f}s (seed {KILL_SEED}); "
            f"full build {full:.2f}s, incremental {incremental:.2f}s\n"
            f"  kills by phase: {dict(phases)}; by signal: {dict(signals)}; by scenario: {dict(scenarios)}\n"
            f"  temporary files left in .flash after recovery: {len(leaks)}"
        )
    assert not failures, "\n\n".join(failures)
    assert not leaks, f"recovery builds left {len(leaks)} temporary file(s) in .flash: {sorted(leaks)[:20]}"
    assert KILL_ROUNDS - phases["finished"] >= KILL_ROUNDS // 2, f"too few kills landed mid-build: {dict(phases)}"


# -- crash safety: deterministic reproductions of what the kill loop tolerates or cannot reach --------


def start_and_kill_during_install(app: Path, builds: Builds, how: int = signal.SIGKILL) -> subprocess.Popen[bytes]:
    """Start a build and kill its process group once uv is installing into .flash/.build."""
    proc = subprocess.Popen(build_command(app, builds, "-q"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 60
    marker = app / ".flash" / ".build" / ".lock"
    while not marker.exists():
        assert proc.poll() is None, "the build finished before uv started installing"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    time.sleep(0.05)
    os.killpg(proc.pid, how)
    proc.wait(timeout=60)
    wait_group_gone(proc.pid)
    return proc


def test_kill_during_install_ships_no_uv_leftovers(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    app = heavy_app(tmp_path, "killed", "manyfiles\ntinydep==1.0\n")
    start_and_kill_during_install(app, builds)
    run_tasks(builds.config(app))
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


def test_interrupted_removal_of_a_dependency_leaves_no_orphans(app: Path, builds: Builds, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flash_tasks.deps import installer

    (app / "requirements.txt").write_text("tinydep==1.0\nmiddep\n")
    run_tasks(builds.config(app))
    (app / "requirements.txt").write_text("tinydep==1.0\nleafdep\n")
    real_inside = installer._inside

    def interrupt_before_the_package(build_dir: Path, relative: str) -> Any:
        if relative.startswith("middep/"):
            raise KeyboardInterrupt  # what Ctrl-C at this moment does
        return real_inside(build_dir, relative)

    monkeypatch.setattr(installer, "_inside", interrupt_before_the_package)
    with pytest.raises(KeyboardInterrupt):
        run_tasks(builds.config(app))
    monkeypatch.setattr(installer, "_inside", real_inside)
    run_tasks(builds.config(app))
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


def test_temporary_file_of_a_killed_write_is_never_shipped(app: Path, builds: Builds, tmp_path: Path) -> None:
    run_tasks(builds.config(app))
    # What a SIGKILL inside stage.copy_atomic leaves behind (same name pattern, a pid that is gone).
    (app / ".flash" / ".build" / ".util.py.tmp-999999").write_text("HELPER = 'half written'\n")
    (app / "util.py").write_text("HELPER = 2\n")
    run_tasks(builds.config(app))
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


def test_temporary_files_of_killed_builds_are_cleaned_up(app: Path, builds: Builds) -> None:
    run_tasks(builds.config(app))
    flash = app / ".flash"
    leftovers = [
        flash / ".artifact.tar.gz.tmp-999999-1",
        flash / ".state" / "segments" / ".fresh-999999.gz",
        flash / ".state" / "segments" / ".tinydep-1.0-0123456789abcdef0123.gz.tmp-999999-2",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\0" * 1024)
    (app / "util.py").write_text("HELPER = 2\n")
    run_tasks(builds.config(app))
    assert [p for p in leftovers if p.exists()] == []


def test_kill_then_revert_a_source_file(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    app = heavy_app(tmp_path, "reverted", "tinydep==1.0\n")
    run_tasks(builds.config(app))
    good = (app / "main.py").read_text()
    (app / "main.py").write_text(main_py(workers=5))
    (app / "requirements.txt").write_text("tinydep==1.0\nmanyfiles\n")  # so that the build is still running in uv
    start_and_kill_during_install(app, builds)
    (app / "main.py").write_text(good)  # the user reverts the edit
    bump_mtime(app / "main.py")
    run_tasks(builds.config(app))
    expected_listing, expected_manifest, expected_bytes = clean_build(app, builds, tmp_path)
    assert (app / ".flash" / "flash_manifest.json").read_text() == expected_manifest
    assert listing(app / ".flash" / "artifact.tar.gz") == expected_listing
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == expected_bytes


def test_kill_then_revert_requirements(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    app = heavy_app(tmp_path, "reverted", "tinydep==1.0\n")
    run_tasks(builds.config(app))
    (app / "requirements.txt").write_text("tinydep==1.0\nmanyfiles\n")
    start_and_kill_during_install(app, builds)
    (app / "requirements.txt").write_text("tinydep==1.0\n")
    result = subprocess.run(build_command(app, builds), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert_same_as_clean(app / ".flash" / "artifact.tar.gz", app, builds, tmp_path)


def test_sigint_during_install_exits_130_and_keeps_the_artifact(local_index: Path, heavy_index: Path, tmp_path: Path) -> None:
    builds = Builds([local_index, heavy_index])
    app = heavy_app(tmp_path, "interrupted", "tinydep==1.0\n")
    run_tasks(builds.config(app))
    before = (app / ".flash" / "artifact.tar.gz").read_bytes()
    (app / "requirements.txt").write_text("tinydep==1.0\nmanyfiles\n")
    proc = start_and_kill_during_install(app, builds, signal.SIGINT)
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    assert proc.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr.lower() and "Traceback" not in stderr, stderr
    assert (app / ".flash" / "artifact.tar.gz").read_bytes() == before


SIGINT_ON_IMPORT = """
import importlib.abc, os, signal, sys

class InterruptOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "flash_tasks.cli":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the command is still starting
        return None

sys.meta_path.insert(0, InterruptOnImport())
"""


def test_sigint_while_starting_exits_130_without_traceback(app: Path, builds: Builds, tmp_path: Path) -> None:
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGINT_ON_IMPORT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(build_command(app, builds), capture_output=True, text=True, env=env)
    # -SIGINT (killed by the signal) is what a shell reports as 130 too.
    assert result.returncode in (EXIT_INTERRUPTED, -signal.SIGINT), (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
