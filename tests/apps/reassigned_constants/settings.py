"""Constants assigned more than once: importers see the value bound last."""

from runpod_flash import GpuGroup

GPU = GpuGroup.ADA_24
GPU = GpuGroup.AMPERE_80

WORKERS = 1
WORKERS = (0, 3)

REGION_ENV = {"REGION": "us"}
REGION_ENV = {"REGION": "eu", "STAGE": "prod"}
