"""The dependency phases as task actions: ``lock:<group>`` and ``install``.

The task graph creates these after the manifest (the groups come from it):
each group's lock depends on the app's requirement files and on a digest of
its requirements and target; ``install`` depends on the group locks.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import catalog
from ..config import BuildConfig
from ..quick import FILLING_MARKER
from ..stage import read_json, write_bytes_atomic, write_json
from ..store import Record


def settings_for(config: BuildConfig, python_version: str | None) -> Any:
    """The dependency settings a build request implies."""
    from .settings import DepsSettings, IndexSettings

    return DepsSettings(
        python_version=python_version or catalog.DEFAULT_PYTHON_VERSION,
        exclude=config.exclude,
        include=config.include,
        no_deps=config.no_deps,
        index=IndexSettings(index_url=config.index_url, find_links=config.find_links, no_index=config.no_index),
    )


def layout(config: BuildConfig) -> Any:
    from .locks import LockLayout

    return LockLayout(root=config.paths.locks)


def sdk_record_path(config: BuildConfig) -> Path:
    return config.paths.sdk_copy_json


def lock_path(config: BuildConfig, group: str) -> Path:
    return config.paths.group_lock(group)


def _groups_info(config: BuildConfig) -> dict[str, Any]:
    """The worker Python and each resource group's own requirements, from the manifest phase."""
    from ..store import GroupsState, read_state

    state = read_state(config.paths.groups_json, GroupsState)
    if state is None:
        return {"python_version": None, "groups": {}}
    return {"python_version": state.python_version, "groups": state.model_dump(mode="json")["groups"]}


class LockPlan:
    """Each group's requirements, the files they came from, and the settings."""

    def __init__(self, config: BuildConfig) -> None:
        from .requirements import collect_app_requirements, plan_groups

        info = _groups_info(config)
        self.python_version: str | None = info["python_version"]
        self.settings = settings_for(config, self.python_version)
        app = collect_app_requirements(config.app_dir, project_dependencies=config.project_dependencies)
        self.app = app
        endpoints = {group: [(d["requirement"], d["origin"]) for d in deps] for group, deps in info["groups"].items()}
        self.groups = {spec.name: spec for spec in plan_groups(app, endpoints)} if endpoints else {}
        for spec in {s.origin: s for g in self.groups.values() for s in g.requirements}.values():
            refuse_local_project(spec.text, spec.origin)
        self.files = [str(Path(f)) for f in app.files]
        self.warnings = list(app.warnings)

    def digest(self, group: str) -> str:
        from .locks import lock_inputs_digest

        return lock_inputs_digest(self.groups[group], self.settings)


class LockPlanRecord(Record):
    """``lock-plan.json``: what the lock tasks were planned from, and the plan.

    ``opened`` lists each requirements file as it was named, as it resolved and
    the sha256 of the bytes parsed; ``candidates`` whether each file the
    requirements may come from was a file. While all of it, the groups and the
    settings (``key``) are the same, parsing again would give the same plan.
    """

    key: str
    digests: dict[str, str]
    files: list[str]
    candidates: dict[str, bool]
    opened: list[tuple[str, str, str]]


@dataclass
class PlannedLocks:
    """What the graph needs to create the lock tasks: each group's input digest, the files read."""

    digests: dict[str, str]
    files: list[str]


def lock_plan_path(config: BuildConfig) -> Path:
    return config.paths.state / "lock-plan.json"


def planned_locks(config: BuildConfig, tool: str) -> PlannedLocks:
    """The lock tasks' plan: from its record when nothing it was made from changed, else from ``LockPlan``.

    Parsing requirements needs packaging, and digesting them the lock
    machinery (uv's error tables): tens of milliseconds on every build, for
    the same answer as last time. ``tool`` is this tool's fingerprint (its
    code decides the plan too). ``FlashError`` (a requirement that cannot be
    read) propagates, and nothing is recorded.
    """
    from ..stage import write_json
    from ..store import read_state

    key = _plan_key(config, tool)
    candidates = _candidates(config)
    # A state file with its own digest: a damaged plan is made again, never followed.
    record = read_state(lock_plan_path(config), LockPlanRecord)
    if record is not None and record.key == key and record.candidates == candidates and _same_files(record.opened):
        return PlannedLocks(dict(record.digests), list(record.files))
    plan = LockPlan(config)
    planned = PlannedLocks({group: plan.digest(group) for group in plan.groups}, plan.files)
    if _candidates(config) == candidates:  # else a file came or went meanwhile: no record
        record = LockPlanRecord(
            key=key, digests=planned.digests, files=planned.files, candidates=candidates, opened=list(plan.app.opened)
        )
        write_json(lock_plan_path(config), record.model_dump(mode="json"))
    return planned


