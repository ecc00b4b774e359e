"""What every GPU telemetry provider reports, and the contract it keeps.

A provider turns one vendor library (NVML, AMD SMI), a model (simulated) or
nothing at all into the same two readings: a static inventory of GPUs and a
sample of their live state. The agent calls ``sample`` from a worker thread on a
timer, so a provider must be synchronous and must never let one failing query
cost the whole reading: consumer cards routinely lack a query or two (power on
some laptops, throttle reasons on old drivers), and losing all telemetry for
that would hide the GPUs from the router.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

VENDORS = ("nvidia", "amd", "other")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class GpuInfo:
    """One GPU as it is installed; does not change while the agent runs."""

    index: int
    uuid: str
    name: str
    vendor: str  # one of VENDORS
    memory_total_bytes: int


@dataclass(frozen=True, slots=True)
class GpuSample:
    """One reading of one GPU. A field whose query failed reads 0 (False for throttled)."""

    index: int
    utilization_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    temperature_celsius: float
    power_watts: float
    power_limit_watts: float
    throttled: bool


@dataclass(frozen=True, slots=True)
class GpuActivity:
    """The load the simulated provider is told a GPU carries (from the emulated Ollama)."""

    index: int
    utilization_percent: float
    memory_used_bytes: int


class TelemetryProvider(Protocol):
    """A source of GPU readings; see the module docstring for the failure contract."""

    name: str  # "nvml" | "amdsmi" | "simulated" | "none"

    def gpus(self) -> list[GpuInfo]:
        """The inventory read when the provider opened; cheap, no library call."""
        ...

    def sample(self) -> list[GpuSample]:
        """One reading of every GPU in inventory order; blocking, never raises for one query."""
        ...

    def close(self) -> None:
        """Release the library; safe to call twice."""
        ...


class ProviderUnavailable(Exception):
    """A provider cannot open on this host; the message says why, in the library's words."""


def normalise_vendor(vendor: str) -> str:
    """Map any vendor spelling onto VENDORS so consumers can match on it."""
    lowered = vendor.strip().lower()
    if lowered in ("nvidia", "amd"):
        return lowered
    return "other"


class FieldReader:
    """Runs one query for one GPU field and turns a failure into a default value.

    ``errors`` are the exceptions that mean "this query failed" for the library
    at hand (its own error type, plus the ValueError/TypeError/KeyError that a
    "N/A" in a result dict produces when converted). Anything else is a bug and
    propagates. A failing (GPU, field) pair is logged once, at warning, so an
    unsupported query does not repeat on every sample.
    """

    def __init__(
        self,
        provider: str,
        errors: tuple[type[BaseException], ...],
        logger: logging.Logger,
    ) -> None:
        self._provider = provider
        self._errors = errors
        self._logger = logger
        self._reported: set[tuple[int, str]] = set()

    def read(self, index: int, field: str, query: Callable[[], T], default: T) -> T:
        try:
            return query()
        except self._errors as exc:
            if (index, field) not in self._reported:
                self._reported.add((index, field))
                self._logger.warning(
                    "telemetry: %s gpu %d: %s query failed (%s); reporting it as 0",
                    self._provider,
                    index,
                    field,
                    exc,
                )
            return default


def text(value: bytes | str) -> str:
    """Library strings arrive as bytes from older bindings and str from newer ones."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value
