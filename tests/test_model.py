"""Model-based test: an incremental build is the clean build, byte for byte, whatever happened.

A hypothesis state machine plays a user (and a hostile environment) on one app: it edits,
adds and deletes source files, adds and removes dependencies (tiny local wheels, one of
them native), changes build flags, damages random files under ``.flash/`` and SIGKILLs
builds at random moments. After every build the result must be the result of a clean
build of the same inputs with the same flags, made in another folder of the same name:

* both succeed, and the artifact (and the published manifest) are byte-identical; or
* the build failed with one clear message (exit 1..3, no traceback), the clean build
  fails too, and the previous artifact is byte-for-byte unchanged.

A successful build also leaves no temporary file under ``.flash/``.

The default suite runs a short, deterministic sequence; ``-m slow`` runs at least 500
steps and prints figures (set ``FLASH_TASKS_MODEL_REPORT`` to also write them to
``bench/model-run.txt``). Failures are not shrunk unless ``FLASH_TASKS_MODEL_SHRINK=1``
(each step builds, so shrinking takes minutes); the steps that led to a problem are
listed either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
    run_state_machine_as_test,
)
from test_trust import trust_index  # noqa: F401 - the fixture, shared
from wheelfactory import make_wheel

from flash_tasks import quick
from flash_tasks.cli import main

APP_NAME = "modelapp"
ENDPOINTS = ("alpha", "beta", "gamma")
HELPERS = ("lib_a", "lib_b", "lib_c")
ASSETS = ("assets/config.txt", "assets/prompt.txt")
REQUIREMENTS = ("tinydep==1.0", "tinydep==2.0", "leafdep", "middep", "nativedep", "oddnames")
ENDPOINT_DEPENDENCIES = ((), ("leafdep",), ("tinydep==1.0",), ("nativedep",))
PYTHON_VERSIONS = (None, "3.11", "3.12")
OUTPUTS = ("artifact.tar.gz", "app.tar.gz", "other-name.tar.gz", ".lock")  # .lock is the tool's: refused
DAMAGE_KINDS = ("flip", "truncate", "delete", "directory", "json", "stale", "delete folder", ".flash is a file")
RESTORE_KINDS = ("restore an earlier .flash", "restore an earlier .state")
FOREIGN_JSON = ('{"x": 1}', "[1, 2, 3]", "{}", "null", '"text"', '{"version": 1, "digest": "0", "data": {}}')

# What the tool's writers name their work files (the brief's list, not the tool's own pattern):
# atomic writes .<name>.tmp-<pid>[-<thread>], mkstemp files .<name>.XXXXXXXX.tmp, the
# archive's .fresh-<pid>.gz, .next.tar.gz and .spare.tmp, the SDK's copies.
TEMPORARY = re.compile(
    r"^\..*\.tmp(-\d+)*$|^\.fresh-.*\.gz$|^\.next\.tar\.gz$|^\.runpod_flash\.tmp-sdk$|^\.flash-sdk-"
)
ERROR_LINE = re.compile(r"(?m)^(?:\S.*?: )?error: ")


# -- the wheels -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_index(request: pytest.FixtureRequest) -> Path:
    """The trust tests' wheels (an SDK stand-in with dotfiles, tinydep, leafdep, oddnames...), and a few more."""
    folder: Path = request.getfixturevalue("trust_index")
    make_wheel(folder, "tinydep", "2.0", files={"tinydep/__init__.py": "VALUE = 2\n"})
    make_wheel(folder, "middep", "1.0", requires=["leafdep"])
    for py in ("312", "311"):
        make_wheel(
            folder,
            "nativedep",
            "1.0",
            tag=f"cp{py}-cp{py}-manylinux_2_17_x86_64",
            files={"nativedep/__init__.py": f"NATIVE = {py}\n", f"nativedep/_core.cpython-{py}-x86_64-linux-gnu.so": b"\x7fELF" + bytes(range(256)) * 8},
        )
    return folder


# -- the model of the app's inputs ----------------------------------------------------------------


@dataclass
class EndpointModel:
    workers: int = 2
    helper: str | None = None
    dependencies: tuple[str, ...] = ()


