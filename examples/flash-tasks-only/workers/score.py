"""GPU worker that imports its heavy dependency at the top of the module."""

import numpy as np
from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="scorer", gpu=GpuGroup.ADA_24, dependencies=["numpy"])
async def score(values: list) -> dict:
    return {"sum": float(np.sum(values))}
