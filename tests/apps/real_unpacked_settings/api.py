from runpod_flash import Endpoint

from settings import CPU_DEFAULTS

api = Endpoint(**{"name": "api", "workers": (1, 2)}, **CPU_DEFAULTS)


@api.post("/run")
async def run(payload: dict) -> dict:
    return payload


@api.get("/health")
async def health() -> dict:
    return {"ok": True}
