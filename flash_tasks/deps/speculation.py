"""Speculative resolution: a group's lock from the shared cache at once, uv's own answer before publishing.

A cold build of an app whose requirements another app already resolved would
wait for ``uv pip compile`` only to revalidate the index pages it has cached.
Instead, when a group has no usable lock, ``--upgrade`` is not set and the
caches hold a resolution of the same inputs (``cache.resolutions``), that
resolution is written as the group's lock at once, marked unconfirmed
(``locks.UnconfirmedLock``), and the same ``uv pip compile`` that would have
run (same inputs, same preferences) runs on a background thread while the
build installs, generates and packs.

``confirm`` waits for those checks; the archive step calls it before it
publishes, the runner after the graph has run (whatever happened in it):

* uv's lock equals the speculative one byte for byte: the marker goes, and the
  lock is what a build without the cache would have written;
* it differs: uv's lock replaces the speculative one and the runner runs the
  graph again, which installs from it (removing what it no longer holds) and
  packs again; nothing made from the speculative lock is published;
* uv fails: its error is the build's error, as it would have been at the lock
  step, and the lock stays marked: the next build checks it again.

Groups of one build with the same inputs share one check, as they share one
resolution otherwise (``tasks._copy_peer_lock``).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import FlashError, ResolutionChanged
from .locks import GroupResolution, _write_atomic, clear_unconfirmed, parse_lock

if TYPE_CHECKING:
    from ..config import BuildConfig

Outcome = Literal["confirmed", "changed", "failed"]


@dataclass(frozen=True)
class CheckResult:
    """What uv's check said of one group's lock from the cache."""

    group: str
    outcome: Outcome


@dataclass
class _Check:
    """uv's resolution of one set of inputs, running, and the locks written from the cache for it."""

    resolution: GroupResolution
    key: str | None
    #: The lock body the cache gave.
    body: str
    future: Future[str]
    #: Each lock written for it: the group's name and the text written.
    locks: dict[Path, tuple[str, str]] = field(default_factory=dict)


#: The checks of the build running in this process, per app (its locks folder), by input digest.
_CHECKS: dict[Path, dict[str, _Check]] = {}
#: What the checks of each app's build said, for the runner to report.
_RESULTS: dict[Path, list[CheckResult]] = {}


def _app(config: BuildConfig) -> Path:
    return config.paths.locks.absolute()


def lock(config: BuildConfig, resolution: GroupResolution, *, from_cache: bool = True) -> None:
    """Write ``resolution``'s group lock: from the shared cache (checked later) when it can, else from uv now.

    What uv resolves is kept in the shared cache for other apps. ``from_cache``
    False (``--upgrade``) always asks uv now.
    """
    checks = _CHECKS.setdefault(_app(config), {})
    running = checks.get(resolution.digest) if from_cache else None
    if running is not None:
        # Another group of this build with the same inputs waits for uv's answer: share it, as a
        # build without the cache copies that group's lock.
        text = resolution.render(running.body)
        resolution.write_unconfirmed(text)
        running.locks[resolution.lock_path] = (resolution.group.name, text)
        return
    from ..cache.resolutions import find_resolution, keep_resolution, resolution_key

    key = resolution_key(resolution.digest, resolution.settings)
    cached = find_resolution(key) if key is not None and from_cache else None
    text = resolution.render(cached) if cached is not None else ""
    if cached is not None and _usable(text, resolution.lock_path):
        resolution.write_unconfirmed(text)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flash-resolve")
        # Captured, never drawn on the terminal: the build's own output goes on meanwhile.
        future = pool.submit(resolution.resolve, quiet=True)
        pool.shutdown(wait=False)
        checks[resolution.digest] = _Check(resolution, key, cached, future, {resolution.lock_path: (resolution.group.name, text)})
        return
    body = resolution.resolve()
    resolution.write(body)
    if key is not None and _worth_keeping(key, resolution):
        keep_resolution(key, body)


def _usable(text: str, lock_path: Path) -> bool:
    """Whether a cached body reads as a lock at all (anything else is a miss: uv resolves now)."""
    try:
        parse_lock(text, lock_path.name)
    except (ValueError, FlashError):  # a line that is not a pin: BuildError
        return False
    return True


def _worth_keeping(key: str, resolution: GroupResolution) -> bool:
    """A fresh resolution is kept for other apps; one steered by an older lock's pins only if none is kept yet."""
    if not resolution.preferences:
        return True
    from ..cache.resolutions import has_resolution

    return not has_resolution(key)


def pending(config: BuildConfig) -> bool:
    """Whether checks of this app's build are still to be waited for."""
    return bool(_CHECKS.get(_app(config)))


def settle(config: BuildConfig) -> bool:
    """Wait for every check of this app's build; True when uv's lock replaced one from the cache.

    Raises the first failed check's error (in the order the locks were made,
    the order a build without the cache would have met it), after the other
    checks are settled.
    """
    checks = _CHECKS.pop(_app(config), {})
    results = _RESULTS.setdefault(_app(config), [])
    changed = False
    error: FlashError | None = None
    for check in checks.values():
        try:
            body = check.future.result()
        except FlashError as exc:
            error = error or exc
            results.extend(CheckResult(name, "failed") for name, _ in check.locks.values())
            continue
        differs = body != check.body
        for path, (name, text) in check.locks.items():
            fresh = check.resolution.render(body, name)
            if fresh != text:
                _write_atomic(path, fresh)  # uv's lock, as a build without the cache writes it
            clear_unconfirmed(path)  # only now: a kill before this leaves the lock marked
            results.append(CheckResult(name, "changed" if fresh != text else "confirmed"))
        if differs and check.key is not None and _worth_keeping(check.key, check.resolution):
            from ..cache.resolutions import keep_resolution

            keep_resolution(check.key, body)
        changed = changed or differs
    if error is not None:
        raise error
    return changed


def confirm(config: BuildConfig) -> None:
    """Before publishing: the checks are settled, and nothing from a lock uv did not confirm goes out."""
    if pending(config) and settle(config):
        raise ResolutionChanged("a dependency resolution taken from the shared cache was not uv's: building again from uv's")


def end_build(config: BuildConfig) -> list[CheckResult]:
    """The build of this app is over: what its checks said (each once); unsettled ones are forgotten.

    A check not settled (the build was interrupted) leaves its locks marked, so
    the next build checks them again; its uv run ends on its own.
    """
    global _LAST
    _CHECKS.pop(_app(config), None)
    _LAST = _RESULTS.pop(_app(config), [])
    return list(_LAST)


_LAST: list[CheckResult] = []


def last_results() -> list[CheckResult]:
    """What the checks of the last build in this process said."""
    return list(_LAST)
