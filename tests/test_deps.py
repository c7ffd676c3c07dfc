"""Dependency collection, per-group locks, combination and incremental install.

Hermetic: uv resolves against a folder of tiny wheels made by ``wheelfactory``
(``--no-index --find-links``), with its own cache per test session. Tests that
must prove what uv fetched serve that folder over loopback HTTP and read the
request log. Tests marked ``network`` use the real package index.
"""

from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flash_tasks import catalog
from flash_tasks.deps import (
    CollectedRequirements,
    DepsSettings,
    GroupSpec,
    IndexSettings,
    InstallState,
    LockLayout,
    RequirementSpec,
    bundle_runpod_flash,
    collect_app_requirements,
    combine_locks,
    install,
    lock_group,
    parse_requirement,
    plan_groups,
    read_lock,
    read_requirements_file,
)
from flash_tasks.deps import installer as deps_installer
from flash_tasks.deps import locks as deps_locks
from flash_tasks.deps import settings as deps_settings
from flash_tasks.deps import uv as deps_uv
from flash_tasks.errors import BuildError, DependencyError, UsageError

try:
    from tests.wheelfactory import make_sdist, make_wheel
except ImportError:  # tests/ is not a package: pytest puts this folder itself on sys.path
    from wheelfactory import make_sdist, make_wheel  # type: ignore[no-redef]

# ---------------------------------------------------------------------------
# Fixtures
# ---------------------------------------------------------------------------


