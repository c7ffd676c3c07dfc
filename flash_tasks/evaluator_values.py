"""What the endpoint-argument evaluator works with: its limits, the values it
produces, its errors, and the pure builtins, methods and operators it allows.

Nothing here walks an expression; ``flash_tasks.evaluator`` and
``flash_tasks.expressions`` do.
"""

from __future__ import annotations

import ast
import difflib
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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

# -- limits -------------------------------------------------------------------------
# Endpoint arguments are small: a name, a few numbers, an env dict. These limits are
# far above anything an app needs and far below what would exhaust the build machine.
#: Characters in one string.
MAX_STR = 1_000_000
#: Items in one list, tuple, set or dict.
MAX_ITEMS = 100_000
#: Size of one value, counted like its JSON text (strings by their bytes).
MAX_VALUE_SIZE = 8_000_000
#: Size of everything the evaluator computes for one build, intermediate values included.
MAX_TOTAL_SIZE = 64_000_000
#: Size of all endpoint arguments together (what the manifest will hold).
MAX_ARGUMENTS_SIZE = 16_000_000
#: Nesting of expressions plus references from one constant to the next.
MAX_DEPTH = 100
#: Evaluation steps (expression nodes and comprehension iterations) for one build.
MAX_STEPS = 1_000_000
#: Bits of one integer.
MAX_INT_BITS = 4096
MAX_POW_EXPONENT = 128

WHAT_WORKS = (
    "endpoint arguments must be computable without running code: literals, lists, dicts, "
    "f-strings, module constants (also imported from your other modules), SDK enums such as "
    "GpuGroup.ADA_24, DataCenter['EU_RO_1'] or GpuGroup('ADA_24'), NetworkVolume(...), PodTemplate(...), "
    "os.environ.get('NAME', 'default') / os.getenv(...), comparisons, `x if cond else y`, comprehensions, "
    "the builtins " + "{builtins}" + " and str methods such as .lower(), .strip(), .split(), .join(), .format()"
)

def app_call_hint(function: str, argument: str | None) -> str:
    """What to write instead of calling one of the app's functions in an endpoint argument."""
    target = argument or "the argument"
    constant = (argument or "value").upper()
    return (
        f"the build reads the app without running it; write the value {function}() returns as a constant, e.g.\n"
        f"    {constant} = 3  # at module level, or os.environ.get('{constant}', '3')\n"
        f"and pass {target}={constant}"
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


@dataclass(frozen=True)
class AppFunction:
    """A function or class the app defines: known by name, never called at build time."""

    module: str
    name: str


@dataclass
class Method:
    """A pure method of a plain value, e.g. ``"a-b".split``, not yet called."""

    owner: Any
    name: str


@dataclass(frozen=True)
class ModuleRef:
    """A module used as a value: a project module, ``os`` or ``os.environ``."""

    name: str


class EvalError(Exception):
    def __init__(self, message: str, node: ast.AST | None = None, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.hint = hint


class StepsExceeded(EvalError):
    """The build's evaluation step budget ran out."""


def _int_arg(value: Any) -> Any:
    if isinstance(value, str) and len(value) > 5000:
        raise ValueError("the string has too many digits")
    return value


def _int(*args: Any, **kwargs: Any) -> int:
    return int(*[_int_arg(a) for a in args], **kwargs)


def ordered_set(*args: Any) -> list[Any]:
    """A set, kept as a list in first-seen order so builds are reproducible."""
    out: list[Any] = []
    item: Any
    for item in list(*args):
        if item not in out:
            out.append(item)
    return out


def _sum(items: Any, start: Any = 0) -> Any:
    values = list(items)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in [*values, start]):
        raise TypeError("sum() adds numbers only here")
    return sum(values, start)


def _range(*args: Any) -> list[int]:
    if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
        raise TypeError("range() takes integers")
    values = range(*args)
    if len(values) > MAX_ITEMS:
        raise ValueError(f"range of {len(values):,} numbers is longer than {MAX_ITEMS:,}")
    return list(values)


def _enumerate(items: Any, start: int = 0) -> list[tuple[int, Any]]:
    return list(enumerate(list(items), start))


def _zip(*iterables: Any) -> list[tuple[Any, ...]]:
    return list(zip(*[list(i) for i in iterables], strict=False))


def _reversed(items: Any) -> list[Any]:
    return list(reversed(list(items)))


#: Builtins that only compute on plain values.
SAFE_BUILTINS: dict[str, Callable[..., Any]] = {
    "str": str,
    "int": _int,
    "float": float,
    "bool": bool,
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "sorted": sorted,
    "list": list,
    "tuple": tuple,
    "dict": dict,
    "set": ordered_set,
    "sum": _sum,
    "any": any,
    "all": all,
    "range": _range,
    "enumerate": _enumerate,
    "zip": _zip,
    "reversed": _reversed,
}
WHAT_WORKS = WHAT_WORKS.replace("{builtins}", ", ".join(f"{name}()" for name in SAFE_BUILTINS))

#: Methods of plain values that only compute (and whose result size is checked first).
STR_METHODS = frozenset(
    {
        "lower", "upper", "strip", "lstrip", "rstrip", "title", "capitalize", "casefold", "swapcase",
        "replace", "split", "rsplit", "splitlines", "partition", "rpartition", "join", "format",
        "startswith", "endswith", "find", "rfind", "index", "rindex", "count", "removeprefix",
        "removesuffix", "zfill", "ljust", "rjust", "center", "isdigit", "isalpha", "isalnum",
        "isspace", "islower", "isupper", "isidentifier", "isnumeric", "isdecimal", "istitle", "isascii",
    }
)  # fmt: skip
DICT_METHODS = frozenset({"get", "keys", "values", "items", "copy"})
SEQUENCE_METHODS = frozenset({"index", "count", "copy"})
WIDTH_METHODS = frozenset({"zfill", "ljust", "rjust", "center"})

BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitOr: operator.or_,
}
CMPOPS: dict[type, Callable[[Any, Any], Any]] = {
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
PLAIN = (str, int, float, bool, type(None))
CONTAINERS = (list, tuple, dict)
_DIGITS = re.compile(r"\d+")


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


def too_large(what: str, size: int, limit: int) -> str:
    return f"{what} would be too large ({size:,} > {limit:,})"


def too_large_sequence(seq: Any, size: int) -> str:
    if isinstance(seq, str):
        return too_large("string", size, MAX_STR) + " characters"
    return too_large("collection", size, MAX_ITEMS) + " items"


def check_format_spec(spec: str) -> None:
    """Refuse a format spec whose width or precision would build a huge string."""
    for run in _DIGITS.findall(spec):
        if len(run) > 7 or int(run) > MAX_STR:
            raise ValueError(f"width or precision {run[:12]}{'...' if len(run) > 12 else ''} is larger than {MAX_STR:,}")
