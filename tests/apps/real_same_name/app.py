"""One file declares the same endpoint name on several functions, with different settings.

As in the official text_to_speech example: the later declaration has fewer settings.
runpod-flash builds one resource whose settings come from the function whose name
sorts first ("list_voices" here, although it is declared second).
"""

from runpod_flash import Endpoint, GpuGroup


@Endpoint(name="tts", gpu=GpuGroup.ADA_24, workers=(0, 3), idle_timeout=120, env={"VOICE": "alto"})
def speak(text: str) -> dict:
    return {"text": text}


@Endpoint(name="tts", gpu=GpuGroup.AMPERE_80)
def list_voices() -> dict:
    return {"voices": ["alto"]}


@Endpoint(name="asr", gpu=GpuGroup.ADA_24, workers=(1, 2), idle_timeout=300)
def a_transcribe(audio: str) -> dict:
    return {"audio": audio}


@Endpoint(name="asr")
def b_status() -> dict:
    return {"ok": True}
