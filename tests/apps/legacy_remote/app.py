"""The SDK's older form: resource classes passed to @remote."""

from runpod_flash import (
    CpuInstanceType,
    CpuLiveServerless,
    DataCenter,
    GpuGroup,
    LiveLoadBalancer,
    LiveServerless,
    NetworkVolume,
    ServerlessEndpoint,
    remote,
)

gpu_cfg = LiveServerless(
    name="legacy-gpu",
    gpus=[GpuGroup.ADA_24, GpuGroup.AMPERE_48],
    workersMin=1,
    workersMax=3,
    env={"A": "b"},
    datacenter=DataCenter.EU_RO_1,
    networkVolume=NetworkVolume(name="vol", size=20, datacenter=DataCenter.EU_RO_1),
)
cpu_cfg = CpuLiveServerless(name="legacy-cpu", instanceIds=[CpuInstanceType.CPU5C_2_4], idleTimeout=30)
lb_cfg = LiveLoadBalancer(name="legacy-lb", locations="US-KS-2")
plain = ServerlessEndpoint(name="plain", imageName="me/img:1", gpuIds="AMPERE_80,ADA_24")


@remote(gpu_cfg, system_dependencies=["ffmpeg"])
async def g(x):
    return x


@remote(resource_config=cpu_cfg)
def c(x):
    return g(x)


@remote(lb_cfg, method="POST", path="/p")
async def lbf(x):
    return x


@remote(lb_cfg, method="GET", path="/q")
def lbg():
    return 1


@remote(plain)
def p(x):
    return x


@remote(LiveServerless(name="inline", gpus=[GpuGroup.ANY]))
class K:
    def m(self):
        return 1

    async def n(self):
        return 2
