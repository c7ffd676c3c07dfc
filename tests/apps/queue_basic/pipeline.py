"""An Endpoint bound to a variable and used as a plain decorator; queue functions calling each other."""

from runpod_flash import Endpoint, GpuGroup

stage_two = Endpoint(name="stage-two", gpu=GpuGroup.AMPERE_24, workers=(0, 2))


@stage_two
async def refine(draft: dict) -> dict:
    return {"refined": draft}


@Endpoint(name="stage-one", gpu=GpuGroup.AMPERE_16)
async def draft(prompt: str) -> dict:
    first = {"prompt": prompt}
    return await refine(first)


@Endpoint(name="orchestrator", cpu="cpu3c-1-2")
class Orchestrator:
    async def run(self, prompt: str) -> dict:
        return await draft(prompt)

    def status(self) -> str:
        return "idle"
