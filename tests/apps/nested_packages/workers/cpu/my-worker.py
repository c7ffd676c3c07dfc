from runpod_flash import Endpoint

cpu_api = Endpoint(name="dash-api", cpu="cpu3g-1-4")


@cpu_api.get("/ping-me")
def ping_me() -> dict:
    return {"pong": True}


@Endpoint(name="dash-queue", cpu="cpu3g-2-8")
async def dashed(x: int) -> int:
    return x + 1
