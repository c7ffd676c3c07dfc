"""Records of what the build wrote, so a piece of ``.flash/`` is reused only if it checks out.

Every piece that can reach an artifact (cached segments, the spare artifact,
the published artifact, files in ``.flash/.build``) gets a record when it is
written: a digest of its bytes, plus the size, ``mtime_ns`` and inode seen
right after writing (a ``Stamp``). Reuse trusts a piece without reading it
only while its stamp is unchanged; otherwise its bytes are hashed again, and a
mismatch means the piece is absent and gets rebuilt. State files are read
through pydantic models with a schema version: anything else is absent too.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import os
import re
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA = 1
HASH_CHUNK = 1 << 20

M = TypeVar("M", bound=BaseModel)


class Record(BaseModel):
    """Base of every state file: strict, versioned, no unknown keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = SCHEMA


class Stamp(BaseModel):
    """What ``lstat`` said about a file right after it was written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    size: int
    mtime_ns: int
    ino: int
    #: Permission bits: the archive keeps a file's executable bit.
    mode: int

    @classmethod
    def of(cls, path: str | Path) -> Stamp | None:
        """The stamp of a regular file, or None (missing, a folder, a link, unreadable)."""
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return cls(size=st.st_size, mtime_ns=st.st_mtime_ns, ino=st.st_ino, mode=stat.S_IMODE(st.st_mode))


class Blob(BaseModel):
    """A file's content digest and size."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sha256: str
    size: int


class BlobRecord(BaseModel):
    """A file's content and the stamp it had when that content was known."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    blob: Blob
    stamp: Stamp


def load(model: type[M], path: Path) -> M | None:
    """A state file as ``model``, or None when missing, damaged, of another shape or schema."""
    try:
        data = path.read_bytes()
    except OSError:
        return None
    return parse(model, data)


def parse(model: type[M], data: bytes) -> M | None:
    """A state file's bytes as ``model``, or None when damaged, of another shape or schema."""
    try:
        value = model.model_validate_json(data)
    except (ValidationError, ValueError):
        return None
    if getattr(value, "schema_version", SCHEMA) != SCHEMA:
        return None
    return value


def save(path: Path, value: BaseModel) -> None:
    """Write a state file atomically."""
    from .stage import write_text_atomic

    write_text_atomic(path, value.model_dump_json())


def hash_file(path: Path) -> Blob | None:
    """The digest of a regular file's bytes, or None if it cannot be read as one."""
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb", buffering=0) as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                return None
            while chunk := handle.read(HASH_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None
    return Blob(sha256=digest.hexdigest(), size=size)


def record_file(path: Path, blob: Blob | None = None) -> BlobRecord | None:
    """A record of ``path`` as it is now (hashing it unless ``blob`` is already known)."""
    before = Stamp.of(path)
    if before is None:
        return None
    if blob is None:
        blob = hash_file(path)
        if blob is None or Stamp.of(path) != before:
            return None
    return BlobRecord(blob=blob, stamp=before)


def copy_recorded(src: str | Path, dest: str | Path, blob: Blob, mode: int) -> BlobRecord | None:
    """Copy ``src`` into ``dest`` (a new file) if its bytes are exactly ``blob``: the copy's record.

    The bytes are hashed on the way, so the record costs no second read; ``dest``
    gets the permission bits ``mode`` whatever the umask. On a mismatch ``dest``
    is deleted and the answer is None. Raises ``OSError`` when ``src`` cannot be
    read or ``dest`` cannot be written (``dest`` existing already is one).
    """
    digest = hashlib.sha256()
    size = 0
    reader = os.open(src, os.O_RDONLY)
    try:
        if not stat.S_ISREG(os.fstat(reader).st_mode):
            os.close(reader)
            return None
        writer = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except BaseException:
        os.close(reader)
        raise
    try:
        try:
            # Reading one byte more than is left tells a longer file without another read.
            while chunk := os.read(reader, min(HASH_CHUNK, blob.size - size + 1)):
                size += len(chunk)
                if size > blob.size:
                    break
                digest.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(writer, view) :]
            os.fchmod(writer, mode & 0o777)
        finally:
            os.close(writer)
            os.close(reader)
        if size != blob.size or digest.hexdigest() != blob.sha256:
            os.unlink(dest)
            return None
    except BaseException:
        if os.path.lexists(dest):
            os.unlink(dest)
        raise
    stamp = Stamp.of(dest)
    return None if stamp is None or stamp.size != blob.size else BlobRecord(blob=blob, stamp=stamp)


