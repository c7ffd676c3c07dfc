"""Stand-in for the SDK's load-balancer app factory (see ../../README.md)."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any, get_type_hints

from fastapi import FastAPI
from pydantic import create_model

_BODY_METHODS = {"POST", "PUT", "PATCH"}


def _with_json_body(func: Callable[..., Any], path: str) -> Callable[..., Any]:
    """Let FastAPI read the parameters that are not in the path from one JSON object."""
    in_path = set(re.findall(r"{(\w+)}", path))
    signature = inspect.signature(func)
    hints = get_type_hints(func)
    fields: dict[str, Any] = {}
    for name, param in signature.parameters.items():
        if name in in_path:
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    if not fields:
        return func
    body_model = create_model(f"{func.__name__}_body", **fields)

    async def call(body: Any, **path_values: Any) -> Any:
        result = func(**body.model_dump(), **path_values)
        return await result if inspect.isawaitable(result) else result

    params = [inspect.Parameter("body", inspect.Parameter.KEYWORD_ONLY, annotation=body_model)]
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(n, Any)) for n in in_path]
    call.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return call


def create_lb_handler(
    route_registry: dict[tuple[str, str], Callable[..., Any]],
    include_execute: bool = False,
    lifespan: Any = None,
) -> FastAPI:
    app = FastAPI(lifespan=lifespan)
    for (method, path), func in route_registry.items():
        endpoint = _with_json_body(func, path) if method.upper() in _BODY_METHODS else func
        app.add_api_route(path, endpoint, methods=[method.upper()])
    return app
