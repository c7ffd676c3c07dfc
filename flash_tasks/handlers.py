"""Generate the Python entry points the Runpod worker boots from the artifact.

The worker image (runpod-flash 1.21.0 installed) unpacks the artifact and
imports ``handler_<resource>.py`` from its root, where ``<resource>`` is the
value of ``FLASH_RESOURCE_NAME``:

* a queue-based resource must expose ``handler(job)``, which the ``runpod``
  job loop calls once per job;
* a load-balanced resource must expose ``app``, an ASGI application built by
  ``runpod_flash.runtime.lb_handler.create_lb_handler`` that the image serves
  with uvicorn, including the ``/ping`` route the load balancer polls.

A build also ships ``runpod_flash/runtime/_flash_resource_config.py``, the map
of which functions are local to which resource (``flash_tasks.resource_config``
renders it).

Everything here is a pure function of the manifest so that an unchanged
manifest yields byte-identical files, and ``write_generated`` leaves such files
untouched: unchanged mtimes keep the incremental build from redoing the
packaging step.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from string import Template
from typing import Any

from .errors import BuildError
from .resource_config import RESOURCE_CONFIG_PATH, render_resource_config
from .stage import write_if_changed

__all__ = [
    "RESOURCE_CONFIG_PATH",
    "handler_file_name",
    "render_handlers",
    "render_lb_handler",
    "render_queue_handler",
    "render_resource_config",
    "write_generated",
]

# Oldest interpreter the worker images run; generated code must parse there.
_WORKER_MIN_PYTHON = (3, 10)

_HTTP_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "PATCH"})

_BUG_HINT = (
    "This is a bug in flash-tasks, not in your app. Please report it together "
    "with .flash/flash_manifest.json."
)


# ---------------------------------------------------------------------------
# Templates. ``$name`` placeholders are filled with already-rendered Python
# source (``repr`` of strings, ints), never with raw manifest text, so no
# resource, module or function name can break out of a string literal.
# ---------------------------------------------------------------------------

_QUEUE_HEADER = Template('''\
"""Queue-based worker entry point for the $resource_repr resource.

