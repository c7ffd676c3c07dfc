"""Every uv message the build reads, made to happen by the real uv, offline.

``flash_tasks.deps.uv.UV_TEXTS`` is the one table of uv's English texts that the
build understands. Each entry has a scenario here: a local find-links folder of
tiny wheels (``wheelfactory``), a loopback server or a closed port makes uv fail
(or warn) that way, and the test checks the entry's exit code and pattern against
what uv really printed, then what the user is told. A uv release that rewords a
message or changes an exit code fails here first; pyproject.toml pins the range
of uv releases these tests passed with.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from flash_tasks.deps import uv as deps_uv
from flash_tasks.deps.requirements import parse_requirement
from flash_tasks.deps.settings import DepsSettings, IndexSettings
from flash_tasks.errors import BuildError, DependencyError, FlashError

try:
    from tests.wheelfactory import make_sdist, make_wheel
except ImportError:  # tests/ is not a package: pytest puts this folder itself on sys.path
    from wheelfactory import make_sdist, make_wheel  # type: ignore[no-redef]


@pytest.fixture(scope="module")
def links(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("uv-pattern-links")
    make_wheel(d, "alpha", "1.0")
    make_wheel(d, "foo", "1.0")
    make_wheel(d, "maconly", "1.0", tag="cp312-cp312-macosx_11_0_arm64")
    make_sdist(d, "sdonly", "1.0")
    make_wheel(d, "only311", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(d, "newpy", "1.0", requires_python=">=3.13")
    make_wheel(d, "usesgone", "1.0", requires=["gone>=1"])
    return d


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, links: Path) -> Path:
    """A PEP 503 simple index on disk (uv reads ``file://`` indexes) holding only alpha."""
    root = tmp_path_factory.mktemp("uv-pattern-simple")
    (root / "alpha").mkdir()
    wheel = links / "alpha-1.0-py3-none-any.whl"
    (root / "alpha" / wheel.name).write_bytes(wheel.read_bytes())
    (root / "alpha" / "index.html").write_text(f'<a href="{wheel.name}">{wheel.name}</a>\n')
    return root


@contextmanager
def serve(directory: Path) -> Iterator[str]:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(directory))
    handler.log_message = lambda *args: None  # type: ignore[assignment]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scenario:
    """Runs uv the way the build does (same target flags), in a scratch folder."""

    def __init__(self, tmp: Path, links: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tmp = tmp
        self.links = links
        monkeypatch.setenv("UV_HTTP_RETRIES", "0")  # a refused connection fails at once

    def settings(self, **index: object) -> DepsSettings:
        options: dict[str, object] = {"no_index": True, "find_links": (str(self.links),), **index}
        return DepsSettings(index=IndexSettings(**options), cache_dir=self.tmp / "cache", progress="quiet")

    def compile(self, lines: str, settings: DepsSettings | None = None, output: str | None = None) -> deps_uv._UvRun:
        settings = settings or self.settings()
        (self.tmp / "in.txt").write_text(lines)
        args = ["pip", "compile", "in.txt", "--output-file", output or str(self.tmp / "out.txt"), "--no-header"]
        return deps_uv._run_uv([*args, *deps_uv._target_args(settings)], settings, cwd=self.tmp)

    def install(self, lines: str, settings: DepsSettings | None = None, *extra: str) -> deps_uv._UvRun:
        settings = settings or self.settings()
        (self.tmp / "in.txt").write_text(lines)
        args = ["pip", "install", "-r", "in.txt", "--target", str(self.tmp / "target"), "--no-deps", "--strict", *extra]
        return deps_uv._run_uv([*args, *deps_uv._target_args(settings)], settings, cwd=self.tmp)


def _nosuch(s: Scenario, registry: Path) -> deps_uv._UvRun:
    return s.compile("nosuch\n")


def _not_in_registry(s: Scenario, registry: Path) -> deps_uv._UvRun:
    return s.compile("nosuch\n", s.settings(no_index=False, find_links=(), index_url=registry.as_uri()))


def _offline_miss(s: Scenario, registry: Path) -> deps_uv._UvRun:
    with serve(s.links) as url:
        return s.install("alpha==1.0\n", s.settings(find_links=(url,)), "--offline")


def _network(s: Scenario, registry: Path) -> deps_uv._UvRun:
    return s.compile("alpha\n", s.settings(no_index=False, find_links=(), index_url=f"http://127.0.0.1:{closed_port()}/simple"))


@contextmanager
def tiny_filesystem(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs at ``where`` (needs root and the right to mount; skips otherwise)."""
    where.mkdir()
    if not sys.platform.startswith("linux") or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root on Linux to mount a small tmpfs")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


def _no_space(s: Scenario, registry: Path) -> deps_uv._UvRun:
    """Installing a 256 KiB file into a 64 KiB filesystem (a real ENOSPC, as a full disk gives)."""
    make_wheel(s.tmp / "bulky", "bulky", "1.0", files={"bulky/data.bin": os.urandom(256 * 1024)})
    settings = s.settings(find_links=(str(s.tmp / "bulky"),))
    with tiny_filesystem(s.tmp / "full") as full:
        (s.tmp / "in.txt").write_text("bulky==1.0\n")
        args = ["pip", "install", "-r", "in.txt", "--target", str(full / "target"), "--no-deps", "--link-mode", "copy"]
        return deps_uv._run_uv([*args, *deps_uv._target_args(settings)], settings, cwd=s.tmp)


def _source_build(s: Scenario, registry: Path) -> deps_uv._UvRun:
    project = s.tmp / "localproj"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "localproj"\nversion = "1.0"\n')
    return s.install(f"localproj @ {project.as_uri()}\n")


# id -> (scenario, the named groups the pattern must capture, what the user is told: error class and text)
Expected = tuple[Callable[[Scenario, Path], deps_uv._UvRun], dict[str, str], type[FlashError] | None, str]
SCENARIOS: dict[str, Expected] = {
    "error-line/": (_nosuch, {"text": "No solution found when resolving dependencies"}, None, ""),
    "cause-line/": (_nosuch, {}, None, ""),
    "no-solution/": (_nosuch, {}, None, ""),
    "parse-error/": (
        lambda s, r: s.compile("alpha\na; extras == 'x'\n"),
        {"file": "in.txt", "pos": "6"},
        BuildError,
        "uv could not parse a requirement",
    ),
    "no-wheel/required": (lambda s, r: s.compile("sdonly\n"), {"name": "sdonly"}, DependencyError, "sdonly has no Linux x86_64 wheel"),
    "no-wheel/none-usable": (lambda s, r: s.compile("maconly\n"), {"name": "maconly"}, DependencyError, "maconly has no Linux x86_64 wheel"),
    "no-wheel/other-abi": (lambda s, r: s.compile("only311\n"), {"name": "only311"}, DependencyError, "only311 has no Linux x86_64 wheel"),
    "no-wheel/other-platform": (lambda s, r: s.compile("maconly\n"), {"name": "maconly"}, DependencyError, "maconly has no Linux x86_64 wheel"),
    "not-found/": (_nosuch, {"name": "nosuch"}, DependencyError, "package nosuch does not exist"),
    "not-found/registry": (_not_in_registry, {"name": "nosuch"}, DependencyError, "package nosuch does not exist"),
    "no-version/": (lambda s, r: s.compile("foo==9\n"), {"name": "foo", "spec": "==9"}, DependencyError, "no release of foo matches ==9"),
    "requires-python/": (
        lambda s, r: s.compile("newpy\n"),
        {"name": "newpy", "spec": ">=3.13"},
        DependencyError,
        "newpy does not support Python 3.12 (it needs Python >=3.13)",
    ),
    "offline-miss/": (_offline_miss, {}, None, ""),
    "network/": (_network, {}, DependencyError, "could not reach the package index"),
    "no-space/": (_no_space, {}, BuildError, "no space left on device"),
    "source-build/": (_source_build, {"name": "localproj"}, DependencyError, "would have to be built from source"),
    "missing-dependency/": (
        lambda s, r: s.install("usesgone==1.0\n"),
        {"dist": "usesgone", "req": "gone>=1"},
        None,
        "",
    ),
}


def test_every_uv_text_has_a_scenario() -> None:
    ids = [entry.id for entry in deps_uv.UV_TEXTS]
    assert len(ids) == len(set(ids))
    assert set(ids) == {key for key in SCENARIOS if key != "not-found/registry"}


@pytest.mark.parametrize("entry_id", sorted(SCENARIOS))
def test_uv_text_against_the_real_uv(
    entry_id: str, tmp_path: Path, links: Path, registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario, groups, error_class, message = SCENARIOS[entry_id]
    entry = next(e for e in deps_uv.UV_TEXTS if e.id == entry_id or e.id == entry_id.split("/")[0] + "/")
    run = scenario(Scenario(tmp_path, links, monkeypatch), registry)

    assert run.returncode in entry.exit_codes, run.stderr
    match = entry.pattern.search(run.stderr)
    assert match is not None, f"{entry.id}: {entry.pattern.pattern!r} not in:\n{run.stderr}"
    for group, value in groups.items():
        assert match.group(group) == value

    if error_class is not None:
        specs = [parse_requirement(line, f"requirements.txt:{n}") for n, line in enumerate(["alpha", "foo==9", "localproj @ file:///x", "maconly", "newpy", "nosuch", "only311", "sdonly"], 1)]
        error = deps_uv._dependency_error(run, DepsSettings(), specs, "resolving")
        assert type(error) is error_class
        assert message in error.message
        assert "uv: " in error.message and error.hint


def test_a_failed_resolution_no_pattern_knows_is_still_explained_by_its_exit_code(
    tmp_path: Path, links: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Scenario(tmp_path, links, monkeypatch).compile("foo==1.0\nfoo>=2\n")  # a plain conflict
    assert run.returncode == deps_uv.UV_UNSATISFIABLE
    assert not any(deps_uv.uv_says(kind, run.stderr) for kind in ("no-wheel", "not-found", "no-version", "requires-python"))
    error = deps_uv._dependency_error(run, DepsSettings(), [], "resolving group 'gpu'")
    assert isinstance(error, DependencyError)
    assert error.message.startswith("no set of versions satisfies the requirements while resolving group 'gpu'")
    assert "foo" in error.message


def test_parse_error_maps_to_the_users_line(tmp_path: Path, links: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs = [parse_requirement("alpha", "requirements.txt:3"), parse_requirement("a; extras == 'x'", "workers/a.py:7")]
    run = Scenario(tmp_path, links, monkeypatch).compile("".join(f"{s.text}\n" for s in specs))
    with pytest.raises(BuildError) as info:
        deps_uv._map_parse_error(run, specs, ())
    assert info.value.location == "workers/a.py:7"
    assert "extras" in info.value.message
