"""Queue endpoints whose generated handlers the tests call with jobs.

Only the standard library at module level: the reference imports the app at
build time, and the tests import it again inside the unpacked artifact.
"""

import asyncio

from runpod_flash import CpuInstanceType, Endpoint, GpuGroup


@Endpoint(name="repeat", gpu=GpuGroup.ADA_24)
def repeat(text: str = "hi", n: int = 1) -> dict:
    return {"text": " ".join([text] * n), "n": n}


@Endpoint(name="count-words", cpu=CpuInstanceType.CPU3C_1_2)
async def count_words(text: str) -> dict:
    await asyncio.sleep(0)
    return {"words": len(text.split())}


@Endpoint(name="fails", cpu=CpuInstanceType.CPU3C_1_2)
def fails(reason: str) -> dict:
    raise ValueError(f"failed: {reason}")


@Endpoint(name="scaler", cpu="cpu3g-2-8")
class Scaler:
    def __init__(self):
        self.factor = 10
        self.calls = 0

    def scale(self, x: int) -> dict:
        self.calls += 1
        return {"y": x * self.factor, "calls": self.calls}

    async def shout(self, word: str) -> dict:
        await asyncio.sleep(0)
        return {"upper": word.upper()}

    def _hidden(self):
        return "never routed"


@Endpoint(name="adder", cpu=CpuInstanceType.CPU3C_1_2)
class Adder:
    def add(self, a: int, b: int = 0) -> dict:
        return {"sum": a + b}
