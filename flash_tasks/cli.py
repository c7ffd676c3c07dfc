"""``flash``: the command line. It parses, runs a command and reports.

Commands live in ``flash_tasks.commands``: ``build`` (also ``--watch``,
``--explain``, ``--json``), ``init``, ``clean``, ``inspect`` and ``cache``.

Exit codes: 0 success, 1 a problem in the app, 2 a usage error, 3 a
dependency resolution or download failure, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from . import __version__
from .errors import FlashError, UsageError

EXIT_INTERRUPTED = 130

BUILD_EXAMPLES = """\
examples:
  flash build                          build the app in this folder
  flash build -C path/to/app           build another folder
  flash build --watch                  rebuild on every save (Ctrl-C to stop)
  flash build --explain                say why each step ran or was skipped
  flash build --json | jq .artifact    machine-readable result on stdout
  flash build --no-deps                install only direct dependencies
  flash build -o my-app.tar.gz         name the artifact (inside .flash/)
  flash build --exclude transformers   leave a large package out (torch & co. always are)
  flash build --python-version 3.11    target Python 3.11 workers

exit codes: 0 built, 1 a problem in the app, 2 usage error, 3 dependency
resolution or download failure, 130 interrupted
"""

INIT_EXAMPLES = """\
examples:
  flash init my-app          create my-app/ with a starter app, then: cd my-app && flash build
  flash init                 add the starter app to the current folder
  flash init my-app --force  overwrite starter files that already exist
"""

CLEAN_EXAMPLES = """\
examples:
  flash clean                  remove .flash/ (build tree, artifact, manifest, state)
  flash clean --keep-locks     keep .flash/locks/ so the next build resolves nothing again
  flash clean -C path/to/app   clean another folder
"""

INSPECT_EXAMPLES = """\
examples:
  flash inspect                        the artifact of the app in this folder
  flash inspect dist/app.tar.gz        any artifact
  flash inspect --top 40               list more top-level entries
  flash inspect --json                 machine-readable
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``UsageError`` (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see '{self.prog} --help'")


def _color_option(parser: argparse.ArgumentParser, default: object) -> None:
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=default,
        help="colour the output: auto (a terminal, unless NO_COLOR is set), always or never",
    )


