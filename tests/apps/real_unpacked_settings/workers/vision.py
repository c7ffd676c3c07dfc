from runpod_flash import Endpoint

from settings import COMMON, ENV, GPU_DEFAULTS


@Endpoint(name="vision", **GPU_DEFAULTS, **COMMON, env={**ENV, "MODEL": "vit"})
async def classify(image: bytes) -> dict:
    return {"label": "cat"}


@Endpoint(name="vision-batch", **{**COMMON, "idle_timeout": 600}, **GPU_DEFAULTS)
async def classify_many(images: list) -> list:
    return [{"label": "cat"} for _ in images]
