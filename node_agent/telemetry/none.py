"""The provider for hosts without GPU telemetry: no GPUs, empty samples.

It is what every other choice falls back to, so an agent on a CPU-only host,
or one whose GPU library is broken, still starts and serves.
"""

from __future__ import annotations

from node_agent.telemetry.base import GpuInfo, GpuSample


class NoneProvider:
    """Reports nothing; the agent advertises no GPU telemetry."""

    name = "none"

    def gpus(self) -> list[GpuInfo]:
        return []

    def sample(self) -> list[GpuSample]:
        return []

    def close(self) -> None:
        """Nothing to release."""
