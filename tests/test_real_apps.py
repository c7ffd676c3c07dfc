"""Apps written the way real Flash apps are, built offline and compared with runpod-flash 1.21.0.

Each app under ``tests/apps/real_*`` exercises constructs seen in real apps and
official examples (same endpoint name twice in one file, SDK enums looked up by
name or value, builtins, str methods, comprehensions, environment reads, a sample
app under ``.agents/``). ``scripts/record_real_app_goldens.py`` built them with the
reference and stored its manifest and the environment it used under
``tests/goldens/real_apps/``; here we build them with that environment and compare
every field except ``generated_at`` and ``source_fingerprint``.

One difference is kept on purpose and asserted as such: the reference lists the
endpoint of ``.agents/skills/demo/dev-loop/main.py`` (module
``.agents.skills.demo.dev-loop.main``, which the worker cannot import); we leave
that folder out of discovery with a warning.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flash_tasks.files import scan_app_tree
from flash_tasks.manifest import BuildOptions, ManifestResult, build_manifest
from flash_tasks.scan import scan_source

APPS = Path(__file__).parent / "apps"
GOLDENS = Path(__file__).parent / "goldens" / "real_apps"
VOLATILE_FIELDS = ("generated_at", "source_fingerprint")
REAL_APPS = ("real_same_name", "real_enum_lookup", "real_expressions", "real_agents_folder", "real_names", "real_unpacked_settings")


def golden(app: str) -> dict[str, Any]:
    return json.loads((GOLDENS / f"{app}.json").read_text(encoding="utf-8"))


def build_ours(app: str, environ: dict[str, str]) -> ManifestResult:
    app_dir = APPS / app
    files = [f for f in scan_app_tree(app_dir).files if f.endswith(".py")]
    scans = {rel: scan_source((app_dir / rel).read_bytes(), rel) for rel in files}
    return build_manifest(scans, BuildOptions(project_name=app), environ)


def comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k not in VOLATILE_FIELDS}


def env_of(record: dict[str, Any]) -> dict[str, str]:
    return {k: v for k, v in record["env"].items() if v is not None}


def ours_and_reference(app: str) -> tuple[dict[str, Any], dict[str, Any], ManifestResult]:
    record = golden(app)
    assert record["reference"] == "runpod-flash==1.21.0" and record["app"] == app
    result = build_ours(app, env_of(record))
    return comparable(json.loads(result.manifest.to_json())), comparable(record["manifest"]), result


@pytest.mark.parametrize("app", [a for a in REAL_APPS if a != "real_agents_folder"])
def test_real_app_manifest_matches_reference(app: str) -> None:
    ours, reference, _ = ours_and_reference(app)
    assert ours == reference


def test_same_name_in_one_file_takes_the_settings_of_the_first_function_by_name() -> None:
    ours, reference, result = ours_and_reference("real_same_name")
    assert ours == reference
    tts = ours["resources"]["tts"]
    # list_voices (declared second, sorts first) decides: AMPERE_80 and the defaults.
    assert (tts["gpuIds"], tts["workersMax"], tts["idleTimeout"]) == ("AMPERE_80", 1, 60)
    assert [f["name"] for f in tts["functions"]] == ["list_voices", "speak"]
    asr = ours["resources"]["asr"]
    assert (asr["workersMin"], asr["workersMax"], asr["idleTimeout"]) == (1, 2, 300)
    warnings = {w.message.split("'")[1]: w for w in result.warnings if "declared" in w.message}
    assert set(warnings) == {"tts", "asr"}
    tts_warning = warnings["tts"]
    assert (tts_warning.path, tts_warning.line) == ("app.py", 16)
    assert "(env, gpu, idle_timeout, workers)" in tts_warning.message
    assert "declaration on list_voices (app.py:16) applies" in tts_warning.message
    assert "speak (app.py:11)" in tts_warning.message
    assert "(gpu, idle_timeout, workers)" in warnings["asr"].message
    assert "declaration on a_transcribe (app.py:21) applies" in warnings["asr"].message


def test_environment_reads_are_recorded_with_their_values() -> None:
    _, _, result = ours_and_reference("real_expressions")
    used = result.env_used
    # Every variable the app reads, set ones with their value, unset ones (read with a default) as None.
    expected = golden("real_expressions")["env"]
    assert len(expected) == 6 and None in expected.values()
    assert {k: used.get(k, "not recorded") for k in expected} == expected
    _, _, enums = ours_and_reference("real_enum_lookup")
    assert enums.env_used["SAM3_DATACENTER"] is None
    assert enums.env_used["REAL_APP_DATACENTER"] == "US_KS_2"


def test_a_changed_environment_changes_the_manifest() -> None:
    record = golden("real_enum_lookup")
    environ = env_of(record) | {"SAM3_DATACENTER": "US_CA_2"}
    result = build_ours("real_enum_lookup", environ)
    assert result.manifest.resources["sam"].locations == "US-CA-2"
    assert result.env_used["SAM3_DATACENTER"] == "US_CA_2"


def test_folder_with_a_dot_is_left_out_with_one_warning() -> None:
    ours, reference, result = ours_and_reference("real_agents_folder")
    skipped = "dev-loop-sample"
    # The deliberate difference: the reference lists it, with a module path no worker can import.
    assert reference["resources"][skipped]["module_path"] == ".agents.skills.demo.dev-loop.main"
    expected = json.loads(json.dumps(reference))
    del expected["resources"][skipped]
    expected["function_registry"] = {f: r for f, r in expected["function_registry"].items() if r != skipped}
    assert ours == expected
    # A folder with '-' in its name is importable and built as the reference does.
    assert ours["resources"]["dash-folder"]["module_path"] == "my-folder.worker"
    folder_warnings = [w for w in result.warnings if ".agents" in w.message]
    assert len(folder_warnings) == 1
    message = folder_warnings[0].message
    assert message.startswith("endpoints in .agents/ are not built")
    assert "add the line `.agents/` to .gitignore" in message
    assert folder_warnings[0].path == ".agents/"


def test_the_suggested_ignore_line_silences_the_warning(tmp_path: Path) -> None:
    import shutil

    app = tmp_path / "real_agents_folder"
    shutil.copytree(APPS / "real_agents_folder", app)
    (app / ".gitignore").write_text(".agents/\n", encoding="utf-8")
    files = [f for f in scan_app_tree(app).files if f.endswith(".py")]
    assert not any(f.startswith(".agents/") for f in files)
    scans = {rel: scan_source((app / rel).read_bytes(), rel) for rel in files}
    result = build_manifest(scans, BuildOptions(project_name=app.name), {})
    assert not [w for w in result.warnings if ".agents" in w.message]
    assert set(result.manifest.resources) == {"main-worker", "dash-folder"}


def _manifest_of(files: dict[str, str]) -> ManifestResult:
    scans = {rel: scan_source(text.encode(), rel) for rel, text in files.items()}
    return build_manifest(scans, BuildOptions(project_name="app"), {})


SAME_NAME = """\
from runpod_flash import Endpoint


