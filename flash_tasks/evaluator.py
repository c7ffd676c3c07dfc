"""A small, safe evaluator for endpoint arguments.

It understands what people write in ``Endpoint(...)``: literals, containers,
f-strings, arithmetic on those, module constants (also ones imported from other
project modules), the SDK's enums (``GpuGroup.ADA_24``), ``NetworkVolume(...)``,
``PodTemplate(...)`` and ``os.environ.get`` / ``os.getenv`` (whose values become
build inputs). It walks the ``ast`` and never executes anything: anything else is
a ``BuildError`` that names ``file:line:col``, shows the expression and says what
would work.
"""

from __future__ import annotations

import ast
import difflib
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import catalog
from .errors import BuildError

SDK_PACKAGE = "runpod_flash"
#: The SDK's resource classes, for the older ``@remote(resource_config)`` form.
RESOURCE_CLASSES = frozenset(
    {
        "LiveServerless",
        "CpuLiveServerless",
        "LiveLoadBalancer",
        "CpuLiveLoadBalancer",
        "ServerlessEndpoint",
        "CpuServerlessEndpoint",
        "LoadBalancerSlsResource",
        "CpuLoadBalancerSlsResource",
    }
)
#: SDK calls the evaluator builds a description of instead of running.
SDK_CALLS = frozenset({"NetworkVolume", "PodTemplate"}) | RESOURCE_CLASSES
MAX_STR = 1_000_000
MAX_ITEMS = 100_000
MAX_POW_EXPONENT = 128

WHAT_WORKS = (
    "endpoint arguments must be computable without running code: literals, lists, dicts, "
    "f-strings, module constants (also imported from your other modules), SDK enums such as "
    "GpuGroup.ADA_24 or CpuInstanceType.CPU3C_1_2, NetworkVolume(...), PodTemplate(...), "
    "and os.environ.get('NAME', 'default') / os.getenv(...)"
)


@dataclass(frozen=True)
class EnumValue:
    """A member of one of the SDK's enums, e.g. ``GpuGroup.ADA_24``."""

    enum: str
    member: str
    value: str

    def __str__(self) -> str:  # str-enums format as their value in f-strings
        return self.value


@dataclass(frozen=True)
class SdkObject:
    """A name that refers to an SDK class or enum (``GpuGroup``, ``NetworkVolume``)."""

    name: str


@dataclass
class SdkCall:
    """The arguments of an SDK constructor call, to be validated by the manifest."""

    name: str
    kwargs: dict[str, Any]
    path: str
    line: int
    col: int


@dataclass(frozen=True)
class Builtin:
    """One of the few pure builtins allowed in endpoint arguments (``str``, ``len``...)."""

    name: str


def _checked_len(value: Any) -> int:
    return len(value)


#: Builtins that only compute on plain values.
SAFE_BUILTINS: dict[str, Callable[..., Any]] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "len": _checked_len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "sorted": sorted,
    "list": list,
    "tuple": tuple,
    "dict": dict,
}


@dataclass(frozen=True)
class ModuleRef:
    """A module used as a value: a project module, ``os`` or ``os.environ``."""

    name: str


@dataclass
class Located:
    """Where an expression came from, for error messages."""

    path: str
    line: int
    col: int


class EvalError(Exception):
    def __init__(self, message: str, node: ast.AST | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitOr: operator.or_,
}
_CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_PLAIN = (str, int, float, bool, type(None))


def closest(name: str, options: list[str], n: int = 3) -> list[str]:
    """The valid names closest to ``name``, for "did you mean" hints."""
    matches = difflib.get_close_matches(name, options, n=n, cutoff=0.5)
    if not matches:
        matches = difflib.get_close_matches(name.upper(), [o.upper() for o in options], n=n, cutoff=0.4)
        upper = {o.upper(): o for o in options}
        matches = [upper[m] for m in matches]
    return matches


def did_you_mean(name: str, options: list[str]) -> str:
    near = closest(name, options)
    if near:
        return "did you mean " + " or ".join(near) + "?"
    return "valid values: " + ", ".join(options)


