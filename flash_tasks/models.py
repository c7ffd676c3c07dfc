"""Typed models of what the build writes: the manifest and its parts.

The manifest is a contract with the worker runtime, so field names, order and
which fields are omitted when empty follow runpod-flash 1.21.0's
``flash_manifest.json``. ``config_variable`` is the one field written as
``null`` rather than left out.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, model_serializer

#: Fields written even when they are None.
_KEEP_NULL = frozenset({"config_variable"})


class _Omitting(BaseModel):
    """Base model whose JSON leaves out None fields (except ``_KEEP_NULL``)."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _omit_none(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        return {k: v for k, v in data.items() if v is not None or k in _KEEP_NULL}


class FunctionEntry(_Omitting):
    name: str
    module: str
    is_async: bool
    is_class: bool
    class_methods: Optional[list[str]] = None
    http_method: Optional[str] = None
    http_path: Optional[str] = None


class TemplateEntry(_Omitting):
    containerDiskInGb: int
    dockerArgs: str
    startScript: str
    advancedStart: bool
    containerRegistryAuthId: str


class NetworkVolumeEntry(_Omitting):
    name: Optional[str] = None
    id: Optional[str] = None
    size: Optional[int] = None
    dataCenterId: Optional[str] = None


class ResourceEntry(_Omitting):
    resource_type: str
    file_path: str
    local_path_prefix: str
    module_path: str
    functions: list[FunctionEntry]
    is_load_balanced: bool
    is_live_resource: bool
    config_variable: Optional[str] = None
    makes_remote_calls: bool
    client_mode: Optional[bool] = None
    max_concurrency: Optional[int] = None
    imageName: Optional[str] = None
    python_version: Optional[str] = None
    templateId: Optional[str] = None
    gpuIds: Optional[str] = None
    instanceIds: Optional[list[str]] = None
    workersMin: Optional[int] = None
    workersMax: Optional[int] = None
    idleTimeout: Optional[int] = None
    scalerType: Optional[str] = None
    scalerValue: Optional[int] = None
    locations: Optional[str] = None
    minCudaVersion: Optional[str] = None
    env: Optional[dict[str, str]] = None
    networkVolumes: Optional[list[NetworkVolumeEntry]] = None
    template: Optional[TemplateEntry] = None
    handler_file: Optional[str] = None
    target_python_version: str


class Manifest(_Omitting):
    version: str = "1.0"
    python_version: str
    generated_at: str
    project_name: str
    resources: dict[str, ResourceEntry]
    function_registry: dict[str, str]
    routes: Optional[dict[str, dict[str, str]]] = None
    source_fingerprint: Optional[str] = None

    def to_json(self) -> str:
        """The manifest file's text, laid out as the reference writes it."""
        import json

        return json.dumps(self.model_dump(), indent=2)
