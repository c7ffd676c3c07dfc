"""Load-balanced HTTP API in front of the workers."""

from runpod_flash import CpuInstanceType, Endpoint

from settings import REGION
from workers.embed import embed

api = Endpoint(
    name="api",
    cpu=CpuInstanceType.CPU3C_1_2,
    workers=(1, 3),
    datacenter=REGION,
)


@api.get("/health")
async def health() -> dict:
    return {"status": "ok"}


@api.post("/embed")
async def embed_texts(texts: list) -> dict:
    """Forward to the GPU worker."""
    return await embed(texts)
