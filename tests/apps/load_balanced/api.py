"""Load-balanced endpoints: routes on a CPU endpoint, calling a queue function."""

from runpod_flash import CpuInstanceType, Endpoint, GpuGroup

api = Endpoint(name="api", cpu=CpuInstanceType.CPU3C_2_4, workers=(1, 4))


@Endpoint(name="summarizer", gpu=GpuGroup.ADA_24)
async def summarize(text: str) -> str:
    return text[:10]


@api.get("/health")
def health() -> dict:
    return {"ok": True}


@api.post("/summaries")
async def create_summary(body: dict) -> dict:
    summary = await summarize(body["text"])
    return {"summary": summary}


@api.put("/items/{item_id}")
async def replace_item(item_id: str, body: dict) -> dict:
    return {"id": item_id, **body}


@api.delete("/items/{item_id}")
def delete_item(item_id: str) -> dict:
    return {"deleted": item_id}


@api.patch("/items/{item_id}")
async def patch_item(item_id: str, body: dict) -> dict:
    return {"id": item_id}
