"""The optimizer: self-tuning, bottleneck detection and predictive warm-up, as pure planning.

Public API::

    OptimizerConfig.from_mapping(cluster.optimizer, source, operator_limits) -> OptimizerConfig
    History: bounded record of TaskSample, Arrival, QueueSample, LoadEvent, GpuSample,
             SessionEvent that the caller appends to
    Optimizer(config).plan(snapshot, history, limits, now) -> Plan (actions, deferred,
             findings, knees, forecast); Optimizer.commit(applied changes)
    detectors.detect(history, snapshot, now, settings, window) -> [Finding]
    knee.knees(samples, min_samples, tolerance) -> [Knee]
    forecast.forecast_rates(history, now, settings), forecast.plan_warmups(...)
    performance.performance_report(history, snapshot, now, window) -> Performance
    live.LiveOptimizer: the coordinator's glue (records history, applies plans)
"""

from coordinator.optimizer.config import OptimizerConfig, Pins
from coordinator.optimizer.detectors import FINDING_KINDS, Finding, detect
from coordinator.optimizer.history import (
    Arrival,
    GpuSample,
    History,
    LoadEvent,
    QueueSample,
    SessionEvent,
    TaskSample,
)
from coordinator.optimizer.knee import CurvePoint, Knee, find_knee, knees, throughput_curve
from coordinator.optimizer.planner import (
    PROTECT,
    SET_LIMIT,
    SET_WEIGHT,
    WARM_MODEL,
    Action,
    AppliedChange,
    Optimizer,
    Plan,
)

__all__ = [
    "FINDING_KINDS",
    "PROTECT",
    "SET_LIMIT",
    "SET_WEIGHT",
    "WARM_MODEL",
    "Action",
    "AppliedChange",
    "Arrival",
    "CurvePoint",
    "Finding",
    "GpuSample",
    "History",
    "Knee",
    "LoadEvent",
    "Optimizer",
    "OptimizerConfig",
    "Pins",
    "Plan",
    "QueueSample",
    "SessionEvent",
    "TaskSample",
    "detect",
    "find_knee",
    "knees",
    "throughput_curve",
]