def make_folders(root: Path, rels: Iterable[str]) -> None:
    """Create ``root`` and every folder the files ``rels`` (relative to it) need, each once."""
    folders = {rel.rpartition("/")[0] for rel in rels}
    root.mkdir(parents=True, exist_ok=True)
    made = {""}
    for folder in sorted(folders):
        # Sorted, a folder comes after its parents: each is made once, with no existence test.
        parts = folder.split("/")
        for depth in range(1, len(parts) + 1):
            part = "/".join(parts[:depth])
            if part not in made:
                os.mkdir(root / part)
                made.add(part)


def check_file(path: Path, record: BlobRecord | None, *, verify: bool = False) -> BlobRecord | None:
    """``record`` (possibly with a fresh stamp) if ``path`` still holds its content, else None.

    The stamp alone is trusted unless ``verify``; a changed stamp costs one
    re-read, after which an unchanged content is trusted again under the new stamp.
    """
    if record is None:
        return None
    now = Stamp.of(path)
    if now is None or now.size != record.blob.size:
        return None
    if now == record.stamp and not verify:
        return record
    blob = hash_file(path)
    if blob != record.blob or Stamp.of(path) != now:
        return None
    return BlobRecord(blob=blob, stamp=now)


def record_digest(raw: bytes) -> str:
    """A sha256 digest in the form wheel RECORD files use (``sha256=<urlsafe b64, unpadded>``)."""
    return "sha256=" + base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def record_hash(path: Path) -> str:
    """A file's sha256 as RECORD writes it."""
    digest = hashlib.sha256()
    with open(path, "rb", buffering=0) as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return record_digest(digest.digest())


def read_record(path: Path) -> list[tuple[str, str, str]]:
    """A wheel RECORD file's rows ``(path, hash, size)``, read as the CSV it is.

    Paths holding a comma or a quote are quoted in RECORD; a line split on commas
    by hand would lose them. Raises ``OSError``/``UnicodeDecodeError`` when unreadable.
    """
    import csv

    with open(path, encoding="utf-8", newline="") as handle:
        return [(row[0], row[1] if len(row) > 1 else "", row[2] if len(row) > 2 else "") for row in csv.reader(handle) if row]


def content_hash(build_dir: Path, dist_info: str, rows: list[tuple[str, str, str]], *, absent: frozenset[str] = frozenset()) -> str:
    """One digest over a distribution's RECORD rows: changes iff its listed files do.

    Rows without a digest (RECORD itself aside) are hashed from the file, so the
    value also covers them; files listed but absent are left out (and so change it).
    Rows under the top-level entries ``absent`` count as present as listed (their
    files are extracted later, ``cache.fill``); such a row without a digest is a
    ``ValueError``.
    """
    return hash_record_rows(build_dir, dist_info, rows, absent=absent)[0]


