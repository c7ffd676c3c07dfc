"""Record runpod-flash 1.21.0's manifests for the apps under ``tests/apps/real_*``.

Each app is copied into a temporary folder of the same name (so ``project_name``
agrees), built there with the reference's ``flash build --no-deps`` under a fixed
environment, and its ``.flash/flash_manifest.json`` is written to
``tests/goldens/real_apps/<app>.json`` together with that environment. The
default test suite (``tests/test_real_apps.py``) builds the same apps offline and
compares against these files.

Usage (needs an interpreter with runpod-flash 1.21.0; by default the one the
reference tests create or find, see ``tests/support/reference.py``)::

    python scripts/record_real_app_goldens.py [--python PATH] [APP ...]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ROOT / "tests" / "apps"
GOLDENS = ROOT / "tests" / "goldens" / "real_apps"
REFERENCE = "runpod-flash==1.21.0"
VOLATILE_FIELDS = ("generated_at", "source_fingerprint")

#: Variables either tool reads besides the apps' own (runpod-flash's defaults for
#: images, tags and locations): unset for every recording.
REFERENCE_ENV = ("RUNPOD_DEFAULT_LOCATIONS", "RUNPOD_DEFAULT_DATACENTER")
#: What each app reads from the environment. Variables listed with None are
#: unset, so the app's default applies; the others are set to the given value.
APP_ENV: dict[str, dict[str, str | None]] = {
    "real_same_name": {},
    "real_enum_lookup": {"SAM3_DATACENTER": None, "REAL_APP_DATACENTER": "US_KS_2"},
    "real_expressions": {
        "APP_PREFIX": None,
        "MAX_WORKERS": "5",
        "REAL_APP_DEBUG": " True ",
        "REAL_APP_TOKEN": "tok-123",
        "REAL_APP_MISSING": None,
        "API_WORKERS": None,
    },
    "real_agents_folder": {},
    "real_names": {},
    "real_unpacked_settings": {"UNPACKED_LOG_LEVEL": "debug"},
}


def reference_python(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    from tests.support.reference import reference_python as find
    from tests.support.reference import unavailable_reason

    python = find()
    if python is None:
        raise SystemExit(f"no runpod-flash 1.21.0 environment: {unavailable_reason()}")
    return python


def build_env(app_env: dict[str, str | None]) -> dict[str, str]:
    from support.apps import CLEARED_ENV

    cleared = set(CLEARED_ENV) | set(REFERENCE_ENV) | set(app_env)
    env = {k: v for k, v in os.environ.items() if k not in cleared}
    env.update({k: v for k, v in app_env.items() if v is not None})
    env["FLASH_NO_UPDATE_CHECK"] = "1"
    return env


def record(app: str, flash: Path) -> Path:
    with tempfile.TemporaryDirectory(prefix="golden-") as tmp:
        copy = Path(tmp) / app
        shutil.copytree(APPS / app, copy, ignore=shutil.ignore_patterns("__pycache__", ".flash"))
        proc = subprocess.run(
            [str(flash), "build", "--no-deps"],
            cwd=copy,
            env=build_env(APP_ENV[app]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=600,
            check=False,
        )
        manifest_path = copy / ".flash" / "flash_manifest.json"
        if proc.returncode != 0 or not manifest_path.exists():
            raise SystemExit(f"{app}: the reference build failed ({proc.returncode}):\n{proc.stdout}")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for key in VOLATILE_FIELDS:
        manifest.pop(key, None)
    out = GOLDENS / f"{app}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    golden = {"reference": REFERENCE, "app": app, "env": APP_ENV[app], "manifest": manifest}
    out.write_text(json.dumps(golden, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", help="interpreter of an environment with runpod-flash 1.21.0")
    parser.add_argument("apps", nargs="*", default=sorted(APP_ENV), help="apps to record (default: all)")
    args = parser.parse_args()
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    python = reference_python(args.python)
    flash = python.parent / ("flash.exe" if os.name == "nt" else "flash")
    for app in args.apps:
        if app not in APP_ENV:
            raise SystemExit(f"unknown app {app!r}; known: {', '.join(sorted(APP_ENV))}")
        print(f"{app}: {record(app, flash).relative_to(ROOT)}")


if __name__ == "__main__":
    main()
