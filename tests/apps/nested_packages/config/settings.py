"""Project settings shared by the workers."""

from runpod_flash import GpuGroup

GPU = GpuGroup.AMPERE_80
MAX_WORKERS = 3
PREFIX = "nested"