def hash_record_rows(
    build_dir: Path, dist_info: str, rows: list[tuple[str, str, str]], *, absent: frozenset[str] = frozenset()
) -> tuple[str, set[str]]:
    """``content_hash``, and the rows' paths that were found as regular files (or are under ``absent``).

    Works on plain strings: this runs over every row of a big distribution's
    RECORD whenever the archive step lists its files.
    """
    hasher = hashlib.sha256()
    record_row = f"{dist_info}/RECORD"
    root = os.fspath(build_dir)
    lines: list[str] = []
    found: set[str] = set()
    for relative, digest, length in sorted(rows):
        if relative == record_row:
            continue
        normal = _normal_inside(relative)
        if normal is None:
            continue
        if absent and normal.split(os.sep, 1)[0] in absent:
            if not digest or not length.isdigit():
                raise ValueError(f"{relative} is listed without a digest")
            found.add(relative)
            lines.append(f"{relative}\0{digest}\0{length}\n")
            continue
        target = os.path.join(root, normal)
        try:
            if not stat.S_ISREG(os.stat(target).st_mode):
                continue
        except OSError as exc:
            if exc.errno not in _NOT_THERE:
                raise
            continue  # absent, as ``Path.is_file`` says
        except ValueError:
            continue
        found.add(relative)
        if not digest or not length.isdigit():
            with open(target, "rb") as handle:
                data = handle.read()
            digest = record_digest(hashlib.sha256(data).digest())
            length = str(len(data))
        lines.append(f"{relative}\0{digest}\0{length}\n")
    hasher.update("".join(lines).encode())
    return "sha256:" + hasher.hexdigest(), found


#: What ``os.path.normpath`` would change in a path that starts with neither "/" nor ".".
_ODD_PARTS = re.compile(r"//|/\.\.?(/|$)|/$")
#: The errors for which ``Path.is_file`` answers False instead of raising.
_NOT_THERE = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EBADF, errno.ELOOP})


def _normal_inside(relative: str) -> str | None:
    """``relative`` normalised, or None when it leaves the build folder (RECORD paths may say ``..``)."""
    if relative and not relative.startswith(("/", ".")) and _ODD_PARTS.search(relative) is None:
        return relative  # already normal, as nearly every RECORD path is (normpath is slow)
    normal = os.path.normpath(relative)
    if os.path.isabs(normal) or normal in (".", "") or normal == ".." or normal.startswith(".." + os.sep):
        return None
    return normal


def inside(build_dir: Path, relative: str) -> Path | None:
    """``build_dir / relative`` if that stays inside the build folder (RECORD paths may say ``..``)."""
    normal = _normal_inside(relative)
    return None if normal is None else build_dir / normal


class TreeRecord(Record):
    """Files a task wrote into the build folder, each with its record."""

    files: dict[str, BlobRecord] = Field(default_factory=dict)


def record_tree(root: Path, rels: list[str]) -> TreeRecord:
    """Hash and stamp ``rels`` under ``root`` (files that cannot be read are left out)."""
    files: dict[str, BlobRecord] = {}
    for rel in rels:
        record = record_file(root / rel)
        if record is not None:
            files[rel] = record
    return TreeRecord(files=files)


def tree_intact(root: Path, tree: TreeRecord | None, *, verify: bool = False) -> bool:
    """Whether every recorded file is still there with its stamp (or, with ``verify``, its bytes)."""
    if tree is None:
        return False
    for rel, record in tree.files.items():
        path = root / rel
        if verify:
            if check_file(path, record, verify=True) is None:
                return False
        elif not _same_stamp(path, record.stamp):
            return False
    return True


def _same_stamp(path: Path, stamp: Stamp) -> bool:
    """``Stamp.of(path) == stamp`` without building a model (this runs for every shipped file)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (
        stat.S_ISREG(st.st_mode)
        and st.st_size == stamp.size
        and st.st_mtime_ns == stamp.mtime_ns
        and st.st_ino == stamp.ino
        and stat.S_IMODE(st.st_mode) == stamp.mode
    )


# -- the phases' state files ---------------------------------------------------------------
# Written with ``stage.write_json`` (a digest of the content travels with it) and read back
# through these models: anything else in their place is absent, and its task runs again.


class StageState(BaseModel):
    """``stage.json``: each shipped file's source stamp, the copies in ``.build``, the fingerprint."""

    model_config = ConfigDict(extra="forbid")

    files: dict[str, list[int]]
    fingerprint: str
    copies: TreeRecord


class HandlersState(BaseModel):
    """``handlers.json``: the generated files and their records."""

    model_config = ConfigDict(extra="forbid")

    files: list[str]
    copies: TreeRecord


