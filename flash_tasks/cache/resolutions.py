"""Resolutions kept in the caches: a group's lock body under everything that decides it.

``uv pip compile`` of the same requirements, constraints and settings against
the same index gives the same lock body; so once one app has resolved a set of
inputs, another app can start from that body instead of waiting for uv's round
trips to the index (``deps.speculation``). The key covers the lock's inputs
digest (requirement and constraint texts, target Python and platform, excluded
packages, ``--no-deps``, index settings, hashes; ``locks.lock_inputs_digest``),
the index locations as uv is given them (local folders resolved), the uv
environment variables that choose an index, and uv's version.

A body from a cache is never trusted as it is: the build that uses one runs
uv with the same arguments before it publishes anything, and builds again from
uv's answer when the two differ (an index that moved on is the usual reason).
Records live in the local cache as small action records (and on the remote
under ``ac/``); pruning the local cache may drop them with the install records.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING

from pydantic import ValidationError

from ..store import Record, load
from . import KEY_VERSION, _first_found, _session, uv_version
from .local import _touch

if TYPE_CHECKING:
    from ..deps.settings import DepsSettings
    from .local import LocalCache
    from .remote import RemoteCache

RESOLUTION_KIND = "resolution"
#: uv's environment variables that choose where packages come from (the build passes them on).
INDEX_ENV = ("UV_INDEX", "UV_DEFAULT_INDEX", "UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_FIND_LINKS", "UV_NO_INDEX", "UV_INDEX_STRATEGY", "UV_EXCLUDE_NEWER", "UV_KEYRING_PROVIDER")


class ResolutionAction(Record):
    """A lock body as ``uv pip compile`` wrote it, and the key it was kept under."""

    kind: str
    key: str
    body: str


def resolution_key(digest: str, settings: DepsSettings) -> str | None:
    """The key of the resolution of inputs with ``digest`` (``lock_inputs_digest``); None without a known uv."""
    uv = uv_version()
    if not uv:
        return None
    material = [
        "flash-tasks",
        RESOLUTION_KIND,
        KEY_VERSION,
        digest,
        uv,
        settings.index.uv_args(),  # local find-links folders as absolute paths
        {name: os.environ.get(name) for name in INDEX_ENV},
    ]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


def _parse(data: bytes, key: str) -> str | None:
    try:
        record = ResolutionAction.model_validate_json(data)
    except (ValidationError, ValueError):
        return None
    if record.kind != RESOLUTION_KIND or record.key != key:
        return None
    return record.body


def find_resolution(key: str) -> str | None:
    """The lock body kept under ``key``: the local cache first, then the remote; None on a miss."""
    session = _session()

    def local(cache: LocalCache) -> str | None:
        path = cache.action_path(key)
        record = load(ResolutionAction, path)
        if record is None or record.kind != RESOLUTION_KIND or record.key != key:
            return None
        _touch(path)
        return record.body

    def remote(cache: RemoteCache) -> str | None:
        data = cache.get_small(f"ac/{key}")
        return _parse(data, key) if data is not None else None

    return _first_found(session, local, remote)


def has_resolution(key: str) -> bool:
    """Whether the local cache holds a resolution under ``key`` (a remote is not asked)."""
    local = _session().local
    return local is not None and load(ResolutionAction, local.action_path(key)) is not None


def keep_resolution(key: str, body: str) -> None:
    """Keep ``body`` under ``key`` in the local cache, and queue it for the remote (sent after the artifact)."""
    session = _session()
    sends = session.remote is not None and not session.settings.read_only
    if session.local is None and not sends:
        return
    data = ResolutionAction(kind=RESOLUTION_KIND, key=key, body=body).model_dump_json().encode("utf-8")
    local = session.local
    if local is not None:
        try:
            local.put_bytes(key, data)
        except OSError as exc:
            session.local_failed(exc)
    if sends:
        with session.lock:
            session.record_uploads[key] = data
