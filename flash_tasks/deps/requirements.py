"""What the user asked for: PEP 508 requirements, requirement files, ``pyproject.toml``
and endpoint dependencies, and the resource groups they form."""

from __future__ import annotations

import hashlib
import os
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from ..errors import BuildError, FlashError
from .base import MAX_REQUIREMENTS_BYTES, _Model

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib


# ---------------------------------------------------------------------------
# Requirements (PEP 508, checked by packaging)
# ---------------------------------------------------------------------------


class RequirementSpec(_Model):
    """One requirement as the user wrote it, and where."""

    text: str
    name: str
    origin: str

    def location(self) -> tuple[str | None, int | None]:
        return _split_origin(self.origin)


def _split_origin(origin: str) -> tuple[str | None, int | None]:
    path, sep, line = origin.rpartition(":")
    if sep and line.isdigit():
        return path, int(line)
    return (origin or None), None


def _origin_error(message: str, origin: str, hint: str | None = None) -> BuildError:
    path, line = _split_origin(origin)
    return BuildError(message, path=path, line=line, hint=hint)


def parse_requirement(text: str, origin: str) -> RequirementSpec:
    """Validate one requirement; ``BuildError`` at ``origin`` (``file:line``) if it is not PEP 508."""
    # Imported here: a build whose requirements did not change parses none (see ``deps.tasks``).
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    text = text.strip()
    try:
        requirement = Requirement(text)
    except InvalidRequirement as exc:
        # packaging says what it expected, then shows the text with a marker under the spot.
        reason, *pointer = str(exc).splitlines()
        looks_like_path = text.startswith((".", "/", "~")) or "://" in text.split("@")[0] or text.endswith(".whl")
        hint = (
            "refer to a file or URL as 'name @ url'"
            if looks_like_path
            else "write it as 'name', 'name==1.2', 'name[extra]>=1,<2' or 'name; python_version >= \"3.11\"'"
        )
        shown = "".join(f"\n{line}" for line in pointer if line.strip())
        raise _origin_error(f"invalid requirement {text!r}: {reason}{shown}", origin, hint) from None
    return RequirementSpec(text=text, name=canonicalize_name(requirement.name), origin=origin)


# ---------------------------------------------------------------------------
# Collecting requirements
# ---------------------------------------------------------------------------


class CollectedRequirements(_Model):
    """Requirements, constraints, notes for the user, and every file that was read."""

    requirements: tuple[RequirementSpec, ...] = ()
    constraints: tuple[RequirementSpec, ...] = ()
    #: Lines that were understood but deliberately not applied, with ``file:line``.
    warnings: tuple[str, ...] = ()
    #: Absolute paths of every file read: declare them as the task's file inputs.
    files: tuple[Path, ...] = ()
    #: Each file as it was named (by the app or an include), as it resolved, and the
    #: sha256 of the bytes read: what a record of this result must find again to be reused.
    opened: tuple[tuple[str, str, str], ...] = ()

    def merged(self, other: CollectedRequirements) -> CollectedRequirements:
        return CollectedRequirements(
            requirements=self.requirements + other.requirements,
            constraints=self.constraints + other.constraints,
            warnings=self.warnings + other.warnings,
            files=self.files + tuple(f for f in other.files if f not in self.files),
            opened=self.opened + other.opened,
        )


