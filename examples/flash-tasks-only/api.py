"""Load-balanced API that calls the GPU worker through a module-level import."""

from runpod_flash import CpuInstanceType, Endpoint

from workers.score import score

api = Endpoint(name="api", cpu=CpuInstanceType.CPU3C_1_2, workers=(1, 2))


@api.post("/score")
async def score_values(values: list) -> dict:
    return await score(values)