Built by flash build from flash_manifest.json (generated_at: $generated_at_repr).
The Runpod job loop imports this file and passes each job to ``handler``.
Edits are lost on the next build.
"""

import asyncio
import concurrent.futures
import importlib
import inspect
import logging
import traceback

_log = logging.getLogger(__name__)

# Looked up with getattr so that module paths which are not identifiers
# (a package folder named "01_models", say) still import.
_TARGET_MODULE = $module_repr
_TARGET_NAME = $name_repr
_target = getattr(importlib.import_module(_TARGET_MODULE), _TARGET_NAME)


def _job_kwargs(job):
    """Return (kwargs, None) for a usable job input, or (None, message)."""
    payload = job.get("input")
    if payload is None:
        payload = {}
    if not isinstance(payload, dict):
        return None, f"Malformed input: expected dict, got {type(payload).__name__}"
    kwargs = dict(payload)
    # Runpod inserts this marker for jobs submitted without an input body.
    kwargs.pop("__empty", None)
    return kwargs, None


def _failure(message):
    """Shape of every error result, so callers can test ``success``."""
    return {"success": False, "error": message}


def _crash_report(exc):
    """Error result for an exception raised by user code, logged with its traceback."""
    _log.error("%s on resource %s failed: %s", _TARGET_NAME, $resource_repr, exc, exc_info=True)
    return {"success": False, "error": str(exc), "traceback": traceback.format_exc()}
''')

_SYNC_SETTLE = '''

async def _await(value):
    return await value


def _settle(value):
    """Resolve an awaitable result from synchronous code.

    runpod calls a plain ``handler`` from inside its own running event loop,
    where ``asyncio.run`` is forbidden, so the coroutine then runs to
    completion on a fresh loop in a helper thread.
    """
    if not inspect.isawaitable(value):
        return value
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_await(value))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, _await(value)).result()
'''

_FUNCTION_SYNC_HANDLER = '''

def handler(job):
    """Call the endpoint function with the job input as keyword arguments."""
    kwargs, problem = _job_kwargs(job)
    if problem is not None:
        return _failure(problem)
    try:
        return _settle(_target(**kwargs))
    except Exception as exc:  # any user error becomes a job result, not a dead worker
        return _crash_report(exc)
'''

_FUNCTION_ASYNC_HANDLER = '''

async def handler(job):
    """Call the endpoint function with the job input as keyword arguments.

    Async so runpod can run several jobs at once; the function may still be a
    plain ``def``, so its result is awaited only when it is awaitable.
    """
    kwargs, problem = _job_kwargs(job)
    if problem is not None:
        return _failure(problem)
    try:
        result = _target(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
    except Exception as exc:  # any user error becomes a job result, not a dead worker
        return _crash_report(exc)
'''

_CLASS_SETUP = Template('''

# One instance per worker process: constructors typically load models, so that
# cost is paid once at cold start instead of on every job.
_instance = _target()

_METHODS = $methods_repr


def _pick_method(kwargs):
    """Return (method name, None) or (None, message); always drops "method"."""
    requested = kwargs.pop("method", None)
    available = ", ".join(_METHODS)
    if len(_METHODS) == 1:
        return _METHODS[0], None
    if not _METHODS:
        return None, f"class {_TARGET_NAME} has no public methods to call"
    if requested is None:
        return None, (
            f"class {_TARGET_NAME} has several methods ({available}); "
            'put a "method" key in the input to choose one'
        )
    if not isinstance(requested, str) or requested not in _METHODS:
        return None, f"unknown method {requested!r} on {_TARGET_NAME}; available: {available}"
    return requested, None
''')

_CLASS_SYNC_HANDLER = '''

def handler(job):
    """Dispatch the job to a method of the shared class instance."""
    kwargs, problem = _job_kwargs(job)
    if problem is not None:
        return _failure(problem)
    method_name, problem = _pick_method(kwargs)
    if problem is not None:
        return _failure(problem)
    try:
        return _settle(getattr(_instance, method_name)(**kwargs))
    except Exception as exc:  # any user error becomes a job result, not a dead worker
        return _crash_report(exc)
'''

_CLASS_ASYNC_HANDLER = '''

async def handler(job):
    """Dispatch the job to a method of the shared class instance.

    Async so runpod can run several jobs at once; the method may still be a
    plain ``def``, so its result is awaited only when it is awaitable.
    """
    kwargs, problem = _job_kwargs(job)
    if problem is not None:
        return _failure(problem)
    method_name, problem = _pick_method(kwargs)
    if problem is not None:
        return _failure(problem)
    try:
        result = getattr(_instance, method_name)(**kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result
    except Exception as exc:  # any user error becomes a job result, not a dead worker
        return _crash_report(exc)
'''

_QUEUE_MAIN_SERIAL = '''

if __name__ == "__main__":
    import runpod

    runpod.serverless.start({"handler": handler})
'''

_QUEUE_MAIN_CONCURRENT = Template('''

MAX_CONCURRENCY = $max_concurrency


def _concurrency(current):
    """Jobs runpod may hand this worker at once (max_concurrency)."""
    return MAX_CONCURRENCY


if __name__ == "__main__":
    import runpod

    runpod.serverless.start({"handler": handler, "concurrency_modifier": _concurrency})
''')

_LB_MODULE = Template('''\
"""HTTP worker entry point for the load-balanced $resource_repr resource.

