"""``flash inspect [ARTIFACT]``: what an artifact holds, without unpacking it.

One streaming pass over the tar.gz (the artifact is a chain of gzip members;
``gzip`` readers see one stream): entry sizes are summed per top-level name,
``flash_manifest.json`` and each ``*.dist-info/RECORD`` are read in memory.
The manifest says which endpoint each ``handler_<resource>.py`` serves; the
RECORDs say which installed distribution owns each top-level package.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path
from typing import IO, Any, Literal

from ..errors import FlashError
from .output import Console, format_size, plural
from .results import EntryResult, HandlerResult, InspectResult, dump
from .state import resources as read_resources

MANIFEST = "flash_manifest.json"


def _open_gzip(path: Path) -> IO[bytes]:
    """A reader of the decompressed stream; zlib-ng's is about twice as fast as the standard one."""
    try:
        from zlib_ng import gzip_ng
    except ImportError:
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    reader: IO[bytes] = gzip_ng.open(path, "rb")  # type: ignore[no-untyped-call]
    return reader


def _record_tops(text: str) -> set[str]:
    tops = set()
    for line in text.splitlines():
        name = line.split(",", 1)[0].strip().strip('"')
        if name and not name.startswith(".."):
            tops.add(name.split("/", 1)[0])
    return tops


class _Contents:
    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}
        self.counts: dict[str, int] = {}
        self.files = 0
        self.unpacked = 0
        self.manifest: dict[str, Any] | None = None
        self.owners: dict[str, str] = {}
        self.handlers: list[str] = []
        self.folders: set[str] = set()


def read_contents(path: Path) -> _Contents:
    contents = _Contents()
    try:
        with _open_gzip(path) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name.lstrip("/")
                if not name or name == ".":
                    continue
                top = name.split("/", 1)[0]
                if "/" in name.rstrip("/") or member.isdir():
                    contents.folders.add(top)
                if member.isfile():
                    contents.files += 1
                    contents.unpacked += member.size
                    contents.sizes[top] = contents.sizes.get(top, 0) + member.size
                    contents.counts[top] = contents.counts.get(top, 0) + 1
                    if name == MANIFEST or (top.endswith(".dist-info") and name.endswith("/RECORD")):
                        handle = tar.extractfile(member)
                        data = handle.read() if handle is not None else b""
                        if name == MANIFEST:
                            contents.manifest = json.loads(data)
                        else:
                            owner = top[: -len(".dist-info")]
                            dist, _, version = owner.partition("-")
                            for owned in _record_tops(data.decode("utf-8", "replace")):
                                contents.owners.setdefault(owned, f"{dist} {version}".strip())
                    if "/" not in name and name.startswith("handler_") and name.endswith(".py"):
                        contents.handlers.append(name)
                else:
                    contents.sizes.setdefault(top, 0)
                    contents.counts.setdefault(top, 0)
    except (OSError, EOFError, tarfile.TarError, ValueError) as exc:
        raise FlashError(f"cannot read {path}: {exc}", hint="is it a flash build artifact (.tar.gz)?") from None
    return contents


def _handlers(contents: _Contents) -> list[HandlerResult]:
    manifest = contents.manifest or {}
    resources = {r.name: r for r in read_resources(manifest)}
    by_file = {r.handler: r for r in resources.values() if r.handler}
    results = []
    for handler in sorted(contents.handlers):
        resource = by_file.get(handler) or resources.get(handler[len("handler_") : -len(".py")])
        if resource is None:
            results.append(HandlerResult(handler=handler, resource=None, type=None, serves=[]))
            continue
        if resource.routes:
            serves = [f"{r.method} {r.path} -> {r.function}" for r in resource.routes]
        else:
            serves = [f"{f.module}.{f.name}" + (f" ({', '.join(f.methods)})" if f.methods else "") for f in resource.functions]
        results.append(HandlerResult(handler=handler, resource=resource.name, type=resource.type, serves=serves))
    return results


def _origin(top: str, contents: _Contents) -> Literal["app", "generated", "sdk", "dependency"]:
    if top in contents.owners:
        return "dependency"
    if top == "runpod_flash":
        return "sdk"
    if top == MANIFEST or top in contents.handlers:
        return "generated"
    return "app"


def describe(path: Path) -> InspectResult:
    from .results import ArtifactResult, file_sha256

    contents = read_contents(path)
    entries = [
        EntryResult(name=top, size=size, files=contents.counts.get(top, 0), origin=_origin(top, contents), distribution=contents.owners.get(top))
        for top, size in contents.sizes.items()
        if not top.endswith(".dist-info")
    ]
    entries.sort(key=lambda e: (-e.size, e.name))
    for entry in entries:
        if entry.name in contents.folders:
            entry.name += "/"
    metadata = sum(size for top, size in contents.sizes.items() if top.endswith(".dist-info"))
    manifest = contents.manifest or {}
    return InspectResult(
        artifact=ArtifactResult(path=str(path), size=path.stat().st_size, sha256=file_sha256(path)),
        unpacked_size=contents.unpacked,
        files=contents.files,
        project=manifest.get("project_name"),
        python_version=manifest.get("python_version"),
        handlers=_handlers(contents),
        entries=entries,
        metadata_size=metadata,
    )


def inspect_artifact(artifact: Path | None, *, app_dir: Path, top: int, as_json: bool, console: Console) -> int:
    from .build import last_artifact

    if artifact is None:
        path = last_artifact(app_dir) or app_dir / ".flash" / "artifact.tar.gz"
    elif artifact.is_dir():
        path = last_artifact(artifact) or artifact / ".flash" / "artifact.tar.gz"
    else:
        path = artifact
    if not path.is_file():
        hint = "build it first: flash build" + (f" -C {app_dir}" if str(app_dir) != "." else "") if artifact is None else "pass the path of a .tar.gz artifact"
        raise FlashError(f"no artifact at {path}", hint=hint)
    result = describe(path)
    if as_json:
        console.stream.write(dump(result) + "\n")
        return 0
    c = console
    head = f"{c.bold(str(path))}: {format_size(result.artifact.size)} compressed, {format_size(result.unpacked_size)} in {plural(result.files, 'file')}"
    if result.python_version:
        head += f", Python {result.python_version}"
    c.line(head)
    if result.handlers:
        c.line()
        rows = [[h.handler, c.style(h.resource or "?", "cyan"), h.type or "?", ", ".join(h.serves) or "-"] for h in result.handlers]
        c.table(["handler", "endpoint", "type", "serves"], rows)
    elif result.project is None:
        c.line(c.dim("no flash_manifest.json inside: not a flash build artifact?"))
    c.line()
    shown = result.entries if top == 0 else result.entries[:top]
    rows = [[format_size(e.size), str(e.files), e.name, c.dim(e.distribution or {"sdk": "runpod-flash (bundled SDK)"}.get(e.origin, e.origin))] for e in shown]
    c.table(["size", "files", "top-level entry", "from"], rows, right=(0, 1))
    rest = result.entries[len(shown):]
    if rest:
        c.line(c.dim(f"  ... {plural(len(rest), 'more entry', 'more entries')}, {format_size(sum(e.size for e in rest))} (--top 0 lists all)"))
    if result.metadata_size:
        c.line(c.dim(f"  + {format_size(result.metadata_size)} of package metadata (*.dist-info folders)"))
    return 0
