"""A load-balanced endpoint whose generated app the tests call over HTTP."""

from runpod_flash import Endpoint

api = Endpoint(name="api", cpu="cpu3c-1-2")


@api.get("/hello")
def hello(name: str = "world") -> dict:
    return {"greeting": f"hello {name}"}


@api.post("/echo")
async def echo(message: str, times: int = 1) -> dict:
    return {"echo": message * times}