Built by flash build from flash_manifest.json (generated_at: $generated_at_repr).
The worker image serves ``app`` with uvicorn. Edits are lost on the next build.
"""

import importlib
import logging
from contextlib import asynccontextmanager

from runpod_flash.runtime.lb_handler import create_lb_handler

_log = logging.getLogger(__name__)

RESOURCE_NAME = $resource_repr


def _load(module, name):
    """Fetch a route function; getattr copes with non-identifier module paths."""
    return getattr(importlib.import_module(module), name)

$unrouted
# (HTTP method, path) -> function, the shape create_lb_handler expects.
ROUTE_REGISTRY = {
$registry}


@asynccontextmanager
async def lifespan(app):
    """Log start-up and shutdown of the endpoint process."""
    _log.info("endpoint %s starting", RESOURCE_NAME)
    yield
    _log.info("endpoint %s stopping", RESOURCE_NAME)


# /execute (remote code execution for the @Endpoint stubs) is only mounted for
# live resources, mirroring what the resource type allows.
app = create_lb_handler(ROUTE_REGISTRY, include_execute=$include_execute, lifespan=lifespan)


@app.get("/ping")
def ping():
    """Health probe the Runpod load balancer polls before routing traffic."""
    return {"status": "healthy"}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="0.0.0.0", port=8000)
''')


# ---------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------


def render_handlers(manifest: dict[str, Any]) -> dict[str, str]:
    """Map of artifact-relative path -> file text for every generated file.

    ``handler_<resource>.py`` for each resource that runs code (queue-based:
    ``is_load_balanced`` false and not ``client_mode``; load-balanced: a
    FastAPI app), plus the resource-config module at
    ``runpod_flash/runtime/_flash_resource_config.py``. Client-mode resources
    (``Endpoint(image=...)`` / ``Endpoint(id=...)``) run someone else's image and
    get no handler.

    Raises ``BuildError`` when the manifest cannot describe a bootable worker
    (for example a queue-based resource without functions) and when the
    generated text is not valid Python, which would be a bug here.
    """
    resources = _mapping(manifest.get("resources", {}), "resources")
    generated_at = str(manifest.get("generated_at", ""))
    files: dict[str, str] = {}
    for name in sorted(resources):
        resource = _mapping(resources[name], f"resources[{name!r}]")
        if resource.get("client_mode", False):
            continue
        path = handler_file_name(name)
        declared = resource.get("handler_file")
        if declared is not None and declared != path:
            raise BuildError(
                f"manifest resource {name!r} names its handler {declared!r}, expected {path!r}",
                hint=_BUG_HINT,
            )
        if resource.get("is_load_balanced", False):
            files[path] = render_lb_handler(name, resource, generated_at)
        else:
            files[path] = render_queue_handler(name, resource, generated_at)
    registry = _mapping(manifest.get("function_registry", {}), "function_registry")
    files[RESOURCE_CONFIG_PATH] = render_resource_config(resources, registry, generated_at)
    for path, text in files.items():
        _check_python(path, text)
    return files


def write_generated(files: Mapping[str, str], build_dir: Path) -> None:
    """Write ``files`` under ``build_dir``, touching only files whose bytes change.

    Each file is written to a temporary sibling and moved into place with
    ``os.replace``, so a crash never leaves a half-written handler behind.
    Unchanged files keep their mtime, which keeps downstream tasks up to date.
    """
    for rel, text in sorted(files.items()):
        write_if_changed(build_dir.joinpath(*_safe_relative_parts(rel)), text.encode("utf-8"))


def handler_file_name(resource_name: str) -> str:
    """``handler_<resource>.py``, the file the worker looks up by resource name.

    The name is used verbatim ('-' included) because the worker derives it
    from FLASH_RESOURCE_NAME; names that would escape the artifact root are
    rejected.
    """
    unusable = (
        not resource_name
        or resource_name in {".", ".."}
        or any(ch in resource_name for ch in "/\\\0")
        or any(ord(ch) < 32 for ch in resource_name)
    )
    if unusable:
        raise BuildError(
            f"endpoint name {resource_name!r} cannot be used as a file name",
            hint="Endpoint names become handler_<name>.py in the artifact; "
            "use letters, digits, '-' and '_'.",
        )
    return f"handler_{resource_name}.py"


def render_queue_handler(name: str, resource: Mapping[str, Any], generated_at: str) -> str:
    """Source of the queue-based handler module for one resource.

    Only the resource's first function is served, as in runpod-flash: a
    queue-based endpoint has exactly one entry point. ``is_async`` from the
    manifest is deliberately ignored (1.21.0 marks every queue-based function
    async); the generated code inspects results at run time instead.
    """
    functions = _functions(name, resource)
    if not functions:
        raise BuildError(
            f"queue-based resource {name!r} has no functions to serve",
            hint="Decorate a function or class with this Endpoint, or remove it.",
        )
    func = functions[0]
    module = _text(func, "module", name)
    func_name = _text(func, "name", name)
    concurrency = _max_concurrency(name, resource)
    concurrent = concurrency > 1

    parts = [
        _QUEUE_HEADER.substitute(
            resource_repr=repr(name),
            generated_at_repr=repr(generated_at),
            module_repr=repr(module),
            name_repr=repr(func_name),
        )
    ]
    if not concurrent:
        parts.append(_SYNC_SETTLE)
    if func.get("is_class", False):
        methods = _class_methods(name, func)
        parts.append(_CLASS_SETUP.substitute(methods_repr=repr(methods)))
        parts.append(_CLASS_ASYNC_HANDLER if concurrent else _CLASS_SYNC_HANDLER)
    else:
        parts.append(_FUNCTION_ASYNC_HANDLER if concurrent else _FUNCTION_SYNC_HANDLER)
    if concurrent:
        parts.append(_QUEUE_MAIN_CONCURRENT.substitute(max_concurrency=repr(concurrency)))
    else:
        parts.append(_QUEUE_MAIN_SERIAL)
    return "".join(parts)


def render_lb_handler(name: str, resource: Mapping[str, Any], generated_at: str) -> str:
    """Source of the FastAPI handler module for one load-balanced resource.

    Functions without an HTTP method and path are still imported (so a broken
    reference fails at boot, as with runpod-flash) but get no route.
    """
    registry_lines: list[str] = []
    unrouted: list[str] = []
    for func in _functions(name, resource):
        module = _text(func, "module", name)
        func_name = _text(func, "name", name)
        load = f"_load({module!r}, {func_name!r})"
        method = func.get("http_method")
        path = func.get("http_path")
        if method and path:
            method = str(method).upper()
            if method not in _HTTP_METHODS:
                raise BuildError(
                    f"route {func_name!r} of {name!r} uses unsupported HTTP method {method!r}",
                    hint="Use one of " + ", ".join(sorted(_HTTP_METHODS)) + ".",
                )
            registry_lines.append(f"    ({method!r}, {str(path)!r}): {load},\n")
        else:
            unrouted.append(f"    {load},\n")
    unrouted_block = (
        "\n# Imported for boot-time checking only: no HTTP method/path in the manifest.\n"
        "_UNROUTED = (\n" + "".join(unrouted) + ")\n"
        if unrouted
        else ""
    )
    return _LB_MODULE.substitute(
        resource_repr=repr(name),
        generated_at_repr=repr(generated_at),
        unrouted=unrouted_block,
        registry="".join(registry_lines),
        include_execute=repr(bool(resource.get("is_live_resource", False))),
    )


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def _mapping(value: object, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BuildError(f"manifest field {what} is not an object", hint=_BUG_HINT)
    return value


def _functions(resource_name: str, resource: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    functions = resource.get("functions", [])
    if not isinstance(functions, list) or not all(isinstance(f, Mapping) for f in functions):
        raise BuildError(
            f"manifest resource {resource_name!r} has a malformed 'functions' list",
            hint=_BUG_HINT,
        )
    return functions


def _text(func: Mapping[str, Any], key: str, resource_name: str) -> str:
    value = func.get(key)
    if not isinstance(value, str) or not value:
        raise BuildError(
            f"a function of resource {resource_name!r} has no {key!r} in the manifest",
            hint=_BUG_HINT,
        )
    return value


def _max_concurrency(resource_name: str, resource: Mapping[str, Any]) -> int:
    value = resource.get("max_concurrency", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BuildError(
            f"max_concurrency of {resource_name!r} must be a positive integer, got {value!r}",
            hint="Pass max_concurrency=<n> with n >= 1 to Endpoint(...).",
        )
    return value


def _class_methods(resource_name: str, func: Mapping[str, Any]) -> tuple[str, ...]:
    """Sorted, de-duplicated method names; sorted so error messages are stable."""
    methods = func.get("class_methods", [])
    if not isinstance(methods, list) or not all(isinstance(m, str) and m for m in methods):
        raise BuildError(
            f"manifest resource {resource_name!r} has malformed 'class_methods'",
            hint=_BUG_HINT,
        )
    return tuple(sorted(set(methods)))


def _check_python(path: str, text: str) -> None:
    """Refuse to ship a generated module the worker could not even parse."""
    try:
        ast.parse(text, filename=path, feature_version=_WORKER_MIN_PYTHON)
    except SyntaxError as exc:
        raise BuildError(
            f"generated {path} is not valid Python: {exc.msg} (line {exc.lineno})",
            path=path,
            line=exc.lineno,
            col=exc.offset,
            hint=_BUG_HINT,
        ) from exc


def _safe_relative_parts(rel: str) -> tuple[str, ...]:
    """Split an artifact-relative POSIX path, refusing anything outside the root."""
    pure = PurePosixPath(rel)
    parts = pure.parts
    if not parts or pure.is_absolute() or any(p in {"", ".", ".."} for p in parts) or "\\" in rel:
        raise BuildError(f"refusing to write generated file outside the build dir: {rel!r}", hint=_BUG_HINT)
    return parts
