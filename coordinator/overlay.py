"""The scheduler's view on top of telemetry, one endpoint at a time: its own running
tasks counted per model (a model with work assigned counts as loaded) and their
remaining work (``backlog_seconds``). Pure functions of the endpoint's view and the
scheduler's records; ``Scheduler.overlay`` applies them across the snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.residual import ResidualLife
from coordinator.routing.scorers import BATCH_SLOWDOWN
from coordinator.routing.snapshot import (
    ClusterSnapshot,
    EndpointView,
    LoadedModelView,
    prior_speed,
)
from coordinator.routing.task import TaskSpec
from coordinator.task_states import TaskRecord


def work_seconds(
    task: TaskSpec, ep: EndpointView, snap: ClusterSnapshot, speed_prior_samples: float
) -> float:
    """Estimated single-stream seconds of ``task`` on ``ep``: its prompt and answer tokens
    over the endpoint's speeds, measured ones weighed against the prior by samples."""
    prior = prior_speed(ep.gpu_names, task.model, ep.models.get(task.model, 0))
    measured = snap.speeds.get((ep.node, ep.id, task.model))
    dec, pro = prior.decode_tps, prior.prompt_tps
    if measured is not None and measured.samples > 0:
        w = measured.samples / (measured.samples + speed_prior_samples)
        dec = w * measured.decode_tps + (1 - w) * dec
        pro = w * measured.prompt_tps + (1 - w) * pro
    return task.prompt_tokens / pro + task.output_tokens / dec


def overlay_endpoint(
    ep: EndpointView,
    mine: Mapping[str, TaskRecord],
    now: float,
    residual: ResidualLife | None,
    backlog: bool = True,
) -> EndpointView:
    """``ep`` with the scheduler's tasks running there (``mine``): counted per model and,
    with ``backlog``, their remaining work (learned from ``residual`` when it has
    learned, else estimated from ``work_seconds`` and the batch slowdown)."""
    per_model: dict[str, int] = {}
    n = len(mine)
    if not backlog:
        for rec in mine.values():
            model = rec.spec.model
            per_model[model] = per_model.get(model, 0) + 1
        return overlaid(ep, per_model, n, 0.0)
    rate = 1.0 / (1.0 + BATCH_SLOWDOWN * (min(n, ep.num_parallel) - 1)) if n else 1.0
    left_total = 0.0
    remaining = residual.remaining if residual is not None else None
    for rec in mine.values():
        model = rec.spec.model
        per_model[model] = per_model.get(model, 0) + 1
        age = now - rec.dispatched_at
        work = rec.work_seconds
        left = work - age * rate
        if remaining is not None:
            wall = remaining(age, work)
            if wall is not None:
                left = wall * rate
        floor = 0.1 * work
        left_total += left if left > floor else floor
    return overlaid(ep, per_model, n, left_total)


def overlaid(ep: EndpointView, per_model: dict[str, int], n: int, backlog: float) -> EndpointView:
    """``ep`` with the scheduler's ``n`` tasks (``per_model``, consumed) and backlog."""
    loaded: list[LoadedModelView] = []
    used = ep.vram_used_bytes
    for lm in ep.loaded:
        loaded.append(LoadedModelView(lm.name, lm.vram_bytes, per_model.pop(lm.name, 0)))
    for model, count in per_model.items():
        nbytes = ep.models.get(model, 0)
        loaded.append(LoadedModelView(model, nbytes, count))
        used += nbytes
    # Built field by field rather than with dataclasses.replace (a third of the cost of
    # a dispatch in the simulator); tests/test_overlay.py holds the two to agreement.
    return EndpointView(
        ep.node,
        ep.id,
        ep.gpu_names,
        ep.num_parallel,
        ep.max_queue,
        ep.vram_total_bytes,
        used,
        ep.models,
        tuple(loaded),
        n,
        ep.healthy,
        ep.utilization_percent,
        backlog,
        ep.load_bytes_per_second,
        ep.hive_cluster,
    )