@dataclass
class Inputs:
    endpoints: dict[str, EndpointModel] = field(default_factory=lambda: {"alpha": EndpointModel(helper="lib_a")})
    helpers: dict[str, str] = field(default_factory=lambda: {"lib_a": "VALUE = 1\n"})
    assets: dict[str, str] = field(default_factory=dict)
    requirements: list[str] = field(default_factory=lambda: ["tinydep==1.0"])
    python_version: str | None = None
    exclude_leafdep: bool = False
    no_deps: bool = False
    output: str = "artifact.tar.gz"

    def files(self) -> dict[str, str]:
        files: dict[str, str] = {}
        for name, ep in self.endpoints.items():
            lines = ["from runpod_flash import CpuInstanceType, Endpoint", ""]
            if ep.helper:
                lines += [f"import {ep.helper}", ""]
            deps = f", dependencies={list(ep.dependencies)!r}" if ep.dependencies else ""
            lines += [
                "",
                f'@Endpoint(name="{name}", cpu=CpuInstanceType.CPU3C_1_2, workers={ep.workers}{deps})',
                f"def {name}(payload: dict) -> dict:",
                f"    return {{\"value\": {ep.helper + '.VALUE' if ep.helper else 0}, **payload}}",
                "",
            ]
            files[f"ep_{name}.py"] = "\n".join(lines)
        for name, text in self.helpers.items():
            files[f"{name}.py"] = text
        files.update(self.assets)
        if self.requirements:
            files["requirements.txt"] = "".join(f"{r}\n" for r in self.requirements)
        return files

    def flags(self) -> tuple[str, ...]:
        flags: list[str] = []
        if self.python_version:
            flags += ["--python-version", self.python_version]
        if self.exclude_leafdep:
            flags += ["--exclude", "leafdep"]
        if self.no_deps:
            flags.append("--no-deps")
        if self.output != "artifact.tar.gz":
            flags += ["-o", self.output]
        return tuple(flags)


def write_inputs(app: Path, inputs: Inputs) -> None:
    """Write what changed through ordinary file APIs; delete files the model no longer has."""
    wanted = inputs.files()
    for path in sorted(p for p in app.rglob("*") if p.is_file() and ".flash" not in p.relative_to(app).parts):
        rel = path.relative_to(app).as_posix()
        if rel not in wanted:
            path.unlink()
    for rel, text in wanted.items():
        path = app / rel
        if path.is_file() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def snapshot(path: Path) -> bytes | str | None:
    """A file's bytes, ``"<directory>"`` or None: what 'unchanged' is compared on."""
    if path.is_symlink() or not os.path.lexists(path):
        return None
    if path.is_dir():
        return "<directory>"
    return path.read_bytes()


# -- running builds -------------------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    out: str
    err: str
    artifact: bytes | str | None
    manifest: bytes | str | None


@dataclass
class Figures:
    examples: int = 0
    steps: int = 0
    builds: int = 0
    verify_builds: int = 0
    clean_builds: int = 0
    clean_cache_hits: int = 0
    failed_builds: int = 0
    damage: Counter[str] = field(default_factory=Counter)
    kills: int = 0
    #: Builds that left .flash/.build to a process of its own (flash_tasks.cache.fill), and those processes killed.
    fills: int = 0
    fills_killed: int = 0
    kills_after_finish: int = 0
    mismatches: int = 0
    problems: Counter[str] = field(default_factory=Counter)
    #: What the no-op record (flash_tasks.quick) said before each in-process build.
    quick: Counter[str] = field(default_factory=Counter)
    first_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def render(self) -> str:
        lines = [
            f"examples: {self.examples}",
            f"steps: {self.steps}",
            f"builds: {self.builds} ({self.verify_builds} with --verify, {self.failed_builds} failed as the clean build did)",
            f"clean builds: {self.clean_builds} (+{self.clean_cache_hits} from cache)",
            "damage: " + (", ".join(f"{k} {v}" for k, v in sorted(self.damage.items())) or "none")
            + f" ({sum(self.damage.values())} in all)",
            f"kills: {self.kills} (+{self.kills_after_finish} builds that finished before their kill)",
            f"builds that completed .build in a process of their own: {self.fills} ({self.fills_killed} of those processes killed)",
            f"mismatches: {self.mismatches}",
            "no-op record: " + (", ".join(f"{k} {v}" for k, v in sorted(self.quick.items())) or "never consulted"),
            "problems: " + (", ".join(f"{k} {v}" for k, v in sorted(self.problems.items())) or "none"),
            f"seconds: {self.seconds:.0f}",
        ]
        return "\n".join(lines)


