import runpod_flash as flash

from settings import COMMON, CPU_DEFAULTS

TEXT = dict(name="text-tools", workers=2, **CPU_DEFAULTS)


@flash.Endpoint(**TEXT, env={"MODE": "fast"})
class TextTools:
    async def count(self, text: str) -> int:
        return len(text.split())

    def upper(self, text: str) -> str:
        return text.upper()