def _plan_key(config: BuildConfig, tool: str) -> str:
    """The plan's inputs other than the requirements files: groups, settings, this tool's code."""
    inputs = {
        "groups": _groups_info(config),
        "app": str(config.app_dir),
        "settings": [
            list(config.exclude), list(config.include), config.no_deps, config.index_url,
            list(config.find_links), config.no_index, config.project_dependencies,
        ],
        "tool": tool,
    }  # fmt: skip
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _candidates(config: BuildConfig) -> dict[str, bool]:
    """Whether each file the app's requirements may come from is a file (``collect_app_requirements``)."""
    names = ["requirements.txt", *(["pyproject.toml"] if config.project_dependencies else [])]
    return {name: (config.app_dir / name).is_file() for name in names}


def _same_files(opened: list[tuple[str, str, str]]) -> bool:
    """Whether each file still resolves where it did and holds the bytes that were parsed."""
    from .base import MAX_REQUIREMENTS_BYTES

    for named, resolved, sha256 in opened:
        if str(Path(named).resolve()) != resolved:
            return False
        try:
            # Opened without waiting: a pipe put where a file was must not hang the build.
            fd = os.open(resolved, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:
            return False
        try:
            with open(fd, "rb", closefd=True) as handle:
                if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                    return False  # never read a pipe or a device here
                data = handle.read(MAX_REQUIREMENTS_BYTES + 1)
        except OSError:
            return False
        if hashlib.sha256(data).hexdigest() != sha256:
            return False
    return True


def refuse_local_project(text: str, origin: str) -> None:
    """Flash installs wheels only: a requirement on a local folder or archive would need a build."""
    from packaging.requirements import Requirement

    from ..errors import DependencyError

    url = Requirement(text).url or ""  # the text was checked when it was read
    if url.startswith("file:") or url.endswith((".tar.gz", ".zip", ".tgz")):
        path, _, line = origin.rpartition(":")
        raise DependencyError(
            f"requirement {text!r} points at a local project or archive, which would have to be built from source",
            path=path or origin,
            line=int(line) if line.isdigit() else None,
            hint="Flash installs published wheels only; put your own code in the app folder (it ships as it is), "
            "or publish a wheel and require it by name",
        )


def _copy_peer_lock(config: BuildConfig, group: str, digest: str) -> None:
    """Groups with the same requirements share one resolution: reuse a sibling's lock.

    Only a confirmed one: a lock still waiting for uv's check (``deps.speculation``)
    is never copied as if it were uv's.
    """
    from .lockfile import DamagedLock, _checked_text, _content_line, is_unconfirmed

    target = lock_path(config, group)
    marker = f"# inputs: {digest}\n"
    for peer in sorted(config.paths.locks.glob("*.txt")):
        if peer == target or is_unconfirmed(peer):
            continue
        try:
            text = _checked_text(peer)
        except (OSError, DamagedLock):
            continue
        first, _, rest = text.partition("\n")
        if rest.startswith(marker) and first.startswith("# flash-tasks lock"):
            from .locks import clear_unconfirmed

            title = first.rsplit(": group ", 1)[0] + f": group {group}"
            body = title + "\n" + rest
            write_bytes_atomic(target, (body + _content_line(body)).encode("utf-8"))
            clear_unconfirmed(target)  # a copy of a confirmed lock is confirmed
            return


def lock_group_action(config: BuildConfig, group: str) -> None:
    from . import speculation
    from .locks import GroupResolution, excluded_requests, prepare_lock

    plan = LockPlan(config)
    if not config.upgrade:
        _copy_peer_lock(config, group, plan.digest(group))
    spec = plan.groups[group]
    prepared = prepare_lock(spec, plan.settings, lock_path(config, group), upgrade=config.upgrade)
    if isinstance(prepared, GroupResolution):
        # From the shared cache (uv checks it before anything is published), else from uv now.
        speculation.lock(config, prepared, from_cache=not config.upgrade)
    excluded = read_json(config.paths.state / "excluded.json", {}) or {}
    excluded[group] = [e.model_dump(mode="json") for e in excluded_requests(spec, plan.settings)]
    write_json(config.paths.state / "excluded.json", excluded)


def install_action(config: BuildConfig, groups: list[str]) -> None:

    from .installer import check_overlaps, install
    from .locks import combine_locks
    from .sdk import bundle_sdk

    plan = LockPlan(config)
    lay = layout(config)
    specs = [plan.groups[g] for g in sorted(plan.groups)]
    combine_locks(specs, plan.settings, {g: lay.group(g) for g in plan.groups}, lay.combined)
    config.paths.build.mkdir(parents=True, exist_ok=True)
    # Only what the app asked for directly gets a REQUESTED marker, as pip writes them.
    requested = frozenset(spec.name for group in specs for spec in group.requirements)
    from ..cache.installs import restore_installs

    build = config.paths.build
    # A fill left from an earlier build (killed, or its segments disagreed with RECORD): the
    # distributions it did not complete lack top-level entries, and ``install`` reinstalls those.
    marker = config.paths.state / FILLING_MARKER
    earlier = _identity(marker)
    background = config.background_fill and not config.verify
    result = install(
        lay.combined,
        build,
        plan.settings,
        state_path=config.paths.install_json,
        verify=config.verify,
        requested=requested,
        restore=lambda entries, later: restore_installs(config, build.resolve(), entries, plan.settings, requested, background=later),
        background=background,
    )
    if earlier is not None and _identity(marker) == earlier:
        from ..cache import _session
        from ..cache.fill import crash_note, failures

        failed = failures(config.paths)
        crash = crash_note(config.paths)
        if failed:
            _session().warnings.append(
                f"completing .flash/.build from cached segments failed for {', '.join(failed)}; installed from the wheels instead"
            )
        elif crash is not None:
            # The process that was completing .build stopped on an error of its own: say it once.
            _session().warnings.append(
                f"completing .flash/.build in the background stopped on an error ({crash}; the whole of it is in "
                ".flash/.state/fill.log); what it left undone was installed from the wheels"
            )
        marker.unlink(missing_ok=True)  # the install state saved above no longer counts on it
    from ..store import StageState, read_state

    stage = read_state(config.paths.stage_json, StageState)
    staged = list(stage.files) if stage is not None else []
    check_overlaps(config.paths.build, result.state, [*staged, "runpod_flash/__init__.py"])
    bundle_sdk(config, plan.settings)
    write_json(
        config.paths.state / "install-report.json",
        {
            "added": list(result.added),
            "removed": list(result.removed),
            "unchanged": list(result.unchanged),
            "excluded_needed": [e.model_dump(mode="json") for e in result.excluded_needed],
            "warnings": plan.warnings,
        },
    )


def _identity(path: Path) -> tuple[int, int] | None:
    """Which file is at ``path`` (inode and change time), or None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return (info.st_ino, info.st_ctime_ns)


def reinstall(config: BuildConfig, name: str) -> None:
    """Install one distribution again after its files in ``.flash/.build`` were found changed."""
    from .installed import load_install_state
    from .installer import _remove_distribution

    state = load_install_state(config.paths.install_json)
    dist = state.distributions.get(name) if state is not None else None
    if dist is not None:
        _remove_distribution(config.paths.build.resolve(), config.paths.build.resolve() / dist.dist_info)
    from ..store import GroupsState, read_state

    groups = read_state(config.paths.groups_json, GroupsState)
    install_action(config, sorted(groups.groups) if groups is not None else [])