class Runner:
    """Runs builds in-process (and one kind in a killed subprocess), and clean builds with a cache."""

    def __init__(self, index: Path, capture: Callable[[], tuple[str, str]], scratch: Path, figures: Figures) -> None:
        self.index = index
        self.capture = capture
        self.scratch = scratch
        self.figures = figures
        self.cache: dict[str, Outcome] = {}
        #: SIGKILL the process completing .flash/.build (if the build left one) this many ms after the build.
        self.kill_fill_after: int | None = None
        #: Whether the last build left .flash/.build to such a process (waited for).
        self.filled = False
        #: Whether that process was killed (``kill_fill_after``): its staging folders are then left for the next build.
        self.fill_killed = False

    def args(self, app: Path, flags: tuple[str, ...]) -> list[str]:
        return ["build", "-C", str(app), "--no-index", "--find-links", str(self.index), "-q", *flags]

    def build(self, app: Path, flags: tuple[str, ...], output: str) -> Outcome:
        self.capture()
        self.filled = False
        self.fill_killed = False
        try:
            code = main(self.args(app, flags))
            if self.kill_fill_after is not None:
                time.sleep(self.kill_fill_after / 1000)
                killed = kill_fill(app / ".flash")
                self.figures.fills_killed += killed
                self.fill_killed = killed > 0
            self.filled = wait_for_fill(app)
            self.figures.fills += self.filled
        except Exception:  # noqa: BLE001 - whatever escapes main() is a traceback the user sees: a finding
            code = -1
            _, err = self.capture()
            err += traceback.format_exc()
            return Outcome(code, "", err, snapshot(app / ".flash" / output), snapshot(app / ".flash" / "flash_manifest.json"))
        out, err = self.capture()
        return Outcome(code, out, err, snapshot(app / ".flash" / output), snapshot(app / ".flash" / "flash_manifest.json"))

    def clean(self, app: Path, flags: tuple[str, ...], output: str) -> Outcome:
        """A clean build of ``app``'s sources (as they are on disk) in a fresh folder of the same name."""
        digest = hashlib.sha256(repr(flags).encode())
        for path in sorted(p for p in app.rglob("*") if ".flash" not in p.relative_to(app).parts):
            digest.update(path.relative_to(app).as_posix().encode() + b"\0")
            if path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
        key = digest.hexdigest()
        if key in self.cache:
            self.figures.clean_cache_hits += 1
            return self.cache[key]
        self.figures.clean_builds += 1
        copy = self.scratch / f"clean-{self.figures.clean_builds}" / app.name
        shutil.copytree(app, copy, ignore=shutil.ignore_patterns(".flash"))
        outcome = self.build(copy, flags, output)
        shutil.rmtree(copy.parent)
        self.cache[key] = outcome
        return outcome


# -- the machine ----------------------------------------------------------------------------------


class Problem(AssertionError):
    pass


