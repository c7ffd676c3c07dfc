"""The build as a doit task graph.

``namespace(config)`` returns what a ``dodo.py`` would define: ``DOIT_CONFIG``
and one ``task_*`` generator per phase. ``flash build``, ``python -m
flash_tasks`` and ``doit`` all run these same tasks::

    files ─► scan:<file> ──┐
    files ─► stage ────────┼─► manifest ─► lock:<group> ─► install ─► handlers ─► archive

Each task declares its real inputs: files (``file_dep``), options, the tool's
own code and the environment variables endpoint arguments read (``uptodate``),
so a rebuild with nothing changed runs no task, and a changed flag reruns
exactly what it affects. Large trees (installed dependencies) are never
``file_dep`` s: tasks depend on small state files that describe them, and
checks that those trees are still there (``OutputsPresent``, ``InstallPresent``,
``LockMatches``) keep a damaged ``.flash`` from passing for a finished one.
The archive task also publishes ``.flash/flash_manifest.json`` next to the
artifact it describes.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from doit.dependency import FileChangedChecker, get_file_md5
from doit.exceptions import TaskFailed
from doit.loader import create_after
from doit.tools import config_changed

from .config import BuildConfig, source_date_epoch
from .errors import BuildError, FlashError
from .quick import tool_fingerprint as tool_fingerprint
from .stage import read_json, source_stamp, write_json, write_text_atomic
from .store import GroupsState, HandlersState, StageState

PHASES = ("files", "stage", "scan", "manifest", "lock", "install", "handlers", "archive")
def scan_target(config: BuildConfig, rel: str) -> Path:
    """Where one file's scan goes: named by a hash, so any legal file name fits."""
    return config.paths.scans / (hashlib.sha1(rel.encode("utf-8", "surrogateescape")).hexdigest() + ".json")


def task_name(rel: str) -> str:
    """A doit task name for a path: doit reserves ':' and '=', so they (and '%') are escaped."""
    return rel.replace("%", "%25").replace(":", "%3A").replace("=", "%3D")


# -- actions -------------------------------------------------------------------------
# Plain functions so that doit (and tests) can call them with explicit inputs.

class FlashTaskFailed(TaskFailed):  # type: ignore[misc]
    """A task that failed with a ``FlashError``: the reporter hands the error itself to the runner."""

    def __init__(self, error: FlashError) -> None:
        super().__init__(error.render())
        self.error = error


_ARGS_ONLY = inspect.Signature([inspect.Parameter("args", inspect.Parameter.VAR_POSITIONAL)])


def guarded(action: Callable[..., None]) -> Callable[..., Any]:
    """Wrap an action so a ``FlashError`` fails the task with its message, not a traceback."""

    def run(*args: Any) -> Any:
        try:
            action(*args)
        except FlashError as exc:
            return FlashTaskFailed(exc)
        return None

    run.__name__ = action.__name__
    run.__doc__ = action.__doc__
    # doit inspects every action's signature for keywords to inject; ours take
    # none, and saying so up front saves that work on every task of every run.
    run.__signature__ = _ARGS_ONLY  # type: ignore[attr-defined]
    return run


def write_file_list(config: BuildConfig, files: list[str], ignore_files: list[str]) -> None:
    write_json(config.paths.files_json, {"files": files, "ignore_files": ignore_files})


def stage_action(config: BuildConfig, files: list[str]) -> None:
    from .stage import stage_sources
    from .store import read_state

    previous = read_state(config.paths.stage_json, StageState)
    config.paths.build.mkdir(parents=True, exist_ok=True)
    record = stage_sources(
        config.app_dir, config.paths.build, files, previous.model_dump(mode="json") if previous else {}, verify=config.verify
    )
    write_json(config.paths.stage_json, StageState.model_validate(record).model_dump(mode="json"))


def scan_action(config: BuildConfig, rel: str) -> None:
    from .scan import scan_source

    try:
        data = (config.app_dir / rel).read_bytes()
    except OSError as exc:
        from .errors import BuildError

        raise BuildError(f"cannot read {rel}: {exc.strerror}", path=rel, hint="make the file readable or ignore it in .gitignore") from None
    result = scan_source(data, rel)
    # Bound to the bytes it was made from: a scan put back from an older build is not this file's.
    write_json(scan_target(config, rel), {"source_sha256": hashlib.sha256(data).hexdigest(), "scan": result})


