"""NVIDIA GPU telemetry through NVML (package nvidia-ml-py, module ``pynvml``).

``pynvml`` is imported inside the constructor, not at module import, so a host
without the package, or without the driver's libnvidia-ml, gets a
ProviderUnavailable carrying NVML's own reason ("NVML Shared Library Not
Found") instead of an ImportError when the agent starts.
"""

from __future__ import annotations

import logging
from typing import Any

from node_agent.telemetry.base import (
    FieldReader,
    GpuInfo,
    GpuSample,
    ProviderUnavailable,
    text,
)

# Clock event ("throttle") reason bits from nvml.h; part of NVML's ABI, identical
# under the old ClocksThrottleReason and the new ClocksEventReason names.
SW_POWER_CAP = 0x04
HW_SLOWDOWN = 0x08  # thermal or power brake, asserted by the board
SW_THERMAL_SLOWDOWN = 0x20
HW_THERMAL_SLOWDOWN = 0x40
HW_POWER_BRAKE_SLOWDOWN = 0x80
# Only reasons that mean "slower because hot or power-limited" count as
# throttled; idle, application clocks and sync boost are normal operation.
THROTTLE_MASK = (
    SW_POWER_CAP | HW_SLOWDOWN | SW_THERMAL_SLOWDOWN | HW_THERMAL_SLOWDOWN | HW_POWER_BRAKE_SLOWDOWN
)


class NvmlProvider:
    """Reads every NVIDIA GPU that NVML enumerates; opens NVML once, shuts it on close."""

    name = "nvml"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(__name__)
        try:
            import pynvml
        except ImportError as exc:
            raise ProviderUnavailable(f"nvidia-ml-py is not installed ({exc})") from exc
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            raise ProviderUnavailable(str(exc)) from exc
        self._open = True
        self._reader = FieldReader(self.name, self._query_errors(), self._logger)
        try:
            count = int(pynvml.nvmlDeviceGetCount())
            self._handles: list[Any] = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        except pynvml.NVMLError as exc:
            self.close()
            raise ProviderUnavailable(f"cannot enumerate GPUs: {exc}") from exc
        if not self._handles:
            self.close()
            raise ProviderUnavailable("NVML found no GPUs")
        # Drivers before R535 only have the "Throttle" spelling; R535+ add
        # "Event" and deprecate the old one; prefer the new name where it exists.
        self._clock_reasons = getattr(
            pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None
        ) or getattr(pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        self._inventory = [self._describe(i, h) for i, h in enumerate(self._handles)]

    def _query_errors(self) -> tuple[type[BaseException], ...]:
        return (self._nvml.NVMLError, ValueError, TypeError)

    def _describe(self, index: int, handle: Any) -> GpuInfo:
        nvml, read = self._nvml, self._reader.read
        return GpuInfo(
            index=index,
            uuid=read(index, "uuid", lambda: text(nvml.nvmlDeviceGetUUID(handle)), ""),
            name=read(index, "name", lambda: text(nvml.nvmlDeviceGetName(handle)), "unknown"),
            vendor="nvidia",
            memory_total_bytes=read(
                index, "memory", lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total), 0
            ),
        )

    def gpus(self) -> list[GpuInfo]:
        return list(self._inventory)

    def sample(self) -> list[GpuSample]:
        return [self._sample_one(info, self._handles[info.index]) for info in self._inventory]

    def _sample_one(self, info: GpuInfo, handle: Any) -> GpuSample:
        nvml, read, i = self._nvml, self._reader.read, info.index
        memory = read(i, "memory", lambda: nvml.nvmlDeviceGetMemoryInfo(handle), None)
        used = int(memory.used) if memory is not None else 0
        total = int(memory.total) if memory is not None else info.memory_total_bytes
        return GpuSample(
            index=i,
            utilization_percent=read(
                i, "utilization", lambda: float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu), 0.0
            ),
            memory_used_bytes=used,
            memory_total_bytes=total,
            temperature_celsius=read(
                i,
                "temperature",
                lambda: float(nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)),
                0.0,
            ),
            # NVML reports milliwatts.
            power_watts=read(
                i, "power", lambda: nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 0.0
            ),
            power_limit_watts=read(
                i,
                "power_limit",
                lambda: nvml.nvmlDeviceGetEnforcedPowerManagementLimit(handle) / 1000.0,
                0.0,
            ),
            throttled=read(i, "throttle_reasons", lambda: self._throttled(handle), False),
        )

    def _throttled(self, handle: Any) -> bool:
        if self._clock_reasons is None:
            return False
        return bool(int(self._clock_reasons(handle)) & THROTTLE_MASK)

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            self._logger.warning("telemetry: nvml shutdown failed (%s)", exc)
