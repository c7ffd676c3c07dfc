"""Network volumes, flashboot, execution timeouts, custom and client images."""

from runpod_flash import CpuInstanceType, DataCenter, Endpoint, GpuGroup, NetworkVolume

models = NetworkVolume(name="models", size=50, datacenter=DataCenter.EU_RO_1)

# A client-mode endpoint: deploys an external image, never used as a decorator.
vllm = Endpoint(name="vllm", image="vllm/vllm-openai:latest", gpu=GpuGroup.ADA_24)


@Endpoint(name="with-volume", gpu=GpuGroup.ADA_24, volume=models, execution_timeout_ms=30000)
async def with_volume(x: dict) -> dict:
    return x


@Endpoint(
    name="two-volumes",
    gpu=GpuGroup.AMPERE_48,
    volume=[
        NetworkVolume(name="cache-us", size=20, datacenter=DataCenter.US_KS_2),
        NetworkVolume(name="cache-eu", datacenter=DataCenter.EU_CZ_1),
    ],
)
def two_volumes(x: dict) -> dict:
    return x


@Endpoint(name="no-boot-fb", gpu=GpuGroup.ADA_24, flashboot=False)
async def no_boot(x: dict) -> dict:
    return x


@Endpoint(name="default-boot-fb", cpu=CpuInstanceType.CPU3C_1_2)
def default_boot(x: dict) -> dict:
    return x
