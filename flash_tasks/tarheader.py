"""Tar headers for the build artifact, encoded byte by byte.

``flash_tasks.archive`` writes these rather than ``tarfile.TarInfo.tobuf`` so
that the bytes do not drift between Python releases (see its docstring).
Every entry gets uid/gid 0, empty user/group names and the mtime of
``archive_mtime()``; long or non-ASCII names get a POSIX pax record.
"""

from __future__ import annotations

import os

from flash_tasks.errors import BuildError

#: The entries' mtime when ``SOURCE_DATE_EPOCH`` is unset: 1980-01-01 UTC,
#: the earliest time a zip (wheel) can record, a common reproducible default.
DEFAULT_MTIME = 315532800

BLOCK = 512
#: ustar's 12-byte octal field holds mtimes below 8**11 (the year 2242).
_MAX_MTIME = 8**11


def archive_mtime() -> int:
    """The mtime of every entry: ``SOURCE_DATE_EPOCH`` if set, else 1980-01-01."""
    raw = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if not raw:
        return DEFAULT_MTIME
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if not 0 <= value < _MAX_MTIME:
        raise BuildError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970 "
            f"(before the year 2242), got {raw!r}",
            hint="unset it or set it to e.g. the last commit time: git log -1 --format=%ct",
        )
    return value


def _octal(value: int, width: int) -> bytes:
    """A ustar number field: zero-padded octal plus NUL, ``width`` bytes in all."""
    return b"%0*o\0" % (width - 1, value)


def _field(data: bytes, width: int) -> bytes:
    return data[:width].ljust(width, b"\0")


def _ustar(
    name: bytes, mode: int, size: int, mtime: int, typeflag: bytes, linkname: bytes
) -> bytes:
    """One 512-byte ustar header with uid/gid 0 and empty user/group names."""
    parts = [
        _field(name, 100),
        _octal(mode, 8),
        _octal(0, 8),
        _octal(0, 8),
        _octal(size, 12),
        _octal(mtime, 12),
        b"        ",
        typeflag,
        _field(linkname, 100),
        b"ustar\x0000",
        _field(b"", 32),
        _field(b"", 32),
        _field(b"", 8),
        _field(b"", 8),
        _field(b"", 155),
    ]
    buf = b"".join(parts).ljust(BLOCK, b"\0")
    chksum = b"%06o\0" % sum(buf)
    return buf[:148] + chksum + buf[155:]


def _pax_record(key: str, value: bytes) -> bytes:
    """``"<len> key=value\\n"``, where len counts the whole record, itself included."""
    body = b" " + key.encode("ascii") + b"=" + value + b"\n"
    n = len(body) + 1
    while len(str(n)) + len(body) != n:
        n = len(str(n)) + len(body)
    return str(n).encode("ascii") + body


def _encode_name(text: str, what: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise BuildError(
            f"cannot archive {what} {text!r}: it is not valid UTF-8",
            hint="rename it; deployed file names must be UTF-8",
        ) from exc


def tar_header(
    name: str, mode: int, size: int, mtime: int, typeflag: bytes, linkname: str = ""
) -> bytes:
    """Header block(s) for one entry, pax-extended as ``tarfile.PAX_FORMAT`` would.

    Fields that fit ustar go there; a name or link target that is not ASCII
    or longer than 100 bytes, or a size of 8 GiB or more, goes into a pax
    record (and the ustar field gets an ASCII stand-in).
    """
    bname = _encode_name(name, "file name")
    blink = _encode_name(linkname, "symlink target")
    records: list[bytes] = []
    if not bname.isascii() or len(bname) > 100:
        records.append(_pax_record("path", bname))
        bname = name.encode("ascii", "replace")
    if not blink.isascii() or len(blink) > 100:
        records.append(_pax_record("linkpath", blink))
        blink = linkname.encode("ascii", "replace")
    if size >= 8**11:
        records.append(_pax_record("size", str(size).encode("ascii")))
        size = 0
    main = _ustar(bname, mode, size, mtime, typeflag, blink)
    if not records:
        return main
    data = b"".join(records)
    pax = _ustar(b"././@PaxHeader", 0, len(data), 0, b"x", b"")
    return pax + data + padding(len(data)) + main


def padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


def tar_name(arcname: str, is_dir: bool) -> str:
    if arcname == "":
        return "./"
    if (
        arcname.startswith("/")
        or arcname.endswith("/")
        or any(part in ("", ".", "..") for part in arcname.split("/"))
    ):
        raise ValueError(f"invalid arcname {arcname!r}: must be a normalized relative POSIX path")
    return "./" + arcname + ("/" if is_dir else "")
