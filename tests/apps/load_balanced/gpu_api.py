"""A GPU load balancer written with the module-alias and aliased-class imports."""

import runpod_flash as rf
from runpod_flash import Endpoint as E

vision = rf.Endpoint(name="vision", gpu=rf.GpuGroup.ANY, workers=(0, 2))
tools = E(name="tools", cpu="cpu5c-2-4")


@vision.post("/detect")
async def detect(image: dict) -> dict:
    return {"boxes": []}


@vision.get("/models")
def models() -> list:
    return ["yolo"]


@tools.post("/convert")
def convert(body: dict) -> dict:
    return body


@E(name="aliased-queue", gpu=rf.GpuGroup.AMPERE_16)
async def aliased(x: dict) -> dict:
    return x
