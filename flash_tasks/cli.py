"""``flash``: the command line. It parses, runs a command and reports.

Commands live in ``flash_tasks.commands``: ``build`` (also ``--watch``,
``--explain``, ``--json``), ``init``, ``clean``, ``inspect`` and ``cache``. Every other
command is runpod-flash's and is handed to its own CLI (``forward``).

Global options (``--color``, ``-q``) go before or after the command. A
mistyped command or option gets a "did you mean" pointing at that command's
help; usage errors never show a traceback.

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
  flash build --include torchvision    keep one of those always left out
  flash build --python-version 3.11    target Python 3.11 workers

exit codes: 0 built, 1 a problem in the app, 2 usage error, 3 dependency
resolution or download failure, 130 interrupted
"""

INIT_EXAMPLES = """\
examples:
  flash init my-app          create my-app/ with a starter app, then: cd my-app && flash build
  flash init                 add the starter app to the current folder
  flash init my-app -f       overwrite starter files that already exist
"""

CLEAN_EXAMPLES = """\
examples:
  flash clean                  remove .flash/ (build tree, artifact, manifest, state)
  flash clean --keep-locks     keep .flash/locks/ so the next build resolves nothing again
  flash clean -C path/to/app   clean another folder
"""

INSPECT_EXAMPLES = """\
examples:
  flash inspect                        the artifact of the last build in this folder (whatever -o it used)
  flash inspect dist/app.tar.gz        any artifact
  flash inspect --top 40               list more top-level entries
  flash inspect --json                 machine-readable
"""


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors as ``UsageError`` (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see '{self.prog} --help'")


OUR_COMMANDS = ("build", "init", "clean", "inspect", "cache")
#: Options of the ``flash`` command itself that take a value (to find the command word after them).
_GLOBAL_WITH_VALUE = ("--color",)


def _global_options(parser: argparse.ArgumentParser, default: object) -> None:
    """--color and -q, accepted before the command (``default``) and after it (SUPPRESS)."""
    parser.add_argument(
        "--color",
        choices=("auto", "always", "never"),
        default=default if default is argparse.SUPPRESS else "auto",
        help="colour the output: auto (a terminal, unless NO_COLOR is set), always or never",
    )
    parser.add_argument("-q", "--quiet", action="store_true", default=default if default is argparse.SUPPRESS else False, help="print only errors")


def version_text() -> str:
    """``flash --version``: this package, and the runpod-flash that runs the other commands."""
    from .forward import InProcess, find_target

    text = f"flash-tasks {__version__}"
    target = find_target()
    if isinstance(target, InProcess):
        text += f"\nrunpod-flash {target.version} (runs: {', '.join(_their_commands())})"
    elif target is not None:
        text += f"\n{target.describe()} (runs: {', '.join(_their_commands())})"
    return text


def _their_commands() -> list[str]:
    from .forward import THEIR_COMMANDS

    return [name for name in THEIR_COMMANDS if name != "run"]


def top_epilog() -> str:
    """The second half of ``flash --help``: runpod-flash's commands and whether they can run here."""
    from .forward import DISTRIBUTION, THEIR_COMMANDS, find_target

    target = find_target()
    status = f"not installed here: pip install {DISTRIBUTION}" if target is None else f"run by {target.describe()}"
    lines = [f"runpod-flash commands ({status}):"]
    for name, what in THEIR_COMMANDS.items():
        if name != "run":
            lines.append(f"    {name:<20}{what}")
    lines.append(f"    {'...':<20}any other command is handed to runpod-flash as it is")
    lines.append("")
    lines.append("run 'flash COMMAND --help' for a command's options and examples")
    return "\n".join(lines)


class _TopParser(_Parser):
    """The ``flash`` parser: its epilog (runpod-flash's commands) is worked out only when shown."""

    def format_help(self) -> str:
        self.epilog = top_epilog()
        return super().format_help()


class _VersionAction(argparse.Action):
    """``-v``/``--version``: looks for runpod-flash only when asked."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object, option_string: str | None = None) -> None:
        sys.stdout.write(version_text() + "\n")
        parser.exit()


def make_parser() -> argparse.ArgumentParser:
    parser = _TopParser(
        prog="flash",
        description="Build Runpod Flash apps into deployable artifacts, incrementally (flash-tasks).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action=_VersionAction)
    _global_options(parser, None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser, title="flash-tasks commands")

    def command(name: str, help: str, description: str, examples: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=description, epilog=examples, formatter_class=argparse.RawDescriptionHelpFormatter)
        # SUPPRESS: 'flash -q --color never build' and 'flash build -q --color never' both work.
        _global_options(p, argparse.SUPPRESS)
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
    build.add_argument(
        "--include",
        action="append",
        default=[],
        metavar="A,B",
        help="keep always-excluded packages (e.g. torchvision for an image that lacks it); also [tool.flash-tasks] include = [...]",
    )
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
    init.add_argument("-f", "--force", action="store_true", help="overwrite starter files that already exist")

    clean = command(
        "clean",
        "remove .flash/ (build tree, artifact, manifest, build state)",
        "Remove the app's .flash/ folder: the build tree, the artifact, the manifest and the build state. "
        "The next build starts from scratch.",
        CLEAN_EXAMPLES,
    )
    clean.add_argument("-C", "--directory", default=".", metavar="DIR", help="the app folder (default: the current folder)")
    clean.add_argument("--keep-locks", action="store_true", help="keep .flash/locks/ (the resolved dependency versions)")

    inspect = command(
        "inspect",
        "list what an artifact holds and which endpoint each handler serves",
        "List an artifact's contents, biggest top-level entries first, and the endpoint each generated "
        "handler serves (from the flash_manifest.json inside it). Nothing is unpacked to disk.",
        INSPECT_EXAMPLES,
    )
    inspect.add_argument("artifact", nargs="?", default=None, metavar="ARTIFACT", help="the .tar.gz to inspect (default: the artifact of DIR's last build)")
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
        include=tuple(name for value in args.include for name in value.split(",")),
        python_version=args.python_version,
        upgrade=args.upgrade,
        verify=args.verify,
        index_url=args.index_url,
        find_links=tuple(args.find_links),
        no_index=args.no_index,
        runpod_flash_version=args.runpod_flash_version,
        # One build run by this command: its runner completes .build after it when asked to (cache.fill).
        background_fill=not args.watch and os.environ.get("FLASH_TASKS_BACKGROUND_FILL", "").strip() not in ("0", "false", "no"),
    )


def cmd_build(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from .quick import ANSWERED, VERIFY, answer, eligible

    record = dict(vars(args))
    verdict = answer(record, out, err)
    if verdict == ANSWERED:
        return 0  # nothing changed since a build that had nothing to do: its output again
    if verdict == VERIFY:
        args.verify = True  # something other than a build changed .flash/: re-read it all
        record = dict(vars(args))
    # pydantic looks for plugins in every installed distribution's entry points when it builds its
    # first model (tens of ms); this process's models use none. A value the user set is kept.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
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
        return build_once(config, options, out, err, record=record if eligible(record) else None)
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
        console=Console.create(out, args.color, quiet=args.quiet and not args.json),
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


def split_command(argv: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """``argv`` as (options before the command, the command word, the rest)."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return list(argv[:i]), (argv[i + 1] if i + 1 < len(argv) else None), list(argv[i + 2 :])
        if arg in _GLOBAL_WITH_VALUE:
            i += 2
            continue
        if arg.startswith("-"):
            i += 1
            continue
        return list(argv[:i]), arg, list(argv[i + 1 :])
    return list(argv), None, []


def _close(word: str, choices: Sequence[str]) -> str | None:
    import difflib  # only for a mistyped command or option

    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None


def unknown_command(command: str) -> UsageError:
    from .forward import THEIR_COMMANDS

    guess = _close(command, [*OUR_COMMANDS, *THEIR_COMMANDS])
    if guess is not None:
        return UsageError(f"unknown command {command!r}", hint=f"did you mean 'flash {guess}'? see 'flash {guess} --help'")
    return UsageError(f"unknown command {command!r}", hint="see 'flash --help' for the commands")


def _option_strings(parser: argparse.ArgumentParser) -> list[str]:
    return [o for action in parser._actions for o in action.option_strings]


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found = action.choices.get(command)
            return found if isinstance(found, argparse.ArgumentParser) else None
    return None


def unknown_arguments(parser: argparse.ArgumentParser, command: str | None, extras: Sequence[str]) -> UsageError:
    """A usage error for what argparse did not recognise, with a guess for a mistyped option."""
    owner = (_subparser(parser, command) if command else None) or parser
    where = f"flash {command}" if command else "flash"
    for extra in extras:
        if extra.startswith("-") and extra != "-":
            name = extra.split("=", 1)[0]
            guess = _close(name, _option_strings(owner))
            hint = f"did you mean {guess}? see '{where} --help'" if guess else f"see '{where} --help' for its options"
            return UsageError(f"unknown option {name} for '{where}'", hint=hint)
    return UsageError(f"unexpected argument{'s' if len(extras) > 1 else ''} for '{where}': {' '.join(extras)}", hint=f"see '{where} --help'")


def route(argv: Sequence[str], parser: argparse.ArgumentParser) -> tuple[str | None, list[str]] | None:
    """(the command, the arguments) to hand to runpod-flash when ``argv`` is not for flash-tasks, else None.

    Options before the command that are not flash-tasks' own go along (e.g.
    runpod-flash's ``--install-completion``); flash-tasks' own stay behind.
    Raises ``UsageError`` for an unknown command: one close to a flash-tasks
    command, or any when runpod-flash is not installed.
    """
    before, command, rest = split_command(argv)
    if any(a in ("-h", "--help", "-v", "--version") for a in before):
        return None
    ours = _option_strings(parser)
    foreign = [a for a in before if a.startswith("-") and a.split("=", 1)[0] not in ours]
    for arg in foreign:  # a mistyped option of flash itself, e.g. 'flash --colour never build'
        if _close(arg.split("=", 1)[0], ours) is not None:
            raise unknown_arguments(parser, None, [arg])
    if command in OUR_COMMANDS or (command is None and not foreign):
        return None
    from .forward import THEIR_COMMANDS, find_target

    if command is not None:
        if command in THEIR_COMMANDS:
            return command, [*foreign, command, *rest]
        if find_target() is not None and _close(command, OUR_COMMANDS) is None:
            # A newer runpod-flash's command, or a typo of one of its commands: its CLI answers
            # either (it has its own "did you mean").
            return command, [*foreign, command, *rest]
        raise unknown_command(command)
    if find_target() is not None:
        return None, foreign
    return None


def _dispatch(argv: list[str], parser: argparse.ArgumentParser, out: IO[str], err: IO[str]) -> int:
    args, extras = parser.parse_known_args(argv)
    if extras:
        raise unknown_arguments(parser, args.command, extras)
    if args.command is None:
        parser.print_help(out)
        return 2
    return COMMANDS[args.command](args, out, err)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``flash`` command; returns the exit code."""
    out, err = sys.stdout, sys.stderr
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "--verbose" in argv or bool(os.environ.get("FLASH_DEBUG")) or ("-v" in argv and split_command(argv)[1] is not None)
    json_mode = "--json" in argv
    color = _color_from_argv(argv)
    try:
        parser = make_parser()
        forwarded = route(argv, parser)
        if forwarded is None:
            return _dispatch(argv, parser, out, err)
    except FlashError as exc:
        return _report(exc, out, err, json_mode=json_mode, color=color, verbose=verbose)
    except KeyboardInterrupt:
        return _interrupted(out, err, json_mode)
    except Exception as exc:
        if _caused_by_interrupt(exc):
            return _interrupted(out, err, json_mode)
        if json_mode:  # a bug: still answer in JSON, and keep the traceback on stderr
            from .commands.results import dump, error_result

            out.write(dump(error_result({"kind": "internal", "code": 1, "message": f"internal error: {exc!r}"})) + "\n")
        raise
    # Outside the handlers above: runpod-flash's output, errors, Ctrl-C and exit code are its own.
    from .forward import find_target, forward

    command, arguments = forwarded
    if command == "deploy":
        from .commands.deploy import deploy

        return deploy(arguments, find_target())
    return forward(arguments)


def _interrupted(out: IO[str], err: IO[str], json_mode: bool) -> int:
    if json_mode:
        from .commands.results import dump, error_result

        error = {"kind": "interrupted", "code": EXIT_INTERRUPTED, "message": "interrupted"}
        out.write(dump(error_result(error)) + "\n")
    else:
        err.write("interrupted; the previous artifact was left as it was\n")
    return EXIT_INTERRUPTED


def _caused_by_interrupt(exc: BaseException) -> bool:
    """A Ctrl-C that landed while a class was being built (a module importing) reaches us wrapped,
    e.g. as "RuntimeError: Error calling __set_name__": it is still an interrupt, not a bug."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _report(exc: FlashError, out: IO[str], err: IO[str], *, json_mode: bool, color: str, verbose: bool) -> int:
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


def entry() -> None:
    sys.exit(main())
