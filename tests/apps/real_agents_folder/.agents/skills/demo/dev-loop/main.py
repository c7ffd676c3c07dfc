"""A sample kept next to an assistant's skill; the worker cannot import it (the folder starts with a dot)."""

from runpod_flash import Endpoint


@Endpoint(name="dev-loop-sample", cpu="cpu3c-1-2")
def sample(x: int) -> int:
    return x
