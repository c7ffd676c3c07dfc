"""Tiny, valid wheels and sdists made on the fly for hermetic dependency tests.

The dependency code talks to uv, and uv only accepts distributions that look
real: a wheel needs a matching ``*.dist-info`` with METADATA, WHEEL and a RECORD
whose hashes check out. Building them here (instead of shipping binary fixtures)
keeps every test self-describing: the test states the names, versions, tags and
dependencies it relies on, and a find-links folder of these files stands in for
the package index.

Archives are byte-for-byte reproducible (fixed timestamps, sorted members), so
the same call always yields the same sha256.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import io
import re
import tarfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
_FIXED_TAR_TIME = 1577836800  # 2020-01-01T00:00:00Z


def normalize(name: str) -> str:
    """PEP 503 project name: lower case, runs of ``-_.`` become ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def dist_stem(name: str) -> str:
    """The file-name form of a project name (``Foo.Bar`` -> ``foo_bar``)."""
    return normalize(name).replace("-", "_")


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _is_pure(tag: str) -> bool:
    return tag.endswith("-any")


def make_wheel(
    directory: Path,
    name: str,
    version: str,
    *,
    tag: str = "py3-none-any",
    requires: Sequence[str] = (),
    files: Mapping[str, str | bytes] | None = None,
    requires_python: str | None = None,
    console_scripts: Mapping[str, str] | None = None,
    extras: Mapping[str, Sequence[str]] | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` into ``directory`` and return its path.

    ``files`` maps archive paths to contents; by default the wheel holds one
    package, ``<name>/__init__.py``, that records its own version so a test can
    tell which build got installed. ``requires`` become ``Requires-Dist`` lines;
    ``extras`` adds ``Provides-Extra`` plus ``; extra == "x"`` requirements.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = dist_stem(name)
    if files is None:
        files = {f"{stem}/__init__.py": f'__version__ = "{version}"\n'}
    info = f"{stem}-{version}.dist-info"

    metadata = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    if requires_python:
        metadata.append(f"Requires-Python: {requires_python}")
    metadata.extend(f"Requires-Dist: {req}" for req in requires)
    for extra, reqs in (extras or {}).items():
        metadata.append(f"Provides-Extra: {extra}")
        for req in reqs:
            joiner = " and " if ";" in req else "; "
            metadata.append(f'Requires-Dist: {req}{joiner}extra == "{extra}"')

    wheel_lines = [
        "Wheel-Version: 1.0",
        "Generator: wheelfactory",
        f"Root-Is-Purelib: {'true' if _is_pure(tag) else 'false'}",
    ]
    interpreters, abi, platforms = tag.split("-")
    for interpreter in interpreters.split("."):
        for platform in platforms.split("."):
            wheel_lines.append(f"Tag: {interpreter}-{abi}-{platform}")

    members: dict[str, bytes] = {
        path: content.encode() if isinstance(content, str) else content for path, content in files.items()
    }
    members[f"{info}/METADATA"] = ("\n".join(metadata) + "\n").encode()
    members[f"{info}/WHEEL"] = ("\n".join(wheel_lines) + "\n").encode()
    if console_scripts:
        body = "[console_scripts]\n" + "".join(f"{k} = {v}\n" for k, v in console_scripts.items())
        members[f"{info}/entry_points.txt"] = body.encode()
    # RECORD is CSV: a path holding a comma or a quote is quoted, as installers write it.
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for path, data in members.items():
        writer.writerow([path, _record_hash(data), len(data)])
    writer.writerow([f"{info}/RECORD", "", ""])
    members[f"{info}/RECORD"] = record.getvalue().encode()

    target = directory / f"{stem}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(members, key=lambda p: (p.startswith(info), p)):
            entry = zipfile.ZipInfo(path, date_time=_FIXED_ZIP_TIME)
            entry.external_attr = 0o644 << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(entry, members[path])
    return target


def make_sdist(
    directory: Path,
    name: str,
    version: str,
    *,
    requires: Sequence[str] = (),
) -> Path:
    """Write ``<name>-<version>.tar.gz``: a source distribution and nothing else.

    It is never meant to be built (the code under test must refuse to build);
    it only has to be recognisable as an sdist of that name and version.
    """
    directory.mkdir(parents=True, exist_ok=True)
    stem = dist_stem(name)
    root = f"{stem}-{version}"
    pkg_info = [
        "Metadata-Version: 2.1",
        f"Name: {name}",
        f"Version: {version}",
        *(f"Requires-Dist: {req}" for req in requires),
    ]
    deps = ", ".join(f'"{req}"' for req in requires)
    members = {
        f"{root}/PKG-INFO": "\n".join(pkg_info) + "\n",
        f"{root}/pyproject.toml": (
            '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{deps}]\n'
        ),
        f"{root}/{stem}/__init__.py": f'__version__ = "{version}"\n',
    }
    target = directory / f"{root}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for path in sorted(members):
            data = members[path].encode()
            entry = tarfile.TarInfo(path)
            entry.size = len(data)
            entry.mtime = _FIXED_TAR_TIME
            entry.mode = 0o644
            tf.addfile(entry, io.BytesIO(data))
    target.write_bytes(gzip.compress(buffer.getvalue(), mtime=0))
    return target
