from runpod_flash import Endpoint

from config.settings import GPU, MAX_WORKERS, PREFIX


@Endpoint(name=f"{PREFIX}-infer", gpu=GPU, workers=(0, MAX_WORKERS))
async def infer(batch: list) -> list:
    return batch
