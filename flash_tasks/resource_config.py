"""The resource-config module a build ships at ``RESOURCE_CONFIG_PATH``: which
endpoint functions are local to which resource, so a worker can tell a call it
runs in-process from one it sends to another resource.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Template
from typing import Any

RESOURCE_CONFIG_PATH = "runpod_flash/runtime/_flash_resource_config.py"
"""Artifact-relative location of the generated resource-config module."""

_RESOURCE_CONFIG_MODULE = Template('''\
"""Which endpoint functions run in which resource of this app.

Built by flash build from flash_manifest.json (generated_at: $generated_at_repr).
A worker learns its own resource from FLASH_RESOURCE_NAME; a function owned by
that resource runs in-process, one owned by another resource is called remotely.
Edits are lost on the next build.
"""

import os

# resource name -> names of the functions (and classes) it owns
RESOURCE_LOCAL_FUNCTIONS: dict[str, set[str]] = {
$resource_lines}

# every function name in the manifest's function registry
ALL_KNOWN_FUNCTIONS: set[str] = $all_known


def _local_functions(resource):
    """Functions of ``resource``, tolerating the "-fb" suffix Runpod used to
    append to flashboot endpoint names (in either direction)."""
    for candidate in (resource, resource + "-fb", resource.removesuffix("-fb")):
        found = RESOURCE_LOCAL_FUNCTIONS.get(candidate)
        if found is not None:
            return found
    return set()


def is_local_function(func_name: str) -> bool:
    """True when ``func_name`` should execute in this worker process.

    Without FLASH_RESOURCE_NAME, or for names this manifest does not know,
    the answer is True: running locally is the safe default. Only a function
    known to belong to another resource is reported as remote.
    """
    current = os.getenv("FLASH_RESOURCE_NAME")
    if not current:
        return True
    if func_name in _local_functions(current):
        return True
    return func_name not in ALL_KNOWN_FUNCTIONS
''')


def render_resource_config(
    resources: Mapping[str, Any], registry: Mapping[str, Any], generated_at: str
) -> str:
    """Source of ``_flash_resource_config.py``.

    ``resources`` and ``registry`` are the manifest's ``resources`` and
    ``function_registry``. Every resource appears as a key (possibly with an
    empty set) and all collections are sorted, so the text does not depend on
    manifest order.
    """
    owned: dict[str, set[str]] = {str(name): set() for name in resources}
    for func_name, owner in registry.items():
        if owner in owned:
            owned[owner].add(str(func_name))
    resource_lines = "".join(
        f"    {name!r}: {_set_literal(owned[name])},\n" for name in sorted(owned)
    )
    return _RESOURCE_CONFIG_MODULE.substitute(
        generated_at_repr=repr(generated_at),
        resource_lines=resource_lines,
        all_known=_set_literal({str(f) for f in registry}),
    )


def _set_literal(items: set[str]) -> str:
    """Deterministic set display; ``{}`` would be a dict, hence ``set()``."""
    if not items:
        return "set()"
    return "{" + ", ".join(repr(item) for item in sorted(items)) + "}"