def make_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="flash",
        description="Build Runpod Flash apps into deployable artifacts, incrementally.",
        epilog="run 'flash COMMAND --help' for a command's options and examples",
    )
    parser.add_argument("--version", action="version", version=f"flash-tasks {__version__}")
    _color_option(parser, "auto")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        # SUPPRESS: 'flash --color never build' and 'flash build --color never' both work.
        _color_option(p, argparse.SUPPRESS)
        return p

    build = command(
        "build",
        "build the app: manifest, handlers, dependencies and artifact",
        "Build the Flash app: .flash/flash_manifest.json, .flash/.build/ and .flash/artifact.tar.gz. "
        "Only the phases whose inputs changed run again.",
        BUILD_EXAMPLES,
    )
    build.add_argument("-C", "--directory", default=".", metavar="DIR", help="the app folder (default: the current folder)")
    build.add_argument("--no-deps", action="store_true", help="install only direct dependencies, not what they depend on")
    build.add_argument("-o", "--output", default="artifact.tar.gz", metavar="NAME", help="artifact file name inside .flash/ (default: artifact.tar.gz)")
    build.add_argument("--exclude", default="", metavar="A,B", help="comma-separated packages to leave out (torch, torchvision, torchaudio, triton always are)")
    build.add_argument("--python-version", default=None, metavar="X.Y", help="worker Python: 3.10, 3.11 or 3.12 (default: 3.12)")
    build.add_argument("--upgrade", action="store_true", help="resolve dependencies again instead of reusing the locks")
    build.add_argument(
        "--verify", action="store_true", help="re-read every cached piece of .flash/ instead of trusting unchanged file stamps"
    )
    build.add_argument(
        "--runpod-flash-version",
        default=None,
        metavar="X.Y.Z",
        help="the runpod-flash SDK to bundle (default: [tool.flash-tasks] runpod-flash-version in the app's pyproject.toml, else 1.21.0)",
    )
    build.add_argument("--index-url", default=None, metavar="URL", help="package index to resolve from (default: PyPI)")
    build.add_argument("--find-links", action="append", default=[], metavar="DIR|URL", help="extra folder or page of wheels (repeatable)")
    build.add_argument("--no-index", action="store_true", help="use only --find-links locations, no index")
    build.add_argument("--watch", action="store_true", help="build, then rebuild whenever a shipped file changes (Ctrl-C to stop)")
    build.add_argument("--explain", action="store_true", help="say why each task ran (which input changed) or was skipped")
    build.add_argument("--json", action="store_true", help="print only a JSON result (or error) on stdout")
    build.add_argument("-q", "--quiet", action="store_true", help="print only errors")
    build.add_argument("-v", "--verbose", action="store_true", help="show each task run or skipped and why, and tracebacks")
    # -- shared caches (flash_tasks.cache)
    build.add_argument("--cache-dir", default=None, metavar="DIR", help="the shared segment cache (default: FLASH_TASKS_CACHE_DIR, else ~/.cache/flash-tasks)")
    build.add_argument("--remote-cache", default=None, metavar="URL", help="a Bazel HTTP cache for dependency segments (default: FLASH_TASKS_REMOTE_CACHE)")
    build.add_argument("--remote-cache-read-only", action="store_true", help="download from the remote cache, never upload")
    cache = command("cache", "show, prune or clear the shared cache", "Look after the shared per-user cache of compressed dependency segments.", "")
    cache.add_argument("action", choices=("info", "prune", "clear"), help="info: where and how big; prune: evict least recently used to the limit; clear: empty it")
    cache.add_argument("--cache-dir", default=None, metavar="DIR", help="the cache folder (default: FLASH_TASKS_CACHE_DIR, else ~/.cache/flash-tasks)")
    cache.add_argument("--max", default=None, metavar="SIZE", help="prune to this size (default: FLASH_TASKS_CACHE_MAX, else 5G)")
    cache.add_argument("--json", action="store_true", help="info as JSON")
    # -- end shared caches

    init = command(
        "init",
        "create a starter app that builds as it is",
        "Create a small working Flash app (a GPU worker, a CPU class worker and an HTTP API) in DIR. "
        "Existing files are never overwritten unless --force is given.",
        INIT_EXAMPLES,
    )
    init.add_argument("directory", nargs="?", default=".", metavar="DIR", help="where to create the app (default: the current folder)")
    init.add_argument("--force", action="store_true", help="overwrite starter files that already exist")
    init.add_argument("-q", "--quiet", action="store_true", help="print only errors")

    clean = command(
        "clean",
        "remove .flash/ (build tree, artifact, manifest, build state)",
        "Remove the app's .flash/ folder: the build tree, the artifact, the manifest and the build state. "
        "The next build starts from scratch.",
        CLEAN_EXAMPLES,
    )
    clean.add_argument("-C", "--directory", default=".", metavar="DIR", help="the app folder (default: the current folder)")
    clean.add_argument("--keep-locks", action="store_true", help="keep .flash/locks/ (the resolved dependency versions)")
    clean.add_argument("-q", "--quiet", action="store_true", help="print only errors")

    inspect = command(
        "inspect",
        "list what an artifact holds and which endpoint each handler serves",
        "List an artifact's contents, biggest top-level entries first, and the endpoint each generated "
        "handler serves (from the flash_manifest.json inside it). Nothing is unpacked to disk.",
        INSPECT_EXAMPLES,
    )
    inspect.add_argument("artifact", nargs="?", default=None, metavar="ARTIFACT", help="the .tar.gz to inspect (default: DIR/.flash/artifact.tar.gz)")
    inspect.add_argument("-C", "--directory", default=".", metavar="DIR", help="the app folder whose artifact to inspect (default: the current folder)")
    inspect.add_argument("-n", "--top", type=int, default=15, metavar="N", help="how many top-level entries to list (default: 15; 0 for all)")
    inspect.add_argument("--json", action="store_true", help="print only a JSON description on stdout")
    return parser


def _build_config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from .config import BuildConfig

    return BuildConfig(
        app_dir=Path(args.directory),
        no_deps=args.no_deps,
        output=args.output,
        exclude=tuple(args.exclude.split(",")) if args.exclude else (),
        python_version=args.python_version,
        upgrade=args.upgrade,
        verify=args.verify,
        index_url=args.index_url,
        find_links=tuple(args.find_links),
        no_index=args.no_index,
        runpod_flash_version=args.runpod_flash_version,
    )


