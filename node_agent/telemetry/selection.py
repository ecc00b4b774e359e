"""Which telemetry provider a node agent gets, from its configured preference.

"auto" looks for real hardware only (NVML, then AMD SMI) and never invents
GPUs: simulated telemetry is chosen explicitly. Whatever is asked for, failure
to load a library ends in the "none" provider with one log line saying why;
telemetry is never a reason for the agent not to start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from hive.config import GpuSpec
from node_agent.telemetry.amd import AmdSmiProvider
from node_agent.telemetry.base import GpuActivity, ProviderUnavailable, TelemetryProvider
from node_agent.telemetry.none import NoneProvider
from node_agent.telemetry.nvml import NvmlProvider
from node_agent.telemetry.simulated import SimulatedProvider

PREFERENCES = ("auto", "nvml", "amdsmi", "simulated", "none")
_HARDWARE: dict[str, Callable[[logging.Logger], TelemetryProvider]] = {
    "nvml": NvmlProvider,
    "amdsmi": AmdSmiProvider,
}


def open_provider(
    preference: str,
    *,
    simulated_gpus: Sequence[GpuSpec] = (),
    activity: Callable[[], Sequence[GpuActivity]] | None = None,
    seed: int = 0,
    logger: logging.Logger | None = None,
) -> TelemetryProvider:
    """Open the provider ``preference`` names, falling back to "none" if it cannot load.

    Logs exactly one line: the provider in use, or why the wanted one is
    missing (a warning when it was asked for by name, info under "auto", where
    no GPU library is an expected outcome on a CPU host). An unknown
    preference is a programming error (config validates it) and raises
    ValueError.
    """
    log = logger or logging.getLogger("node_agent.telemetry")
    if preference not in PREFERENCES:
        raise ValueError(f"unknown telemetry provider {preference!r}; one of {PREFERENCES}")
    if preference == "none":
        log.info("telemetry: disabled (provider none)")
        return NoneProvider()
    if preference == "simulated":
        provider: TelemetryProvider = SimulatedProvider(
            simulated_gpus, activity, seed=seed, logger=log
        )
        log.info("telemetry: using simulated (%s)", _describe(provider))
        return provider

    wanted = ("nvml", "amdsmi") if preference == "auto" else (preference,)
    reasons: dict[str, str] = {}
    for name in wanted:
        try:
            provider = _HARDWARE[name](log)
        except ProviderUnavailable as exc:
            reasons[name] = str(exc)
            continue
        log.info("telemetry: using %s (%s)", name, _describe(provider))
        return provider

    if preference == "auto":
        why = "; ".join(f"{name}: {reason}" for name, reason in reasons.items())
        log.info("telemetry: no GPU library available (%s); using none", why)
    else:
        log.warning(
            "telemetry: %s unavailable (%s); falling back to none", preference, reasons[preference]
        )
    return NoneProvider()


def _describe(provider: TelemetryProvider) -> str:
    gpus = provider.gpus()
    if not gpus:
        return "no GPUs"
    return ", ".join(f"{g.index}: {g.name}" for g in gpus)