_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_INCLUDE_RE = re.compile(r"^(-r|--requirement|-c|--constraint)(?:\s*=\s*|\s+|(?<=-r)|(?<=-c))(\S.*)$")
_HASH_OPTION_RE = re.compile(r"\s+--hash(?:=|\s+)\S+")
#: pip options that select indexes or wheel policy: reported, not applied.
_IGNORED_OPTIONS = frozenset(
    ["-i", "--index-url", "--extra-index-url", "-f", "--find-links", "--no-index", "--trusted-host", "--pre", "--prefer-binary", "--only-binary", "--no-binary", "--require-hashes", "--use-feature"]
)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Lines with comments removed and ``\\`` continuations joined; numbered from the first."""
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        if not pending:
            start = number
        if raw.endswith("\\") and not _COMMENT_RE.search(raw):
            pending.append(raw[:-1])
            continue
        pending.append(raw)
        line = _COMMENT_RE.sub("", "".join(pending)).strip()
        pending = []
        if line:
            yield start, line
    if pending:
        line = _COMMENT_RE.sub("", "".join(pending)).strip()
        if line:
            yield start, line


def _relative_origin(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return Path(os.path.relpath(path, root)).as_posix()




def _read_requirements_text(file: Path, where: str) -> tuple[str, str]:
    """A requirements file's text and the sha256 of its bytes: a regular file of bounded size, never a device or a pipe."""
    import stat as stat_module

    try:
        st = file.stat()
    except OSError as exc:
        raise _origin_error(
            f"cannot read requirements file {file}: {exc.strerror}", where, "fix the -r/-c path or create the file"
        ) from None
    if not stat_module.S_ISREG(st.st_mode):
        raise _origin_error(
            f"requirements file {file} is not a regular file", where, "-r and -c must name requirements files"
        )
    if st.st_size > MAX_REQUIREMENTS_BYTES:
        raise _origin_error(
            f"requirements file {file} is {st.st_size:,} bytes, over the {MAX_REQUIREMENTS_BYTES // 2**20} MiB limit",
            where,
            "-r and -c must name requirements files",
        )
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_REQUIREMENTS_BYTES + 1)
        if len(data) > MAX_REQUIREMENTS_BYTES:
            raise _origin_error(f"requirements file {file} is over the size limit", where, "-r and -c must name requirements files")
        return data.decode("utf-8-sig"), hashlib.sha256(data).hexdigest()
    except OSError as exc:
        raise _origin_error(f"cannot read requirements file {file}: {exc.strerror}", where, "make the file readable") from None
    except UnicodeDecodeError:
        raise _origin_error(f"requirements file {file} is not UTF-8 text", where, "save it as UTF-8") from None


def _outside_line(line: str, origin: str) -> None:
    """Check one line of a file outside the app the way it will be read (errors are reworded by the caller)."""
    if _INCLUDE_RE.match(line) or line.startswith("-"):
        return
    parse_requirement(_HASH_OPTION_RE.sub("", line), origin)


def read_requirements_file(path: Path, *, root: Path) -> CollectedRequirements:
    """Parse a pip requirements file with its ``-r``/``-c`` includes (relative to the includer).

    Origins are ``file:line`` relative to ``root``. Index and resolver options
    are reported in ``warnings`` rather than applied: indexes come from the
    build settings so every group resolves against the same ones.
    """
    requirements: list[RequirementSpec] = []
    constraints: list[RequirementSpec] = []
    warnings: list[str] = []
    files: list[Path] = []
    opened: list[tuple[str, str, str]] = []
    digests: dict[Path, str] = {}

    def visit(file: Path, *, as_constraints: bool, included_from: str | None) -> None:
        named, file = file, file.resolve()
        if file in files:
            opened.append((str(named), str(file), digests[file]))
            return
        where = included_from or _relative_origin(file, root)
        text, digests[file] = _read_requirements_text(file, where)
        opened.append((str(named), str(file), digests[file]))
        files.append(file)
        label = _relative_origin(file, root)
        outside = not file.is_relative_to(root.resolve())
        for number, line in _logical_lines(text):
            if outside:
                # Read where the app asked, but never echo a file from outside the app.
                try:
                    _outside_line(line, f"{label}:{number}")
                except FlashError:
                    raise _origin_error(
                        f"line {number} of {file} (outside the app) is not a requirement",
                        where,
                        "point -r/-c at a requirements file, or copy the requirements into the app",
                    ) from None
            origin = f"{label}:{number}"
            include = _INCLUDE_RE.match(line)
            if include:
                option, target = include.groups()
                nested = file.parent / target.strip().strip("'\"")
                visit(nested, as_constraints=as_constraints or option in ("-c", "--constraint"), included_from=origin)
                continue
            if line.startswith("-"):
                option = re.split(r"[\s=]", line, maxsplit=1)[0]
                if option in ("-e", "--editable"):
                    raise _origin_error(
                        "editable requirements cannot be shipped to a worker",
                        origin,
                        "install it as a regular requirement ('name' or 'name @ url')",
                    )
                if option in _IGNORED_OPTIONS:
                    warnings.append(
                        f"{origin}: ignored {line!r}; indexes and wheel policy come from the build settings"
                    )
                    continue
                raise _origin_error(f"unsupported option {option!r} in a requirements file", origin)
            line = _HASH_OPTION_RE.sub("", line)
            spec = parse_requirement(line, origin)
            (constraints if as_constraints else requirements).append(spec)

    visit(path, as_constraints=False, included_from=None)
    return CollectedRequirements(
        requirements=tuple(requirements),
        constraints=tuple(constraints),
        warnings=tuple(warnings),
        files=tuple(files),
        opened=tuple(opened),
    )


