"""Read one Python file of the app and record what the build needs from it.

A scan is a pure function of the file's bytes (and its path): it parses the file
with ``ast`` and never imports or runs it. It records

- the module's imports and top-level assignments (so another module's endpoint
  can use a constant defined here),
- every endpoint it defines: ``@Endpoint(...)`` on functions and classes,
  ``@ep`` with ``ep = Endpoint(...)``, and ``@ep.get/post/...("/path")`` routes,
- ``Endpoint(...)`` objects bound to module-level names (route owners and
  client-mode endpoints),
- which names each endpoint calls (for ``makes_remote_calls``).

Endpoint arguments are kept as source text with their position; the manifest
phase evaluates them once every module's constants are known.
"""

from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import PurePosixPath
from typing import Any

from .errors import BuildError

SDK_PACKAGE = "runpod_flash"
#: Minor versions of the worker Pythons, oldest first.
SUPPORTED_MINORS = (10, 11, 12)
ROUTE_METHODS = frozenset({"get", "post", "put", "delete", "patch"})
#: Decorators that turn a method into something other than a plain function,
#: so the SDK does not list it among a class endpoint's methods.
NON_FUNCTION_DECORATORS = frozenset({"staticmethod", "classmethod", "property", "cached_property"})

Expr = dict[str, Any]  # {"src": str, "line": int, "col": int}


def module_name(relpath: str) -> str:
    """``workers/gpu.py`` -> ``workers.gpu``; ``pkg/__init__.py`` -> ``pkg``."""
    parts = list(PurePosixPath(relpath).with_suffix("").parts)
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def decode_source(data: bytes, relpath: str) -> str:
    """Decode a Python file the way the interpreter would (BOM, coding cookie)."""
    line = col = None
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        reason = f"byte 0x{data[exc.start]:02x} is not valid {exc.encoding}"
    except (SyntaxError, LookupError) as exc:
        reason = str(exc)
    raise BuildError(
        f"cannot decode {relpath}: {reason}",
        path=relpath,
        line=line,
        col=col,
        hint="save the file as UTF-8 (or declare its encoding with a '# -*- coding: ... -*-' line)",
    )


def parse_source(data: bytes, relpath: str) -> tuple[ast.Module, str]:
    """Parse a file, turning syntax errors into a located ``BuildError``."""
    text = decode_source(data, relpath)
    try:
        tree = ast.parse(text, filename=relpath)
    except (RecursionError, MemoryError):
        # CPython's parser reports nesting deeper than its stack this way.
        raise BuildError(
            f"{relpath} nests expressions too deeply for Python's parser",
            path=relpath,
            line=1,
            col=1,
            hint="split the deepest expression (a very long chain of operators or brackets) into smaller parts",
        ) from None
    except SyntaxError as exc:
        host = f"{sys.version_info[0]}.{sys.version_info[1]}"
        raise BuildError(
            f"syntax error: {exc.msg}",
            path=relpath,
            line=exc.lineno,
            col=exc.offset,
            hint="fix the syntax error; every shipped .py file must parse. Syntax newer than the Python "
            f"running flash (e.g. 3.12's `type X = ...`) needs flash to run on that Python (this is Python {host})",
        ) from None
    return tree, text


def oldest_python(text: str) -> dict[str, Any] | None:
    """The oldest supported worker Python whose grammar accepts ``text``, and why not older.

    Returns None when every supported version parses it; otherwise
    ``{"version": "3.11", "line": ..., "col": ..., "msg": ...}`` where the position is
    the first construct the older grammar rejects.
    """
    failure: dict[str, Any] | None = None
    for minor in SUPPORTED_MINORS:
        if (3, minor) >= sys.version_info[:2]:
            break
        try:
            ast.parse(text, feature_version=(3, minor))
        except SyntaxError as exc:
            failure = {"version": f"3.{minor + 1}", "line": exc.lineno, "col": exc.offset, "msg": exc.msg}
            continue
        return failure
    return failure


