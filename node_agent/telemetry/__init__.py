"""GPU telemetry for the node agent: one provider per source, chosen by ``open_provider``.

``base`` holds the types and the provider contract; ``nvml``, ``amd``,
``simulated`` and ``none`` each implement it for one source; ``selection``
picks one from the node's configured preference, falling back to ``none``.
"""

from node_agent.telemetry.base import (
    GpuActivity,
    GpuInfo,
    GpuSample,
    ProviderUnavailable,
    TelemetryProvider,
)
from node_agent.telemetry.selection import PREFERENCES, open_provider

__all__ = [
    "PREFERENCES",
    "GpuActivity",
    "GpuInfo",
    "GpuSample",
    "ProviderUnavailable",
    "TelemetryProvider",
    "open_provider",
]