def _load_scan(config: BuildConfig, rel: str) -> dict[str, Any]:
    """A file's scan; a missing, damaged or stale one (made from other bytes) is redone rather than trusted."""
    for _ in range(2):
        stored = read_json(scan_target(config, rel))
        scan = stored.get("scan") if isinstance(stored, dict) else None
        if isinstance(scan, dict) and scan.get("path") == rel and stored.get("source_sha256") == _source_sha256(config, rel):
            return scan
        scan_action(config, rel)
    raise BuildError(f"{rel} changed while it was being read", path=rel, hint="build again")


def _source_sha256(config: BuildConfig, rel: str) -> str | None:
    try:
        return hashlib.sha256((config.app_dir / rel).read_bytes()).hexdigest()
    except OSError:
        return None


def manifest_action(config: BuildConfig, py_files: list[str], tool: str) -> None:
    from .store import read_state

    scans = {rel: _load_scan(config, rel) for rel in py_files}
    stage = read_state(config.paths.stage_json, StageState)
    fingerprint = stage.fingerprint if stage is not None else None
    epoch = source_date_epoch()
    import datetime

    generated_at = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = read_state(config.paths.groups_json, GroupsState)
    inputs = _manifest_inputs(config, scans, generated_at, tool)
    if previous is not None and fingerprint is not None and previous.inputs == inputs and _refingerprint(config, previous, fingerprint):
        return
    from .manifest import BuildOptions, build_manifest

    options = BuildOptions(project_name=config.project_name, python_version=config.python_version, generated_at=generated_at)
    result = build_manifest(scans, options, os.environ)
    result.manifest.source_fingerprint = fingerprint
    text = result.manifest.to_json()
    # .flash/flash_manifest.json is published by the archive task, next to the artifact it describes.
    write_text_atomic(config.paths.build_manifest, text)
    write_json(config.paths.env_json, result.env_used)
    write_json(config.paths.warnings_json, [w.render() for w in result.warnings])
    groups = GroupsState(
        python_version=result.manifest.python_version,
        groups=result.groups,
        # The manifest ships as it is, so its record lives here.
        manifest_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        inputs=_manifest_inputs(config, scans, generated_at, tool),  # with the variables this run read
    )
    write_json(config.paths.groups_json, groups.model_dump(mode="json"))