class TrustMachine(RuleBasedStateMachine):
    """One app, a random history, and after every build: the clean build's bytes or a clear failure."""

    runner: Runner
    root: Path
    strict: bool = True  # raise at the first problem (the short run); else count them (the long run)

    def __init__(self) -> None:
        super().__init__()
        self.figures = self.runner.figures
        self.figures.examples += 1
        self.app = self.root / f"run-{self.figures.examples}" / APP_NAME
        self.app.mkdir(parents=True)
        self.inputs = Inputs()
        self.log: list[str] = []
        self.history: dict[str, list[bytes]] = {}  # files as earlier builds left them
        self.saved = self.app.parent / "saved-flash"  # a copy of .flash/ as a CI cache would keep it
        # A stamp that lies is only caught by --verify: builds verify until one with it succeeds
        # (a refused or failed --verify build may not have re-read anything).
        self.stamp_lies = False

    @property
    def flash(self) -> Path:
        return self.app / ".flash"

    def teardown(self) -> None:
        shutil.rmtree(self.app.parent, ignore_errors=True)

    # -- checks ---------------------------------------------------------------------------------

    def problem(self, kind: str, detail: str) -> None:
        self.figures.problems[kind] += 1
        if kind == "mismatch":
            self.figures.mismatches += 1
        message = f"{kind}: {detail}\n  steps: " + "\n    ".join(self.log)
        if self.figures.problems[kind] <= 3:  # the first few of each kind, with their steps
            self.figures.first_problems.append(message)
        if self.strict:
            raise Problem(message)

    def remember_files(self) -> None:
        """Keep a few earlier versions of the small files, for the 'stale' damage."""
        for path in sorted(self.flash.rglob("*")):
            if path.is_file() and not path.is_symlink() and path.stat().st_size < 200_000:
                versions = self.history.setdefault(path.relative_to(self.flash).as_posix(), [])
                body = path.read_bytes()
                if body not in versions:
                    versions[:] = [*versions[-3:], body]

    def temporaries(self) -> list[str]:
        if not self.flash.is_dir():
            return []
        return sorted(p.relative_to(self.flash).as_posix() for p in self.flash.rglob("*") if TEMPORARY.match(p.name))

    def check(self, got: Outcome, before: bytes | str | None, what: str, *, fill_killed: bool = False) -> None:
        output = self.inputs.output
        want = self.runner.clean(self.app, self.inputs.flags(), output)
        shown = f"{what} {' '.join(self.inputs.flags())}".strip()
        if got.code == 0:
            if want.code != 0:
                self.problem("stale success", f"{shown}: exit 0 where a clean build fails with {want.code}:\n{want.err}")
            elif got.artifact != want.artifact:
                size = len(got.artifact) if isinstance(got.artifact, bytes) else got.artifact
                self.problem("mismatch", f"{shown}: {output} ({size} bytes) differs from a clean build's ({len(want.artifact or b'')} bytes)")
            elif got.manifest != want.manifest:
                self.problem("manifest mismatch", f"{shown}: .flash/flash_manifest.json differs from a clean build's")
            # A process completing .build that this run SIGKILLed leaves its staging folder there, as a
            # kill does; the next build sweeps it, and its check sees to that.
            left = [t for t in self.temporaries() if not (fill_killed and t.startswith(".build/"))]
            if left:
                self.problem("temporaries", f"{shown}: left behind after a successful build: {left}")
            self.remember_files()
            return
        self.figures.failed_builds += 1
        if got.code == -1 or "Traceback" in got.err + got.out:
            self.problem("traceback", f"{shown}: exit {got.code}\n{got.err[-3000:]}")
        elif not 1 <= got.code <= 3:
            self.problem("exit code", f"{shown}: exit {got.code}\n{got.err}")
        elif len(ERROR_LINE.findall(got.err)) != 1:
            self.problem("unclear error", f"{shown}: exit {got.code}, not one error message:\n{got.err}")
        if got.artifact != before:
            self.problem("artifact changed by a failed build", f"{shown}: exit {got.code}\n{got.err}")
        if want.code == 0:
            self.problem("failure where a clean build succeeds", f"{shown}: exit {got.code}\n{got.err}")
        elif want.code != got.code:
            self.problem("exit code differs from a clean build", f"{shown}: exit {got.code} vs {want.code}\n{got.err}\n{want.err}")

    def verify_flag(self) -> tuple[str, ...]:
        return ("--verify",) if self.stamp_lies else ()

    def build(self) -> None:
        before = snapshot(self.flash / self.inputs.output)
        extra = self.verify_flag()
        flags = (*self.inputs.flags(), *extra)
        self.log.append(f"build {' '.join(flags)}".rstrip())
        self.figures.builds += 1
        self.figures.verify_builds += "--verify" in extra
        got = self.runner.build(self.app, flags, self.inputs.output)
        filled = self.runner.filled  # before check(): its clean build runs the runner again
        fill_killed = self.runner.fill_killed
        self.check(got, before, "build", fill_killed=fill_killed)
        if got.code == 0 and filled and self.runner.kill_fill_after is None:
            missing = incomplete_build_folder(self.flash)
            if missing:
                self.problem("incomplete .build", f"after a build whose fill finished, files missing of: {missing[:5]}")
        if extra and got.code == 0:
            self.stamp_lies = False

    def step(self, text: str, then_build: bool) -> None:
        self.figures.steps += 1
        self.log.append(text)
        write_inputs(self.app, self.inputs)
        if then_build:
            self.build()

    # -- rules: sources -------------------------------------------------------------------------

    @initialize()
    def first_build(self) -> None:
        self.step("first build", True)

    @rule(name=st.sampled_from(HELPERS), value=st.integers(0, 99), broken=st.sampled_from([False] * 7 + [True]),
          then_build=st.sampled_from([True, True, False]))
    def edit_helper(self, name: str, value: int, broken: bool, then_build: bool) -> None:
        """Add or edit a helper module; now and then with a syntax error."""
        self.inputs.helpers[name] = f"VALUE = ({value},\n" if broken else f"VALUE = {value}\n"
        self.step(f"helper {name} = {value}{' (broken)' if broken else ''}", then_build)

    @precondition(lambda self: bool(self.inputs.helpers))
    @rule(data=st.data(), then_build=st.sampled_from([True, True, False]))
    def delete_helper(self, data: st.DataObject, then_build: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.inputs.helpers)))
        del self.inputs.helpers[name]
        self.step(f"delete {name}.py", then_build)

    @rule(name=st.sampled_from(ENDPOINTS), workers=st.integers(1, 5), helper=st.sampled_from((None, *HELPERS)),
          deps=st.sampled_from(ENDPOINT_DEPENDENCIES), then_build=st.sampled_from([True, True, False]))
    def add_or_change_endpoint(self, name: str, workers: int, helper: str | None, deps: tuple[str, ...], then_build: bool) -> None:
        self.inputs.endpoints[name] = EndpointModel(workers, helper, deps)
        self.step(f"endpoint {name}: workers={workers} helper={helper} deps={list(deps)}", then_build)

    @precondition(lambda self: bool(self.inputs.endpoints))
    @rule(data=st.data(), workers=st.integers(1, 5), then_build=st.sampled_from([True, True, False]))
    def set_workers(self, data: st.DataObject, workers: int, then_build: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.inputs.endpoints)))
        self.inputs.endpoints[name].workers = workers
        self.step(f"endpoint {name}: workers={workers}", then_build)

    @precondition(lambda self: len(self.inputs.endpoints) > 1)
    @rule(data=st.data(), then_build=st.sampled_from([True, True, False]))
    def delete_endpoint(self, data: st.DataObject, then_build: bool) -> None:
        name = data.draw(st.sampled_from(sorted(self.inputs.endpoints)))
        del self.inputs.endpoints[name]
        self.step(f"delete ep_{name}.py", then_build)

    @rule(name=st.sampled_from(ASSETS), value=st.one_of(st.none(), st.text("abc xyz\n", max_size=40)),
          then_build=st.sampled_from([True, False]))
    def edit_asset(self, name: str, value: str | None, then_build: bool) -> None:
        """Add, edit or (None) delete a data file that ships with the app."""
        if value is None:
            self.inputs.assets.pop(name, None)
        else:
            self.inputs.assets[name] = value
        self.step(f"asset {name} = {value!r}", then_build)

    # -- rules: dependencies and flags ----------------------------------------------------------

    @rule(requirement=st.sampled_from(REQUIREMENTS), then_build=st.sampled_from([True, True, False]))
    def toggle_requirement(self, requirement: str, then_build: bool) -> None:
        reqs = self.inputs.requirements
        if requirement in reqs:
            reqs.remove(requirement)
            text = f"remove {requirement}"
        else:
            project = requirement.split("==")[0]
            reqs[:] = [r for r in reqs if r.split("==")[0] != project] + [requirement]
            text = f"add {requirement}"
        self.step(text, then_build)

    @rule(python=st.sampled_from(PYTHON_VERSIONS), exclude=st.booleans(), no_deps=st.booleans(),
          output=st.sampled_from(OUTPUTS), then_build=st.sampled_from([True, True, False]))
    def change_flags(self, python: str | None, exclude: bool, no_deps: bool, output: str, then_build: bool) -> None:
        self.inputs.python_version, self.inputs.exclude_leafdep = python, exclude
        self.inputs.no_deps, self.inputs.output = no_deps, output
        self.step(f"flags {' '.join(self.inputs.flags()) or '(none)'}", then_build)

    @rule()
    def no_op_build(self) -> None:
        self.step("no-op", True)

    # -- rules: damage and kills ----------------------------------------------------------------

    def victims(self, folders: bool = False, focus: bool = False) -> list[Path]:
        """Files (or folders) under .flash/; with ``focus``, only the artifacts, records and caches."""
        if not self.flash.is_dir():
            return []
        found = [p for p in self.flash.rglob("*") if not p.is_symlink() and (p.is_dir() if folders else p.is_file())]
        if focus:
            found = [p for p in found if ".build" not in p.relative_to(self.flash).parts and "sdk" not in p.relative_to(self.flash).parts]
        return sorted(found)

    @precondition(lambda self: self.flash.is_dir())
    @rule(data=st.data(), kind=st.sampled_from(DAMAGE_KINDS), focus=st.booleans(), then_build=st.sampled_from([True, True, False]))
    def damage(self, data: st.DataObject, kind: str, focus: bool, then_build: bool) -> None:
        """Damage a random file (or folder) under .flash/ through ordinary file APIs."""
        if kind == ".flash is a file":
            target = self.flash
            shutil.rmtree(target)
            target.write_text("not a folder\n")
        elif kind == "delete folder":
            folders = self.victims(folders=True, focus=focus)
            if not folders:
                return
            target = data.draw(st.sampled_from(folders))
            shutil.rmtree(target)
        else:
            files = self.victims(focus=focus)
            if kind == "stale":
                files = [f for f in files if any(v != f.read_bytes() for v in self.history.get(f.relative_to(self.flash).as_posix(), []))]
            if not files:
                return
            target = data.draw(st.sampled_from(files))
            before = target.stat()
            body = target.read_bytes()
            if kind == "flip":
                if body:
                    at = data.draw(st.integers(0, len(body) - 1))
                    with open(target, "r+b") as handle:
                        handle.seek(at)
                        handle.write(bytes([body[at] ^ data.draw(st.integers(1, 255))]))
                else:
                    target.write_bytes(b"x")
            elif kind == "truncate":
                with open(target, "r+b") as handle:
                    handle.truncate(data.draw(st.integers(0, max(0, len(body) - 1))))
            elif kind == "delete":
                target.unlink()
            elif kind == "directory":
                target.unlink()
                target.mkdir()
                (target / "junk").write_text("junk\n")
            elif kind == "json":
                others = [p for p in self.victims() if p.suffix == ".json" and p != target]
                choices = [*FOREIGN_JSON, *(p.relative_to(self.flash).as_posix() for p in others)]
                pick = data.draw(st.sampled_from(choices))
                target.write_bytes(pick.encode() if pick in FOREIGN_JSON else (self.flash / pick).read_bytes())
            else:  # stale: the file as an earlier build wrote it
                versions = [v for v in self.history[target.relative_to(self.flash).as_posix()] if v != body]
                target.write_bytes(data.draw(st.sampled_from(versions)))
            if target.is_file() and target.stat().st_mtime_ns == before.st_mtime_ns:
                # A person does not damage a file within the clock tick of the build that wrote it.
                os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns + 10_000_000))
        self.figures.damage[kind] += 1
        self.step(f"damage {kind}: {target.relative_to(self.app)}", then_build)

    @precondition(lambda self: self.flash.is_dir())
    @rule(data=st.data(), kind=st.sampled_from(DAMAGE_KINDS), value=st.integers(0, 99))
    def damage_then_edit(self, data: st.DataObject, kind: str, value: int) -> None:
        """Damage, then edit a helper and build: the cache is used, not only checked."""
        self.damage(data, kind, focus=True, then_build=False)
        self.edit_helper("lib_a", value, broken=False, then_build=True)

    @precondition(lambda self: self.flash.is_dir())
    @rule()
    def save_flash(self) -> None:
        """Keep a copy of .flash/ (times preserved), as a CI cache or a backup would."""
        self.figures.steps += 1
        self.log.append("save a copy of .flash")
        shutil.rmtree(self.saved, ignore_errors=True)
        shutil.copytree(self.flash, self.saved, symlinks=True)

    @precondition(lambda self: self.saved.is_dir())
    @rule(kind=st.sampled_from(RESTORE_KINDS), then_build=st.sampled_from([True, True, False]))
    def restore_flash(self, kind: str, then_build: bool) -> None:
        """Put back the saved .flash/ (or only its .state/) over the current one, times preserved."""
        part = ".state" if kind.endswith(".state") else ""
        target = self.flash / part if part else self.flash
        if os.path.lexists(target):
            shutil.rmtree(target) if target.is_dir() and not target.is_symlink() else target.unlink()
        if part and not self.flash.is_dir():
            if os.path.lexists(self.flash):
                self.flash.unlink()
            self.flash.mkdir()
        if os.path.lexists(self.saved / part):  # (a saved .flash/ may have had no .state/)
            shutil.copytree(self.saved / part, target, symlinks=True)
        self.figures.damage[kind] += 1
        self.step(kind, then_build)

    @precondition(lambda self: self.flash.is_dir())
    @rule(data=st.data())
    def damage_keeping_stamp(self, data: st.DataObject) -> None:
        """Flip a byte but keep size and mtime: only ``--verify`` has to notice."""
        files = [f for f in self.victims() if f.stat().st_size > 0]
        if not files:
            return
        target = data.draw(st.sampled_from(files))
        before = target.stat()
        at = data.draw(st.integers(0, before.st_size - 1))
        with open(target, "r+b") as handle:
            handle.seek(at)
            old = handle.read(1)
            handle.seek(at)
            handle.write(bytes([old[0] ^ 0x55]))
        os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
        self.figures.damage["flip, same stamp"] += 1
        self.stamp_lies = True
        self.step(f"damage flip keeping size and mtime: {target.relative_to(self.flash)}", True)

    @rule(fill_ms=st.sampled_from([0, 30, 100, 300, 800]))
    def kill_a_fill(self, fill_ms: int) -> None:
        """A cold build (``.flash`` deleted, as in a fresh checkout) whose process completing
        .flash/.build is SIGKILLed ``fill_ms`` after it returned; then a build."""
        self.figures.steps += 1
        self.log.append(f"cold build, the process completing .build killed after {fill_ms} ms")
        write_inputs(self.app, self.inputs)
        shutil.rmtree(self.flash, ignore_errors=True)
        self.runner.kill_fill_after = fill_ms
        try:
            self.build()
        finally:
            self.runner.kill_fill_after = None
        self.build()

    @rule(delay_ms=st.integers(0, 1600), then_build=st.sampled_from([True, True, False]), fill_ms=st.sampled_from([None, 0, 100, 300]))
    def kill_a_build(self, delay_ms: int, then_build: bool, fill_ms: int | None) -> None:
        """Start ``flash build`` in a subprocess and SIGKILL its process group after a random delay;
        ``fill_ms``: then SIGKILL the process completing its .flash/.build, if there is one, that much later."""
        self.figures.steps += 1
        self.log.append(f"kill a build after {delay_ms} ms")
        write_inputs(self.app, self.inputs)
        before = snapshot(self.flash / self.inputs.output)
        command = [sys.executable, "-m", "flash_tasks", *self.runner.args(self.app, (*self.inputs.flags(), *self.verify_flag()))]
        with open(self.app.parent / "killed.err", "w+") as err:
            proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=err)
            try:
                code = proc.wait(timeout=delay_ms / 1000)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                self.figures.kills += 1
                after = snapshot(self.flash / self.inputs.output)
                want = self.runner.clean(self.app, self.inputs.flags(), self.inputs.output)
                if after not in (before, want.artifact if want.code == 0 else before):
                    self.problem("torn artifact", f"after a kill at {delay_ms} ms the artifact is neither the old nor the new one")
            else:
                self.figures.kills_after_finish += 1
                self.figures.builds += 1
                err.seek(0)
                output = self.inputs.output
                self.check(Outcome(code, "", err.read(), snapshot(self.flash / output), snapshot(self.flash / "flash_manifest.json")), before, "subprocess build")
                self.stamp_lies = self.stamp_lies and code != 0
        if fill_ms is not None:
            time.sleep(fill_ms / 1000)
            self.figures.fills_killed += kill_fill(self.flash)
        wait_for_fill(self.app)
        if then_build:
            self.build()