@Endpoint(name="tts", cpu="cpu3c-1-2", dependencies=["tinydep"])
def speak(text):
    return text


@Endpoint(name="tts", cpu="cpu3c-1-2", dependencies=["leafdep", "tinydep"])
def list_voices():
    return []
"""


def test_same_name_installs_every_declarations_dependencies() -> None:
    """runpod-flash installs the dependencies of every declaration it finds, whichever gives the settings."""
    result = _manifest_of({"app.py": SAME_NAME})
    assert [(d["requirement"], d["origin"]) for d in result.groups["tts"]] == [
        ("leafdep", "app.py:9"),
        ("tinydep", "app.py:9"),
    ]
    # Only dependencies differ: every declaration's are installed, so nothing is ignored and no warning.
    assert not [w for w in result.warnings if "declared" in w.message]
    other = SAME_NAME.replace('["leafdep", "tinydep"]', '["leafdep"]')
    result = _manifest_of({"app.py": other})
    assert [(d["requirement"], d["origin"]) for d in result.groups["tts"]] == [
        ("leafdep", "app.py:9"),
        ("tinydep", "app.py:4"),
    ]


def test_same_name_in_two_files_stays_an_error() -> None:
    from flash_tasks.errors import BuildError

    one = SAME_NAME.split("\n\n\n@Endpoint", 2)
    files = {"a.py": one[0] + "\n\n\n@Endpoint" + one[1], "b.py": one[0] + "\n\n\n@Endpoint" + one[2]}
    with pytest.raises(BuildError) as info:
        _manifest_of(files)
    assert "endpoint 'tts' is defined in more than one file: a.py, b.py" in info.value.message
    assert info.value.path == "b.py"
