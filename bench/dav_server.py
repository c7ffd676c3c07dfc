"""A WsgiDAV server on 127.0.0.1 for ``bench_cache.py``, optionally misbehaving.

Run: ``python bench/dav_server.py --root DIR --port N [--delay S] [--require-auth] [--log FILE]``.

* plain: serves ``DIR`` (``cas/`` and ``ac/``, Bazel's HTTP cache layout), anyone may read and write;
* ``--delay S``: every request waits ``S`` seconds before WsgiDAV sees it (a slow server or a
  congested link: the TCP connection is accepted at once, the answer comes late);
* ``--require-auth``: WsgiDAV asks for HTTP basic credentials of a user nobody is given, so a
  client with no token or a wrong one gets 401 on every request;
* ``--log FILE``: ``> TIME METHOD PATH`` appended when a request arrives (before any delay)
  and ``< TIME METHOD PATH STATUS BYTES`` once it is answered (TIME: Unix seconds; BYTES: of
  the body sent back), for the bench to count what was asked and served, and when.

It runs in its own process so that its threads never share an interpreter with the build
being timed or the bench's memory sampler. It prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def make_app(root: Path, *, require_auth: bool) -> WsgiApp:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "provider_mapping": {"/": {"root": str(root), "readonly": False}},
        "verbose": 0,
        "logging": {"enable": False, "enable_loggers": []},
        "property_manager": None,
        "lock_storage": None,
    }
    if require_auth:
        config["http_authenticator"] = {"accept_basic": True, "accept_digest": False, "default_to_digest": False}
        config["simple_dc"] = {"user_mapping": {"*": {"ci": {"password": secrets.token_hex(16)}}}}
    else:
        config["simple_dc"] = {"user_mapping": {"*": True}}
    app: WsgiApp = WsgiDAVApp(config)
    return app


def delayed(app: WsgiApp, seconds: float) -> WsgiApp:
    def handler(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        time.sleep(seconds)
        return app(environ, start_response)

    return handler


def logged(app: WsgiApp, path: Path) -> WsgiApp:
    """Append ``> TIME METHOD PATH`` when a request arrives and ``< TIME METHOD PATH STATUS BYTES`` when answered."""
    lock = threading.Lock()

    def write(line: str) -> None:
        with lock, open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def handler(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}"
        write(f"> {time.time():.3f} {request}")
        status = ["-"]

        def recording(code: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[0] = code.split(" ", 1)[0]
            return start_response(code, headers, exc_info) if exc_info is not None else start_response(code, headers)

        sent = 0
        result = app(environ, recording)
        try:
            for chunk in result:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
            write(f"< {time.time():.3f} {request} {status[0]} {sent}")

    return handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=0.0, help="seconds every request waits before it is handled")
    parser.add_argument("--require-auth", action="store_true", help="answer 401 to any client without the (secret) credentials")
    parser.add_argument("--log", type=Path, help="append one line per request to this file")
    args = parser.parse_args()
    for kind in ("cas", "ac"):
        (args.root / kind).mkdir(parents=True, exist_ok=True)
    app = make_app(args.root, require_auth=args.require_auth)
    if args.delay > 0:
        app = delayed(app, args.delay)
    if args.log is not None:
        app = logged(app, args.log)
    server = wsgi.Server(("127.0.0.1", args.port), app, numthreads=16)
    server.prepare()
    print("ready", flush=True)
    try:
        server.serve()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