def wait_for_fill(app: Path) -> bool:
    """Wait while a process completing ``app``'s .flash/.build holds its build lock; whether one did."""
    import fcntl

    try:
        fd = os.open(app / ".flash" / ".lock", os.O_RDWR)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            fcntl.flock(fd, fcntl.LOCK_EX)
            return True
    finally:
        os.close(fd)


def incomplete_build_folder(flash: Path) -> list[str]:
    """Installed distributions whose RECORD is as installed but whose files are not all in .flash/.build.

    A RECORD that is not as installed is the model's own damage (repaired when read, or by
    --verify); one that is intact while files it lists are missing is what an unfinished fill
    would leave.
    """
    import json

    from flash_tasks.store import content_hash, read_record

    if (flash / ".state" / "filling.json").exists():
        return [".state/filling.json is still there"]
    try:
        installed = json.loads((flash / ".state" / "installed.json").read_text())
    except (OSError, ValueError):
        return []  # nothing recorded as installed (or a damaged record the next build replaces)
    build = flash / ".build"
    missing = []
    for dist in (installed.get("distributions") or {}).values():
        try:
            rows = read_record(build / dist["dist_info"] / "RECORD")
            listed = frozenset(row[0].split("/", 1)[0] for row in rows)
            intact = content_hash(build, dist["dist_info"], rows, absent=listed) == dist["content_hash"]
            complete = content_hash(build, dist["dist_info"], rows) == dist["content_hash"]
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            continue
        if intact and not complete:
            missing.append(str(dist.get("name")))
    return missing