@dataclass
class Evaluator:
    """Evaluates expressions recorded by scans, in the context of their module."""

    scans_by_module: Mapping[str, dict[str, Any]]
    environ: Mapping[str, str]
    env_used: dict[str, str | None] = field(default_factory=dict)
    _active: set[tuple[str, str]] = field(default_factory=set)
    _cache: dict[tuple[str, str, int], Any] = field(default_factory=dict)

    # -- entry points ------------------------------------------------------------

    def evaluate(self, module: str, expr: Mapping[str, Any]) -> Any:
        """Evaluate a scan's ``{"src", "line", "col"}`` record inside ``module``."""
        scan = self.scans_by_module[module]
        src = expr["src"]
        try:
            tree = ast.parse("(" + src + "\n)", mode="eval")
        except SyntaxError:  # pragma: no cover - the source came from a parsed file
            raise BuildError(
                f"cannot read expression {src!r}", path=scan["path"], line=expr["line"], col=expr["col"]
            ) from None
        frame = _Frame(self, module, scan["path"], expr["line"], expr["col"], "(" + src + "\n)")
        try:
            return frame.eval(tree.body)
        except EvalError as exc:
            line, col = frame.position(exc.node)
            snippet = ast.get_source_segment("(" + src + "\n)", exc.node) if exc.node is not None else None
            message = exc.message
            if snippet and snippet != src:
                message += f" (in `{_short(snippet)}`)"
            elif snippet:
                message += f" (`{_short(snippet)}`)"
            raise BuildError(message, path=scan["path"], line=line, col=col, hint=exc.hint) from None

    def lookup(self, module: str, name: str, before_line: int | None, node: ast.AST | None) -> Any:
        """The value a module-level name has at ``before_line`` (None: at the end)."""
        scan = self.scans_by_module.get(module)
        if scan is None:
            raise EvalError(f"module {module!r} is not part of the app", node)
        key = (module, name, before_line or 0)
        if key in self._cache:
            return self._cache[key]
        if (module, name) in self._active:
            raise EvalError(f"{name!r} is defined in terms of itself", node)
        self._active.add((module, name))
        try:
            value = self._lookup(scan, module, name, before_line, node)
        finally:
            self._active.discard((module, name))
        self._cache[key] = value
        return value

    def _lookup(
        self, scan: dict[str, Any], module: str, name: str, before_line: int | None, node: ast.AST | None
    ) -> Any:
        candidates: list[tuple[int, str, Any]] = []
        for record in scan["assigns"].get(name, []):
            if before_line is None or record["line"] < before_line:
                candidates.append((record["line"], "assign", record))
        imp = scan["imports"].get(name)
        if imp is not None and (before_line is None or imp["line"] < before_line):
            candidates.append((imp["line"], "import", imp))
        if not candidates:
            if name in SAFE_BUILTINS and name not in scan["assigns"]:
                return Builtin(name)
            if name in scan["assigns"]:
                raise EvalError(f"{name!r} is used before it is assigned in {scan['path']}", node)
            raise EvalError(
                f"{name!r} is not defined at module level in {scan['path']}",
                node,
                hint=WHAT_WORKS,
            )
        _, kind, record = max(candidates, key=lambda c: c[0])
        if kind == "assign":
            return self.evaluate(module, record)
        return self.resolve_import(record["module"], record["name"], node)

    def resolve_import(self, module: str, name: str | None, node: ast.AST | None) -> Any:
        """The value of ``import module`` (name None) or ``from module import name``."""
        if name is None:
            return self.module_value(module, node)
        qualified = f"{module}.{name}" if module else name
        if module.split(".")[0] == SDK_PACKAGE:
            return self.sdk_symbol(name, node)
        if module == "os" and name in ("environ", "getenv"):
            return ModuleRef(f"os.{name}")
        if module in self.scans_by_module:
            scan = self.scans_by_module[module]
            if name in scan["assigns"] or name in scan["imports"]:
                return self.lookup(module, name, None, node)
        if qualified in self.scans_by_module:
            return ModuleRef(qualified)
        if module in self.scans_by_module:
            raise EvalError(f"{name!r} is not a module-level constant of {module!r}", node, hint=WHAT_WORKS)
        raise EvalError(
            f"{qualified!r} comes from outside the app, so its value is not known at build time",
            node,
            hint=WHAT_WORKS,
        )

    def module_value(self, module: str, node: ast.AST | None) -> Any:
        if module.split(".")[0] == SDK_PACKAGE:
            return ModuleRef(module)
        if module in ("os", "os.environ"):
            return ModuleRef(module)
        if module in self.scans_by_module or any(m.startswith(module + ".") for m in self.scans_by_module):
            return ModuleRef(module)
        raise EvalError(
            f"module {module!r} comes from outside the app, so its values are not known at build time",
            node,
            hint=WHAT_WORKS,
        )

    def sdk_symbol(self, name: str, node: ast.AST | None) -> Any:
        if name in catalog.ENUMS or name in SDK_CALLS or name == "Endpoint":
            return SdkObject(name)
        raise EvalError(f"runpod_flash.{name} cannot be used in endpoint arguments", node, hint=WHAT_WORKS)

    def read_env(self, name: Any, default: Any, node: ast.AST) -> Any:
        if not isinstance(name, str):
            raise EvalError("environment variable names must be strings", node)
        value = self.environ.get(name)
        self.env_used[name] = value
        return default if value is None else value


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class _Frame:
    """Evaluation of one expression record: knows its module and position."""

    def __init__(self, ev: Evaluator, module: str, path: str, line: int, col: int, text: str) -> None:
        self.ev = ev
        self.module = module
        self.path = path
        self.line = line
        self.col = col
        self.lines = [line.encode("utf-8") for line in text.split("\n")]

    def position(self, node: ast.AST | None) -> tuple[int, int]:
        if node is None or not hasattr(node, "lineno"):
            return self.line, self.col
        # ast counts UTF-8 bytes; people count characters.
        chars = len(self.lines[node.lineno - 1][: node.col_offset].decode("utf-8", "replace"))
        if node.lineno == 1:
            # Column 1 of the parsed text is the "(" we added.
            return self.line, self.col + chars - 1
        return self.line + node.lineno - 1, chars + 1

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:
            raise EvalError(
                f"cannot evaluate {type(node).__name__.lower()} expressions at build time",
                node,
                hint=WHAT_WORKS,
            )
        value = method(node)
        self.check_size(value, node)
        return value

    @staticmethod
    def check_size(value: Any, node: ast.AST) -> None:
        if isinstance(value, str) and len(value) > MAX_STR:
            raise EvalError("value is too large", node)
        if isinstance(value, (list, tuple, dict, set)) and len(value) > MAX_ITEMS:
            raise EvalError("value is too large", node)
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4096:
            raise EvalError("number is too large", node)

    # -- literals and containers ---------------------------------------------------

    def eval_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (bytes, complex)) or node.value is Ellipsis:
            raise EvalError(f"{type(node.value).__name__} values are not supported here", node)
        return node.value

    def eval_List(self, node: ast.List) -> list[Any]:
        return self.sequence(node.elts)

    def eval_Tuple(self, node: ast.Tuple) -> tuple[Any, ...]:
        return tuple(self.sequence(node.elts))

    def eval_Set(self, node: ast.Set) -> list[Any]:
        items = self.sequence(node.elts)
        out: list[Any] = []
        for item in items:
            if item not in out:
                out.append(item)
        return out

    def sequence(self, elts: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                value = self.eval(elt.value)
                if not isinstance(value, (list, tuple)):
                    raise EvalError("only lists and tuples can be unpacked with *", elt)
                out.extend(value)
            else:
                out.append(self.eval(elt))
        return out

    def eval_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values):
            if key is None:
                spread = self.eval(value)
                if not isinstance(spread, dict):
                    raise EvalError("only dicts can be unpacked with **", value)
                out.update(spread)
                continue
            k = self.eval(key)
            if isinstance(k, EnumValue):
                k = k.value
            if not isinstance(k, (str, int, float, bool)):
                raise EvalError("dict keys must be strings or numbers", key)
            out[k] = self.eval(value)
        return out

    # -- f-strings and operators ---------------------------------------------------

    def eval_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            else:
                parts.append(self.eval_FormattedValue(value))  # type: ignore[arg-type]
        return "".join(parts)

    def eval_FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        if not isinstance(value, (*_PLAIN, EnumValue)):
            raise EvalError("only strings, numbers and enum members can be formatted in f-strings", node.value)
        if isinstance(value, EnumValue):
            value = value.value
        if node.conversion == ord("r"):
            value = repr(value)
        elif node.conversion == ord("s"):
            value = str(value)
        elif node.conversion == ord("a"):
            value = ascii(value)
        spec = self.eval_JoinedStr(node.format_spec) if node.format_spec is not None else ""  # type: ignore[arg-type]
        try:
            return format(value, spec)
        except (ValueError, TypeError) as exc:
            raise EvalError(f"bad format: {exc}", node) from None

    def eval_BinOp(self, node: ast.BinOp) -> Any:
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise EvalError(f"the {type(node.op).__name__} operator is not supported here", node)
        left = self.eval(node.left)
        right = self.eval(node.right)
        for side, operand in ((node.left, left), (node.right, right)):
            if not isinstance(operand, (*_PLAIN, list, tuple, dict)):
                raise EvalError("operators work on plain values only", side)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)) and abs(right) > MAX_POW_EXPONENT:
            raise EvalError("exponent is too large", node)
        if isinstance(node.op, ast.Mult):
            count = right if isinstance(left, (str, list, tuple)) else left if isinstance(right, (str, list, tuple)) else None
            seq = left if isinstance(left, (str, list, tuple)) else right
            if isinstance(count, int) and isinstance(seq, (str, list, tuple)) and count * len(seq) > MAX_STR:
                raise EvalError("value is too large", node)
        if isinstance(node.op, ast.Mod) and isinstance(left, str):
            raise EvalError("use an f-string instead of % formatting", node)
        try:
            return op(left, right)
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as exc:
            raise EvalError(f"cannot compute this: {exc}", node) from None

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, ast.Not):
            return not value
        if not isinstance(value, (int, float)) or isinstance(value, bool) and not isinstance(node.op, ast.Not):
            raise EvalError("unary operators work on numbers only", node)
        if isinstance(node.op, ast.USub):
            return -value
        if isinstance(node.op, ast.UAdd):
            return +value
        raise EvalError("this unary operator is not supported here", node)

    def eval_BoolOp(self, node: ast.BoolOp) -> Any:
        value: Any = None
        for item in node.values:
            value = self.eval(item)
            if isinstance(node.op, ast.And) and not value:
                return value
            if isinstance(node.op, ast.Or) and value:
                return value
        return value

    def eval_Compare(self, node: ast.Compare) -> bool:
        left = self.eval(node.left)
        for op, comparator in zip(node.ops, node.comparators):
            right = self.eval(comparator)
            fn = _CMPOPS[type(op)]
            try:
                if not fn(left, right):
                    return False
            except TypeError as exc:
                raise EvalError(f"cannot compare: {exc}", node) from None
            left = right
        return True

    def eval_IfExp(self, node: ast.IfExp) -> Any:
        return self.eval(node.body) if self.eval(node.test) else self.eval(node.orelse)

    def eval_Subscript(self, node: ast.Subscript) -> Any:
        container = self.eval(node.value)
        if isinstance(container, ModuleRef) and container.name == "os.environ":
            key = self.eval(node.slice)
            value = self.ev.read_env(key, None, node)
            if value is None:
                raise EvalError(
                    f"environment variable {key!r} is not set",
                    node,
                    hint=f"set {key} before building, or use os.environ.get({key!r}, 'default')",
                )
            return value
        if isinstance(node.slice, ast.Slice):
            lower = self.eval(node.slice.lower) if node.slice.lower else None
            upper = self.eval(node.slice.upper) if node.slice.upper else None
            step = self.eval(node.slice.step) if node.slice.step else None
            index: Any = slice(lower, upper, step)
        else:
            index = self.eval(node.slice)
        if not isinstance(container, (str, list, tuple, dict)):
            raise EvalError("only strings, lists, tuples and dicts can be indexed", node.value)
        try:
            return container[index]
        except (KeyError, IndexError, TypeError) as exc:
            raise EvalError(f"lookup failed: {exc!r}", node) from None

    # -- names ---------------------------------------------------------------------

    def eval_Name(self, node: ast.Name) -> Any:
        return self.ev.lookup(self.module, node.id, self.line, node)

    def eval_Attribute(self, node: ast.Attribute) -> Any:
        base = self.eval(node.value)
        attr = node.attr
        if isinstance(base, SdkObject):
            members = catalog.ENUMS.get(base.name)
            if members is None:
                raise EvalError(f"{base.name}.{attr} cannot be used here", node, hint=WHAT_WORKS)
            if attr not in members:
                raise EvalError(
                    f"{base.name} has no member {attr!r}",
                    node,
                    hint=did_you_mean(attr, [m for m in members]),
                )
            return EnumValue(base.name, attr, members[attr])
        if isinstance(base, EnumValue):
            if attr == "value":
                return base.value
            if attr == "name":
                return base.member
            raise EvalError(f"{base.enum}.{base.member}.{attr} is not supported here", node)
        if isinstance(base, ModuleRef):
            if base.name.split(".")[0] == SDK_PACKAGE:
                return self.ev.sdk_symbol(attr, node)
            if base.name == "os":
                if attr in ("environ", "getenv"):
                    return ModuleRef(f"os.{attr}")
                raise EvalError(f"os.{attr} cannot be used here", node, hint=WHAT_WORKS)
            if base.name == "os.environ" and attr == "get":
                return ModuleRef("os.environ.get")
            return self.ev.resolve_import(base.name, attr, node)
        raise EvalError(f"attribute {attr!r} cannot be read at build time", node, hint=WHAT_WORKS)

    # -- calls -----------------------------------------------------------------------

    def eval_Call(self, node: ast.Call) -> Any:
        func = self.eval(node.func)
        if any(isinstance(a, ast.Starred) for a in node.args):
            args = self.sequence(node.args)
        else:
            args = [self.eval(a) for a in node.args]
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                spread = self.eval(kw.value)
                if not isinstance(spread, dict) or not all(isinstance(k, str) for k in spread):
                    raise EvalError("only dicts with string keys can be unpacked with **", kw.value)
                kwargs.update(spread)
            else:
                kwargs[kw.arg] = self.eval(kw.value)
        if isinstance(func, ModuleRef) and func.name in ("os.environ.get", "os.getenv"):
            if kwargs or not 1 <= len(args) <= 2:
                raise EvalError(f"{func.name} takes a name and an optional default", node)
            default = args[1] if len(args) == 2 else None
            return self.ev.read_env(args[0], default, node)
        if isinstance(func, Builtin):
            plain = (*_PLAIN, list, tuple, dict)
            for arg in [*args, *kwargs.values()]:
                if not isinstance(arg, plain):
                    raise EvalError(f"{func.name}() works on plain values only", node)
            try:
                return SAFE_BUILTINS[func.name](*args, **kwargs)
            except (TypeError, ValueError, OverflowError) as exc:
                raise EvalError(f"{func.name}() failed: {exc}", node) from None
        if isinstance(func, SdkObject):
            if func.name in SDK_CALLS:
                if args:
                    raise EvalError(f"pass {func.name} arguments by keyword", node)
                line, col = self.position(node)
                return SdkCall(func.name, kwargs, self.path, line, col)
            members = catalog.ENUMS.get(func.name)
            if members is not None and len(args) == 1 and not kwargs:
                value = args[0]
                for member, member_value in members.items():
                    if value == member_value:
                        return EnumValue(func.name, member, member_value)
                raise EvalError(
                    f"{value!r} is not a valid {func.name}",
                    node,
                    hint=did_you_mean(str(value), list(members.values())),
                )
        raise EvalError("function calls cannot be evaluated at build time", node, hint=WHAT_WORKS)
