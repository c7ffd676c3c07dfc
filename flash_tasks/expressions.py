"""The expression walker behind ``Evaluator``: one ``Frame`` per expression record,
with one ``eval_<Node>`` method per kind of ``ast`` node it accepts.
"""

from __future__ import annotations

import ast
import string
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import catalog
from .evaluator_values import (
    BINOPS,
    CMPOPS,
    CONTAINERS,
    DICT_METHODS,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_POW_EXPONENT,
    MAX_STEPS,
    MAX_STR,
    PLAIN,
    SAFE_BUILTINS,
    SDK_CALLS,
    SDK_PACKAGE,
    SEQUENCE_METHODS,
    STR_METHODS,
    WHAT_WORKS,
    WIDTH_METHODS,
    AppFunction,
    Builtin,
    EnumValue,
    EvalError,
    Method,
    ModuleRef,
    SdkCall,
    SdkObject,
    StepsExceeded,
    app_call_hint,
    check_format_spec,
    did_you_mean,
    ordered_set,
    too_large,
    too_large_sequence,
)

if TYPE_CHECKING:
    from .evaluator import Evaluator


def short(text: str, limit: int = 80) -> str:
    text = " ".join(text[: limit * 4].split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def type_name(value: Any) -> str:
    if isinstance(value, EnumValue):
        return value.enum
    if isinstance(value, (SdkObject, SdkCall)):
        return value.name
    return type(value).__name__


class Frame:
    """Evaluation of one expression record: knows its module and position."""

    def __init__(self, ev: Evaluator, module: str, path: str, line: int, col: int, text: str) -> None:
        self.ev = ev
        self.module = module
        self.path = path
        self.line = line
        self.col = col
        self.text = text
        self.lines = [line.encode("utf-8") for line in text.split("\n")]
        #: Names bound by the comprehensions being evaluated, innermost last.
        self.scopes: list[dict[str, Any]] = []

    def position(self, node: ast.AST | None) -> tuple[int, int]:
        if node is None or not hasattr(node, "lineno"):
            return self.line, self.col
        # ast counts UTF-8 bytes; people count characters.
        offset: int = node.col_offset  # type: ignore[attr-defined]
        chars = len(self.lines[node.lineno - 1][:offset].decode("utf-8", "replace"))
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
        ev = self.ev
        ev.step(node)
        ev.depth += 1
        try:
            if ev.depth > MAX_DEPTH:
                raise EvalError(
                    f"expression is nested too deeply (more than {MAX_DEPTH} levels of operators, "
                    "brackets and constants referring to constants)",
                    node,
                    hint="split it into a few module constants, or write the value itself",
                )
            value = method(node)
        finally:
            ev.depth -= 1
        if not isinstance(node, ast.Name):  # a name's value was counted when it was computed
            ev.charge(value, node)
        return value

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
        return ordered_set(self.sequence(node.elts))

    def sequence(self, elts: list[ast.expr]) -> list[Any]:
        out: list[Any] = []
        for elt in elts:
            if isinstance(elt, ast.Starred):
                value = self.eval(elt.value)
                if not isinstance(value, (list, tuple)):
                    raise EvalError("only lists and tuples can be unpacked with *", elt)
                if len(out) + len(value) > MAX_ITEMS:
                    raise EvalError(too_large("collection", len(out) + len(value), MAX_ITEMS) + " items", elt)
                out.extend(value)
            else:
                out.append(self.eval(elt))
        return out

    def eval_Dict(self, node: ast.Dict) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key, value in zip(node.keys, node.values, strict=False):
            if key is None:
                spread = self.eval(value)
                if not isinstance(spread, dict):
                    raise EvalError("only dicts can be unpacked with **", value)
                if len(out) + len(spread) > MAX_ITEMS:
                    raise EvalError(too_large("dict", len(out) + len(spread), MAX_ITEMS) + " items", value)
                out.update(spread)
                continue
            out[self.dict_key(self.eval(key), key)] = self.eval(value)
        return out

    @staticmethod
    def dict_key(key: Any, node: ast.AST) -> Any:
        if isinstance(key, EnumValue):
            key = key.value
        if not isinstance(key, (str, int, float, bool)):
            raise EvalError("dict keys must be strings or numbers", node)
        return key

    # -- comprehensions --------------------------------------------------------------

    def eval_ListComp(self, node: ast.ListComp) -> list[Any]:
        out: list[Any] = []
        self.comprehension(node, node.generators, lambda: self.emit(out, self.eval(node.elt), node))
        return out

    def eval_GeneratorExp(self, node: ast.GeneratorExp) -> list[Any]:
        out: list[Any] = []
        self.comprehension(node, node.generators, lambda: self.emit(out, self.eval(node.elt), node))
        return out

    def eval_SetComp(self, node: ast.SetComp) -> list[Any]:
        out: list[Any] = []
        self.comprehension(node, node.generators, lambda: self.emit(out, self.eval(node.elt), node))
        return ordered_set(out)

    def eval_DictComp(self, node: ast.DictComp) -> dict[Any, Any]:
        out: dict[Any, Any] = {}

        def emit() -> None:
            key = self.dict_key(self.eval(node.key), node.key)
            out[key] = self.eval(node.value)
            if len(out) > MAX_ITEMS:
                raise EvalError(too_large("dict", len(out), MAX_ITEMS) + " items", node)

        self.comprehension(node, node.generators, emit)
        return out

    @staticmethod
    def emit(out: list[Any], value: Any, node: ast.AST) -> None:
        out.append(value)
        if len(out) > MAX_ITEMS:
            raise EvalError(too_large("collection", len(out), MAX_ITEMS) + " items", node)

    def comprehension(self, node: ast.AST, generators: list[ast.comprehension], emit: Callable[[], None]) -> None:
        scope: dict[str, Any] = {}
        self.scopes.append(scope)
        try:
            self.loop(generators, 0, scope, emit)
        except StepsExceeded as exc:
            exc.node = node  # point at the loop, not at whatever step ran out
            raise
        finally:
            self.scopes.pop()

    def loop(self, generators: list[ast.comprehension], index: int, scope: dict[str, Any], emit: Callable[[], None]) -> None:
        if index == len(generators):
            emit()
            return
        gen = generators[index]
        if gen.is_async:
            raise EvalError("async comprehensions cannot be evaluated at build time", gen.iter)
        for item in self.iterate(self.eval(gen.iter), gen.iter):
            self.ev.step(gen.iter)
            self.bind(gen.target, item, scope)
            if all(self.eval(cond) for cond in gen.ifs):
                self.loop(generators, index + 1, scope, emit)

    def iterate(self, value: Any, node: ast.AST) -> list[Any]:
        if isinstance(value, (str, list, tuple)):
            return list(value)
        if isinstance(value, dict):
            return list(value)
        raise EvalError(f"cannot loop over a {type_name(value)} at build time", node,
                        hint="loop over a list, tuple, dict or string")

    def bind(self, target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
        if isinstance(target, ast.Name):
            scope[target.id] = value
            return
        if isinstance(target, (ast.Tuple, ast.List)) and not any(isinstance(t, ast.Starred) for t in target.elts):
            if not isinstance(value, (list, tuple, str)) or len(value) != len(target.elts):
                raise EvalError(f"cannot unpack {value!r:.60} into {len(target.elts)} names", target)
            for sub, item in zip(target.elts, value, strict=False):
                self.bind(sub, item, scope)
            return
        raise EvalError("loop variables must be plain names or tuples of names", target)

    # -- f-strings and operators ---------------------------------------------------

    def eval_JoinedStr(self, node: ast.JoinedStr) -> str:
        parts: list[str] = []
        length = 0
        for value in node.values:
            part = str(value.value) if isinstance(value, ast.Constant) else self.eval_FormattedValue(value)  # type: ignore[arg-type]
            length += len(part)
            if length > MAX_STR:
                raise EvalError(too_large("string", length, MAX_STR) + " characters", node)
            parts.append(part)
        return "".join(parts)

    def eval_FormattedValue(self, node: ast.FormattedValue) -> str:
        value = self.eval(node.value)
        spec = self.eval_JoinedStr(node.format_spec) if node.format_spec is not None else ""  # type: ignore[arg-type]
        return self.format_value(value, node.conversion, spec, node)

    def format_value(self, value: Any, conversion: int | str | None, spec: str, node: ast.AST) -> str:
        if not isinstance(value, (*PLAIN, EnumValue)):
            raise EvalError("only strings, numbers and enum members can be formatted", node)
        if isinstance(value, EnumValue):
            value = value.value
        if conversion in (ord("r"), "r"):
            value = repr(value)
        elif conversion in (ord("s"), "s"):
            value = str(value)
        elif conversion in (ord("a"), "a"):
            value = ascii(value)
        try:
            check_format_spec(spec)
            return format(value, spec)
        except (ValueError, TypeError) as exc:
            raise EvalError(f"bad format: {exc}", node) from None

    def eval_BinOp(self, node: ast.BinOp) -> Any:
        # A long chain (a + b + c + ...) nests to the left: walk it in a loop, not by recursion.
        chain: list[ast.BinOp] = [node]
        while isinstance(chain[-1].left, ast.BinOp) and len(chain) <= MAX_STEPS:
            chain.append(chain[-1].left)
        value = self.eval(chain[-1].left)
        for link in reversed(chain):
            self.ev.step(link)
            value = self.binop(link, value, self.eval(link.right))
            if link is not node:
                self.ev.charge(value, link)
        return value

    def binop(self, node: ast.BinOp, left: Any, right: Any) -> Any:
        op = BINOPS.get(type(node.op))
        if op is None:
            raise EvalError(f"the {type(node.op).__name__} operator is not supported here", node)
        for side, operand in ((node.left, left), (node.right, right)):
            if not isinstance(operand, (*PLAIN, *CONTAINERS)):
                raise EvalError(f"operators work on plain values only, not on a {type_name(operand)}", side)
        if isinstance(node.op, ast.Pow) and isinstance(right, (int, float)):
            if abs(right) > MAX_POW_EXPONENT:
                raise EvalError("exponent is too large", node)
            if isinstance(left, int) and isinstance(right, int) and left.bit_length() * right > MAX_INT_BITS:
                raise EvalError(f"number is too large (more than {MAX_INT_BITS} bits)", node)
        if isinstance(node.op, ast.Mult):
            seq, count = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
            repeated = count * len(seq) if isinstance(seq, (str, list, tuple)) and isinstance(count, int) else 0
            if repeated > (MAX_STR if isinstance(seq, str) else MAX_ITEMS):
                raise EvalError(too_large_sequence(seq, repeated), node)
        joined = len(left) + len(right) if isinstance(left, (str, list, tuple)) and isinstance(right, type(left)) else 0
        if isinstance(node.op, ast.Add) and joined > (MAX_STR if isinstance(left, str) else MAX_ITEMS):
            raise EvalError(too_large_sequence(left, joined), node)
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
        if not isinstance(value, (int, float)) or isinstance(value, bool):
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
        for op, comparator in zip(node.ops, node.comparators, strict=False):
            right = self.eval(comparator)
            if isinstance(right, ModuleRef) and right.name == "os.environ" and isinstance(op, (ast.In, ast.NotIn)):
                present = self.ev.read_env(left, None, node) is not None
                result = present if isinstance(op, ast.In) else not present
            else:
                for operand in (left, right):
                    if not isinstance(operand, (*PLAIN, *CONTAINERS, EnumValue)):
                        raise EvalError(f"a {type_name(operand)} cannot be compared at build time", node)
                try:
                    result = bool(CMPOPS[type(op)](left, right))
                except TypeError as exc:
                    raise EvalError(f"cannot compare: {exc}", node) from None
            if not result:
                return False
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
        if isinstance(container, SdkObject) and container.name in catalog.ENUMS:
            key = self.eval(node.slice)
            members = catalog.ENUMS[container.name]
            if isinstance(key, str) and key in members:
                return EnumValue(container.name, key, members[key])
            raise EvalError(
                f"{container.name} has no member {key!r}",
                node,
                hint=did_you_mean(str(key), list(members)),
            )
        if isinstance(node.slice, ast.Slice):
            lower = self.eval(node.slice.lower) if node.slice.lower else None
            upper = self.eval(node.slice.upper) if node.slice.upper else None
            step = self.eval(node.slice.step) if node.slice.step else None
            index: Any = slice(lower, upper, step)
        else:
            index = self.eval(node.slice)
        if not isinstance(container, (str, list, tuple, dict)):
            raise EvalError(f"a {type_name(container)} cannot be indexed at build time", node.value)
        try:
            return container[index]
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EvalError(f"lookup failed: {exc!r}", node) from None

    # -- names ---------------------------------------------------------------------

    def eval_Name(self, node: ast.Name) -> Any:
        for scope in reversed(self.scopes):
            if node.id in scope:
                return scope[node.id]
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
                    hint=did_you_mean(attr, list(members)),
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
            if base.name == "os.environ":
                if attr == "get":
                    return ModuleRef("os.environ.get")
                raise EvalError(f"os.environ.{attr} cannot be used here", node, hint="read variables with os.environ.get('NAME', 'default')")
            return self.ev.resolve_import(base.name, attr, node)
        allowed = (
            STR_METHODS if isinstance(base, str)
            else DICT_METHODS if isinstance(base, dict)
            else SEQUENCE_METHODS if isinstance(base, (list, tuple))
            else frozenset()
        )  # fmt: skip
        if attr in allowed:
            return Method(base, attr)
        if isinstance(base, AppFunction):
            raise EvalError(
                f"{base.name}.{attr} belongs to {base.name!r}, which the app defines: it only exists when the app runs",
                node,
                hint=app_call_hint(base.name, self.ev.argument),
            )
        if isinstance(base, (*PLAIN, *CONTAINERS)):
            raise EvalError(f"{type_name(base)}.{attr} cannot be used at build time", node, hint=WHAT_WORKS)
        raise EvalError(f"attribute {attr!r} cannot be read at build time", node, hint=WHAT_WORKS)

    # -- calls -----------------------------------------------------------------------

    def eval_Call(self, node: ast.Call) -> Any:
        func = self.eval(node.func)
        if isinstance(func, AppFunction):
            raise EvalError(
                f"{func.name}() is defined by the app: calls to the app's own functions "
                "are not evaluated at build time",
                node,
                hint=app_call_hint(func.name, self.ev.argument),
            )
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
                twice = next((k for k in spread if k in kwargs), None)
                if twice is not None:
                    raise EvalError(f"the argument {twice!r} is given twice", kw.value)
                kwargs.update(spread)
            else:
                if kw.arg in kwargs:
                    raise EvalError(f"the argument {kw.arg!r} is given twice", kw.value)
                kwargs[kw.arg] = self.eval(kw.value)
        if isinstance(func, ModuleRef) and func.name in ("os.environ.get", "os.getenv"):
            if kwargs or not 1 <= len(args) <= 2:
                raise EvalError(f"{func.name} takes a name and an optional default", node)
            default = args[1] if len(args) == 2 else None
            return self.ev.read_env(args[0], default, node)
        if isinstance(func, Builtin):
            # dict(name=value, ...) only holds its values (settings written to be unpacked into
            # Endpoint(**...) hold SDK values such as CpuInstanceType.CPU3C_2_4); other builtins compute.
            for arg in [*args, *kwargs.values()] if func.name != "dict" else args:
                if not isinstance(arg, (*PLAIN, *CONTAINERS)):
                    raise EvalError(f"{func.name}() works on plain values only, not on a {type_name(arg)}", node)
            try:
                return SAFE_BUILTINS[func.name](*args, **kwargs)
            except (TypeError, ValueError, OverflowError) as exc:
                raise EvalError(f"{func.name}() failed: {exc}", node) from None
        if isinstance(func, Method):
            return self.call_method(func, args, kwargs, node)
        if isinstance(func, SdkObject):
            if func.name in SDK_CALLS:
                if args:
                    raise EvalError(f"pass {func.name} arguments by keyword", node)
                line, col = self.position(node)
                return SdkCall(func.name, kwargs, self.path, line, col)
            members = catalog.ENUMS.get(func.name)
            if members is not None and len(args) == 1 and not kwargs:
                value = args[0].value if isinstance(args[0], EnumValue) and args[0].enum == func.name else args[0]
                for member, member_value in members.items():
                    if value == member_value:
                        return EnumValue(func.name, member, member_value)
                raise EvalError(
                    f"{value!r} is not a valid {func.name}",
                    node,
                    hint=did_you_mean(str(value), list(members.values())),
                )
        raise EvalError("function calls cannot be evaluated at build time", node, hint=WHAT_WORKS)

    def call_method(self, method: Method, args: list[Any], kwargs: dict[str, Any], node: ast.AST) -> Any:
        owner, name = method.owner, method.name
        for arg in [*args, *kwargs.values()]:
            if not isinstance(arg, (*PLAIN, *CONTAINERS, EnumValue)):
                raise EvalError(f".{name}() works on plain values only, not on a {type_name(arg)}", node)
        try:
            if isinstance(owner, str):
                self.check_str_method(owner, name, args, kwargs, node)
                if name == "format":
                    return self.str_format(owner, args, kwargs, node)
            elif isinstance(owner, dict) and name in ("keys", "values", "items"):
                return list(getattr(owner, name)(*args, **kwargs))
            return getattr(owner, name)(*args, **kwargs)
        except (TypeError, ValueError, OverflowError) as exc:
            raise EvalError(f".{name}() failed: {exc}", node) from None

    @staticmethod
    def check_str_method(owner: str, name: str, args: list[Any], kwargs: dict[str, Any], node: ast.AST) -> None:
        """Refuse before computing a string method whose result would be too large."""
        size: int | None = None
        if name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
            count = len(owner) + 1 if args[0] == "" else owner.count(args[0])
            if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
                count = min(count, args[2])
            size = len(owner) + count * (len(args[1]) - len(args[0]))
        elif name in WIDTH_METHODS and args and isinstance(args[0], int):
            size = args[0]
        elif name == "join" and args and isinstance(args[0], (list, tuple)):
            parts = args[0]
            if all(isinstance(p, str) for p in parts):
                size = sum(len(p) for p in parts) + len(owner) * max(0, len(parts) - 1)
        if size is not None and size > MAX_STR:
            raise EvalError(too_large("string", size, MAX_STR) + " characters", node)

    def str_format(
        self, template: str, args: list[Any], kwargs: dict[str, Any], node: ast.AST, numbering: list[int] | None = None
    ) -> str:
        """``template.format(...)`` with simple fields only, every width checked first.

        Fields in a nested spec (``{:{}}``) number on from the outer ones, as in Python.
        """
        parts: list[str] = []
        length = 0
        nested = numbering is not None
        #: The next automatic field number; -1 once fields are numbered by hand.
        auto = numbering if numbering is not None else [0]
        for literal, field_name, spec, conversion in string.Formatter().parse(template):
            parts.append(literal)
            length += len(literal)
            if field_name is not None:
                if field_name == "":
                    if auto[0] < 0:
                        raise ValueError("cannot switch from manual field specification to automatic field numbering")
                    key: int | str = auto[0]
                    auto[0] += 1
                elif field_name.isdigit():
                    if auto[0] > 0:
                        raise ValueError("cannot switch from automatic field numbering to manual field specification")
                    auto[0] = -1
                    key = int(field_name)
                elif field_name.isidentifier():
                    key = field_name
                else:
                    raise ValueError(f"only plain fields like {{}}, {{0}} or {{name}} are supported, not {{{field_name}}}")
                if isinstance(key, int):
                    if key >= len(args):
                        raise ValueError(f"no positional argument {key}")
                    value = args[key]
                elif key in kwargs:
                    value = kwargs[key]
                else:
                    raise ValueError(f"no argument named {key!r}")
                if spec and "{" in spec:
                    if nested:
                        raise ValueError("format specs nest too deeply")
                    spec = self.str_format(spec, args, kwargs, node, auto)
                part = self.format_value(value, conversion, spec or "", node)
                parts.append(part)
                length += len(part)
            if length > MAX_STR:
                raise EvalError(too_large("string", length, MAX_STR) + " characters", node)
        return "".join(parts)