def kill_fill(flash: Path) -> int:
    """SIGKILL the process completing ``flash``'s .build (``python -m flash_tasks.cache.fill FLASH``); how many."""
    killed = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flash_tasks.cache.fill" in argv and os.fsencode(str(flash)) in argv:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


# -- the tests ------------------------------------------------------------------------------------


@contextlib.contextmanager
def machine_for(
    index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, strict: bool
) -> Iterator[tuple[type[TrustMachine], Figures]]:
    figures = Figures()

    def capture() -> tuple[str, str]:
        captured = capsys.readouterr()
        return captured.out, captured.err

    class Machine(TrustMachine):
        pass

    Machine.runner = Runner(index, capture, tmp_path / "clean", figures)
    Machine.root = tmp_path / "apps"
    Machine.strict = strict
    started = time.monotonic()
    real_answer = quick.answer

    def counted(*args: Any, **kwargs: Any) -> str:
        verdict = real_answer(*args, **kwargs)
        figures.quick[verdict] += 1
        return verdict

    try:
        with pytest.MonkeyPatch.context() as patch:
            # As a user's `flash build`: a cold build from cached segments completes .build after returning.
            patch.setenv("FLASH_TASKS_BACKGROUND_FILL", "1")
            # Nothing else writes while an in-process build runs: a margin over the file clock's lag is enough,
            # and lets no-op builds that follow one another be answered from the record.
            patch.setattr(quick, "RACY_MARGIN_NS", 50_000_000)
            patch.setattr(quick, "answer", counted)
            yield Machine, figures
    finally:
        figures.seconds = time.monotonic() - started


