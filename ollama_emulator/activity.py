"""What ``nvidia-smi`` would show for an emulated endpoint: per-GPU utilization and memory.

The demo cluster's telemetry reads this instead of NVML, so it follows the same model as
the token speeds in ``hive.hardware``: layers are split over the GPUs in proportion to
their memory and run one GPU after another.
"""

from __future__ import annotations

from dataclasses import dataclass

from hive import hardware
from ollama_emulator.scheduler import Phase, Runner


@dataclass(frozen=True, slots=True)
class GpuActivity:
    index: int  # 0..n-1 within this endpoint
    name: str
    utilization_percent: float  # 0..100
    memory_used_bytes: int
    memory_total_bytes: int


def runner_demand(runner: Runner) -> float:
    """Fraction of the GPU time one runner keeps busy, 0..1.

    Prompt evaluation is compute bound and saturates the GPU (1.0). Decoding is memory
    bound: one stream keeps it busy about ``DECODE_EFFICIENCY`` of the time, and each
    extra batched stream adds 0.15 until saturation. Loading is disk bound (0).
    """
    if runner.count(Phase.PROMPT):
        return 1.0
    decoding = runner.count(Phase.DECODE)
    if decoding:
        return min(1.0, hardware.DECODE_EFFICIENCY + 0.15 * (decoding - 1))
    return 0.0


def gpu_activity(gpus: list[hardware.GpuKind], runners: list[Runner]) -> list[GpuActivity]:
    """Per GPU: ``utilization = 100 * min(1, sum of runner demands) * time_share``.

    ``time_share`` is the GPU's part of each token's time (its layers' bytes over its
    bandwidth, relative to all GPUs'), 1.0 with a single GPU: with a layer split, GPUs
    take turns rather than working at once. Memory: every resident model, loading ones
    included, is split over the GPUs in proportion to their memory, as Ollama splits layers.
    """
    total_memory = sum(g.memory_bytes for g in gpus)
    seconds = [g.memory_bytes / g.bandwidth_bytes_per_second for g in gpus]
    demand = min(1.0, sum(runner_demand(r) for r in runners))
    resident = sum(r.kind.size_bytes for r in runners)
    return [
        GpuActivity(
            index=i,
            name=g.name,
            utilization_percent=round(100.0 * demand * seconds[i] / sum(seconds), 1),
            memory_used_bytes=resident * g.memory_bytes // total_memory,
            memory_total_bytes=g.memory_bytes,
        )
        for i, g in enumerate(gpus)
    ]
