"""AMD GPU telemetry through AMD SMI (ROCm's ``amdsmi`` Python binding).

The binding loads ROCm's libamd_smi.so when it is imported, so the import
happens inside the constructor: a host without ROCm gets a ProviderUnavailable
saying so, not an import error when the agent starts. The ``amd`` extra installs
the binding; the shared library comes with ROCm itself.

AMD SMI's results are dicts whose values read "N/A" where the card lacks the
metric, and whose units moved between ROCm releases; the converters below
accept both spellings so one agent works across them.
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

MIB = 1 << 20
# uint16/uint32 "not supported" markers that some releases return as numbers
# instead of "N/A".
UNSUPPORTED = (0xFFFF, 0xFFFF_FFFF)
# ROCm 6.x passes hwmon's power1_cap through in microwatts, later releases in
# watts. No GPU has a 10 kW limit and none a 10 mW one, so the size tells which.
MICROWATT_THRESHOLD = 10_000
# Likewise temperatures: amdsmi divides the sensor's millidegrees by 1000, but
# its docs still say millidegrees; a value this large cannot be degrees.
MILLIDEGREE_THRESHOLD = 1_000


def _number(value: Any) -> float:
    """A metric as float; "N/A" and the unsupported markers raise ValueError."""
    if isinstance(value, str):
        return float(value)  # "N/A" raises ValueError here, caught as a failed query
    number = float(value)
    if number in UNSUPPORTED:
        raise ValueError(f"unsupported ({int(number):#x})")
    return number


def _power_watts(info: dict[str, Any]) -> float:
    """Socket power: MI300+ fill current_socket_power, Navi and MI200 average_socket_power."""
    for key in ("current_socket_power", "average_socket_power"):
        try:
            watts = _number(info.get(key, "N/A"))
        except ValueError:
            continue
        if watts > 0:
            return watts
    raise ValueError("no socket power reported")


def _power_limit_watts(info: dict[str, Any]) -> float:
    limit = _number(info.get("power_limit", "N/A"))
    return limit / 1_000_000 if limit > MICROWATT_THRESHOLD else limit


def _celsius(value: Any) -> float:
    degrees = _number(value)
    return degrees / 1000 if degrees > MILLIDEGREE_THRESHOLD else degrees


def _library_errors(smi: Any) -> tuple[type[BaseException], ...]:
    """The binding's exception classes; the package exports the subclasses, not always the base."""
    names = (
        "AmdSmiException",
        "AmdSmiLibraryException",
        "AmdSmiRetryException",
        "AmdSmiTimeoutException",
        "AmdSmiParameterException",
        "AmdSmiKeyException",
    )
    found = tuple(
        cls
        for cls in (getattr(smi, name, None) for name in names)
        if isinstance(cls, type) and issubclass(cls, BaseException)
    )
    if not found:
        raise ProviderUnavailable("amdsmi exports none of its exception classes")
    return found


