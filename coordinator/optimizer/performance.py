"""The cluster's recent performance as numbers: what ``GetPerformanceMetrics`` reports.

A pure function of the history window and the current snapshot: throughput (tasks/s and
output tokens/s over the window), completion and queueing percentiles, GPU utilisation
(the snapshot's, averaged over endpoints), and the same per node and per model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from coordinator.optimizer.history import History, TaskSample, recent
from coordinator.routing.snapshot import ClusterSnapshot


@dataclass(frozen=True, slots=True)
class Latency:
    p50: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    count: int = 0


def latency(values: list[float]) -> Latency:
    """Nearest-rank percentiles (0 for an empty list)."""
    if not values:
        return Latency()
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]

    return Latency(q(0.5), q(0.95), q(0.99), len(v))


@dataclass(frozen=True, slots=True)
class NodeFigures:
    node: str
    utilization_percent: float
    tokens_per_second: float
    tasks_succeeded: int
    tasks_failed: int = 0


@dataclass(frozen=True, slots=True)
class ModelFigures:
    model: str
    tasks_per_second: float
    tokens_per_second: float
    completion: Latency
    tasks_succeeded: int
    loaded_on: tuple[str, ...]
    forecast_tasks_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class Performance:
    window_seconds: float
    utilization_percent: float
    tasks_per_second: float
    tokens_per_second: float
    completion: Latency
    queueing: Latency
    tasks_succeeded: int
    tasks_failed: int
    nodes: tuple[NodeFigures, ...] = ()
    models: tuple[ModelFigures, ...] = field(default_factory=tuple)


def performance_report(
    history: History,
    snapshot: ClusterSnapshot,
    now: float,
    window: float,
    *,
    failed_by_node: Mapping[str, int] | None = None,
    forecast: Mapping[str, float] | None = None,
) -> Performance:
    """Figures over the last ``window`` seconds (shorter if the history is younger)."""
    tasks = [t for t in recent(history.tasks, now - window) if t.ok]
    span = window
    if history.arrivals or history.tasks:
        first = min((d[0].at for d in (history.arrivals, history.tasks) if d), default=now - window)
        span = max(1e-3, min(window, now - first))
    failed = dict(failed_by_node or {})
    by_node: dict[str, list[TaskSample]] = {}
    by_model: dict[str, list[TaskSample]] = {}
    for t in tasks:
        by_node.setdefault(t.node, []).append(t)
        by_model.setdefault(t.model, []).append(t)
    utils: list[float] = []
    nodes = []
    loaded: dict[str, list[str]] = {}
    for n in snapshot.nodes:
        node_utils = [ep.utilization_percent for ep in n.endpoints]
        utils.extend(node_utils)
        for ep in n.endpoints:
            for lm in ep.loaded:
                loaded.setdefault(lm.name, []).append(f"{ep.node}/{ep.id}")
        mine = by_node.get(n.name, [])
        nodes.append(
            NodeFigures(
                n.name,
                sum(node_utils) / len(node_utils) if node_utils else 0.0,
                sum(t.eval_count for t in mine) / span,
                len(mine),
                failed.get(n.name, 0),
            )
        )
    models = []
    fc = forecast or {}
    for m in sorted(set(by_model) | set(loaded) | set(fc)):
        mine = by_model.get(m, [])
        models.append(
            ModelFigures(
                m,
                len(mine) / span,
                sum(t.eval_count for t in mine) / span,
                latency([t.queued_seconds + t.run_seconds + t.load_seconds for t in mine]),
                len(mine),
                tuple(sorted(loaded.get(m, []))),
                fc.get(m, 0.0),
            )
        )
    return Performance(
        window_seconds=span,
        utilization_percent=sum(utils) / len(utils) if utils else 0.0,
        tasks_per_second=len(tasks) / span,
        tokens_per_second=sum(t.eval_count for t in tasks) / span,
        completion=latency([t.queued_seconds + t.run_seconds + t.load_seconds for t in tasks]),
        queueing=latency([t.queued_seconds for t in tasks]),
        tasks_succeeded=len(tasks),
        tasks_failed=sum(failed.values()),
        nodes=tuple(nodes),
        models=tuple(models),
    )
