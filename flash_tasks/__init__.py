"""flash-tasks: `flash build` for Runpod Flash apps as an incremental doit build graph."""

__version__ = "0.1.0"
