"""Static discovery of one file: what a scan records, and how it fails."""

from __future__ import annotations

import pytest

from flash_tasks.errors import BuildError
from flash_tasks.scan import module_name, scan_source


def scan(text: str, rel: str = "app.py") -> dict:
    return scan_source(text.encode(), rel)


def test_module_names() -> None:
    assert module_name("workers/gpu.py") == "workers.gpu"
    assert module_name("pkg/__init__.py") == "pkg"
    assert module_name("main.py") == "main"


def test_decorated_function_and_class_are_endpoints() -> None:
    result = scan(
        """
from runpod_flash import Endpoint, GpuGroup

@Endpoint(name="w", gpu=GpuGroup.ADA_24)
async def work(x):
    return helper(x)

@Endpoint(name="m")
class Model:
    def predict(self, a): ...
    async def stream(self, a): ...
    def _hidden(self): ...
    @staticmethod
    def util(): ...
"""
    )
    work, model = result["endpoints"]
    assert work["kind"] == "qb" and work["target"] == "work" and work["is_async"] is True
    assert work["endpoint"]["call"]["kwargs"]["name"]["src"] == '"w"'
    assert "helper" in work["calls"]  # decorators count too, as they do for the SDK
    assert model["is_class"] is True
    assert model["class_methods"] == ["predict", "stream"]
    assert model["class_is_async"] is True


def test_routes_and_endpoint_variables() -> None:
    result = scan(
        """
import runpod_flash as rf
api = rf.Endpoint(name="api", cpu="cpu3c-1-2")

@api.post("/echo")
def echo(body): return body

@api.get("/hi")
async def hi(): return "hi"
"""
    )
    assert set(result["endpoint_vars"]) == {"api"}
    routes = result["endpoints"]
    assert [(r["kind"], r["method"], r["target"]) for r in routes] == [("route", "POST", "echo"), ("route", "GET", "hi")]
    assert routes[0]["route"]["args"][0]["src"] == '"/echo"'


def test_aliased_import_is_recognised_and_other_decorators_are_not() -> None:
    result = scan(
        """
from runpod_flash import Endpoint as E
from functools import lru_cache
import fastapi
app = fastapi.FastAPI()

@E(name="x")
def f(): ...

@lru_cache()
def g(): ...

@app.get("/z")
def h(): ...
"""
    )
    kinds = {(e["target"], e["kind"]) for e in result["endpoints"]}
    # @app.get is recorded as a candidate route; the manifest drops it because app is no Endpoint.
    assert ("f", "qb") in kinds and ("h", "route") in kinds
    assert all(e["target"] != "g" for e in result["endpoints"])
    assert "app" not in result["endpoint_vars"]


def test_a_name_endpoint_from_another_library_is_not_ours() -> None:
    result = scan(
        """
from somewhere_else import Endpoint

@Endpoint(name="x")
def f(): ...
"""
    )
    assert result["endpoints"] == []


def test_imports_relative_and_absolute() -> None:
    result = scan("from .settings import GPU\nfrom ..base import X as Y\nimport os.path\n", rel="pkg/sub/mod.py")
    assert result["imports"]["GPU"]["module"] == "pkg.sub.settings"
    assert result["imports"]["Y"] == {"module": "pkg.base", "name": "X", "line": 2}
    assert result["imports"]["os"]["module"] == "os"


def test_syntax_error_is_located() -> None:
    with pytest.raises(BuildError) as info:
        scan("x = 1\ndef broken(:\n    pass\n", rel="w/bad.py")
    err = info.value
    assert (err.path, err.line) == ("w/bad.py", 2)
    assert err.col is not None and "syntax" in err.message


def test_non_utf8_file_is_a_clear_error() -> None:
    with pytest.raises(BuildError) as info:
        scan_source(b"x = '\xff\xfe'\n", "latin.py")
    assert info.value.path == "latin.py"
    assert "UTF-8" in (info.value.hint or "") or "decode" in info.value.message


def test_bom_and_crlf_are_fine() -> None:
    data = "\ufeff".encode() + b"from runpod_flash import Endpoint\r\n@Endpoint(name='a')\r\ndef f():\r\n    return 1\r\n"
    result = scan_source(data, "bom.py")
    assert result["endpoints"][0]["target"] == "f"


def test_latin1_with_coding_cookie_is_decoded() -> None:
    data = "# -*- coding: latin-1 -*-\nNAME = 'caf\xe9'\n".encode("latin-1")
    result = scan_source(data, "cookie.py")
    assert result["assigns"]["NAME"][0]["src"] == "'caf\xe9'"


def test_scan_never_runs_code(tmp_path) -> None:
    marker = tmp_path / "ran"
    text = f"open({str(marker)!r}, 'w').write('x')\nimport sys\nsys.exit(3)\n"
    scan(text)
    assert not marker.exists()


def test_legacy_remote_is_recorded() -> None:
    result = scan("from runpod_flash import remote\n@remote(resource_config=cfg, dependencies=['x'])\ndef f(): ...\n")
    record = result["endpoints"][0]
    assert record["kind"] == "remote" and record["target"] == "f"
    assert set(record["remote"]["kwargs"]) == {"resource_config", "dependencies"}
    bare = scan("from runpod_flash import remote\n@remote\ndef f(): ...\n")
    assert bare["unsupported"][0]["what"].startswith("@remote")
