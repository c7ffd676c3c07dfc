"""CPU worker: a class endpoint whose public methods are callable by name."""

from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="text-tools", cpu=CpuInstanceType.CPU3C_2_4, workers=2)
class TextTools:
    def __init__(self):
        self.calls = 0

    def word_count(self, text: str) -> dict:
        self.calls += 1
        return {"words": len(text.split()), "calls": self.calls}

    async def shout(self, text: str) -> dict:
        self.calls += 1
        return {"text": text.upper(), "calls": self.calls}

    def _helper(self):
        return None
