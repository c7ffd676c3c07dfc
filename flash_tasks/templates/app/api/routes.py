"""Load-balanced HTTP API in front of the workers."""

from runpod_flash import CpuInstanceType, Endpoint

from settings import REGION

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
    # Imported here, not at the top: a module-level import would make this module
    # define the "embedder" endpoint as well, which runpod-flash's own build refuses.
    from workers.embed import embed

    return await embed(texts)
