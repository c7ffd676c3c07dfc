"""Settings shared by the endpoints (read at build time, never executed)."""

from runpod_flash import DataCenter, GpuGroup

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBED_GPU = GpuGroup.ADA_24
REGION = DataCenter.EU_RO_1
MAX_BATCH = 32
