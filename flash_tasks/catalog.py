"""The Runpod catalog as data: GPU pools and types, CPU instance types, datacenters,
CUDA versions, scaler types, worker images and per-type defaults.

Everything the manifest derives from the SDK's enums and defaults lives here, in
one place, so that checking it against runpod-flash 1.21.0 is a table comparison
(see tests/test_catalog.py) and a catalog update is a data change.
"""

from __future__ import annotations

from typing import Final

# --- GPUs -------------------------------------------------------------------

#: GpuGroup members in declaration order: member name -> pool id sent to the API.
GPU_GROUPS: dict[str, str] = {
    "ANY": "any",
    "ADA_24": "ADA_24",
    "ADA_32_PRO": "ADA_32_PRO",
    "ADA_48_PRO": "ADA_48_PRO",
    "ADA_80_PRO": "ADA_80_PRO",
    "AMPERE_16": "AMPERE_16",
    "AMPERE_24": "AMPERE_24",
    "AMPERE_48": "AMPERE_48",
    "AMPERE_80": "AMPERE_80",
    "HOPPER_141": "HOPPER_141",
    "BLACKWELL_96": "BLACKWELL_96",
    "BLACKWELL_180": "BLACKWELL_180",
}

#: GpuType members in declaration order: member name -> GPU model name.
GPU_TYPES: dict[str, str] = {
    "ANY": "any",
    "NVIDIA_GEFORCE_RTX_4090": "NVIDIA GeForce RTX 4090",
    "NVIDIA_GEFORCE_RTX_5090": "NVIDIA GeForce RTX 5090",
    "NVIDIA_RTX_6000_ADA_GENERATION": "NVIDIA RTX 6000 Ada Generation",
    "NVIDIA_RTX_PRO_6000_BLACKWELL_SERVER_EDITION": "NVIDIA RTX PRO 6000 Blackwell Server Edition",
    "NVIDIA_RTX_PRO_6000_BLACKWELL_WORKSTATION_EDITION": "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
    "NVIDIA_RTX_PRO_6000_BLACKWELL_MAX_Q_WORKSTATION_EDITION": "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
    "NVIDIA_H100_80GB_HBM3": "NVIDIA H100 80GB HBM3",
    "NVIDIA_RTX_A4000": "NVIDIA RTX A4000",
    "NVIDIA_RTX_A4500": "NVIDIA RTX A4500",
    "NVIDIA_RTX_4000_ADA_GENERATION": "NVIDIA RTX 4000 Ada Generation",
    "NVIDIA_RTX_2000_ADA_GENERATION": "NVIDIA RTX 2000 Ada Generation",
    "NVIDIA_RTX_A5000": "NVIDIA RTX A5000",
    "NVIDIA_L4": "NVIDIA L4",
    "NVIDIA_GEFORCE_RTX_3090": "NVIDIA GeForce RTX 3090",
    "NVIDIA_A40": "NVIDIA A40",
    "NVIDIA_RTX_A6000": "NVIDIA RTX A6000",
    "NVIDIA_A100_80GB_PCIe": "NVIDIA A100 80GB PCIe",
    "NVIDIA_A100_SXM4_80GB": "NVIDIA A100-SXM4-80GB",
    "NVIDIA_H200": "NVIDIA H200",
    "NVIDIA_B200": "NVIDIA B200",
}

#: Which GPU models make up each pool (pool id -> model names), in API order.
GPU_POOLS: dict[str, tuple[str, ...]] = {
    "ADA_24": ("NVIDIA GeForce RTX 4090",),
    "ADA_32_PRO": ("NVIDIA GeForce RTX 5090",),
    "ADA_48_PRO": ("NVIDIA RTX 6000 Ada Generation",),
    "ADA_80_PRO": ("NVIDIA H100 80GB HBM3",),
    "AMPERE_16": (
        "NVIDIA RTX A4000",
        "NVIDIA RTX A4500",
        "NVIDIA RTX 4000 Ada Generation",
        "NVIDIA RTX 2000 Ada Generation",
    ),
    "AMPERE_24": ("NVIDIA RTX A5000", "NVIDIA L4", "NVIDIA GeForce RTX 3090"),
    "AMPERE_48": ("NVIDIA A40", "NVIDIA RTX A6000"),
    "AMPERE_80": ("NVIDIA A100 80GB PCIe", "NVIDIA A100-SXM4-80GB"),
    "HOPPER_141": ("NVIDIA H200",),
    "BLACKWELL_96": (
        "NVIDIA RTX PRO 6000 Blackwell Server Edition",
        "NVIDIA RTX PRO 6000 Blackwell Workstation Edition",
        "NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition",
    ),
    "BLACKWELL_180": ("NVIDIA B200",),
}

