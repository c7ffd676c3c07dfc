"""``flash deploy``: runpod-flash's own deploy, with flash-tasks' build as its build step.

runpod-flash's ``deploy`` command builds the app (``run_build`` in its deploy
module), then uploads the artifact with the manifest and provisions the
endpoints. ``flash deploy`` runs that same command, in this process, with its
options, help, messages and exit codes, and with one change: the build step is
flash-tasks' incremental build. So a deploy after an edit costs the rebuild of
what changed plus the upload.

Two things are kept from runpod-flash's build: the artifact bundles the
runpod-flash installed here (unless the app pins ``[tool.flash-tasks]
runpod-flash-version``), and ``--app`` names the app to deploy to (the
manifest's ``project_name`` stays the folder's name, where runpod-flash's
build would write the ``--app`` name; a note says so). Its deploy
deletes ``.flash/.build`` when it is done; that folder is flash-tasks' build
tree, kept so the next build stays incremental.

The swap only happens when runpod-flash's ``run_build`` takes the parameters
this module passes; otherwise (another runpod-flash release, or runpod-flash
in a separate ``uv tool`` environment) the command is forwarded untouched and
runpod-flash builds with its own build, which a note on stderr says.
"""

from __future__ import annotations

import importlib
import inspect
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..forward import InProcess, Target, forward, run_in_process

DEPLOY_MODULE = "runpod_flash.cli.commands.deploy"
#: What runpod-flash 1.21.0's deploy passes to its build step (keyword arguments).
BUILD_PARAMETERS = frozenset({"project_dir", "app_name", "no_deps", "output_name", "exclude", "python_version"})


def flash_tasks_build(sdk_version: str) -> Callable[..., Path]:
    """A stand-in for runpod-flash's ``run_build``: build with flash-tasks, return the artifact."""

    def run_build(
        project_dir: Path,
        app_name: str,
        no_deps: bool = False,
        output_name: str | None = None,
        exclude: str | None = None,
        python_version: str | None = None,
        **_ignored: Any,
    ) -> Path:
        from ..config import DEFAULT_ARTIFACT, BuildConfig, _pyproject_sdk_version
        from ..errors import FlashError
        from .build import BuildOptions, build_once
        from .output import Console, render_error

        try:
            config = BuildConfig(
                app_dir=Path(project_dir),
                no_deps=no_deps,
                output=output_name or DEFAULT_ARTIFACT,
                exclude=tuple(exclude.split(",")) if exclude else (),
                python_version=python_version,
                runpod_flash_version=_pyproject_sdk_version(Path(project_dir)) or sdk_version,
            )
            if app_name != config.project_name:
                sys.stderr.write(
                    f"note: deploying to app {app_name!r}; the manifest's project_name stays {config.project_name!r} (the folder's name)\n"
                )
            build_once(config, BuildOptions(), sys.stdout, sys.stderr)
        except FlashError as exc:
            sys.stderr.write(render_error(exc, Console.create(sys.stderr, "auto")) + "\n")
            raise SystemExit(exc.exit_code) from None
        return config.paths.artifact

    return run_build


class _KeepBuildTree:
    """runpod-flash's deploy module's view of ``shutil``: everything, except deleting ``keep``."""

    def __init__(self, keep: Path) -> None:
        self._keep = keep.resolve()

    def rmtree(self, path: Any, *args: Any, **kwargs: Any) -> None:
        if Path(path).resolve() == self._keep:
            return
        shutil.rmtree(path, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(shutil, name)


def wireable(module: ModuleType) -> bool:
    """Whether ``module`` is a deploy module whose build step takes what flash-tasks passes."""
    original = getattr(module, "run_build", None)
    if original is None or not callable(original) or getattr(module, "shutil", None) is not shutil:
        return False
    try:
        parameters = set(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return False
    return parameters >= BUILD_PARAMETERS


def deploy(argv: Sequence[str], target: Target | None) -> int:
    """``flash deploy ARGS``: runpod-flash's deploy, building with flash-tasks when it can."""
    asks_help = any(a in ("-h", "--help") for a in argv)
    if not isinstance(target, InProcess):
        if target is not None and not asks_help:
            sys.stderr.write(
                "note: runpod-flash runs from its own uv tool environment, so its deploy builds with its own build;\n"
                "      to deploy the flash-tasks build, install both in one environment (see the README)\n"
            )
        return forward(argv, target)
    try:
        module = importlib.import_module(DEPLOY_MODULE)
    except ImportError:
        module = None
    if module is None or not wireable(module):
        if not asks_help:
            sys.stderr.write(
                f"note: {target.describe()}'s deploy cannot take the flash-tasks build; it builds with its own\n"
            )
        return run_in_process(target, argv)
    original_build = module.run_build
    module.run_build = flash_tasks_build(target.version)  # type: ignore[attr-defined]
    module.shutil = _KeepBuildTree(Path.cwd() / ".flash" / ".build")  # type: ignore[attr-defined]
    try:
        return run_in_process(target, argv)
    finally:
        module.run_build = original_build  # type: ignore[attr-defined]
        module.shutil = shutil  # type: ignore[attr-defined]
