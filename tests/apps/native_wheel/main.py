"""An endpoint whose one requirement ships compiled, per-Python wheels (pyyaml)."""

from runpod_flash import CpuInstanceType, Endpoint


@Endpoint(name="yaml-loader", cpu=CpuInstanceType.CPU3C_1_2)
def load(text: str) -> dict:
    import yaml

    return {"data": yaml.safe_load(text), "compiled": yaml.__with_libyaml__}
