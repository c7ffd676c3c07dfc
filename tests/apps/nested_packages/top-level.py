from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="top", gpu=GpuGroup.ADA_24)
def top(x):
    return x
