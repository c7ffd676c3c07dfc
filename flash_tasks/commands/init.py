"""``flash init [DIR]``: a starter app that builds as it is.

The starter is ``flash_tasks/templates/app/``, a copy of the repository's
``.flash-template/`` that ships inside the package (``pyproject.toml``'s
package-data). ``sync_template`` regenerates it (``python
scripts/sync_template.py``); a test fails when the two differ.

Existing files are never overwritten without ``--force``; other files in DIR
are left alone. The project name in ``pyproject.toml`` and the README title
become DIR's name.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from ..errors import FlashError, UsageError
from .output import Console, plural

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "app"
#: Never part of the starter, wherever the template was copied from.
SKIPPED = frozenset({".flash", "__pycache__", ".pytest_cache", ".venv"})
TEMPLATE_PROJECT = "hello-flash"


def template_files(root: Path = TEMPLATE) -> list[str]:
    """The starter's files, relative POSIX paths, sorted."""
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if SKIPPED.intersection(rel.parts) or path.suffix == ".pyc" or not path.is_file():
            continue
        found.append(rel.as_posix())
    return sorted(found)


def project_name(directory: Path) -> str:
    """A PEP 508 project name from a folder name: ``My App`` -> ``my-app``."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", directory.name).strip("-._").lower()
    return name or TEMPLATE_PROJECT


def _personalise(rel: str, data: bytes, name: str) -> bytes:
    if name == TEMPLATE_PROJECT:
        return data
    if rel == "pyproject.toml":
        return data.replace(f'name = "{TEMPLATE_PROJECT}"'.encode(), f'name = "{name}"'.encode(), 1)
    if rel == "README.md":
        return data.replace(f"# {TEMPLATE_PROJECT}\n".encode(), f"# {name}\n".encode(), 1)
    return data


def init_app(directory: Path, *, force: bool, console: Console) -> int:
    if not TEMPLATE.is_dir():
        raise FlashError(f"the starter app is missing from this installation ({TEMPLATE})", hint="reinstall flash-tasks")
    target = directory.expanduser().resolve()
    if target.exists() and not target.is_dir():
        raise UsageError(f"{directory} exists and is not a folder", hint="choose a new folder name: flash init NEW_DIR")
    files = template_files()
    existing = [rel for rel in files if (target / rel).exists() or (target / rel).is_symlink()]
    if existing and not force:
        raise UsageError(
            f"{plural(len(existing), 'starter file')} already exist in {directory}: " + ", ".join(existing[:5])
            + (f" and {len(existing) - 5} more" if len(existing) > 5 else ""),
            hint="pass --force to overwrite them, or create the app in a new folder: flash init NEW_DIR",
        )
    name = project_name(target)
    try:
        for rel in files:
            dest = target / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_symlink() or (dest.exists() and not dest.is_file()):
                raise UsageError(f"{rel} exists in {directory} and is not a regular file", hint="move it away and run flash init again")
            dest.write_bytes(_personalise(rel, (TEMPLATE / rel).read_bytes(), name))
    except OSError as exc:
        raise FlashError(f"cannot write the starter app in {directory}: {exc.strerror or exc}") from None
    shown = directory.as_posix().rstrip("/") or "."
    console.line(
        f"{console.style('Created', 'green', 'bold')} the starter app {console.bold(name)} in {shown}/ "
        f"({plural(len(files), 'file')}" + (f", {len(existing)} overwritten" if existing else "") + ")"
    )
    for rel, what in (
        ("workers/embed.py", "a GPU worker (@Endpoint on an async function)"),
        ("workers/text.py", "a CPU worker (@Endpoint on a class)"),
        ("api/routes.py", "an HTTP API (load-balanced routes)"),
    ):
        if rel in files:
            console.line(f"  {rel:<18} {console.dim(what)}")
    step = "flash build" if shown == "." else f"cd {shlex.quote(shown)} && flash build"
    console.line(f"Next: {console.bold(step)}")
    return 0


def sync_template(source: Path, dest: Path = TEMPLATE) -> list[str]:
    """Make ``dest`` an exact copy of ``source`` (minus build outputs); returns what changed."""
    changed: list[str] = []
    wanted = template_files(source)
    for rel in wanted:
        src, out = source / rel, dest / rel
        data = src.read_bytes()
        if not out.is_file() or out.read_bytes() != data:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data)
            changed.append(rel)
    for rel in set(template_files(dest)) - set(wanted):
        (dest / rel).unlink()
        changed.append(rel)
    for folder in sorted((p for p in dest.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        if not any(folder.iterdir()):
            folder.rmdir()
    if dest.exists():
        for skipped in SKIPPED:
            for junk in dest.rglob(skipped):
                shutil.rmtree(junk, ignore_errors=True)
    return sorted(changed)
