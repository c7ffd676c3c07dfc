"""Which files of an app folder ship in the build.

A Flash app is a folder; the build ships every file in it except the ignored
ones. Ignoring follows git: the app's ``.gitignore`` files (root and nested)
plus a fixed list of built-in patterns that act like a second root
``.gitignore`` read right after the app's own, so the built-ins win over the
root file while deeper ``.gitignore`` files still override both.

The walk is hierarchical like git's: an ignored directory is never entered,
so nothing inside it can be re-included and a large ``.venv`` costs one
pattern check. This runs on every build, including no-op rebuilds, so the
hot loop works on plain strings and ``os.scandir`` entries.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from functools import cache, lru_cache
from pathlib import Path

from flash_tasks.errors import BuildError

__all__ = [
    "BUILTIN_IGNORES",
    "GITIGNORE",
    "AppFiles",
    "list_app_files",
    "read_gitignores",
    "scan_app_tree",
]

BUILTIN_IGNORES: tuple[str, ...] = (
    ".build/",
    ".flash/",
    ".runpod/",
    "*.tar.gz",
    ".git/",
    ".gitignore",
    "__pycache__/",
    "*.pyc",
    "*.pyo",
    "*.pyd",
    "*.egg-info/",
    "dist/",
    "build/",
    ".venv/",
    "venv/",
    "env/",
    ".vscode/",
    ".idea/",
    ".env",
    ".env.local",
    "tests/",
    "test_*.py",
    "*_test.py",
    "docs/",
    "*.md",
    "!README.md",
)
"""Patterns (gitignore syntax) every app ignores, applied after its root ``.gitignore``."""

#: What pathspec makes of the built-in lines and of lines common in Python projects'
#: .gitignore (as ``_compile_line`` passes them: trailing "/" off), so that an app whose
#: ignore files hold nothing else never imports it: that import took about 20 ms of every
#: build. tests/test_files.py checks each rule against pathspec's own.
KNOWN_LINES: dict[str, tuple[str, bool]] = {
    '.build': ('^(?:.+/)?\\.build(?:(?P<ps_d>/)|$)', True),
    '.flash': ('^(?:.+/)?\\.flash(?:(?P<ps_d>/)|$)', True),
    '.runpod': ('^(?:.+/)?\\.runpod(?:(?P<ps_d>/)|$)', True),
    '*.tar.gz': ('^(?:.+/)?[^/]*\\.tar\\.gz(?:(?P<ps_d>/)|$)', True),
    '.git': ('^(?:.+/)?\\.git(?:(?P<ps_d>/)|$)', True),
    '.gitignore': ('^(?:.+/)?\\.gitignore(?:(?P<ps_d>/)|$)', True),
    '__pycache__': ('^(?:.+/)?__pycache__(?:(?P<ps_d>/)|$)', True),
    '*.pyc': ('^(?:.+/)?[^/]*\\.pyc(?:(?P<ps_d>/)|$)', True),
    '*.pyo': ('^(?:.+/)?[^/]*\\.pyo(?:(?P<ps_d>/)|$)', True),
    '*.pyd': ('^(?:.+/)?[^/]*\\.pyd(?:(?P<ps_d>/)|$)', True),
    '*.egg-info': ('^(?:.+/)?[^/]*\\.egg\\-info(?:(?P<ps_d>/)|$)', True),
    'dist': ('^(?:.+/)?dist(?:(?P<ps_d>/)|$)', True),
    'build': ('^(?:.+/)?build(?:(?P<ps_d>/)|$)', True),
    '.venv': ('^(?:.+/)?\\.venv(?:(?P<ps_d>/)|$)', True),
    'venv': ('^(?:.+/)?venv(?:(?P<ps_d>/)|$)', True),
    'env': ('^(?:.+/)?env(?:(?P<ps_d>/)|$)', True),
    '.vscode': ('^(?:.+/)?\\.vscode(?:(?P<ps_d>/)|$)', True),
    '.idea': ('^(?:.+/)?\\.idea(?:(?P<ps_d>/)|$)', True),
    '.env': ('^(?:.+/)?\\.env(?:(?P<ps_d>/)|$)', True),
    '.env.local': ('^(?:.+/)?\\.env\\.local(?:(?P<ps_d>/)|$)', True),
    'tests': ('^(?:.+/)?tests(?:(?P<ps_d>/)|$)', True),
    'test_*.py': ('^(?:.+/)?test_[^/]*\\.py(?:(?P<ps_d>/)|$)', True),
    '*_test.py': ('^(?:.+/)?[^/]*_test\\.py(?:(?P<ps_d>/)|$)', True),
    'docs': ('^(?:.+/)?docs(?:(?P<ps_d>/)|$)', True),
    '*.md': ('^(?:.+/)?[^/]*\\.md(?:(?P<ps_d>/)|$)', True),
    '!README.md': ('^(?:.+/)?README\\.md(?:(?P<ps_d>/)|$)', False),
    '*.log': ('^(?:.+/)?[^/]*\\.log(?:(?P<ps_d>/)|$)', True),
    '.DS_Store': ('^(?:.+/)?\\.DS_Store(?:(?P<ps_d>/)|$)', True),
    '.pytest_cache': ('^(?:.+/)?\\.pytest_cache(?:(?P<ps_d>/)|$)', True),
    '.mypy_cache': ('^(?:.+/)?\\.mypy_cache(?:(?P<ps_d>/)|$)', True),
    '.ruff_cache': ('^(?:.+/)?\\.ruff_cache(?:(?P<ps_d>/)|$)', True),
    'node_modules': ('^(?:.+/)?node_modules(?:(?P<ps_d>/)|$)', True),
    '.coverage': ('^(?:.+/)?\\.coverage(?:(?P<ps_d>/)|$)', True),
    'htmlcov': ('^(?:.+/)?htmlcov(?:(?P<ps_d>/)|$)', True),
    '.tox': ('^(?:.+/)?\\.tox(?:(?P<ps_d>/)|$)', True),
    '*.so': ('^(?:.+/)?[^/]*\\.so(?:(?P<ps_d>/)|$)', True),
    '*.egg': ('^(?:.+/)?[^/]*\\.egg(?:(?P<ps_d>/)|$)', True),
    '.env.*': ('^(?:.+/)?\\.env\\.[^/]*(?:(?P<ps_d>/)|$)', True),
    '*.swp': ('^(?:.+/)?[^/]*\\.swp(?:(?P<ps_d>/)|$)', True),
    '.ipynb_checkpoints': ('^(?:.+/)?\\.ipynb_checkpoints(?:(?P<ps_d>/)|$)', True),
    '.python-version': ('^(?:.+/)?\\.python\\-version(?:(?P<ps_d>/)|$)', True),
    '__pypackages__': ('^(?:.+/)?__pypackages__(?:(?P<ps_d>/)|$)', True),
    '.cache': ('^(?:.+/)?\\.cache(?:(?P<ps_d>/)|$)', True),
    'wheels': ('^(?:.+/)?wheels(?:(?P<ps_d>/)|$)', True),
    '*.whl': ('^(?:.+/)?[^/]*\\.whl(?:(?P<ps_d>/)|$)', True),
}

GITIGNORE = ".gitignore"
"""Name of the ignore files; they configure the build and never ship themselves."""


@dataclass(frozen=True)
class AppFiles:
    """What a scan of an app folder found.

    ``ignore_files`` are the ``.gitignore`` files that decided the result, so a
    build graph can treat them as inputs: editing one may change ``files``.
    """

    files: list[str]
    """Sorted POSIX paths, relative to the app folder, of the files that ship."""
    ignore_files: list[str]
    """Sorted POSIX paths, relative to the app folder, of the ``.gitignore`` files read."""
    dirs: list[str] = field(default_factory=list)
    """Sorted POSIX paths of the folders the walk entered (``""`` for the app folder)."""
    links: bool = False
    """Whether the walk followed a symbolic link (to a file or a folder) inside the app."""


@dataclass(frozen=True, slots=True)
class _Rule:
    """One compiled gitignore line."""

    regex: re.Pattern[str]
    ignore: bool  # False for a negated ("!") pattern
    dir_only: bool  # the line ended in "/"


_Level = tuple[str, tuple[_Rule, ...]]
"""Rules of one ignore file and the POSIX prefix (``""`` or ``"sub/"``) they are relative to."""


def scan_app_tree(app_dir: Path) -> AppFiles:
    """Walk ``app_dir`` once and return the shipped files and the ignore files consulted.

    Symlinks are followed only when they resolve inside the app folder (the
    shipped path is the link's own path); links leading outside, broken links
    and directory cycles are skipped so a stray link can neither leak files
    from elsewhere nor hang the build.
    """
    root = os.fspath(app_dir)
    if not os.path.isdir(root):
        raise BuildError(
            f"app folder '{root}' does not exist or is not a folder",
            path=root,
            hint="run the build from the app folder or pass its path",
        )
    root_real = os.path.realpath(root)
    inside_prefix = root_real.rstrip(os.sep) + os.sep

    files: list[str] = []
    # Files reached through a symlink, with the real file they show.
    linked: list[tuple[str, str]] = []
    ignore_files: list[str] = []
    dirs: list[str] = []
    followed_link = False
    # (absolute path, POSIX prefix of its entries, resolved path, rules in force, resolved ancestors, via a link)
    stack: list[tuple[str, str, str, tuple[_Level, ...], frozenset[str], bool]] = [
        (root, "", root_real, (), frozenset((root_real,)), False)
    ]
    while stack:
        dir_path, prefix, dir_real, levels, ancestors, via_link = stack.pop()
        dirs.append(prefix.rstrip("/"))
        entries = _list_dir(dir_path, prefix)

        for entry in entries:
            if entry.name == GITIGNORE and entry.is_file(follow_symlinks=False):
                rel_ignore = prefix + GITIGNORE
                levels = (*levels, (prefix, _read_ignore_file(entry.path, rel_ignore)))
                ignore_files.append(rel_ignore)
                break
        if not prefix:
            levels = (*levels, ("", _builtin_rules()))

        for entry in entries:
            name = entry.name
            if name == GITIGNORE:
                continue
            is_link = entry.is_symlink()
            if is_link:
                kind = _symlink_kind(entry.path, root_real, inside_prefix)
                if kind is None:
                    continue
                is_dir, real = kind
                followed_link = True
            else:
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not entry.is_file(follow_symlinks=False):
                    continue  # sockets, fifos, devices
                real = dir_real + os.sep + name
            rel = prefix + name
            if _is_ignored(levels, rel, is_dir):
                continue
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise BuildError(
                    f"the name of {rel.encode('utf-8', 'surrogateescape')!r} is not valid UTF-8",
                    path=prefix.rstrip("/") or ".",
                    hint="rename it with UTF-8 characters, or add it to .gitignore so it does not ship",
                ) from None
            if not is_dir:
                if via_link or is_link:
                    linked.append((rel, real))
                else:
                    files.append(rel)
            elif real not in ancestors:  # a link back up the tree would never end
                stack.append((entry.path, rel + "/", real, levels, ancestors | {real}, via_link or is_link))

    # A link ships only what ships in its own right: a link to .env, into .flash/
    # or into an ignored folder must not smuggle those files into the artifact.
    shipped = set(files)
    for rel, real in linked:
        if os.path.relpath(real, root_real).replace(os.sep, "/") in shipped:
            files.append(rel)
    files.sort()
    ignore_files.sort()
    dirs.sort()
    return AppFiles(files=files, ignore_files=ignore_files, dirs=dirs, links=followed_link)


def list_app_files(app_dir: Path) -> list[str]:
    """Sorted POSIX paths (relative to app_dir) of the files that ship."""
    return scan_app_tree(app_dir).files


def read_gitignores(app_dir: Path) -> list[str]:
    """Sorted relative paths of the ``.gitignore`` files that decide what ships.

    This walks the whole tree; call ``scan_app_tree`` instead when the file list
    is needed too, so the folder is walked once.
    """
    return scan_app_tree(app_dir).ignore_files


def _symlink_kind(
    link: str, root_real: str, inside_prefix: str
) -> tuple[bool, str] | None:
    """``(is_dir, resolved path)`` for a link worth following, else None.

    Only links resolving inside the app count: following one that leads out
    would ship files the user never put in the app. Broken links, cyclic links
    and links to anything but a regular file or folder are dropped.
    """
    target = os.path.realpath(link)
    if target != root_real and not target.startswith(inside_prefix):
        return None
    try:
        mode = os.stat(target).st_mode
    except OSError:
        return None
    if stat.S_ISDIR(mode):
        return True, target
    if stat.S_ISREG(mode):
        return False, target
    return None


def _list_dir(dir_path: str, prefix: str) -> list[os.DirEntry[str]]:
    """Entries of one folder; an unreadable folder stops the build.

    Skipping it silently would ship an app with files quietly missing, so the
    user is told to either fix the permissions or ignore the folder.
    """
    try:
        with os.scandir(dir_path) as it:
            return list(it)
    except OSError as exc:
        rel = prefix.rstrip("/") or "."
        reason = (
            "permission denied"
            if isinstance(exc, PermissionError)
            else (exc.strerror or str(exc))
        )
        raise BuildError(
            f"cannot read folder '{rel}': {reason}",
            path=rel,
            hint=(
                f"fix its permissions (e.g. chmod u+rx '{rel}') "
                f"or add '/{rel}/' to .gitignore so the build skips it"
                if rel != "."
                else "fix the permissions of the app folder"
            ),
        ) from exc


def _read_ignore_file(path: str, rel: str) -> tuple[_Rule, ...]:
    """Compiled rules of one ``.gitignore``; unreadable or non-UTF-8 files stop the build."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise BuildError(
            f"cannot read '{rel}': {exc.strerror or exc}",
            path=rel,
            hint="fix its permissions so the build can apply it",
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BuildError(
            f"'{rel}' is not valid UTF-8 text (byte {exc.start})",
            path=rel,
            hint="save the file as UTF-8",
        ) from exc
    return _compile_ignore_text(text)


@cache
def _builtin_rules() -> tuple[_Rule, ...]:
    """The built-in patterns, compiled once per process."""
    return _compile_ignore_text("\n".join(BUILTIN_IGNORES))


@lru_cache(maxsize=256)
def _compile_ignore_text(text: str) -> tuple[_Rule, ...]:
    """Rules of a ``.gitignore`` body, cached by content so rebuilds in one process reuse them."""
    text = text.removeprefix("\ufeff")  # git skips a UTF-8 byte order mark
    rules = (_compile_line(line) for line in text.split("\n"))
    return tuple(rule for rule in rules if rule is not None)


def _compile_line(line: str) -> _Rule | None:
    """One gitignore line as a rule, or None for blanks, comments and lines git discards.

    The trailing "/" (directory-only) is taken off here and checked against the
    entry's type, because the directory-only regexes pathspec builds are meant
    for matching flat path lists, not for a walk that tests each entry once.
    """
    line = line.removesuffix("\r")
    if not line or line.startswith("#"):
        return None
    line = _trim_trailing_spaces(line)
    dir_only = line.endswith("/")
    if dir_only:
        line = line[:-1]
    if not line or line == "!":
        return None
    if line.endswith(" ") and not line.endswith("\\ "):
        # The space was protected by the "/" that followed it; keep it protected
        # so pathspec does not strip it again.
        line = line[:-1] + "\\ "
    known = KNOWN_LINES.get(line)
    if known is not None:
        return _Rule(regex=re.compile(known[0]), ignore=known[1], dir_only=dir_only)
    from pathspec import GitIgnoreSpec

    try:
        patterns = GitIgnoreSpec.from_lines([line]).patterns
    except ValueError:
        return None  # e.g. a dangling backslash: git never matches such a line
    if not patterns:
        return None
    pattern = patterns[0]
    regex = getattr(pattern, "regex", None)
    if pattern.include is None or regex is None:
        return None  # e.g. an invalid "[a-" range, which git discards too
    return _Rule(regex=regex, ignore=bool(pattern.include), dir_only=dir_only)


def _trim_trailing_spaces(line: str) -> str:
    """Drop unescaped trailing spaces, exactly as git does (``foo\\ `` keeps its space)."""
    end = len(line)
    while end and line[end - 1] == " ":
        backslashes = 0
        i = end - 2
        while i >= 0 and line[i] == "\\":
            backslashes += 1
            i -= 1
        if backslashes % 2:
            break  # this space is escaped
        end -= 1
    return line[:end]


def _is_ignored(levels: tuple[_Level, ...], rel: str, is_dir: bool) -> bool:
    """Git's verdict for one entry: the deepest ignore file with a matching line decides,
    and within a file the last matching line wins.

    pathspec's regexes also match every path *below* a matched directory and
    report that through their (only) capture group, the directory marker.
    Git matches a line against the entry itself, so a match that went through
    that group does not count here; the walk already handles "inside an
    ignored directory" by not descending.
    """
    for base, rules in reversed(levels):
        path = rel[len(base) :]
        for rule in reversed(rules):
            if rule.dir_only and not is_dir:
                continue
            match = rule.regex.search(path)
            if match is not None and match.lastindex is None:
                return rule.ignore
    return False