# --- CPUs -------------------------------------------------------------------

#: CpuInstanceType members: member name -> instance id.
CPU_INSTANCE_TYPES: dict[str, str] = {
    "CPU3G_1_4": "cpu3g-1-4",
    "CPU3G_2_8": "cpu3g-2-8",
    "CPU3G_4_16": "cpu3g-4-16",
    "CPU3G_8_32": "cpu3g-8-32",
    "CPU3C_1_2": "cpu3c-1-2",
    "CPU3C_2_4": "cpu3c-2-4",
    "CPU3C_4_8": "cpu3c-4-8",
    "CPU3C_8_16": "cpu3c-8-16",
    "CPU5C_1_2": "cpu5c-1-2",
    "CPU5C_2_4": "cpu5c-2-4",
    "CPU5C_4_8": "cpu5c-4-8",
    "CPU5C_8_16": "cpu5c-8-16",
}

#: Container disk (GB) allowed per vCPU, by instance family prefix.
CPU_DISK_GB_PER_VCPU: dict[str, int] = {"cpu3g": 10, "cpu3c": 10, "cpu5c": 15}


def cpu_disk_limit_gb(instance_id: str) -> int:
    """Largest container disk an instance type accepts: vCPUs x per-family GB."""
    family, vcpus, _memory = instance_id.split("-")
    return int(vcpus) * CPU_DISK_GB_PER_VCPU[family]


# --- Datacenters ------------------------------------------------------------

#: DataCenter members in declaration order: member name -> id.
DATACENTERS: dict[str, str] = {
    "US_CA_2": "US-CA-2",
    "US_IL_1": "US-IL-1",
    "US_KS_2": "US-KS-2",
    "US_MO_1": "US-MO-1",
    "US_MO_2": "US-MO-2",
    "US_NC_2": "US-NC-2",
    "US_NE_1": "US-NE-1",
    "US_WA_1": "US-WA-1",
    "EU_CZ_1": "EU-CZ-1",
    "EU_RO_1": "EU-RO-1",
    "EUR_NO_1": "EUR-NO-1",
}

#: Datacenters that run CPU serverless workers.
CPU_DATACENTERS: frozenset[str] = frozenset({"EU-RO-1"})

# --- Other enums ------------------------------------------------------------

CUDA_VERSIONS: dict[str, str] = {
    "V11_8": "11.8",
    "V12_0": "12.0",
    "V12_1": "12.1",
    "V12_2": "12.2",
    "V12_3": "12.3",
    "V12_4": "12.4",
    "V12_5": "12.5",
    "V12_6": "12.6",
    "V12_7": "12.7",
    "V12_8": "12.8",
    "V12_9": "12.9",
    "V13_0": "13.0",
}

SCALER_TYPES: dict[str, str] = {"QUEUE_DELAY": "QUEUE_DELAY", "REQUEST_COUNT": "REQUEST_COUNT"}

#: The SDK enums an Endpoint argument may name, by class name.
ENUMS: dict[str, dict[str, str]] = {
    "GpuGroup": GPU_GROUPS,
    "GpuType": GPU_TYPES,
    "CpuInstanceType": CPU_INSTANCE_TYPES,
    "DataCenter": DATACENTERS,
    "CudaVersion": CUDA_VERSIONS,
    "ServerlessScalerType": SCALER_TYPES,
}

# --- Python versions and images ----------------------------------------------