class GroupsState(BaseModel):
    """``groups.json``: the resource groups' requirements, the worker Python, the manifest's digest."""

    model_config = ConfigDict(extra="forbid")

    python_version: str | None
    groups: dict[str, list[dict[str, str]]]
    manifest_sha256: str
    #: A digest of what the manifest was made from, but its source fingerprint (``graph.manifest_action``).
    inputs: str = ""


def repairs_path(config: Any) -> Path:
    """Where the archive step lists what it found damaged and rebuilt (for ``-v`` and ``--explain``)."""
    return Path(config.paths.state) / "repairs.json"


def read_state(path: Path, model: type[M]) -> M | None:
    """A phase's state file as ``model``, or None when missing, damaged or of another shape."""
    from .stage import read_json

    data = read_json(path)
    if data is None:
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


# -- the published artifact ---------------------------------------------------------------


class ArtifactRecord(Record):
    """What an artifact file holds: its gzip members in order, and its stamp."""

    name: str
    members: list[Blob]
    stamp: Stamp
    #: sha256 of the manifest published next to it.
    manifest_sha256: str = ""


def artifact_record_path(config: Any) -> Path:
    return Path(config.paths.state) / "artifact.json"


def _members_check(path: Path, members: list[Blob]) -> bool:
    """Re-read ``path`` and compare each gzip member's bytes with its record."""
    try:
        with open(path, "rb") as handle:
            for member in members:
                digest = hashlib.sha256()
                left = member.size
                while left:
                    chunk = handle.read(min(left, 1 << 20))
                    if not chunk:
                        return False
                    digest.update(chunk)
                    left -= len(chunk)
                if digest.hexdigest() != member.sha256:
                    return False
            return not handle.read(1)
    except OSError:
        return False


def artifact_intact(config: Any) -> bool:
    """Whether the published artifact and manifest are what the last build wrote."""
    record = load(ArtifactRecord, artifact_record_path(config))
    if record is None or record.name != config.output:
        return False
    if Stamp.of(config.paths.artifact) != record.stamp:
        return False
    if config.verify and not _members_check(config.paths.artifact, record.members):
        return False
    try:
        published = config.paths.manifest.read_bytes()
    except OSError:
        return False
    if hashlib.sha256(published).hexdigest() == record.manifest_sha256:
        return True
    from .package import _annotated_copy

    return _annotated_copy(published, config.paths.build_manifest)




def stamps_written(config: Any) -> dict[str, tuple[int, int, int, int]] | None:
    """What the last build recorded of the files it wrote under ``.flash/``, as it saw them right after.

    ``(size, mtime_ns, inode, permission bits)`` by path, from the records kept
    with them: the artifact, the spare, the cached segments, the copies in
    ``.build`` (staged sources, generated files, the SDK). None when the
    artifact's record is missing or names another artifact, or the published
    manifest is not the one that record names.
    """
    from .package import SegmentIndex, segment_index_path, spare_path, spare_record_path

    paths = config.paths
    artifact = load(ArtifactRecord, artifact_record_path(config))
    if artifact is None or artifact.name != config.output:
        return None
    try:
        if hashlib.sha256(paths.manifest.read_bytes()).hexdigest() != artifact.manifest_sha256:
            return None
    except OSError:
        return None
    stamps: dict[Path, Stamp] = {paths.artifact: artifact.stamp}
    spare = load(ArtifactRecord, spare_record_path(config))
    if spare is not None:
        stamps[spare_path(config)] = spare.stamp
    index = load(SegmentIndex, segment_index_path(config))
    for name, record in (index.segments.items() if index is not None else ()):
        stamps[paths.segments / name] = record.stamp
    stage = read_state(paths.stage_json, StageState)
    handlers = read_state(paths.handlers_json, HandlersState)
    trees = [load(TreeRecord, paths.sdk_copy_json), stage.copies if stage else None, handlers.copies if handlers else None]
    for tree in trees:
        for rel, blob in (tree.files.items() if tree is not None else ()):
            stamps[paths.build / rel] = blob.stamp
    return {str(path): (s.size, s.mtime_ns, s.ino, s.mode) for path, s in stamps.items()}