def model_settings(examples: int, steps: int) -> settings:
    shrink = os.environ.get("FLASH_TASKS_MODEL_SHRINK") == "1"
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        database=None,
        derandomize=False,  # a fixed @seed instead: the sequence is the same on every run
        phases=(Phase.explicit, Phase.generate, Phase.shrink) if shrink else (Phase.explicit, Phase.generate),
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )


def run(machine: type[TrustMachine], number: int, examples: int, steps: int) -> None:
    factory = seed(number)(machine)
    run_state_machine_as_test(factory, settings=model_settings(examples, steps))


@pytest.fixture(autouse=True)
def _no_source_date_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)


def test_model_short_run(model_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with machine_for(model_index, capsys, tmp_path, strict=True) as (machine, figures):
        run(machine, 9, examples=3, steps=10)
    assert figures.builds >= 15 and figures.steps >= 20, figures.render()


@pytest.mark.slow
def test_model_long_run(model_index: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with machine_for(model_index, capsys, tmp_path, strict=False) as (machine, figures):
        number = 2026
        while figures.steps < 500:
            run(machine, number, examples=10, steps=26)
            number += 1
    report = figures.render()
    with capsys.disabled():
        print("\nmodel-based run (issue 9):\n" + report)
    if os.environ.get("FLASH_TASKS_MODEL_REPORT"):
        bench = Path(__file__).resolve().parent.parent / "bench"
        bench.mkdir(exist_ok=True)
        (bench / "model-run.txt").write_text(report + "\n")
    assert not figures.problems, report + "\n\n" + "\n\n".join(figures.first_problems)
    assert figures.quick["answered"] and figures.quick["verify"], report  # the record was used, and distrusted after damage
