"""A folder with '-' in its name: importlib imports it as module 'my-folder.worker'."""

from runpod_flash import Endpoint


@Endpoint(name="dash-folder", cpu="cpu3c-1-2")
def dashed(x: int) -> int:
    return x
