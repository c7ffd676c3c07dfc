"""SDK enums looked up by member name and by value, as real apps write them."""

import os

from runpod_flash import (
    CpuInstanceType,
    DataCenter,
    Endpoint,
    GpuGroup,
    GpuType,
    NetworkVolume,
)

REGION = os.environ.get("REAL_APP_DATACENTER", "EU_RO_1")


@Endpoint(name="sam", gpu=GpuGroup("ADA_24"), datacenter=DataCenter[os.environ.get("SAM3_DATACENTER", "EU_RO_1")])
def segment(image: str) -> dict:
    return {"image": image}


@Endpoint(name="sam-region", gpu=GpuGroup["AMPERE_80"], datacenter=DataCenter[REGION])
def segment_region(image: str) -> dict:
    return {"image": image}


@Endpoint(
    name="sam-cpu",
    cpu=CpuInstanceType("cpu3c-2-4"),
    datacenter=DataCenter["EU_RO_1"],
    volume=NetworkVolume(name="models", size=50, datacenter=DataCenter("EU-RO-1")),
)
def segment_cpu(image: str) -> dict:
    return {"image": image}


@Endpoint(
    name="sam-types",
    gpu=[GpuType("NVIDIA GeForce RTX 4090"), GpuGroup[GpuGroup.ADA_24.name]],
    datacenter=[DataCenter[dc] for dc in ("US_CA_2", "EU_RO_1")],
)
def segment_types(image: str) -> dict:
    return {"image": image}
