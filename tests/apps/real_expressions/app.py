# ruff: noqa: SIM905, FLY002, UP032, C405, SIM118  (written the way real apps write settings)
"""Endpoint arguments written the way Python programmers write settings.

Pure builtins, str methods, dict.get, comparisons, boolean and conditional
expressions, comprehensions, and environment variables read several ways.
"""

import os

from runpod_flash import CpuInstanceType, Endpoint, GpuGroup

PREFIX = os.getenv("APP_PREFIX", "Demo").lower()
MAX_WORKERS = int(os.getenv("MAX_WORKERS", "3"))
DEBUG = os.environ.get("REAL_APP_DEBUG", "0").strip().lower() in ("1", "true", "yes")
REGIONS = "eu-ro-1, us-ks-2".split(",")
MODELS = {"small": 8, "large": 24, "tiny": 2}
SETTINGS = {"timeout": "90"}
TOKEN = os.environ["REAL_APP_TOKEN"]


@Endpoint(
    name="-".join([PREFIX, "speech"]),
    gpu=GpuGroup.ADA_24 if MODELS["large"] <= 24 else GpuGroup.AMPERE_80,
    workers=(min(1, MAX_WORKERS), max(MAX_WORKERS, 2)),
    idle_timeout=max(60, 30 * 4),
    scaler_value=len([m for m in MODELS.values() if m > 4]) + 1,
    execution_timeout_ms=int(float(SETTINGS.get("timeout", "60")) * 1000),
    env={
        "MODELS": ",".join(sorted(MODELS)),
        "REGIONS": ";".join(r.strip().upper() for r in REGIONS),
        "DEBUG": str(DEBUG).lower(),
        "TITLE": "{}-{}".format(PREFIX.title(), len(MODELS)),
        "LABEL": "{name}:{n:03d}".format(name=PREFIX.upper(), n=MAX_WORKERS),
        "TOKEN": TOKEN.replace("tok", "token"),
        "MODE": "debug" if DEBUG and MAX_WORKERS > 2 else "normal",
        "FALLBACK": os.environ.get("REAL_APP_MISSING") or "none",
        "HAS_TOKEN": str("REAL_APP_TOKEN" in os.environ),
        "SUM": str(sum(MODELS.values())),
        "ROUNDED": str(round(7 / 3, 2)),
        "ABS": str(abs(-4)),
        "FLAGS": ",".join(sorted(set(["b", "a", "b"]))),
        "KEYS": "+".join(k for k in MODELS.keys() if k.startswith(("s", "l"))),
        "PAIRS": ",".join(f"{k}={v}" for k, v in sorted(MODELS.items())),
        "CAPS": PREFIX.capitalize().center(8, "*"),
        "ANY": str(any(v > 20 for v in MODELS.values())) + str(all(v > 20 for v in MODELS.values())),
        **{f"SIZE_{k.upper()}": str(v) for k, v in MODELS.items() if v > 5},
    },
)
async def synthesize(text: str) -> dict:
    return {"text": text}


api = Endpoint(
    name=PREFIX + "-api",
    cpu=[CpuInstanceType(t) for t in ("cpu3c-1-2", "cpu3c-2-4") if t.endswith("2")],
    workers=int(os.getenv("API_WORKERS", "2")),
)


@api.post("/" + "V1/Run".lower())
async def run(payload: dict) -> dict:
    return payload


@api.get("/{}".format("health-check"))
async def health() -> dict:
    return {"ok": True}
