"""GPU worker: turns texts into vectors."""

import os

from runpod_flash import Endpoint

from settings import EMBED_GPU, MAX_BATCH, MODEL_NAME


@Endpoint(
    name="embedder",
    gpu=EMBED_GPU,
    workers=(0, 3),
    idle_timeout=120,
    env={"MODEL_NAME": MODEL_NAME, "MAX_BATCH": str(MAX_BATCH), "LOG_LEVEL": os.environ.get("LOG_LEVEL", "info")},
    dependencies=["pyyaml>=6"],
)
async def embed(texts: list, normalize: bool = True) -> dict:
    """Return one small vector per text (a stand-in for a real model)."""
    vectors = []
    for text in texts[:MAX_BATCH]:
        values = [float(len(word)) for word in text.split()] or [0.0]
        if normalize:
            total = sum(values) or 1.0
            values = [v / total for v in values]
        vectors.append(values)
    return {"model": MODEL_NAME, "vectors": vectors}
