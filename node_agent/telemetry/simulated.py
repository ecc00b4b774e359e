"""Telemetry for GPUs that exist only in configuration, for dev clusters and the simulator.

Utilisation and VRAM are not invented: they come from the ``activity``
callback, which the agent feeds from its emulated Ollama, so the router sees the
load it caused. Temperature and power are derived from that utilisation:

    target_temp = IDLE + (FULL_LOAD + cooling_offset - IDLE) * util / 100
    temp       += THERMAL_LAG * (target_temp - temp)          (once per sample)
    power       = TDP * (IDLE_FRACTION + (FULL_FRACTION - IDLE_FRACTION) * util / 100)
    throttled   = temp > THROTTLE

Power follows load at once, as on real boards; temperature lags, so a burst
heats a GPU over several samples and it cools the same way. Each GPU gets a
fixed cooling offset so that, as in a real rack, some cards run hotter than
others and only those reach the throttle point under sustained load. All
randomness (offsets, small noise) comes from ``seed``: the same seed and the
same activity give the same readings, so a run can be replayed.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Sequence

from hive.config import GpuSpec
from hive.hardware import GPU_CATALOG
from node_agent.telemetry.base import (
    GpuActivity,
    GpuInfo,
    GpuSample,
    normalise_vendor,
)

IDLE_CELSIUS = 35.0
FULL_LOAD_CELSIUS = 80.0
THROTTLE_CELSIUS = 83.0
# Fraction of the gap to the target temperature closed per sample: about ten
# samples to get 90% of the way, at the agent's sampling period.
THERMAL_LAG = 0.2
# Spread of the per-GPU full-load temperature around FULL_LOAD_CELSIUS.
COOLING_OFFSET_RANGE = (-4.0, 6.0)
IDLE_POWER_FRACTION = 0.15
FULL_POWER_FRACTION = 0.95
# For a GPU missing from hive.hardware.GPU_CATALOG: a mid-range card's board power.
DEFAULT_TDP_WATTS = 150.0
TEMPERATURE_NOISE_CELSIUS = 0.3
POWER_NOISE_FRACTION = 0.01


class _SimulatedGpu:
    """The thermal state of one simulated GPU between samples."""

    def __init__(self, info: GpuInfo, tdp_watts: float, cooling_offset: float) -> None:
        self.info = info
        self.tdp_watts = tdp_watts
        self.full_load_celsius = FULL_LOAD_CELSIUS + cooling_offset
        self.temperature = IDLE_CELSIUS


class SimulatedProvider:
    """GPUs from configuration whose readings follow the load the agent reports."""

    name = "simulated"

    def __init__(
        self,
        gpus: Sequence[GpuSpec],
        activity: Callable[[], Sequence[GpuActivity]] | None = None,
        *,
        seed: int = 0,
        logger: logging.Logger | None = None,
    ) -> None:
        self._logger = logger or logging.getLogger(__name__)
        self._activity = activity
        self._rng = random.Random(seed)
        self._gpus = [
            _SimulatedGpu(
                GpuInfo(
                    index=index,
                    uuid=_uuid(seed, index, spec.name),
                    name=spec.name,
                    vendor=normalise_vendor(spec.vendor),
                    memory_total_bytes=spec.memory_bytes,
                ),
                tdp_watts=_tdp_watts(spec.name),
                cooling_offset=self._rng.uniform(*COOLING_OFFSET_RANGE),
            )
            for index, spec in enumerate(gpus)
        ]

    def gpus(self) -> list[GpuInfo]:
        return [gpu.info for gpu in self._gpus]

    def sample(self) -> list[GpuSample]:
        """Advance every GPU's thermal state by one step and read it.

        The activity callback is the agent's own code, so an exception from it
        propagates rather than being reported as an idle GPU.
        """
        load = {a.index: a for a in self._activity()} if self._activity is not None else {}
        return [self._step(gpu, load.get(gpu.info.index)) for gpu in self._gpus]

    def _step(self, gpu: _SimulatedGpu, activity: GpuActivity | None) -> GpuSample:
        total = gpu.info.memory_total_bytes
        util = min(max(activity.utilization_percent, 0.0), 100.0) if activity else 0.0
        used = min(max(activity.memory_used_bytes, 0), total) if activity else 0
        load = util / 100.0

        target = IDLE_CELSIUS + (gpu.full_load_celsius - IDLE_CELSIUS) * load
        gpu.temperature += THERMAL_LAG * (target - gpu.temperature)
        temperature = round(gpu.temperature + self._rng.gauss(0.0, TEMPERATURE_NOISE_CELSIUS), 2)

        fraction = IDLE_POWER_FRACTION + (FULL_POWER_FRACTION - IDLE_POWER_FRACTION) * load
        fraction += self._rng.gauss(0.0, POWER_NOISE_FRACTION)
        power = gpu.tdp_watts * min(max(fraction, 0.0), 1.0)

        return GpuSample(
            index=gpu.info.index,
            utilization_percent=util,
            memory_used_bytes=used,
            memory_total_bytes=total,
            temperature_celsius=temperature,
            power_watts=round(power, 2),
            power_limit_watts=gpu.tdp_watts,
            throttled=temperature > THROTTLE_CELSIUS,
        )

    def close(self) -> None:
        """Nothing to release."""


def _tdp_watts(name: str) -> float:
    kind = GPU_CATALOG.get(name)
    return kind.tdp_watts if kind is not None else DEFAULT_TDP_WATTS


def _uuid(seed: int, index: int, name: str) -> str:
    """Stable per (seed, index, name); nodes that share a seed share UUIDs, so give each its own."""
    bits = random.Random(f"{seed}/{index}/{name}").getrandbits(128)
    return f"GPU-{uuid.UUID(int=bits, version=4)}"