_TOML_POSITION_RE = re.compile(r"\(at line (\d+), column (\d+)\)")


def read_pyproject_dependencies(path: Path, *, root: Path) -> CollectedRequirements:
    """``[project].dependencies`` of ``pyproject.toml`` (optional extras are not the app's)."""
    label = _relative_origin(path.resolve(), root)
    try:
        raw = path.read_bytes()
        data = tomllib.loads(raw.decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        position = _TOML_POSITION_RE.search(str(exc))
        line, col = (int(position.group(1)), int(position.group(2))) if position else (None, None)
        raise BuildError(f"pyproject.toml is not valid TOML: {exc}", path=label, line=line, col=col) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read pyproject.toml: {exc}", path=label) from None
    project = data.get("project", {})
    deps = project.get("dependencies", []) if isinstance(project, dict) else []
    if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps):
        raise BuildError("[project].dependencies must be a list of strings", path=label)
    lines = raw.decode("utf-8").splitlines()
    specs = []
    for dep in deps:
        quoted = (f'"{dep}"', f"'{dep}'")
        number = next((i for i, text in enumerate(lines, 1) if any(q in text for q in quoted)), None)
        origin = f"{label}:{number}" if number else label
        specs.append(parse_requirement(dep, origin))
    opened = ((str(path), str(path.resolve()), hashlib.sha256(raw).hexdigest()),)
    return CollectedRequirements(requirements=tuple(specs), files=(path.resolve(),), opened=opened)


def collect_app_requirements(app_dir: Path, *, project_dependencies: bool = False) -> CollectedRequirements:
    """Requirements of the app itself: ``requirements.txt`` (with includes), and ``pyproject.toml``'s
    ``[project].dependencies`` only when ``project_dependencies`` (they usually describe the
    developer's machine, not the worker).

    Missing files contribute nothing; ``files`` lists what existed and was read.
    """
    root = app_dir.resolve()
    collected = CollectedRequirements()
    req_file = root / "requirements.txt"
    if req_file.is_file():
        collected = collected.merged(read_requirements_file(req_file, root=root))
    pyproject = root / "pyproject.toml"
    if project_dependencies and pyproject.is_file():
        collected = collected.merged(read_pyproject_dependencies(pyproject, root=root))
    return collected


def parse_endpoint_dependencies(
    endpoints: Mapping[str, Sequence[tuple[str, str]]],
) -> dict[str, tuple[RequirementSpec, ...]]:
    """Validate each group's ``dependencies=[...]`` (``(text, "file.py:line")`` pairs)."""
    return {
        group: tuple(parse_requirement(text, origin) for text, origin in items)
        for group, items in sorted(endpoints.items())
    }


class GroupSpec(_Model):
    """The direct requirements one resource group needs: the app's plus its endpoints'."""

    name: str
    requirements: tuple[RequirementSpec, ...]
    constraints: tuple[RequirementSpec, ...] = ()


def _dedupe(specs: Iterable[RequirementSpec]) -> tuple[RequirementSpec, ...]:
    seen: set[str] = set()
    unique = []
    for spec in specs:
        if spec.text not in seen:
            seen.add(spec.text)
            unique.append(spec)
    return tuple(unique)


def plan_groups(
    app: CollectedRequirements,
    endpoints: Mapping[str, Sequence[tuple[str, str]]],
    *,
    default_group: str = "default",
) -> tuple[GroupSpec, ...]:
    """One ``GroupSpec`` per resource group (or ``default_group`` when there are none)."""
    parsed = parse_endpoint_dependencies(endpoints) or {default_group: ()}
    return tuple(
        GroupSpec(name=name, requirements=_dedupe(app.requirements + specs), constraints=_dedupe(app.constraints))
        for name, specs in parsed.items()
    )
