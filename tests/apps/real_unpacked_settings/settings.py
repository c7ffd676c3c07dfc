"""Settings shared by the endpoints, as dicts unpacked into Endpoint(...)."""

import os

from runpod_flash import CpuInstanceType, DataCenter, GpuGroup

COMMON = {"workers": (0, 3), "idle_timeout": 120}
GPU_DEFAULTS = dict(gpu=[GpuGroup.ADA_24, GpuGroup.AMPERE_48], datacenter=DataCenter.EU_RO_1)
CPU_DEFAULTS = {"cpu": CpuInstanceType.CPU3C_2_4}
ENV = {"LOG_LEVEL": os.environ.get("UNPACKED_LOG_LEVEL", "info")}