def _manifest_inputs(config: BuildConfig, scans: dict[str, Any], generated_at: str, tool: str) -> str:
    """A digest of everything the manifest is made from but the source fingerprint.

    The variables are those the last manifest read (``env.json``): with the same
    scans and the same values of those, the same ones are read again.
    """
    read = read_json(config.paths.env_json)
    names = sorted(read) if isinstance(read, dict) else None
    inputs = {
        "scans": scans,
        "project": config.project_name,
        "python": config.python_version,
        "generated_at": generated_at,
        "tool": tool,
        "env": {name: os.environ.get(name) for name in names} if names is not None else None,
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _refingerprint(config: BuildConfig, groups: GroupsState, fingerprint: str) -> bool:
    """Write the last manifest again with another source fingerprint; False when it cannot be.

    An edit that leaves every scan as it was (a comment, a function's body)
    changes only the fingerprint of the sources, so the manifest need not be
    made again (nor its modules loaded). Only a manifest that is the one its
    record names, laid out as ``Manifest.to_json`` lays it out, is changed;
    the phase's other state files must be intact.
    """
    try:
        old = config.paths.build_manifest.read_bytes()
    except OSError:
        return False
    if hashlib.sha256(old).hexdigest() != groups.manifest_sha256:
        return False
    if read_json(config.paths.env_json) is None or read_json(config.paths.warnings_json) is None:
        return False
    try:
        data = json.loads(old)
    except (ValueError, RecursionError):
        return False
    if not isinstance(data, dict) or not isinstance(data.get("source_fingerprint"), str):
        return False
    if json.dumps(data, indent=2).encode("utf-8") != old:
        return False
    data["source_fingerprint"] = fingerprint
    text = json.dumps(data, indent=2)
    write_text_atomic(config.paths.build_manifest, text)
    update = {"manifest_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest()}
    write_json(config.paths.groups_json, groups.model_copy(update=update).model_dump(mode="json"))
    return True


def lock_action(config: BuildConfig, group: str) -> None:
    from .deps.tasks import lock_group_action

    lock_group_action(config, group)


def install_action(config: BuildConfig, groups: list[str]) -> None:
    from .deps.tasks import install_action as run_install

    run_install(config, groups)


def raise_error(error: FlashError) -> None:
    raise error


def handlers_action(config: BuildConfig) -> None:
    from .handlers import render_handlers, write_generated
    from .stage import remove_file
    from .store import read_state, record_tree

    manifest = json.loads(config.paths.build_manifest.read_text(encoding="utf-8"))
    files = render_handlers(manifest)
    write_generated(files, config.paths.build)
    previous = read_state(config.paths.handlers_json, HandlersState)
    for rel in set(previous.files if previous else ()) - set(files):
        remove_file(config.paths.build / rel, config.paths.build)
    state = HandlersState(files=sorted(files), copies=record_tree(config.paths.build, sorted(files)))
    write_json(config.paths.handlers_json, state.model_dump(mode="json"))


def archive_action(config: BuildConfig) -> None:
    from .package import build_archive

    build_archive(config)


def check_readable(app_dir: Path, files: list[str]) -> None:
    """Every shipped file must be readable, before doit hashes it (and fails with a traceback)."""
    for rel in files:
        try:
            with open(app_dir / rel, "rb"):
                pass
        except PermissionError:
            raise BuildError(
                f"cannot read {rel}: permission denied",
                path=rel,
                hint="make the file readable (chmod u+r), or add it to .gitignore so it does not ship",
            ) from None
        except OSError as exc:
            raise BuildError(f"cannot read {rel}: {exc.strerror}", path=rel) from None


class StampChecker(FileChangedChecker):  # type: ignore[misc]
    """doit's file check, on the whole stamp: a file whose size, mtime, ctime or inode moved is re-hashed.

    doit's own md5 checker trusts an unchanged mtime, so an edit that keeps the size
    and the modification time (a restore that sets old times, ``touch -r``) would
    leave the artifact stale. The change time cannot be set back by a program.
    """

    @staticmethod
    def _key(file_stat: os.stat_result) -> list[int]:
        return [file_stat.st_size, file_stat.st_mtime_ns, file_stat.st_ctime_ns, file_stat.st_ino]

    def check_modified(self, file_path: str, file_stat: os.stat_result, state: Any) -> bool:
        if not isinstance(state, (list, tuple)) or len(state) != 5:
            return True  # a record from another checker: look again
        if self._key(file_stat) == list(state[:4]):
            return False
        if file_stat.st_size != state[0]:
            return True
        return bool(state[4] != get_file_md5(file_path))

    def get_state(self, dep: str, current_state: Any) -> list[Any] | None:
        key = self._key(os.stat(dep))
        if isinstance(current_state, (list, tuple)) and len(current_state) == 5 and list(current_state[:4]) == key:
            return None  # unchanged: keep the saved state
        return [*key, get_file_md5(dep)]


# -- uptodate checks -----------------------------------------------------------------


class EnvUnchanged:
    """Up to date while every environment variable the manifest read keeps its value."""

    def __init__(self, env_json: Path) -> None:
        self.env_json = env_json

    def __call__(self, task: Any, values: Any) -> bool:
        recorded = read_json(self.env_json)
        if recorded is None:
            return False
        return all(os.environ.get(name) == value for name, value in recorded.items())


class TreeIntact:
    """Up to date only while the files a task wrote into the build folder are as it wrote them.

    The task's state file records each file's digest and stamp; a file changed,
    replaced or removed by hand (its stamp differs) makes the task run again,
    and the task then restores it. With ``--verify`` the task always runs.
    """

    def __init__(self, record: Path, model: type[StageState | HandlersState], build_dir: Path, verify: bool) -> None:
        self.record = record
        self.model = model
        self.build_dir = build_dir
        self.verify = verify

    def __call__(self, task: Any, values: Any) -> bool:
        from .store import read_state, tree_intact

        if self.verify:
            return False
        state = read_state(self.record, self.model)
        return state is not None and tree_intact(self.build_dir, state.copies) and self.sources_unchanged(state)

    def sources_unchanged(self, state: Any) -> bool:
        return True


class StageIntact(TreeIntact):
    """The staged copies are as the stage task wrote them, and the app's files as it copied them.

    doit takes the stamps of a task's input files after the task ran: a file
    edited after it was copied (during the build) would pass for copied. The
    stage record keeps each source's stamp from before the copy, so such a
    file makes the stage task run again (and the phases after it).
    """

    def __init__(self, config: BuildConfig) -> None:
        super().__init__(config.paths.stage_json, StageState, config.paths.build, config.verify)
        self.app = os.fspath(config.app_dir)

    def sources_unchanged(self, state: Any) -> bool:
        return not self.changed_sources(state.files)

    def changed_sources(self, recorded: dict[str, Any]) -> list[str]:
        """The app's files not as the stage record says they were when copied."""
        changed = []
        for rel, stamp in recorded.items():
            try:
                st = os.stat(os.path.join(self.app, rel))
            except OSError:
                changed.append(rel)
                continue
            if source_stamp(st) != stamp:
                changed.append(rel)
        return changed


class ManifestIntact:
    """Up to date only while the build's manifest and the manifest phase's state files check out."""

    def __init__(self, paths: Any) -> None:
        self.paths = paths

    def __call__(self, task: Any, values: Any) -> bool:
        from .store import GroupsState, read_state

        groups = read_state(self.paths.groups_json, GroupsState)
        if groups is None or read_json(self.paths.env_json) is None or read_json(self.paths.warnings_json) is None:
            return False
        try:
            data = self.paths.build_manifest.read_bytes()
        except OSError:
            return False
        return groups.manifest_sha256 == hashlib.sha256(data).hexdigest()


class LockMatches:
    """Up to date only while the lock file was made from these very inputs and is intact.

    The lock records the digest of its inputs in its header and of its own body
    in its last line; checking both costs one small read and catches a lock left
    by a build that was killed or undone, or changed by hand. A lock taken from
    the shared cache and not yet confirmed by uv (its marker is beside it) is
    never up to date, whatever doit recorded when it was written.
    """

    def __init__(self, lock: Path, digest: str) -> None:
        self.lock = lock
        self.digest = digest

    def __call__(self, task: Any, values: Any) -> bool:
        from .deps.lockfile import is_unconfirmed, lock_intact

        return lock_intact(self.lock, self.digest) and not is_unconfirmed(self.lock)


class InstallPresent:
    """Up to date only while the install record is valid, its distributions present, the SDK copy intact."""

    def __init__(self, record: Path, build_dir: Path, sdk_record: Path, verify: bool, combined_lock: Path) -> None:
        self.combined_lock = combined_lock
        self.record = record
        self.build_dir = build_dir
        self.sdk_record = sdk_record
        self.verify = verify

    def __call__(self, task: Any, values: Any) -> bool:
        from .deps.installed import file_sha256, load_install_state
        from .quick import FILLING_MARKER
        from .store import TreeRecord, load, tree_intact

        if self.verify or os.path.lexists(self.record.parent / FILLING_MARKER):
            return False
        state = load_install_state(self.record)
        if state is None or not state.lock_sha256:
            return False
        # Bound to the lock it was installed from: an older state put back is not this install.
        if file_sha256(self.combined_lock) != state.lock_sha256:
            return False
        for dist in state.distributions.values():
            if not all(os.path.lexists(self.build_dir / top) for top in dist.top_level):
                return False
        return tree_intact(self.build_dir, load(TreeRecord, self.sdk_record))


class ArtifactIntact:
    """Up to date only while the published artifact and manifest are what the last build wrote."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config

    def __call__(self, task: Any, values: Any) -> bool:
        from .store import artifact_intact

        return artifact_intact(self.config)


# -- the graph -----------------------------------------------------------------------


def _creator(make: Callable[[], Any]) -> Callable[[], Any]:
    """``make`` as doit should see it: doit reads each task creator's source to order the
    creators by line, tokenizing its whole body; this one's body is a line (in dict order,
    they then keep the order they are listed in)."""

    def creator() -> Any:
        return make()

    creator.__doc__ = make.__doc__
    return creator


def namespace(config: BuildConfig, reporter: type | None = None) -> dict[str, Any]:
    """``DOIT_CONFIG`` plus one ``task_*`` creator per phase, for ``config``."""
    from .files import scan_app_tree

    paths = config.paths
    tree = scan_app_tree(config.app_dir)
    files = tree.files
    check_readable(config.app_dir, files)
    py_files = [f for f in files if f.endswith(".py")]
    tool = tool_fingerprint()
    app = str(config.app_dir)

    def task_files() -> dict[str, Any]:
        """List the files that ship (built-in ignores + .gitignore)."""
        return {
            "actions": [(guarded(write_file_list), [config, files, tree.ignore_files])],
            "targets": [str(paths.files_json)],
            "uptodate": [config_changed({"files": files, "ignore": tree.ignore_files, "tool": tool, "app": app})],
            "verbosity": 0,
        }

    def task_stage() -> dict[str, Any]:
        """Copy changed source files into .flash/.build and fingerprint them."""
        return {
            "actions": [(guarded(stage_action), [config, files])],
            "file_dep": [str(paths.files_json)] + [str(config.app_dir / f) for f in files],
            "targets": [str(paths.stage_json)],
            "uptodate": [config_changed({"tool": tool, "app": app}), StageIntact(config)],
            "verbosity": 0,
        }

    def task_scan() -> Iterator[dict[str, Any]]:
        """Read each shipped .py file (never importing it)."""
        yield {"basename": "scan", "name": None, "doc": "Read each shipped .py file (never importing it)."}
        for rel in py_files:
            yield {
                "name": task_name(rel),
                "actions": [(guarded(scan_action), [config, rel])],
                "file_dep": [str(config.app_dir / rel)],
                "targets": [str(scan_target(config, rel))],
                "uptodate": [config_changed({"tool": tool, "app": app})],
                "verbosity": 0,
            }

    manifest_config = {
        "tool": tool,
        "app": app,
        "python_version": config.python_version,
        "project": config.project_name,
        "files": py_files,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH"),
    }

    def task_manifest() -> dict[str, Any]:
        """Join the scans into flash_manifest.json."""
        return {
            "actions": [(guarded(manifest_action), [config, py_files, tool])],
            "file_dep": [str(scan_target(config, f)) for f in py_files] + [str(paths.stage_json)],
            "targets": [str(paths.build_manifest), str(paths.groups_json), str(paths.env_json), str(paths.warnings_json)],
            "uptodate": [config_changed(manifest_config), EnvUnchanged(paths.env_json), ManifestIntact(paths)],
            "verbosity": 0,
        }

    deps_config = {
        "tool": tool,
        "app": app,
        "no_deps": config.no_deps,
        "exclude": list(config.excluded),
        "runpod_flash": config.runpod_flash_version,
        "find_links": list(config.find_links),
        "no_index": config.no_index,
        "index_url": config.index_url,
    }

    def current_groups() -> dict[str, Any]:
        from .store import GroupsState, read_state

        state = read_state(paths.groups_json, GroupsState)
        return state.model_dump(mode="json") if state is not None else {"python_version": None, "groups": {}}

    def failing(error: FlashError) -> dict[str, Any]:
        return {"name": "requirements", "actions": [(guarded(raise_error), [error])], "verbosity": 0}

    def task_lock() -> Iterator[dict[str, Any]]:
        """Resolve each resource group's requirements into a lock file."""
        from .deps.tasks import lock_path, planned_locks

        yield {"basename": "lock", "name": None, "doc": "Resolve each resource group's requirements into a lock file."}
        try:
            plan = planned_locks(config, tool)
        except FlashError as exc:
            yield failing(exc)
            return
        for group in sorted(plan.digests):
            yield {
                "name": task_name(group),
                "actions": [(guarded(lock_action), [config, group])],
                "file_dep": plan.files,
                "targets": [str(lock_path(config, group))],
                # --upgrade forces a new resolution; otherwise the inputs' digest decides.
                "uptodate": [
                    config_changed({**deps_config, "digest": plan.digests[group]}),
                    LockMatches(lock_path(config, group), plan.digests[group]),
                ]
                + ([False] if config.upgrade else []),
                "verbosity": 0,
            }

    def task_install() -> dict[str, Any]:
        """Install the locked distributions into .flash/.build."""
        from .deps.tasks import lock_path

        info = current_groups()
        groups = sorted(info["groups"])
        return {
            "actions": [(guarded(install_action), [config, groups])],
            "file_dep": [str(lock_path(config, g)) for g in groups],
            "task_dep": ["lock"],
            "targets": [str(paths.install_json)],
            "uptodate": [
                config_changed({**deps_config, "groups": groups, "python": info["python_version"]}),
                InstallPresent(paths.install_json, paths.build, paths.sdk_copy_json, config.verify, paths.combined_lock),
            ],
            "verbosity": 0,
        }

    def task_handlers() -> dict[str, Any]:
        """Generate the worker handlers and the resource-config module."""
        return {
            "actions": [(guarded(handlers_action), [config])],
            "file_dep": [str(paths.build_manifest), str(paths.install_json)],
            "task_dep": ["install"],
            "targets": [str(paths.handlers_json)],
            "uptodate": [config_changed({"tool": tool, "app": app}), TreeIntact(paths.handlers_json, HandlersState, paths.build, config.verify)],
            "verbosity": 0,
        }

    def task_archive() -> dict[str, Any]:
        """Pack the build's files into the artifact (reproducible tar.gz) and publish the manifest."""
        return {
            "actions": [(guarded(archive_action), [config])],
            "file_dep": [str(paths.stage_json), str(paths.handlers_json), str(paths.build_manifest), str(paths.install_json)],
            "task_dep": ["handlers"],
            "targets": [str(paths.artifact), str(paths.manifest)],
            "uptodate": [
                config_changed(
                    {"tool": tool, "app": app, "exclude": list(config.excluded), "epoch": source_date_epoch(), "out": config.output}
                ),
                ArtifactIntact(config),
            ]
            + ([False] if config.verify else []),
            "verbosity": 0,
        }

    doit_config: dict[str, Any] = {
        "dep_file": str(paths.db),
        "backend": "sqlite3",
        "default_tasks": ["archive"],
        "check_file_uptodate": StampChecker,
        "verbosity": 0,
    }
    if reporter is not None:
        doit_config["reporter"] = reporter
    creators: dict[str, Callable[..., Any]] = {
        "task_files": _creator(task_files),
        "task_stage": _creator(task_stage),
        "task_scan": _creator(task_scan),
        "task_manifest": _creator(task_manifest),
        # The groups come from the manifest: these are created once it ran.
        "task_lock": create_after(executed="manifest")(_creator(task_lock)),
        "task_install": create_after(executed="manifest")(_creator(task_install)),
        "task_handlers": _creator(task_handlers),
        "task_archive": _creator(task_archive),
    }
    return {"DOIT_CONFIG": doit_config, **creators}


def dodo_namespace(
    app: str | Path,
    *,
    python_version: str | None = None,
    no_deps: bool = False,
    exclude: str = "",
    output: str = "artifact.tar.gz",
    **options: Any,
) -> dict[str, Any]:
    """What a ``dodo.py`` needs to build ``app`` with plain ``doit``.

    Usage in a dodo.py: ``globals().update(dodo_namespace("."))``. Other
    ``BuildConfig`` fields (``find_links``, ``index_url``...) pass through.
    """
    config = BuildConfig(
        app_dir=Path(app),
        python_version=python_version,
        no_deps=no_deps,
        exclude=tuple(e for e in exclude.split(",") if e),
        output=output,
        **options,
    )
    config.paths.state.mkdir(parents=True, exist_ok=True)
    from .quick import forget

    forget(config.app_dir)  # plain doit may change what flash build's no-op record describes
    return namespace(config)