def normalize_name(name: str) -> str:
    """PEP 503's normal form, written out here as the standard gives it."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _fill_wheelhouse(d: Path) -> None:
    make_wheel(d, "alpha", "1.0", requires=["beta>=1"])
    make_wheel(d, "beta", "1.0")
    make_wheel(d, "beta", "2.0")
    make_wheel(d, "gamma", "1.0")
    make_wheel(d, "foo", "1.0")
    make_wheel(d, "foo", "2.0")
    make_wheel(d, "wantsfoo1", "1.0", requires=["foo==1.0"])
    make_wheel(d, "nat", "1.0", tag="cp312-cp312-manylinux_2_17_x86_64", files={"nat/__init__.py": "ABI = 'cp312'\n"})
    make_wheel(d, "nat", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64", files={"nat/__init__.py": "ABI = 'cp311'\n"})
    make_wheel(d, "nat", "1.0", tag="cp312-cp312-macosx_11_0_arm64", files={"nat/__init__.py": "ABI = 'mac'\n"})
    make_wheel(d, "maconly", "1.0", tag="cp312-cp312-macosx_11_0_arm64")
    make_sdist(d, "sdonly", "1.0")
    make_wheel(d, "needs-sdonly", "1.0", requires=["sdonly"])
    make_wheel(d, "only311", "1.0", tag="cp311-cp311-manylinux_2_17_x86_64")
    # torch's own dependency nvidia-foo is needed by nothing else; gamma is shared.
    make_wheel(d, "torch", "2.0", tag="cp312-cp312-manylinux_2_17_x86_64", requires=["nvidia-foo", "gamma"])
    make_wheel(d, "nvidia-foo", "1.0", tag="py3-none-manylinux_2_17_x86_64")
    make_wheel(d, "torchvision", "0.1", requires=["torch"])
    make_wheel(d, "Foo_Bar", "1.0", requires=["foo-bar-helper"])
    make_wheel(d, "foo-bar-helper", "1.0")
    make_wheel(d, "usesnp", "1.0", requires=["torch", "gamma", "foo.bar"])
    make_wheel(d, "mk", "1.0", requires=['torchaudio; python_version >= "3.12"', 'triton; python_version < "3.12"'])
    make_wheel(
        d,
        "scripty",
        "1.0",
        console_scripts={"scripty": "scripty:main"},
        files={"scripty/__init__.py": "def main():\n    return 0\n", "scripty_extra.py": "X = 1\n"},
    )
    make_wheel(d, "sdkdep", "1.0")
    make_wheel(
        d,
        "runpod-flash",
        "1.21.0",
        requires=["sdkdep"],
        files={
            "runpod_flash/__init__.py": "__version__ = '1.21.0'\n",
            "runpod_flash/core/__init__.py": "",
            "runpod_flash/__pycache__/__init__.cpython-312.pyc": b"\x00junk",
        },
    )


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("wheelhouse")
    _fill_wheelhouse(d)
    return d


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture
def make_settings(wheelhouse: Path, uv_cache: Path):
    def factory(links: str | Path | None = None, cache: Path | None = None, **overrides: object) -> DepsSettings:
        index = IndexSettings(no_index=True, find_links=(str(links or wheelhouse),))
        options: dict[str, object] = {"progress": "quiet", **overrides}
        return DepsSettings(index=index, cache_dir=cache or uv_cache, **options)

    return factory


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str]

    def log_message(self, format: str, *args: object) -> None:
        self.requests.append(self.path)


@contextmanager
def serve(directory: Path) -> Iterator[tuple[str, list[str]]]:
    """Serve ``directory`` on loopback as a find-links page; yields the URL and the request log."""
    log: list[str] = []
    handler = functools.partial(type("H", (_LoggingHandler,), {"requests": log}), directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", log
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def spec(text: str, origin: str = "requirements.txt:1") -> RequirementSpec:
    return parse_requirement(text, origin)


def group(name: str, *texts: str, constraints: tuple[str, ...] = ()) -> GroupSpec:
    return GroupSpec(
        name=name,
        requirements=tuple(spec(t, f"workers/{name}.py:{i}") for i, t in enumerate(texts, start=1)),
        constraints=tuple(spec(t, f"constraints.txt:{i}") for i, t in enumerate(constraints, start=1)),
    )


def lock_and_install(tmp: Path, settings: DepsSettings, *groups: GroupSpec):
    layout = LockLayout(root=tmp / ".flash" / "locks")
    for g in groups:
        lock_group(g, settings, layout.group(g.name))
    combined = combine_locks(groups, settings, {g.name: layout.group(g.name) for g in groups}, layout.combined)
    result = install(
        combined.path, tmp / ".flash" / ".build", settings, state_path=tmp / ".flash" / ".state" / "installed.json"
    )
    return combined, result


# ---------------------------------------------------------------------------
# Names and requirement syntax
# ---------------------------------------------------------------------------


def test_names_are_normalised_for_exclusion() -> None:
    assert DepsSettings(exclude=("Foo_Bar", "foo.._-bar")).exclude == ("foo-bar",)
    assert DepsSettings(exclude=" Foo_Bar, scipy ,,").exclude == ("foo-bar", "scipy")
    assert DepsSettings(exclude="Foo_Bar,Torch").exclude == ("foo-bar", "torch")
    assert DepsSettings().excluded() == {
        "torch": "always",
        "torchvision": "always",
        "torchaudio": "always",
        "triton": "always",
        "runpod-flash": "sdk",
    }
    with pytest.raises(UsageError, match="'bad name' is not a package name"):
        DepsSettings(exclude="good,bad name")


def test_target_pythons_are_the_catalogs() -> None:
    assert typing.get_args(deps_settings.PythonVersion) == catalog.SUPPORTED_PYTHON_VERSIONS
    assert DepsSettings().python_version == catalog.DEFAULT_PYTHON_VERSION == "3.12"


@pytest.mark.parametrize(
    "text",
    [
        "requests",
        "Requests[socks,security] >=2.0, <3",
        "numpy==1.26.*",
        "pkg (>=1.0)",
        'uvloop; sys_platform != "win32" and (python_version >= "3.11" or extra == "x")',
        "local @ https://example.invalid/local-1.0-py3-none-any.whl ; python_version >= '3.10'",
        "weird===anything-goes",
    ],
)
def test_valid_requirements_parse(text: str) -> None:
    parsed = spec(text)
    assert parsed.text == text.strip()
    assert parsed.name == normalize_name(
        text.split("[")[0].split(" ")[0].split(";")[0].split("=")[0].split(">")[0].split("(")[0].strip()
    )


@pytest.mark.parametrize(
    "text",
    ["foo ==", "foo[bar", "foo bar", "==1.0", "foo; python_version >< '3'", "foo>=1.0.0a1b2", "foo;", "./local/pkg"],
)
def test_invalid_requirement_names_file_and_line(text: str) -> None:
    with pytest.raises(BuildError) as info:
        parse_requirement(text, "workers/gpu.py:12")
    assert info.value.location == "workers/gpu.py:12"
    assert text.strip() in info.value.message


@given(
    st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9._-]{0,12}[A-Za-z0-9])?", fullmatch=True),
    st.sampled_from(["", ">=1.0", "==2.*", "[x]<3", "; python_version < '4'"]),
)
def test_any_pep508_name_normalises_consistently(name: str, suffix: str) -> None:
    assert parse_requirement(name + suffix, "f:1").name == normalize_name(name)


# ---------------------------------------------------------------------------
# Reading requirement sources
# ---------------------------------------------------------------------------


def test_requirements_file_with_includes_constraints_and_continuations(tmp_path: Path) -> None:
    (tmp_path / "reqs").mkdir()
    (tmp_path / "requirements.txt").write_text(
        "# top comment\n"
        "\n"
        "alpha>=1.0  # trailing comment\n"
        "-r reqs/more.txt\n"
        "--constraint=reqs/pins.txt\n"
        "gamma \\\n"
        "    ; python_version >= '3.10'\n"
        "scripty==1.0 --hash=sha256:abc\n"
        "--extra-index-url https://example.invalid/simple\n"
    )
    (tmp_path / "reqs" / "more.txt").write_text("foo[extra]>=1\n-c pins.txt\n")
    (tmp_path / "reqs" / "pins.txt").write_text("beta<2\n")

    collected = collect_app_requirements(tmp_path)

    assert [(s.text, s.origin) for s in collected.requirements] == [
        ("alpha>=1.0", "requirements.txt:3"),
        ("foo[extra]>=1", "reqs/more.txt:1"),
        ("gamma     ; python_version >= '3.10'", "requirements.txt:6"),
        ("scripty==1.0", "requirements.txt:8"),
    ]
    assert [(s.text, s.origin) for s in collected.constraints] == [("beta<2", "reqs/pins.txt:1")]
    assert collected.warnings and collected.warnings[0].startswith("requirements.txt:9:")
    assert set(collected.files) == {
        (tmp_path / "requirements.txt").resolve(),
        (tmp_path / "reqs" / "more.txt").resolve(),
        (tmp_path / "reqs" / "pins.txt").resolve(),
    }


def test_bad_line_in_included_file_is_reported_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("alpha\n-r sub/extra.txt\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "extra.txt").write_text("beta\n# fine\nfoo[oops >= 1\n")
    with pytest.raises(BuildError) as info:
        collect_app_requirements(tmp_path)
    assert info.value.location == "sub/extra.txt:3"
    assert info.value.exit_code == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [("-r missing.txt\n", "cannot read"), ("-e ./src\n", "editable"), ("--frobnicate\n", "unsupported option")],
)
def test_unusable_requirement_lines(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "requirements.txt").write_text("alpha\n" + content)
    with pytest.raises(BuildError, match=message) as info:
        read_requirements_file(tmp_path / "requirements.txt", root=tmp_path)
    assert info.value.location == "requirements.txt:2"


def test_pyproject_dependencies_are_read(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "0"\ndependencies = [\n  "alpha>=1",\n  "gamma",\n]\n'
        '[project.optional-dependencies]\ndev = ["pytest"]\n'
    )
    assert collect_app_requirements(tmp_path).requirements == ()  # the developer's machine, by default
    collected = collect_app_requirements(tmp_path, project_dependencies=True)
    assert [(s.text, s.origin) for s in collected.requirements] == [
        ("alpha>=1", "pyproject.toml:5"),
        ("gamma", "pyproject.toml:6"),
    ]
    assert collected.files == ((tmp_path / "pyproject.toml").resolve(),)


def test_broken_pyproject_is_a_build_error_with_line(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "app"\ndependencies = [\n  "alpha"\n  "beta"]\n')
    with pytest.raises(BuildError) as info:
        collect_app_requirements(tmp_path, project_dependencies=True)
    assert info.value.path == "pyproject.toml" and info.value.line is not None


def test_groups_are_app_plus_endpoint_requirements(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("alpha\n-c pins.txt\n")
    (tmp_path / "pins.txt").write_text("beta<2\n")
    app = collect_app_requirements(tmp_path)
    groups = plan_groups(app, {"gpu": [("nat", "workers/gpu.py:4"), ("alpha", "workers/gpu.py:4")], "cpu": []})
    assert [g.name for g in groups] == ["cpu", "gpu"]
    assert [s.text for s in groups[1].requirements] == ["alpha", "nat"]
    assert [s.text for s in groups[1].constraints] == ["beta<2"]
    assert [g.name for g in plan_groups(app, {})] == ["default"]
    with pytest.raises(BuildError) as info:
        plan_groups(app, {"gpu": [("nat>=", "workers/gpu.py:9")]})
    assert info.value.location == "workers/gpu.py:9"


# ---------------------------------------------------------------------------
# Target platform and Python
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("python", ["3.12", "3.11"])
def test_manylinux_wheel_for_the_target_python_is_chosen(tmp_path: Path, make_settings, python: str) -> None:
    settings = make_settings(python_version=python)
    _, result = lock_and_install(tmp_path, settings, group("gpu", "nat"))
    installed = (tmp_path / ".flash" / ".build" / "nat" / "__init__.py").read_text()
    assert installed == f"ABI = 'cp{python.replace('.', '')}'\n"
    assert result.added == ("nat",)


@pytest.mark.parametrize(
    ("requirement", "python", "culprit"),
    [
        ("maconly", "3.12", "maconly"),
        ("sdonly", "3.12", "sdonly"),
        ("needs-sdonly", "3.11", "sdonly"),
        ("only311", "3.12", "only311"),
    ],
)
def test_missing_linux_wheel_is_a_clear_dependency_error(
    tmp_path: Path, make_settings, requirement: str, python: str, culprit: str
) -> None:
    settings = make_settings(python_version=python)
    with pytest.raises(DependencyError) as info:
        lock_group(group("gpu", requirement), settings, tmp_path / "gpu.txt")
    error = info.value
    assert error.exit_code == 3
    assert f"{culprit} has no Linux x86_64 wheel for Python {python}" in error.message
    assert "uv: " in error.message
    assert error.hint and "--exclude" in error.hint and "pin" in error.hint
    if culprit == requirement:
        assert error.location == "workers/gpu.py:1"
    assert not (tmp_path / "gpu.txt").exists()


def test_unknown_package_is_named(tmp_path: Path, make_settings) -> None:
    with pytest.raises(DependencyError) as info:
        lock_group(group("gpu", "alpha", "doesnotexist>=1"), make_settings(), tmp_path / "gpu.txt")
    assert "doesnotexist does not exist" in info.value.message
    assert info.value.location == "workers/gpu.py:2"


@pytest.mark.parametrize("progress", ["quiet", "show"])
def test_unknown_package_is_named_on_a_narrow_terminal(
    tmp_path: Path, make_settings, monkeypatch: pytest.MonkeyPatch, progress: str
) -> None:
    # uv wraps its explanation at COLUMNS (or the pseudo-terminal's width in
    # "show" mode) unless told not to; a wrapped sentence must still be understood.
    if progress == "show" and sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX only")
    monkeypatch.setenv("COLUMNS", "30")
    settings = make_settings(progress=progress)
    with pytest.raises(DependencyError) as info:
        lock_group(group("gpu", "alpha", "no-such-package-anywhere"), settings, tmp_path / "gpu.txt")
    assert "package no-such-package-anywhere does not exist" in info.value.message
    assert info.value.location == "workers/gpu.py:2"


# ---------------------------------------------------------------------------
# Exclusions, --no-deps and the SDK
# ---------------------------------------------------------------------------


def test_excluded_packages_and_their_own_dependencies_are_never_fetched(
    tmp_path: Path, wheelhouse: Path, make_settings
) -> None:
    with serve(wheelhouse) as (url, requests_seen):
        settings = make_settings(links=url, cache=tmp_path / "cache", exclude="Foo_Bar")
        combined, result = lock_and_install(tmp_path, settings, group("gpu", "usesnp", "torchvision>=0.1", "mk"))

    assert sorted(combined.entries) == ["gamma", "mk", "usesnp"]
    fetched = " ".join(requests_seen)
    for never in ("torch", "nvidia", "foo_bar", "Foo_Bar", "helper"):
        assert never not in fetched, requests_seen
    assert "usesnp-1.0-py3-none-any.whl" in fetched  # the log does see what was fetched
    cached = " ".join(p.name for p in (tmp_path / "cache").rglob("*"))
    assert "nvidia" not in cached and "torch" not in cached

    assert [(e.name, e.reason, e.required_by) for e in combined.excluded] == [
        ("torchvision", "always", ("workers/gpu.py:2",))
    ]
    assert [(e.name, e.reason, e.required_by) for e in result.excluded_needed] == [
        ("foo-bar", "user", ("usesnp",)),
        ("torch", "always", ("usesnp",)),
        ("torchaudio", "always", ("mk",)),
    ]


def test_no_deps_installs_only_direct_requirements(tmp_path: Path, make_settings) -> None:
    combined, result = lock_and_install(tmp_path, make_settings(no_deps=True), group("gpu", "alpha"))
    assert list(combined.entries) == ["alpha"]
    assert result.added == ("alpha",)
    assert not (tmp_path / ".flash" / ".build" / "beta").exists()


def test_runpod_flash_is_dropped_from_resolution(tmp_path: Path, make_settings) -> None:
    combined, _ = lock_and_install(tmp_path, make_settings(), group("gpu", "alpha", "runpod_flash==1.21.0"))
    assert "runpod-flash" not in combined.entries and "sdkdep" not in combined.entries
    assert [(e.name, e.reason) for e in combined.excluded] == [("runpod-flash", "sdk")]
    build = tmp_path / ".flash" / ".build"
    assert not list(build.glob("runpod_flash*")) and not (build / "sdkdep").exists()


def test_bundled_sdk_is_only_its_package_folder(tmp_path: Path, make_settings) -> None:
    build = tmp_path / "build"
    (build / "runpod_flash").mkdir(parents=True)
    (build / "runpod_flash" / "stale.py").write_text("old")
    target = bundle_runpod_flash(build, make_settings(), version="1.21.0")
    assert target == (build / "runpod_flash").resolve()
    assert (target / "__init__.py").read_text() == "__version__ = '1.21.0'\n"
    assert (target / "core" / "__init__.py").is_file()
    assert not (target / "stale.py").exists()
    assert not list(build.rglob("__pycache__")) and not list(build.glob("*.dist-info"))
    assert sorted(p.name for p in build.iterdir()) == ["runpod_flash"]


# ---------------------------------------------------------------------------
# Locks: reuse, combination and conflicts
# ---------------------------------------------------------------------------


def test_unchanged_lock_is_reused_without_running_uv(
    tmp_path: Path, wheelhouse: Path, make_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    settings = make_settings(links=links)
    g = group("gpu", "alpha", "scripty")
    first, _ = lock_and_install(tmp_path, settings, g)
    assert not first.reused
    lock_text = first.path.read_text()

    shutil.rmtree(links)

    def no_uv(*args: object, **kwargs: object) -> None:
        raise AssertionError("uv must not run for unchanged inputs")

    monkeypatch.setattr(deps_locks, "_run_uv", no_uv)
    monkeypatch.setattr(deps_installer, "_run_uv", no_uv)
    again, result = lock_and_install(tmp_path, settings, g)
    assert again.reused and again.path.read_text() == lock_text
    assert result.added == () and result.unchanged == ("alpha", "beta", "scripty")


def test_moving_a_line_does_not_relock_but_changing_it_does(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    path = tmp_path / "gpu.txt"
    assert not lock_group(group("gpu", "alpha", "gamma"), settings, path).reused
    assert lock_group(group("gpu", "gamma", "alpha"), settings, path).reused
    changed = lock_group(group("gpu", "alpha", "gamma", "beta<2"), settings, path)
    assert not changed.reused and changed.entries["beta"].pin == "beta==1.0"
    assert not lock_group(
        group("gpu", "alpha", "gamma"), settings.model_copy(update={"python_version": "3.11"}), path
    ).reused


def test_lock_keeps_previous_pins_when_inputs_change(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    path = tmp_path / "gpu.txt"
    lock_group(group("gpu", "beta<2"), settings, path)
    relocked = lock_group(group("gpu", "beta", "gamma"), settings, path)
    assert relocked.entries["beta"].pin == "beta==1.0"  # preferred although 2.0 exists
    upgraded = lock_group(group("gpu", "beta", "gamma"), settings, path, upgrade=True)
    assert upgraded.entries["beta"].pin == "beta==2.0"


def test_combined_lock_resolves_jointly_when_group_pins_differ(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    combined, result = lock_and_install(tmp_path, settings, group("a", "alpha"), group("b", "gamma", "beta<2"))
    assert read_lock(tmp_path / ".flash" / "locks" / "a.txt").entries["beta"].pin == "beta==2.0"
    assert combined.entries["beta"].pin == "beta==1.0"
    assert sorted(combined.entries) == ["alpha", "beta", "gamma"]
    assert result.added == ("alpha", "beta", "gamma")


def test_conflict_between_groups_names_both_groups_and_requirements(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    groups = (group("cpu", "alpha"), group("gpu", "alpha", "foo==1.0"), group("web", "gamma", "foo==2.0"))
    layout = LockLayout(root=tmp_path)
    for g in groups:
        lock_group(g, settings, layout.group(g.name))
    with pytest.raises(DependencyError) as info:
        combine_locks(groups, settings, {g.name: layout.group(g.name) for g in groups}, layout.combined)
    message = info.value.message
    assert "'gpu'" in message and "'web'" in message and "'cpu'" not in message
    assert "'foo==1.0' (workers/gpu.py:2" in message and "'foo==2.0' (workers/web.py:2" in message
    assert info.value.exit_code == 3 and info.value.location == "workers/gpu.py:2"
    assert not layout.combined.exists()


def test_transitive_conflict_names_the_direct_requirements(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    groups = (group("a", "gamma", "wantsfoo1"), group("b", "gamma", "foo>=2"))
    layout = LockLayout(root=tmp_path)
    for g in groups:
        lock_group(g, settings, layout.group(g.name))
    with pytest.raises(DependencyError) as info:
        combine_locks(groups, settings, {g.name: layout.group(g.name) for g in groups}, layout.combined)
    assert "'wantsfoo1' (workers/a.py:2" in info.value.message
    assert "'foo>=2' (workers/b.py:2" in info.value.message


def test_combine_refuses_stale_group_locks(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    layout = LockLayout(root=tmp_path)
    lock_group(group("a", "alpha"), settings, layout.group("a"))
    with pytest.raises(ValueError, match="out of date"):
        combine_locks([group("a", "gamma")], settings, {"a": layout.group("a")}, layout.combined)


def test_group_names_become_safe_distinct_file_names(tmp_path: Path) -> None:
    layout = LockLayout(root=tmp_path)
    assert layout.group("gpu_worker") == tmp_path / "gpu_worker.txt"
    odd = {layout.group("a/b"), layout.group("a b"), layout.group("../x")}
    assert len(odd) == 3 and all(p.parent == tmp_path for p in odd)
    assert layout.combined not in odd | {layout.group("install")}


# ---------------------------------------------------------------------------
# Install
# ---------------------------------------------------------------------------


def test_rebuild_from_locks_installs_offline_after_the_source_is_gone(
    tmp_path: Path, wheelhouse: Path, make_settings
) -> None:
    links = tmp_path / "links"
    shutil.copytree(wheelhouse, links)
    with serve(links) as (url, _):
        settings = make_settings(links=url, cache=tmp_path / "cache")
        lock_and_install(tmp_path, settings, group("gpu", "alpha", "nat"))
    shutil.rmtree(links)
    shutil.rmtree(tmp_path / ".flash" / ".build")
    shutil.rmtree(tmp_path / ".flash" / ".state")

    combined, result = lock_and_install(tmp_path, settings, group("gpu", "alpha", "nat"))
    assert combined.reused
    assert result.added == ("alpha", "beta", "nat") and not result.used_network
    assert (tmp_path / ".flash" / ".build" / "nat" / "__init__.py").read_text() == "ABI = 'cp312'\n"


def test_incremental_install_adds_and_removes_only_what_changed(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    build = tmp_path / ".flash" / ".build"
    build.mkdir(parents=True)
    (build / "main.py").write_text("app code\n")
    (build / "runpod_flash").mkdir()
    (build / "runpod_flash" / "__init__.py").write_text("")

    _, first = lock_and_install(tmp_path, settings, group("gpu", "alpha"))
    assert first.added == ("alpha", "beta")
    alpha_file = build / "alpha" / "__init__.py"
    before = alpha_file.stat()

    _, second = lock_and_install(tmp_path, settings, group("gpu", "alpha", "scripty"))
    assert second.added == ("scripty",) and second.unchanged == ("alpha", "beta") and second.removed == ()
    assert alpha_file.stat().st_ino == before.st_ino and alpha_file.stat().st_mtime_ns == before.st_mtime_ns

    _, third = lock_and_install(tmp_path, settings, group("gpu", "scripty"))
    assert third.removed == ("alpha", "beta") and third.added == ()
    leftovers = sorted(p.name for p in build.iterdir())
    assert leftovers == ["bin", "main.py", "runpod_flash", "scripty", "scripty-1.0.dist-info", "scripty_extra.py"]

    _, fourth = lock_and_install(tmp_path, settings, group("gpu", "gamma"))
    assert fourth.removed == ("scripty",)
    assert sorted(p.name for p in build.iterdir()) == ["gamma", "gamma-1.0.dist-info", "main.py", "runpod_flash"]


def test_install_state_records_top_level_entries_and_hashes(tmp_path: Path, make_settings) -> None:
    settings = make_settings()
    _, result = lock_and_install(tmp_path, settings, group("gpu", "scripty", "alpha"))
    build = tmp_path / ".flash" / ".build"
    scripty = result.state.distributions["scripty"]
    assert scripty.top_level == ("bin", "scripty", "scripty-1.0.dist-info", "scripty_extra.py")
    assert scripty.version == "1.0" and scripty.size > 0 and scripty.content_hash.startswith("sha256:")
    assert (build / "bin" / "scripty").is_file()
    record = (build / scripty.dist_info / "RECORD").read_text(encoding="utf-8")
    files = [path for path, _, _ in deps_installer._parse_record(record)]
    assert "bin/scripty" in files and not any("uv_cache.json" in f for f in files)
    assert not (build / ".lock").exists()
    assert result.state.distributions["alpha"].top_level == ("alpha", "alpha-1.0.dist-info")

    saved = InstallState.model_validate_json((tmp_path / ".flash" / ".state" / "installed.json").read_text())
    assert saved == result.state

    # Reinstalling the same wheel yields the same content hash (the archive segment is reusable).
    shutil.rmtree(build)
    _, again = lock_and_install(tmp_path, settings, group("gpu", "scripty", "alpha"))
    assert again.state.distributions["scripty"].content_hash == scripty.content_hash


def test_changing_target_python_reinstalls_binary_wheels(tmp_path: Path, make_settings) -> None:
    lock_and_install(tmp_path, make_settings(python_version="3.11"), group("gpu", "nat", "gamma"))
    _, result = lock_and_install(tmp_path, make_settings(python_version="3.12"), group("gpu", "nat", "gamma"))
    assert "nat" in result.added
    assert (tmp_path / ".flash" / ".build" / "nat" / "__init__.py").read_text() == "ABI = 'cp312'\n"
    assert len(list((tmp_path / ".flash" / ".build").glob("nat-*.dist-info"))) == 1


def test_terminal_mode_still_explains_failures(
    tmp_path: Path, make_settings, capsys: pytest.CaptureFixture[str]
) -> None:
    if sys.platform == "win32":
        pytest.skip("pseudo-terminals are POSIX only")
    settings = make_settings(progress="show")
    with pytest.raises(DependencyError, match="maconly has no Linux x86_64 wheel"):
        lock_group(group("gpu", "maconly"), settings, tmp_path / "gpu.txt")
    assert "No solution found" in capsys.readouterr().err


def test_uv_parse_errors_map_to_the_users_line() -> None:
    specs = [spec("alpha", "requirements.txt:3"), spec("beta", "workers/a.py:7")]
    run = deps_uv._UvRun(2, "", "error: Couldn't parse requirement in `gpu.in` at position 6\n  cause: bad\n")
    with pytest.raises(BuildError) as info:
        deps_uv._map_parse_error(run, specs, ())
    assert info.value.location == "workers/a.py:7"


def test_collected_requirements_merge_keeps_files_unique() -> None:
    a = CollectedRequirements(files=(Path("/x"),))
    assert a.merged(CollectedRequirements(files=(Path("/x"), Path("/y")))).files == (Path("/x"), Path("/y"))


# ---------------------------------------------------------------------------
# Real index
# ---------------------------------------------------------------------------


def _pip_target(requirements: list[str], target: Path, python: str) -> set[str] | None:
    """Top-level entries of the reference's ``pip install --target`` (versions stripped)."""
    platforms = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(target), "--python-version", python, "--upgrade"]
    for platform in platforms:
        cmd += ["--platform", platform]
    cmd += ["--implementation", "cp", "--only-binary=:all:", "--no-compile", *requirements]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return None
    return _top_level_names(target)


