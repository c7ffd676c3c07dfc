"""Why a task ran, in words: ``flash build --explain`` and ``-v``.

doit decides with ``Dependency.get_status``; asked again with ``get_log=True``
just before the task runs (state is still as it was) it returns every reason,
not only the first. This module turns those reasons into short phrases that
name the input that changed: a source file, a flag, an environment variable,
a missing output, or "never built". doit keeps only a digest of a task's
``config_changed`` values, so the runner keeps the values themselves in
``.flash/.state/task-configs.json``; a changed value is named with its old and
new value.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..config import BuildConfig
from ..stage import read_json

#: How many file names one reason lists before "and N more".
SHOWN = 4

_STATE_NAMES = {
    ".flash/.state/files.json": "the list of shipped files",
    ".flash/.state/stage.json": "the staged sources",
    ".flash/.state/handlers.json": "the generated handlers",
    ".flash/.state/installed.json": "the installed packages",
    ".flash/flash_manifest.json": "the manifest",
    ".flash/.build/flash_manifest.json": "the manifest",
}

_CONFIG_KEYS = {
    "python_version": "--python-version",
    "no_deps": "--no-deps",
    "exclude": "--exclude",
    "out": "--output",
    "find_links": "--find-links",
    "no_index": "--no-index",
    "index_url": "--index-url",
    "epoch": "SOURCE_DATE_EPOCH",
    "runpod_flash": "the bundled runpod-flash version",
    "project": "the project name",
    "python": "the target Python",
}


def listing(items: list[str], limit: int = SHOWN) -> str:
    """``a``, ``a and b``, ``a, b and c``, ``a, b, c, d and 2 more``."""
    if len(items) > limit:
        return ", ".join(items[:limit]) + f" and {len(items) - limit} more"
    if len(items) > 1:
        return ", ".join(items[:-1]) + " and " + items[-1]
    return "".join(items)


def _value(value: Any) -> str:
    if value is None:
        return "default"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]" if value else "none"
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Explainer:
    """Reasons for one build's tasks; needs doit's dependency manager while doit runs."""

    def __init__(self, config: BuildConfig) -> None:
        self.config = config
        self._previous: dict[str, Any] | None = None
        self._scan_names: dict[str, str] | None = None

    # -- paths -----------------------------------------------------------------------

    def show(self, path: str | Path) -> str:
        """A file the way a user thinks of it: relative to the app, state files by role."""
        p = Path(path)
        try:
            rel = p.relative_to(self.config.app_dir).as_posix()
        except ValueError:
            return str(p)
        if rel in _STATE_NAMES:
            return _STATE_NAMES[rel]
        if p.parent == self.config.paths.scans:
            return f"the scan of {self._scanned_files().get(p.name, p.name)}"
        if rel.startswith(".flash/locks/") and rel.endswith(".txt"):
            return f"the lock of {rel[len('.flash/locks/'):-4]}"
        return rel

    def _scanned_files(self) -> dict[str, str]:
        """Scan file name -> the source file it describes (scan files are named by hash)."""
        if self._scan_names is None:
            from ..graph import scan_target
            from ..stage import read_json

            files = (read_json(self.config.paths.files_json, {}) or {}).get("files", [])
            self._scan_names = {scan_target(self.config, rel).name: rel for rel in files if rel.endswith(".py")}
        return self._scan_names

    def _files(self, paths: list[str]) -> list[str]:
        return [self.show(p) for p in sorted(paths)]

    # -- reasons -----------------------------------------------------------------------

    def why_skipped(self, task: Any) -> list[str]:
        inputs = len(task.file_dep)
        if inputs:
            return [f"up to date: its {inputs} input file{'s' if inputs != 1 else ''} and settings are unchanged"]
        return ["up to date: its settings are unchanged"]

    def why_run(self, task: Any, tasks: dict[str, Any]) -> list[str]:
        from doit.globals import Globals

        dep = Globals.dep_manager
        if dep is None:  # not under doit's run command
            return ["out of date"]
        if dep._get(task.name, "checker:") is None:
            # doit forgets a task whose run failed; our own record outlives that.
            if self._previous_config(task.name) is not None:
                return ["its last run failed or was interrupted"]
            return ["never built"]
        status = dep.get_status(task, tasks, get_log=True)
        found: dict[str, Any] = status.reasons
        reasons: list[str] = []
        changed_inputs = set(found.get("changed_file_dep") or [])
        for utd, _args, _kwargs in found.get("uptodate_false", []):
            reasons.extend(self._uptodate(task, utd, changed_inputs))
        if found.get("has_no_dependencies"):
            reasons.append("always runs (it declares no inputs)")
        missing_targets = found.get("missing_target", [])
        if missing_targets:
            reasons.append(f"output missing: {listing(self._files(missing_targets))}")
        if "checker_changed" in found:
            reasons.append("the file-change checker changed")
        added = found.get("added_file_dep") or []
        removed = found.get("removed_file_dep") or []
        if added:
            reasons.append(f"new input{'s' if len(added) > 1 else ''}: {listing(self._files(added))}")
        if removed:
            reasons.append(f"input{'s' if len(removed) > 1 else ''} gone: {listing(self._files(removed))}")
        changed = [p for p in found.get("changed_file_dep") or [] if p not in added]
        if changed:
            names = self._files(changed)
            reasons.append(f"{listing(names)} changed")
        missing = found.get("missing_file_dep") or []
        if missing:
            reasons.append(f"input missing: {listing(self._files(missing))}")
        return reasons or ["out of date"]

    def _previous_config(self, task_name: str) -> Any:
        if self._previous is None:
            from ..runner import task_configs_path

            self._previous = read_json(task_configs_path(self.config), {}) or {}
        return self._previous.get(task_name)

    def _uptodate(self, task: Any, utd: Any, changed_inputs: set[str]) -> list[str]:
        from doit.tools import config_changed

        from ..graph import (
            ArtifactIntact,
            EnvUnchanged,
            InstallPresent,
            LockMatches,
            ManifestIntact,
            StageIntact,
            TreeIntact,
        )
        from ..store import StageState, read_state, tree_intact

        if isinstance(utd, config_changed):
            return self._config_reasons(task, utd.config)
        if isinstance(utd, EnvUnchanged):
            recorded = read_json(utd.env_json) or {}
            names = sorted(n for n, v in recorded.items() if os.environ.get(n) != v)
            if names:
                return [f"environment variable{'s' if len(names) > 1 else ''} {listing(names)} changed"]
            return ["the environment variables its endpoints read changed"]
        if isinstance(utd, TreeIntact):
            if utd.verify:
                return ["--verify: re-reading its outputs"]
            data = read_json(utd.record, {})
            copies = data.get("copies", {}).get("files", {}) if isinstance(data.get("copies"), dict) else {}
            gone = [rel for rel in copies if not os.path.lexists(utd.build_dir / rel)]
            if gone:
                return [f"missing from .flash/.build: {listing(sorted(gone))}"]
            if not copies:
                return ["its record is missing or damaged"]
            stage = read_state(utd.record, StageState) if isinstance(utd, StageIntact) else None
            if isinstance(utd, StageIntact) and stage is not None and tree_intact(utd.build_dir, stage.copies):
                # The copies are fine: a source is not as it was when copied. Said here only when
                # doit's own check of the inputs missed it (it changed while the last build ran).
                moved = [rel for rel in utd.changed_sources(stage.files) if str(self.config.app_dir / rel) not in changed_inputs]
                return [f"changed after it was copied: {listing(sorted(moved))}"] if moved else []
            return ["its outputs in .flash/.build were changed"]
        if isinstance(utd, InstallPresent):
            if utd.verify:
                return ["--verify: re-reading installed packages"]
            return ["installed packages in .flash/.build are missing or changed, or their record is damaged"]
        if isinstance(utd, ManifestIntact):
            return ["the manifest or its state files were changed or damaged"]
        if isinstance(utd, LockMatches):
            from ..deps.lockfile import is_unconfirmed

            if is_unconfirmed(utd.lock):
                return ["its lock came from the shared cache and uv has not confirmed it yet"]
            return ["its lock file is missing, damaged or made from other inputs"]
        if isinstance(utd, ArtifactIntact):
            if not os.path.lexists(self.config.paths.artifact):
                return []  # doit says the output is missing
            return ["the published artifact or manifest was changed or damaged"]
        if utd is False:
            if task.name.startswith("lock:") and self.config.upgrade:
                return ["--upgrade: resolving again"]
            return ["always runs"]
        return [f"{getattr(utd, '__name__', type(utd).__name__)} reported a change"]

    def _config_reasons(self, task: Any, current: Any) -> list[str]:
        previous = self._previous_config(task.name)
        if not isinstance(current, dict) or not isinstance(previous, dict):
            return ["its settings changed (flags, tool version or file list)"]
        reasons: list[str] = []
        for key in sorted(set(previous) | set(current)):
            old, new = previous.get(key), current.get(key)
            if old == new:
                continue
            if key == "tool":
                reasons.append("flash-tasks itself changed (new version or edited code)")
            elif key == "app":
                reasons.append(f"the app folder moved (was {old})")
            elif key in ("files", "ignore") and isinstance(old, list) and isinstance(new, list):
                plus = sorted(set(new) - set(old))
                minus = sorted(set(old) - set(new))
                what = "shipped files" if key == "files" else "ignore files"
                parts = [f"+{p}" for p in plus] + [f"-{m}" for m in minus]
                reasons.append(f"{what} changed: {listing(parts)}" if parts else f"{what} reordered")
            elif key == "digest":
                reasons.append("its requirements or resolution settings changed")
            elif key == "groups":
                reasons.append(f"resource groups changed: {_value(old)} -> {_value(new)}")
            else:
                label = _CONFIG_KEYS.get(key, key)
                reasons.append(f"{label} changed: {_value(old)} -> {_value(new)}")
        return reasons or ["its settings changed"]
