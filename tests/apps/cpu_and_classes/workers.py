"""CPU endpoints in their different spellings, and class endpoints."""

from runpod_flash import CpuInstanceType, DataCenter, Endpoint, GpuGroup, PodTemplate


@Endpoint(name="cpu-enum", cpu=CpuInstanceType.CPU3C_2_4)
def preprocess(text: str) -> str:
    return text.lower()


@Endpoint(name="cpu-string", cpu="cpu5c-4-8", workers=(0, 2))
async def tokenize(text: str) -> list:
    return text.split()


@Endpoint(name="cpu-pair", cpu=[CpuInstanceType.CPU3G_4_16, "cpu3c-1-2"])
def pair(x: int) -> int:
    return x * 2


@Endpoint(name="cpu-ro", cpu=CpuInstanceType.CPU5C_1_2, datacenter=DataCenter.EU_RO_1)
async def in_romania(x: int) -> int:
    return x


@Endpoint(name="model-server", gpu=GpuGroup.AMPERE_24, template=PodTemplate(containerDiskInGb=5, dockerArgs="--x"))
class ModelServer:
    """Serves a model."""

    def __init__(self):
        self.loaded = False

    def load(self) -> bool:
        self.loaded = True
        return self.loaded

    async def predict(self, data: dict) -> dict:
        return data

    def _private(self):
        return None

    @staticmethod
    def version() -> str:
        return "1"


@Endpoint(name="sync-class", cpu=CpuInstanceType.CPU3G_2_8)
class Counter:
    def __init__(self):
        self.count = 0

    def increment(self) -> int:
        self.count += 1
        return self.count

    def reset(self) -> None:
        self.count = 0
