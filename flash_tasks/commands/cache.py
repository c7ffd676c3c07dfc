"""``flash cache info|prune|clear``: look after the shared per-user cache of dependency segments."""

from __future__ import annotations

import json
from typing import IO

from ..cache import parse_size, settings
from ..cache.local import LocalCache
from ..errors import UsageError
from .output import Console, format_size


def _cache() -> LocalCache:
    chosen = settings()
    if chosen.local_dir is None:
        raise UsageError("the shared cache is turned off (FLASH_TASKS_CACHE_MAX=0)", hint="unset FLASH_TASKS_CACHE_MAX to use it")
    return LocalCache(chosen.local_dir, chosen.max_bytes)


def _verb(console: Console, word: str) -> str:
    """A verb right-aligned in 12 columns, as ``flash build`` shows its phases."""
    return " " * max(12 - len(word), 0) + console.style(word, "green", "bold")


def cache_command(action: str, *, max_size: str | None, as_json: bool, console: Console, out: IO[str]) -> int:
    """Run one cache action; returns the exit code."""
    cache = _cache()
    if action == "info":
        usage = cache.usage()
        chosen = settings()
        if as_json:
            data = {
                "path": str(cache.root),
                "blobs": usage.blobs,
                "bytes": usage.blob_bytes,
                "actions": usage.actions,
                "max_bytes": cache.max_bytes,
                "remote": chosen.remote_url,
            }
            out.write(json.dumps(data, indent=2) + "\n")
            return 0
        console.line(f"{'Location':>12} {cache.root}")
        console.line(f"{'Size':>12} {format_size(usage.blob_bytes)} of {format_size(cache.max_bytes)} ({usage.blobs} blobs, {usage.actions} records)")
        if chosen.remote_url:
            from ..cache.remote import redact

            console.line(f"{'Remote':>12} {redact(chosen.remote_url)}{' (read only)' if chosen.read_only else ''}")
        return 0
    if action == "prune":
        limit = parse_size(max_size, "--max") if max_size is not None else cache.max_bytes
        pruned = cache.prune(limit)
        console.line(
            f"{_verb(console, 'Pruned')} {pruned.blobs} blobs, {format_size(pruned.blob_bytes)}"
            f" (now {format_size(cache.usage().blob_bytes)} of {format_size(limit)})"
        )
        return 0
    if action == "clear":
        before = cache.clear()
        console.line(f"{_verb(console, 'Cleared')} {cache.root}: {before.blobs} blobs, {format_size(before.blob_bytes)}")
        return 0
    raise UsageError(f"unknown cache action {action!r}", hint="use info, prune or clear")