class _Scanner:
    def __init__(self, relpath: str, text: str) -> None:
        self.relpath = relpath
        self.text = text
        # Lines as the tokenizer counts them, in UTF-8 (ast offsets are byte offsets).
        self.lines = [m.group(0).encode("utf-8") for m in re.finditer(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+$", text)]
        self.module = module_name(relpath)
        self.is_package = PurePosixPath(relpath).name == "__init__.py"
        self.imports: dict[str, dict[str, Any]] = {}
        self.assigns: dict[str, list[Expr]] = {}
        self.endpoint_vars: dict[str, dict[str, Any]] = {}
        self.endpoints: list[dict[str, Any]] = []
        #: Module-level functions and classes (their last definition's line).
        self.defs: dict[str, int] = {}
        self.unsupported: list[dict[str, Any]] = []

    # -- helpers ---------------------------------------------------------------

    def segment(self, node: ast.AST) -> str:
        """The source text of ``node`` (``ast.get_source_segment`` re-splits the file each call)."""
        lines = self.lines
        first, last = node.lineno - 1, node.end_lineno - 1  # type: ignore[attr-defined]
        start, end = node.col_offset, node.end_col_offset  # type: ignore[attr-defined]
        if first == last:
            return str(lines[first][start:end].decode("utf-8"))
        parts = [lines[first][start:], *lines[first + 1:last], lines[last][:end]]
        return b"".join(parts).decode("utf-8")

    def column(self, node: ast.AST) -> int:
        """1-based column in characters (ast counts UTF-8 bytes)."""
        line: int = node.lineno  # type: ignore[attr-defined]
        offset: int = node.col_offset  # type: ignore[attr-defined]
        return len(self.lines[line - 1][:offset].decode("utf-8", "replace")) + 1

    def expr(self, node: ast.AST) -> Expr:
        line: int = node.lineno  # type: ignore[attr-defined]
        return {"src": self.segment(node), "line": line, "col": self.column(node)}

    def absolute_module(self, module: str | None, level: int) -> str:
        """Resolve ``from ..x import y`` against this file's package."""
        if level == 0:
            return module or ""
        package = self.module.split(".") if self.is_package else self.module.split(".")[:-1]
        if level > 1:
            package = package[: len(package) - (level - 1)]
        base = ".".join(package)
        if module:
            return f"{base}.{module}" if base else module
        return base

    def dotted(self, node: ast.AST) -> str | None:
        """``a.b.c`` for a Name/Attribute chain, else None."""
        parts: list[str] = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name):
            parts.append(node.id)
            return ".".join(reversed(parts))
        return None

    def qualify(self, dotted: str) -> str:
        """Replace the first component of a dotted name by what it was imported as."""
        head, _, rest = dotted.partition(".")
        imp = self.imports.get(head)
        if imp is None:
            return dotted
        base = imp["module"] if imp["name"] is None else f"{imp['module']}.{imp['name']}"
        return f"{base}.{rest}" if rest else base

    def is_endpoint_class(self, func: ast.AST) -> bool:
        dotted = self.dotted(func)
        if dotted is None:
            return False
        qualified = self.qualify(dotted)
        return qualified.split(".")[0] == SDK_PACKAGE and qualified.endswith(".Endpoint")

    def call_record(self, call: ast.Call) -> dict[str, Any]:
        #: ``**settings`` arguments, in order (an Endpoint call evaluates them; other calls refuse them).
        unpack = [self.expr(kw.value) for kw in call.keywords if kw.arg is None]
        starred = any(isinstance(a, ast.Starred) for a in call.args)
        return {
            "args": [self.expr(a) for a in call.args],
            "kwargs": {kw.arg: self.expr(kw.value) for kw in call.keywords if kw.arg is not None},
            "unpack": unpack,
            "starred": starred,
            "star": starred or bool(unpack),
            "line": call.lineno,
            "col": self.column(call),
        }

    # -- walking -----------------------------------------------------------------

    def run(self, tree: ast.Module) -> dict[str, Any]:
        self.body(tree.body)
        return {
            "path": self.relpath,
            "module": self.module,
            "is_package": self.is_package,
            "imports": self.imports,
            "assigns": self.assigns,
            "endpoint_vars": self.endpoint_vars,
            "endpoints": self.endpoints,
            "defs": self.defs,
            "unsupported": self.unsupported,
        }

    def body(self, statements: list[ast.stmt]) -> None:
        for stmt in statements:
            self.statement(stmt)

    def statement(self, stmt: ast.stmt) -> None:
        if isinstance(stmt, ast.Import):
            for alias in stmt.names:
                if alias.asname:
                    self.imports[alias.asname] = {"module": alias.name, "name": None, "line": stmt.lineno}
                else:
                    top = alias.name.split(".")[0]
                    self.imports[top] = {"module": top, "name": None, "line": stmt.lineno}
        elif isinstance(stmt, ast.ImportFrom):
            base = self.absolute_module(stmt.module, stmt.level)
            for alias in stmt.names:
                if alias.name == "*":
                    continue
                self.imports[alias.asname or alias.name] = {"module": base, "name": alias.name, "line": stmt.lineno}
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)):
            self.assignment(stmt)
        elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            self.defs[stmt.name] = stmt.lineno
            self.definition(stmt)
        elif isinstance(stmt, ast.If):
            self.body(stmt.body)
            self.body(stmt.orelse)
        elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
            self.body(stmt.body)  # type: ignore[attr-defined]
            for handler in stmt.handlers:  # type: ignore[attr-defined]
                self.body(handler.body)
            self.body(stmt.orelse)  # type: ignore[attr-defined]
            self.body(stmt.finalbody)  # type: ignore[attr-defined]
        elif isinstance(stmt, ast.With):
            self.body(stmt.body)

    def assignment(self, stmt: ast.Assign | ast.AnnAssign) -> None:
        value = stmt.value
        if value is None:
            return
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
        names = [t.id for t in targets if isinstance(t, ast.Name)]
        if not names:
            return
        record = self.expr(value)
        for name in names:
            self.assigns.setdefault(name, []).append(record)
            if isinstance(value, ast.Call) and self.is_endpoint_class(value.func):
                self.endpoint_vars[name] = {"call": self.call_record(value), "line": stmt.lineno}
            else:
                self.endpoint_vars.pop(name, None)

    def definition(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> None:
        for deco in node.decorator_list:
            record = self.decorator(deco)
            if record is None:
                continue
            record.update(self.target_info(node))
            record["decorator_line"] = deco.lineno
            record["decorator_col"] = self.column(deco)
            self.endpoints.append(record)
            return

    def decorator(self, deco: ast.expr) -> dict[str, Any] | None:
        """What kind of endpoint decorator ``deco`` is, if any."""
        if isinstance(deco, ast.Call):
            if self.is_endpoint_class(deco.func):
                return {"kind": "qb", "endpoint": {"call": self.call_record(deco)}}
            func = deco.func
            if (
                isinstance(func, ast.Attribute)
                and func.attr in ROUTE_METHODS
                and isinstance(func.value, ast.Name)
            ):
                return {
                    "kind": "route",
                    "method": func.attr.upper(),
                    "route": self.call_record(deco),
                    "endpoint": {"var": func.value.id},
                }
            dotted = self.dotted(func)
            if dotted is not None and self.qualify(dotted) in (f"{SDK_PACKAGE}.remote", f"{SDK_PACKAGE}.client.remote"):
                # The SDK's older form: @remote(resource_config, dependencies=[...], method=, path=)
                return {"kind": "remote", "remote": self.call_record(deco), "endpoint": {"remote": True}}
            return None
        if isinstance(deco, (ast.Name, ast.Attribute)) and (self.dotted(deco) or "").endswith("remote"):
            dotted = self.dotted(deco) or ""
            if self.qualify(dotted) in (f"{SDK_PACKAGE}.remote", f"{SDK_PACKAGE}.client.remote"):
                self.unsupported.append({"what": "@remote without a resource config", "line": deco.lineno, "col": self.column(deco)})
                return None
        if isinstance(deco, ast.Name):
            if self.is_endpoint_class(deco):
                self.unsupported.append(
                    {"what": "bare @Endpoint", "line": deco.lineno, "col": self.column(deco)}
                )
                return None
            # ``@ep`` where ep may be an Endpoint object (here or imported); decided later.
            return {"kind": "qb", "endpoint": {"var": deco.id}, "maybe": True}
        return None

    def target_info(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> dict[str, Any]:
        info: dict[str, Any] = {
            "target": node.name,
            "line": node.lineno,
            "col": self.column(node),
            "is_class": isinstance(node, ast.ClassDef),
            "is_async": isinstance(node, ast.AsyncFunctionDef),
            "calls": sorted(
                {
                    n.func.id
                    for n in ast.walk(node)
                    if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
                }
            ),
        }
        if isinstance(node, ast.ClassDef):
            methods: list[str] = []
            any_async = False
            for item in node.body:
                if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                if item.name.startswith("_"):
                    continue
                deco_names = {self.dotted(d) or "" for d in item.decorator_list}
                if deco_names & NON_FUNCTION_DECORATORS or any(
                    n.rsplit(".", 1)[-1] in NON_FUNCTION_DECORATORS for n in deco_names
                ):
                    continue
                if item.name in methods:
                    methods.remove(item.name)  # a redefinition replaces the earlier one
                methods.append(item.name)
                any_async = any_async or isinstance(item, ast.AsyncFunctionDef)
            # The last definition of a name decides whether it is async.
            last_defs = {
                item.name: item
                for item in node.body
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)) and item.name in methods
            }
            info["class_methods"] = methods
            info["class_is_async"] = any(isinstance(d, ast.AsyncFunctionDef) for d in last_defs.values())
        return info


def scan_source(data: bytes, relpath: str) -> dict[str, Any]:
    """Scan one file's bytes; ``relpath`` is its POSIX path inside the app."""
    tree, text = parse_source(data, relpath)
    result = _Scanner(relpath, text).run(tree)
    needs = oldest_python(text)
    if needs is not None:
        _point_at_construct(tree, needs)
    result["needs_python"] = needs
    return result


def _point_at_construct(tree: ast.Module, needs: dict[str, Any]) -> None:
    """Move the position to the construct itself where the parser reports a later line."""
    try_star = getattr(ast, "TryStar", None)
    if try_star is None or needs["version"] != "3.11":
        return
    for node in ast.walk(tree):
        if isinstance(node, try_star) and node.handlers:
            handler = node.handlers[0]
            needs["line"], needs["col"] = handler.lineno, handler.col_offset + 1
            return
