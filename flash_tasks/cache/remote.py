"""A remote cache spoken to in Bazel's HTTP cache protocol.

``GET``/``PUT``/``HEAD`` on ``{url}/cas/{sha256}`` for blobs and
``{url}/ac/{key}`` for action records (64 hex digits), which bazel-remote,
nginx with WebDAV, WsgiDAV and most artifact stores serve. Action records are
JSON (bazel-remote needs ``--disable_http_ac_validation``, as for any client
that is not Bazel itself).

The remote is an optimisation, never a requirement: every call has short
timeouts, and any failure (refused connection, timeout, HTTP 401/403/5xx, a
broken response) raises ``RemoteError``, after which the caller stops using the
remote for the rest of the build. A ``404`` is a plain miss. A downloaded blob
is hashed as it arrives and kept only if it is exactly the blob asked for.
Only the standard library is used.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import time
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

from ..store import Blob
from .local import temporary_name

#: Seconds to wait for a connection or for any single read or write.
TIMEOUT = 1.0
#: The same for uploads, which run after the artifact is published: a server may take a
#: while to store (and check) a big blob before it answers.
UPLOAD_TIMEOUT = 10.0
#: A download slower than this (bytes per second), after the first TIMEOUT, is given up.
MIN_RATE = 1 << 20
CHUNK = 1 << 20


class RemoteError(Exception):
    """The remote cache failed (unreachable, slow, refusing, broken): stop using it."""


class RemoteCache:
    """One remote cache URL, with an optional bearer token (or user:password in the URL)."""

    def __init__(self, url: str, *, token: str | None = None, read_only: bool = False, timeout: float = TIMEOUT) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {redact(url)}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port
        self.base = parts.path.rstrip("/")
        self.read_only = read_only
        self.timeout = timeout
        self.shown = redact(url)
        self.headers: dict[str, str] = {}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        elif parts.username is not None:
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout)
        conn.blocksize = CHUNK
        return conn

    def _request(self, method: str, path: str, body: BinaryIO | bytes | None = None, size: int = 0) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        conn = self._connection(max(self.timeout, UPLOAD_TIMEOUT) if method == "PUT" else self.timeout)
        headers = dict(self.headers)
        if method == "PUT":
            headers["Content-Length"] = str(size)
            headers["Content-Type"] = "application/octet-stream"
        try:
            conn.request(method, f"{self.base}/{path}", body=body, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise RemoteError(f"{method} {self.shown}/{path}: {describe(exc)}") from exc
        if response.status in (401, 403):
            conn.close()
            raise RemoteError(f"the remote cache {self.shown} refused access (HTTP {response.status}); check FLASH_TASKS_REMOTE_CACHE_TOKEN")
        if response.status >= 500 or response.status in (405, 407, 429):
            conn.close()
            raise RemoteError(f"{method} {self.shown}/{path}: HTTP {response.status} {response.reason}")
        return conn, response

    def get_small(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """A small object (an action record), or None when the remote has none."""
        conn, response = self._request("GET", path)
        try:
            if response.status == 404:
                return None
            if response.status != 200:
                raise RemoteError(f"GET {self.shown}/{path}: HTTP {response.status} {response.reason}")
            try:
                data = response.read(limit + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise RemoteError(f"GET {self.shown}/{path}: {describe(exc)}") from exc
            return data if len(data) <= limit else None
        finally:
            conn.close()

    def download(self, blob: Blob, dest: Path) -> str:
        """Fetch ``cas/<sha256>`` into ``dest`` (atomically).

        Returns ``"ok"``, ``"missing"`` (404) or ``"bad"`` (the bytes are not that
        blob: nothing is written).
        """
        path = f"cas/{blob.sha256}"
        conn, response = self._request("GET", path)
        tmp = dest.with_name(temporary_name(dest.name))
        try:
            if response.status == 404:
                return "missing"
            if response.status != 200:
                raise RemoteError(f"GET {self.shown}/{path}: HTTP {response.status} {response.reason}")
            deadline = time.monotonic() + self.timeout + blob.size / MIN_RATE
            digest = hashlib.sha256()
            size = 0
            with open(tmp, "wb") as out:
                while True:
                    try:
                        chunk = response.read(CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise RemoteError(f"GET {self.shown}/{path}: {describe(exc)}") from exc
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > blob.size:
                        return "bad"
                    digest.update(chunk)
                    out.write(chunk)
                    if time.monotonic() > deadline:
                        raise RemoteError(f"GET {self.shown}/{path}: too slow")
            if size != blob.size or digest.hexdigest() != blob.sha256:
                return "bad"
            os.replace(tmp, dest)
            return "ok"
        finally:
            tmp.unlink(missing_ok=True)
            conn.close()

    def has(self, path: str) -> bool:
        conn, response = self._request("HEAD", path)
        conn.close()
        return response.status == 200

    def put(self, path: str, body: BinaryIO | bytes, size: int) -> None:
        if self.read_only:
            return
        conn, response = self._request("PUT", path, body, size)
        try:
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise RemoteError(f"PUT {self.shown}/{path}: {describe(exc)}") from exc
        finally:
            conn.close()
        if response.status not in (200, 201, 204):
            raise RemoteError(f"PUT {self.shown}/{path}: HTTP {response.status} {response.reason}")

    def upload_file(self, source: Path, blob: Blob, *, replace: bool = False) -> bool:
        """Upload ``source`` as ``cas/<sha256>`` unless the remote has it (or ``replace``: a damaged copy).

        Its bytes are checked first: a file that is not ``blob`` is never sent.
        Returns whether bytes were sent.
        """
        path = f"cas/{blob.sha256}"
        if self.read_only or (not replace and self.has(path)):
            return False
        with open(source, "rb") as handle:
            digest = hashlib.sha256()
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
            if handle.tell() != blob.size or digest.hexdigest() != blob.sha256:
                return False
            handle.seek(0)
            self.put(path, handle, blob.size)
        return True


def redact(url: str) -> str:
    """``url`` without a password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host += f":{parts.port}"
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text)
