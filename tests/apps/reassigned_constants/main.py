"""Endpoint arguments that use reassigned module constants, local and imported."""

from runpod_flash import CpuInstanceType, Endpoint

from settings import GPU, REGION_ENV, WORKERS

NAME = "draft"
NAME = "final"

CPU = CpuInstanceType.CPU3C_1_2
CPU = CpuInstanceType.CPU5C_2_4

IDLE = 30
IDLE = 90


@Endpoint(name=NAME, gpu=GPU, workers=WORKERS, env=REGION_ENV)
def infer(x: int) -> int:
    return x


@Endpoint(name=f"{NAME}-cpu", cpu=CPU, idle_timeout=IDLE)
def preprocess(x: int) -> int:
    return x


TIER = "small"


@Endpoint(name="tiered", cpu=CPU, env={"TIER": TIER})
def tiered(x: int) -> int:
    return x


# Bound after the decorator above ran: that endpoint keeps "small".
TIER = "large"
