"""Typed models of what the build writes: the manifest and its parts.

The manifest is a contract with the worker runtime, so field names, order and
which fields are omitted when empty follow runpod-flash 1.21.0's
``flash_manifest.json``. ``config_variable`` is the one field written as
``null`` rather than left out.
"""

from __future__ import annotations

from typing import Any

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
    class_methods: list[str] | None = None
    http_method: str | None = None
    http_path: str | None = None


class TemplateEntry(_Omitting):
    containerDiskInGb: int
    dockerArgs: str
    startScript: str
    advancedStart: bool
    containerRegistryAuthId: str


class NetworkVolumeEntry(_Omitting):
    name: str | None = None
    id: str | None = None
    size: int | None = None
    dataCenterId: str | None = None


class ResourceEntry(_Omitting):
    resource_type: str
    file_path: str
    local_path_prefix: str
    module_path: str
    functions: list[FunctionEntry]
    is_load_balanced: bool
    is_live_resource: bool
    config_variable: str | None = None
    makes_remote_calls: bool
    client_mode: bool | None = None
    max_concurrency: int | None = None
    imageName: str | None = None
    python_version: str | None = None
    templateId: str | None = None
    gpuIds: str | None = None
    instanceIds: list[str] | None = None
    workersMin: int | None = None
    workersMax: int | None = None
    idleTimeout: int | None = None
    scalerType: str | None = None
    scalerValue: int | None = None
    locations: str | None = None
    minCudaVersion: str | None = None
    env: dict[str, str] | None = None
    networkVolumes: list[NetworkVolumeEntry] | None = None
    template: TemplateEntry | None = None
    handler_file: str | None = None
    target_python_version: str


class Manifest(_Omitting):
    version: str = "1.0"
    python_version: str
    generated_at: str
    project_name: str
    resources: dict[str, ResourceEntry]
    function_registry: dict[str, str]
    routes: dict[str, dict[str, str]] | None = None
    source_fingerprint: str | None = None

    def to_json(self) -> str:
        """The manifest file's text, laid out as the reference writes it."""
        import json

        return json.dumps(self.model_dump(), indent=2)
