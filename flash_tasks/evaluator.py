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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import catalog
from .errors import BuildError
from .evaluator_values import (
    MAX_ARGUMENTS_SIZE,
    MAX_DEPTH,
    MAX_INT_BITS,
    MAX_ITEMS,
    MAX_POW_EXPONENT,
    MAX_STEPS,
    MAX_STR,
    MAX_TOTAL_SIZE,
    MAX_VALUE_SIZE,
    RESOURCE_CLASSES,
    SAFE_BUILTINS,
    SDK_CALLS,
    SDK_PACKAGE,
    WHAT_WORKS,
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
    closest,
    did_you_mean,
    too_large,
)
from .expressions import Frame, short

# The names other modules import from here; they live in ``evaluator_values``.
__all__ = [
    "MAX_ARGUMENTS_SIZE",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITEMS",
    "MAX_POW_EXPONENT",
    "MAX_STEPS",
    "MAX_STR",
    "MAX_TOTAL_SIZE",
    "MAX_VALUE_SIZE",
    "RESOURCE_CLASSES",
    "SAFE_BUILTINS",
    "SDK_CALLS",
    "SDK_PACKAGE",
    "WHAT_WORKS",
    "AppFunction",
    "Builtin",
    "EnumValue",
    "EvalError",
    "Evaluator",
    "Method",
    "ModuleRef",
    "SdkCall",
    "SdkObject",
    "StepsExceeded",
    "app_call_hint",
    "check_format_spec",
    "closest",
    "did_you_mean",
]


@dataclass
class Evaluator:
    """Evaluates expressions recorded by scans, in the context of their module."""

    scans_by_module: Mapping[str, dict[str, Any]]
    environ: Mapping[str, str]
    env_used: dict[str, str | None] = field(default_factory=dict)
    _active: set[tuple[str, str, int]] = field(default_factory=set)
    _cache: dict[tuple[str, str, int], Any] = field(default_factory=dict)
    #: Nesting of expressions and constant references being evaluated right now.
    depth: int = 0
    steps: int = 0
    total_size: int = 0
    #: Size of each container seen, by id (the container is kept so the id stays its own).
    _sizes: dict[int, tuple[Any, int]] = field(default_factory=dict)
    #: The Endpoint argument being evaluated, for hints.
    argument: str | None = None

    # -- entry points ------------------------------------------------------------

    def evaluate(self, module: str, expr: Mapping[str, Any], argument: str | None = None) -> Any:
        """Evaluate a scan's ``{"src", "line", "col"}`` record inside ``module``."""
        scan = self.scans_by_module[module]
        outermost = self.depth == 0
        if outermost:
            self.argument = argument
        src = expr["src"]
        text = "(" + src + "\n)"
        try:
            tree = ast.parse(text, mode="eval")
        except (SyntaxError, RecursionError, MemoryError):
            # The source came from a parsed file, so only nesting can fail here.
            raise BuildError(
                f"expression is nested too deeply to evaluate (`{short(src)}`)",
                path=scan["path"],
                line=expr["line"],
                col=expr["col"],
                hint=f"endpoint arguments may nest at most {MAX_DEPTH} levels; split the expression into constants",
            ) from None
        frame = Frame(self, module, scan["path"], expr["line"], expr["col"], text)
        try:
            return frame.eval(tree.body)
        except EvalError as exc:
            line, col = frame.position(exc.node)
            snippet = ast.get_source_segment(text, exc.node) if exc.node is not None else None
            message = exc.message
            if snippet and snippet != src:
                message += f" (in `{short(snippet)}`)"
            elif snippet:
                message += f" (`{short(snippet)}`)"
            raise BuildError(message, path=scan["path"], line=line, col=col, hint=exc.hint) from None
        except RecursionError:  # a last resort: MAX_DEPTH is meant to stop well before this
            if not outermost:
                raise
            raise BuildError(
                "expression is nested too deeply to evaluate",
                path=scan["path"],
                line=expr["line"],
                col=expr["col"],
                hint=f"endpoint arguments may nest at most {MAX_DEPTH} levels; split the expression into constants",
            ) from None
        finally:
            if outermost:
                self.depth = 0
                self._active.clear()

    def lookup(self, module: str, name: str, before_line: int | None, node: ast.AST | None) -> Any:
        """The value a module-level name has at ``before_line`` (None: at the end)."""
        scan = self.scans_by_module.get(module)
        if scan is None:
            raise EvalError(f"module {module!r} is not part of the app", node)
        key = (module, name, before_line or 0)
        if key in self._cache:
            return self._cache[key]
        # Keyed by line too: ``A = A + 1`` reads the earlier ``A``, which is no cycle.
        if key in self._active:
            raise EvalError(f"{name!r} is defined in terms of itself", node)
        self._active.add(key)
        try:
            value = self._lookup(scan, module, name, before_line, node)
        finally:
            self._active.discard(key)
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
        defined = scan.get("defs", {}).get(name)
        if defined is not None and (before_line is None or defined < before_line):
            candidates.append((defined, "def", None))
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
        if kind == "def":
            return AppFunction(module, name)
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
            if name in scan["assigns"] or name in scan["imports"] or name in scan.get("defs", {}):
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

    # -- limits ----------------------------------------------------------------------

    def size_of(self, value: Any) -> int:
        """Roughly the bytes ``value`` takes as JSON; stops counting past MAX_VALUE_SIZE."""
        if isinstance(value, str):
            return len(value) * (1 if value.isascii() else 4) + 2
        if isinstance(value, EnumValue):
            return len(value.value) + 2
        if isinstance(value, int) and not isinstance(value, bool):
            return value.bit_length() // 3 + 2
        if isinstance(value, (list, tuple, dict, SdkCall)):
            known = self._sizes.get(id(value))
            if known is not None and known[0] is value:
                return known[1]
            if isinstance(value, SdkCall):
                items: Any = [*value.kwargs.keys(), *value.kwargs.values()]
            elif isinstance(value, dict):
                items = [*value.keys(), *value.values()]
            else:
                items = value
            total = 2
            for item in items:
                total += self.size_of(item) + 1
                if total > MAX_VALUE_SIZE:
                    break
            self._sizes[id(value)] = (value, total)
            return total
        return 8

    def charge(self, value: Any, node: ast.AST | None) -> None:
        """Count a newly computed value against the per-value and per-build limits."""
        if isinstance(value, str):
            if len(value) > MAX_STR:
                raise EvalError(too_large("string", len(value), MAX_STR) + " characters", node)
        elif isinstance(value, (list, tuple, dict)):
            if len(value) > MAX_ITEMS:
                raise EvalError(too_large("collection", len(value), MAX_ITEMS) + " items", node)
        elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
            raise EvalError(f"number is too large (more than {MAX_INT_BITS} bits)", node)
        size = self.size_of(value)
        if size > MAX_VALUE_SIZE:
            raise EvalError(f"value is too large (over {MAX_VALUE_SIZE:,} bytes)", node,
                            hint="endpoint arguments are settings, not data: ship large data as a file in the app")
        self.total_size += size
        if self.total_size > MAX_TOTAL_SIZE:
            raise EvalError(f"the endpoint arguments compute more than {MAX_TOTAL_SIZE:,} bytes of values", node,
                            hint="endpoint arguments are settings, not data: ship large data as a file in the app")

    def step(self, node: ast.AST | None) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise StepsExceeded(f"the endpoint arguments take more than {MAX_STEPS:,} evaluation steps", node,
                            hint="compute less at build time: write the values as constants")
