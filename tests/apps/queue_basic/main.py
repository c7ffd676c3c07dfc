"""Queue-based endpoints: sync and async, GPU forms, workers, env, scaling."""

import os

from runpod_flash import DataCenter, Endpoint, GpuGroup, GpuType, ServerlessScalerType

MODEL = "llama-3"
REGION = os.environ.get("FLASH_FIXTURE_REGION", "default-region")
TIER = os.environ.get("FLASH_FIXTURE_TIER", "free")


@Endpoint(
    name="ada-async",
    gpu=GpuGroup.ADA_24,
    workers=(1, 3),
    idle_timeout=120,
    env={"MODEL": f"models/{MODEL}", "NAME": MODEL, "REGION": REGION, "TIER": TIER},
)
async def generate(payload: dict) -> dict:
    """Generate text."""
    return {"model": MODEL, **payload}


@Endpoint(name="types-sync", gpu=[GpuType.NVIDIA_L4, GpuType.NVIDIA_GEFORCE_RTX_4090], workers=2)
def classify(payload: dict) -> dict:
    return payload


@Endpoint(
    name="mixed",
    gpu=[GpuGroup.AMPERE_48, GpuType.NVIDIA_H100_80GB_HBM3],
    min_cuda_version="12.4",
    max_concurrency=4,
)
async def embed(payload: dict, *, normalize: bool = True) -> dict:
    return payload


@Endpoint(name="default-gpu")
def echo(payload):
    return payload


@Endpoint(
    name="scaled",
    gpu=GpuGroup.AMPERE_80,
    scaler_type=ServerlessScalerType.REQUEST_COUNT,
    scaler_value=7,
    datacenter=[DataCenter.US_CA_2, DataCenter.EU_CZ_1],
)
async def scaled(payload: dict) -> dict:
    return payload


@Endpoint(name="romania", gpu=GpuGroup.ADA_48_PRO, datacenter="eu-ro-1", workers=(0, 5))
def romania(payload: dict) -> dict:
    return payload


def helper(x):
    """Not an endpoint."""
    return x