class AmdSmiProvider:
    """Reads every AMD GPU that AMD SMI enumerates; initialises once, shuts down on close."""

    name = "amdsmi"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self._logger = logger or logging.getLogger(__name__)
        try:
            import amdsmi
        except ImportError as exc:
            raise ProviderUnavailable(f"amdsmi is not installed ({exc})") from exc
        except Exception as exc:
            # The binding is there but libamd_smi.so (ROCm) is not: depending on
            # the release the import fails with OSError or, after printing the
            # loader error, with a KeyError from its library table.
            raise ProviderUnavailable(
                f"amdsmi could not load libamd_smi ({type(exc).__name__}: {exc})"
            ) from exc
        self._smi: Any = amdsmi
        self._errors = _library_errors(amdsmi)
        try:
            amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except self._errors as exc:
            raise ProviderUnavailable(f"amdsmi_init failed: {exc}") from exc
        self._open = True
        self._reader = FieldReader(
            self.name, (*self._errors, ValueError, TypeError, KeyError), self._logger
        )
        try:
            self._handles: list[Any] = list(amdsmi.amdsmi_get_processor_handles())
        except self._errors as exc:
            self.close()
            raise ProviderUnavailable(f"cannot enumerate GPUs: {exc}") from exc
        if not self._handles:
            self.close()
            raise ProviderUnavailable("AMD SMI found no GPUs")
        self._inventory = [self._describe(i, h) for i, h in enumerate(self._handles)]

    def _describe(self, index: int, handle: Any) -> GpuInfo:
        smi, read = self._smi, self._reader.read
        return GpuInfo(
            index=index,
            uuid=read(index, "uuid", lambda: text(smi.amdsmi_get_gpu_device_uuid(handle)), ""),
            name=read(
                index,
                "name",
                lambda: text(smi.amdsmi_get_gpu_asic_info(handle)["market_name"]),
                "unknown",
            ),
            vendor="amd",
            memory_total_bytes=read(
                index,
                "memory",
                lambda: int(_number(smi.amdsmi_get_gpu_vram_usage(handle)["vram_total"]) * MIB),
                0,
            ),
        )

    def gpus(self) -> list[GpuInfo]:
        return list(self._inventory)

    def sample(self) -> list[GpuSample]:
        return [self._sample_one(info, self._handles[info.index]) for info in self._inventory]

    def _sample_one(self, info: GpuInfo, handle: Any) -> GpuSample:
        smi, read, i = self._smi, self._reader.read, info.index
        vram = read(i, "memory", lambda: self._vram_bytes(handle), None)
        power = read(i, "power", lambda: smi.amdsmi_get_power_info(handle), None)
        return GpuSample(
            index=i,
            utilization_percent=read(
                i,
                "utilization",
                lambda: _number(smi.amdsmi_get_gpu_activity(handle)["gfx_activity"]),
                0.0,
            ),
            memory_used_bytes=vram[0] if vram is not None else 0,
            memory_total_bytes=vram[1] if vram is not None else info.memory_total_bytes,
            temperature_celsius=read(i, "temperature", lambda: self._temperature(handle), 0.0),
            power_watts=read(i, "power", lambda: _power_watts(power or {}), 0.0),
            power_limit_watts=read(i, "power_limit", lambda: _power_limit_watts(power or {}), 0.0),
            throttled=read(i, "throttle_status", lambda: self._throttled(handle), False),
        )

    def _vram_bytes(self, handle: Any) -> tuple[int, int]:
        # amdsmi_vram_usage_t carries MiB (the library divides bytes by 1024*1024).
        usage = self._smi.amdsmi_get_gpu_vram_usage(handle)
        return int(_number(usage["vram_used"]) * MIB), int(_number(usage["vram_total"]) * MIB)

    def _temperature(self, handle: Any) -> float:
        """Edge sensor where the card has one; MI200/MI300 only expose the hotspot."""
        smi = self._smi
        current = smi.AmdSmiTemperatureMetric.CURRENT
        edge_failures: tuple[type[BaseException], ...] = (*self._errors, ValueError)
        try:
            return _celsius(
                smi.amdsmi_get_temp_metric(handle, smi.AmdSmiTemperatureType.EDGE, current)
            )
        except edge_failures:
            return _celsius(
                smi.amdsmi_get_temp_metric(handle, smi.AmdSmiTemperatureType.HOTSPOT, current)
            )

    def _throttled(self, handle: Any) -> bool:
        # gpu_metrics' throttle_status is True while any throttler (thermal,
        # power, current) holds clocks down; "N/A" on cards that lack it.
        metrics = getattr(self._smi, "amdsmi_get_gpu_metrics_info", None)
        if metrics is None:
            return False
        return metrics(handle).get("throttle_status") is True

    def close(self) -> None:
        if not self._open:
            return
        self._open = False
        try:
            self._smi.amdsmi_shut_down()
        except self._errors as exc:
            self._logger.warning("telemetry: amdsmi shutdown failed (%s)", exc)
