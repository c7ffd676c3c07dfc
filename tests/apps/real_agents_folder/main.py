"""The app itself; a sample app for a coding assistant lives under .agents/."""

from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="main-worker", gpu=GpuGroup.ADA_24)
def work(x: int) -> int:
    return x