SUPPORTED_PYTHON_VERSIONS: tuple[str, ...] = ("3.10", "3.11", "3.12")
DEFAULT_PYTHON_VERSION: Final = "3.12"
#: Versions past their end of life, with the date it happened.
END_OF_LIFE: dict[str, str] = {"3.10": "2026-10-31"}
#: The GPU images ship torch/CUDA for this version only; others reinstall it at cold start.
GPU_NATIVE_PYTHON_VERSION = "3.12"

#: Worker image repository per image kind.
IMAGE_REPOSITORIES: dict[str, str] = {
    "gpu": "runpod/flash",
    "cpu": "runpod/flash-cpu",
    "lb": "runpod/flash-lb",
    "lb-cpu": "runpod/flash-lb-cpu",
}
#: Environment variables that replace the image of a kind outright.
IMAGE_OVERRIDE_ENV: dict[str, str] = {
    "gpu": "FLASH_GPU_IMAGE",
    "cpu": "FLASH_CPU_IMAGE",
    "lb": "FLASH_LB_IMAGE",
    "lb-cpu": "FLASH_CPU_LB_IMAGE",
}
IMAGE_TAG_ENV = "FLASH_IMAGE_TAG"
DEFAULT_IMAGE_TAG = "latest"

#: Manifest resource type per (load balanced, cpu).
RESOURCE_TYPES: dict[tuple[bool, bool], str] = {
    (False, False): "LiveServerless",
    (False, True): "CpuLiveServerless",
    (True, False): "LiveLoadBalancer",
    (True, True): "CpuLiveLoadBalancer",
}
#: Image kind per (load balanced, cpu).
IMAGE_KINDS: dict[tuple[bool, bool], str] = {
    (False, False): "gpu",
    (False, True): "cpu",
    (True, False): "lb",
    (True, True): "lb-cpu",
}

# --- Endpoint defaults --------------------------------------------------------

DEFAULT_WORKERS_MIN = 0
DEFAULT_WORKERS_MAX = 1
DEFAULT_IDLE_TIMEOUT = 60
IDLE_TIMEOUT_RANGE = (1, 3600)
DEFAULT_SCALER_VALUE = 4
DEFAULT_MIN_CUDA_VERSION = "12.8"
DEFAULT_GPU_COUNT = 1
DEFAULT_CONTAINER_DISK_GB = 64
#: PodTemplate fields the manifest carries, with their defaults, in manifest order.
TEMPLATE_DEFAULTS: dict[str, object] = {
    "containerDiskInGb": DEFAULT_CONTAINER_DISK_GB,
    "dockerArgs": "",
    "startScript": "",
    "advancedStart": False,
    "containerRegistryAuthId": "",
}
#: Every PodTemplate keyword the SDK accepts.
TEMPLATE_FIELDS: frozenset[str] = frozenset(
    {
        "advancedStart",
        "config",
        "containerDiskInGb",
        "containerRegistryAuthId",
        "dockerArgs",
        "env",
        "imageName",
        "name",
        "ports",
        "startScript",
        "id",
    }
)
NETWORK_VOLUME_DEFAULT_SIZE_GB = 100
NETWORK_VOLUME_SIZE_RANGE = (10, 4096)
NETWORK_VOLUME_DEFAULT_DATACENTER = "EU-RO-1"

HTTP_METHODS: tuple[str, ...] = ("GET", "POST", "PUT", "DELETE", "PATCH")
#: Paths the worker runtime serves itself; user routes may not take them.
RESERVED_PATHS: tuple[str, ...] = ("/execute", "/ping")

# --- Artifact limits and the SDK ----------------------------------------------

#: Packages the base images provide and that never go into an artifact (PEP 503 names).
ALWAYS_EXCLUDED: tuple[str, ...] = ("torch", "torchvision", "torchaudio", "triton")
#: Largest artifact the platform accepts: MiB (2**20 bytes) of compressed archive.
MAX_ARTIFACT_MB = 1500
#: The runpod-flash release bundled into the artifact unless the app or the command line names another.
DEFAULT_RUNPOD_FLASH_VERSION = "1.21.0"