def _top_level_names(directory: Path) -> set[str]:
    names = set()
    for entry in directory.iterdir():
        if entry.name.endswith(".dist-info"):
            project = entry.name[: -len(".dist-info")].rsplit("-", 1)[0]
            names.add(normalize_name(project) + ".dist-info")
        elif entry.name not in ("__pycache__",) and not entry.name.startswith("."):
            names.add(entry.name)
    return names


@pytest.mark.network
def test_real_index_requests_and_pyyaml_for_312(tmp_path: Path) -> None:
    settings = DepsSettings(python_version="3.12", cache_dir=tmp_path / "cache", progress="quiet")
    combined, result = lock_and_install(tmp_path, settings, group("gpu", "requests", "pyyaml"))
    build = tmp_path / ".flash" / ".build"
    assert {"requests", "pyyaml", "urllib3", "idna", "certifi", "charset-normalizer"} <= set(combined.entries)
    assert list((build / "yaml").glob("_yaml.cpython-312-x86_64-linux-gnu.so"))
    assert "yaml" in result.state.distributions["pyyaml"].top_level

    reference = _pip_target(["requests", "pyyaml"], tmp_path / "pip-target", "3.12")
    if reference is None:
        pytest.skip("pip could not run the reference install here")
    assert _top_level_names(build) == reference


@pytest.mark.network
def test_real_runpod_flash_bundle(tmp_path: Path) -> None:
    settings = DepsSettings(python_version="3.12", cache_dir=tmp_path / "cache", progress="quiet")
    target = bundle_runpod_flash(tmp_path / "build", settings, version="1.21.0")
    assert (target / "__init__.py").is_file()
    assert not list((tmp_path / "build").glob("*.dist-info"))
    assert not list(target.rglob("__pycache__"))
    # A second bundle comes from uv's cache.
    assert bundle_runpod_flash(tmp_path / "build", settings, version="1.21.0") == target