def cmd_build(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .commands.build import BuildOptions, build_once

    if args.watch and args.json:
        raise UsageError("--watch and --json cannot be combined", hint="use --json for one build, --watch to rebuild on every save")
    if args.quiet and args.verbose:
        raise UsageError("-q and -v cannot be combined")
    options = BuildOptions(json=args.json, quiet=args.quiet, verbose=args.verbose, explain=args.explain, color=args.color)
    config = _build_config(args)
    # Shared caches (flash_tasks.cache, loaded only when used): the command line's choices, then uploads joined.
    if args.cache_dir or args.remote_cache or args.remote_cache_read_only or "flash_tasks.cache" in sys.modules:
        from .cache import configure

        configure(cache_dir=args.cache_dir, remote_url=args.remote_cache, read_only=args.remote_cache_read_only)
    try:
        if args.watch:
            from .commands.watch import watch

            return watch(config, options, out, err)
        return build_once(config, options, out, err)
    finally:
        if "flash_tasks.cache" in sys.modules:
            sys.modules["flash_tasks.cache"].finish(None if args.quiet else err)


def cmd_init(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .commands.init import init_app
    from .commands.output import Console

    return init_app(Path(args.directory), force=args.force, console=Console.create(out, args.color, quiet=args.quiet))


def cmd_clean(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .commands.clean import clean_app
    from .commands.output import Console

    return clean_app(
        Path(args.directory),
        keep_locks=args.keep_locks,
        console=Console.create(out, args.color, quiet=args.quiet),
        wait_stream=None if args.quiet else err,
    )


def cmd_inspect(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .commands.inspect import inspect_artifact
    from .commands.output import Console

    if args.top < 0:
        raise UsageError("--top must be 0 (all) or more")
    return inspect_artifact(
        Path(args.artifact) if args.artifact else None,
        app_dir=Path(args.directory),
        top=args.top,
        as_json=args.json,
        console=Console.create(out, args.color),
    )


def cmd_cache(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from . import cache
    from .commands.cache import cache_command
    from .commands.output import Console

    cache.configure(cache_dir=args.cache_dir)
    return cache_command(args.action, max_size=args.max, as_json=args.json, console=Console.create(out, args.color), out=out)


COMMANDS = {"build": cmd_build, "init": cmd_init, "clean": cmd_clean, "inspect": cmd_inspect, "cache": cmd_cache}


def _color_from_argv(argv: Sequence[str]) -> str:
    """The --color choice, also when argparse failed before reading it."""
    mode = "auto"
    for i, arg in enumerate(argv):
        if arg == "--color" and i + 1 < len(argv):
            mode = argv[i + 1]
        elif arg.startswith("--color="):
            mode = arg.split("=", 1)[1]
    return mode if mode in ("auto", "always", "never") else "auto"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flash`` command; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv or bool(os.environ.get("FLASH_DEBUG"))
    json_mode = "--json" in argv
    color = _color_from_argv(argv)
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help(out)
            return 2
        return COMMANDS[args.command](args, out, err)
    except FlashError as exc:
        if json_mode:
            from .commands.results import dump, error_result

            out.write(dump(error_result(exc.to_dict())) + "\n")
        else:
            from .commands.output import Console, render_error

            err.write(render_error(exc, Console.create(err, color)) + "\n")
        if verbose:
            import traceback

            traceback.print_exception(exc, file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        if json_mode:
            from .commands.results import dump, error_result

            error = {"kind": "interrupted", "code": EXIT_INTERRUPTED, "message": "interrupted"}
            out.write(dump(error_result(error)) + "\n")
        else:
            err.write("interrupted; the previous artifact was left as it was\n")
        return EXIT_INTERRUPTED
    except Exception as exc:
        if json_mode:  # a bug: still answer in JSON, and keep the traceback on stderr
            from .commands.results import dump, error_result

            out.write(dump(error_result({"kind": "internal", "code": 1, "message": f"internal error: {exc!r}"})) + "\n")
        raise


def entry() -> None:
    sys.exit(main())
