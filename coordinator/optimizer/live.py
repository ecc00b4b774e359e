"""The optimizer in the running coordinator: records history, runs passes, applies plans.

``LiveOptimizer`` is the production driver of the pure ``Optimizer``, as ``Dispatcher`` is
of the ``Scheduler``. It records what happens (results through the dispatcher's
``result_observers``, liveness through the registry's ``on_state_change``, and at every
pass the queues, arrivals, loaded models and GPU samples), plans on the loop's clock and,
unless it is a dry run, applies: ``Scheduler.set_limit`` for limits, ``Registry.warm_model``
(Ollama load with ``keep_alive``) for warm-ups, ``Dispatcher.protected`` (the router's
snapshot) for the placement. Everything runs on the coordinator's event
loop; ``run`` is the periodic loop its owner (``coordinator.server.Coordinator``) starts
and cancels.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass

from coordinator.dispatch import Dispatcher, Placement, task_type_name
from coordinator.optimizer.config import EndpointKey, OptimizerConfig
from coordinator.optimizer.history import (
    Arrival,
    GpuSample,
    History,
    LoadEvent,
    QueueSample,
    SessionEvent,
    TaskSample,
)
from coordinator.optimizer.performance import Performance, performance_report
from coordinator.optimizer.planner import (
    PROTECT,
    SET_LIMIT,
    SET_WEIGHT,
    AppliedChange,
    Optimizer,
    Plan,
)
from coordinator.registry import NodeRecord, NodeState, Registry, UnknownNode
from coordinator.scheduler import Assignment
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2

log = logging.getLogger("hive.coordinator.optimizer")


def _endpoint_key(text: str) -> EndpointKey:
    node, sep, endpoint = str(text).partition("/")
    if not sep or not node or not endpoint:
        raise ValueError(f"not node/endpoint: {text!r}")
    return node, endpoint


@dataclass(frozen=True, slots=True)
class PassResult:
    plan: Plan
    applied: tuple[AppliedChange, ...]
    dry_run: bool


class LiveOptimizer:
    def __init__(
        self,
        config: OptimizerConfig,
        registry: Registry,
        dispatcher: Dispatcher,
        clock: Callable[[], float],
    ) -> None:
        self.config = config
        self.registry = registry
        self.dispatcher = dispatcher
        self.clock = clock
        self.optimizer = Optimizer(config)
        self.history = History(config.window_seconds)
        # What the passes applied that a restarted or new leader must apply again (limits,
        # weights; the placement is ``optimizer.placement``), and who persists it.
        self.applied_limits: dict[EndpointKey, int] = {}
        self.applied_weights: dict[str, float] = {}
        self.on_applied: Callable[[str], None] | None = None
        self._loaded: dict[EndpointKey, set[str]] = {}
        # Tasks submitted up to this time are recorded as arrivals.
        self._seen_until = float("-inf")
        dispatcher.result_observers.append(self._on_result)
        for (node, endpoint_id), limit in sorted(config.pins.limits.items()):
            dispatcher.scheduler.set_limit(node, endpoint_id, limit)
        registry.on_state_change.append(self._on_state)

    # ----- recording ---------------------------------------------------------------------

    def _on_result(
        self,
        placement: Placement,
        request: node_agent_pb2.RunTaskRequest,
        assignment: Assignment,
        stats: common_pb2.TaskStats,
    ) -> None:
        running = self.dispatcher.scheduler.running_by_endpoint()
        load = stats.load_duration_ns / 1e9
        service = (stats.prompt_eval_duration_ns + stats.eval_duration_ns) / 1e9
        # Time before the prompt: Ollama counts a wait for a busy runner's slot in
        # load_duration, so unless the router sent this attempt to load the model, all of
        # it was waiting.
        chosen = assignment.candidate
        before = stats.total_duration_ns / 1e9 - service
        wait = max(0.0, before - load) if assignment.routed_cold else max(0.0, before)
        self.history.add(
            TaskSample(
                self.clock(),
                placement.node,
                placement.endpoint_id,
                # Interned: a protobuf field read is a new string each time, and the
                # window holds up to 50,000 samples of a handful of models and types.
                sys.intern(request.model),
                sys.intern(task_type_name(request.type)),
                queued_seconds=assignment.queued_seconds,
                run_seconds=max(0.0, stats.total_duration_ns / 1e9 - load),
                eval_count=stats.eval_count,
                eval_seconds=stats.eval_duration_ns / 1e9,
                concurrency=max(1, running.get((placement.node, placement.endpoint_id), 1)),
                load_seconds=load,
                predicted_wait_seconds=chosen.value("queue_wait") if chosen else -1.0,
                wait_seconds=wait if stats.total_duration_ns else -1.0,
                predicted_service_seconds=chosen.value("service") if chosen else -1.0,
                service_seconds=service if stats.total_duration_ns else -1.0,
            )
        )

    def _on_state(self, record: NodeRecord, old: NodeState) -> None:
        kind = {NodeState.LOST: "lost", NodeState.SUSPECT: "suspect"}.get(record.state, "joined")
        self.history.add(SessionEvent(self.clock(), record.name, kind))  # type: ignore[arg-type]

    def sample(self, now: float) -> None:
        """Record what only polling sees: new arrivals, queue depths per task type, models
        loaded or evicted since the last sample, GPU temperatures."""
        h = self.history
        fresh: list[Arrival] = []
        queued: dict[str, int] = {}
        for run in self.dispatcher.tasks.values():
            if run.state == cluster_pb2.TASK_STATE_QUEUED:
                queued[run.type] = queued.get(run.type, 0) + 1
            if run.submitted_at > self._seen_until:
                fresh.append(Arrival(run.submitted_at, sys.intern(run.type), sys.intern(run.model)))
        if fresh:
            self._seen_until = max(a.at for a in fresh)
        for a in sorted(fresh, key=lambda a: a.at):
            h.add(a)
        for tt in sorted(set(queued) | {q.task_type for q in h.queues}):
            h.add(QueueSample(now, tt, queued.get(tt, 0)))
        for record in self.registry:
            tel = record.telemetry
            for ep in tel.endpoints:
                key = (record.name, ep.id)
                now_loaded = {m.name for m in ep.loaded_models}
                before = self._loaded.get(key)
                if before is not None:
                    for m in sorted(now_loaded - before):
                        h.add(LoadEvent(now, record.name, ep.id, m, "loaded"))
                    for m in sorted(before - now_loaded):
                        h.add(LoadEvent(now, record.name, ep.id, m, "evicted"))
                self._loaded[key] = now_loaded
            if record.state is NodeState.HEALTHY:
                for g in tel.gpus:
                    h.add(
                        GpuSample(
                            now,
                            record.name,
                            g.index,
                            g.temperature_celsius,
                            g.throttled,
                            g.utilization_percent,
                        )
                    )
        h.trim(now)

    # ----- passes ------------------------------------------------------------------------

    def run_pass(self, dry_run: bool) -> PassResult:
        """Record, plan and (unless ``dry_run``) apply one pass now."""
        now = self.clock()
        self.sample(now)
        scheduler = self.dispatcher.scheduler
        snapshot = scheduler.overlay(self.dispatcher.snapshot(), now)
        limits = {ep.key: scheduler.limit(ep) for ep in snapshot.endpoints()}
        plan = self.optimizer.plan(
            snapshot, self.history, limits, now, weights=scheduler.config.weights
        )
        if dry_run:
            return PassResult(plan, (), True)
        applied = []
        for a in plan.actions:
            if a.kind in (SET_LIMIT, PROTECT, SET_WEIGHT):
                if a.kind == SET_LIMIT:
                    scheduler.set_limit(a.node, a.endpoint_id, a.limit)
                    if a.limit is None:
                        self.applied_limits.pop((a.node, a.endpoint_id), None)
                    else:
                        self.applied_limits[(a.node, a.endpoint_id)] = max(1, a.limit)
                elif a.kind == SET_WEIGHT and a.value is not None:
                    scheduler.set_weight(a.weight, a.value)
                    self.applied_weights[a.weight] = a.value
                # A PROTECT takes effect below, through the dispatcher's snapshot.
                applied.append(AppliedChange(now, a))
                continue
            try:
                self.registry.warm_model(a.node, a.endpoint_id, a.model, a.keep_alive)
                applied.append(AppliedChange(now, a))
            except UnknownNode:
                applied.append(AppliedChange(now, a, False, f"node {a.node} is gone"))
        self.optimizer.commit(applied)
        # The router reads the placement from the dispatcher's snapshot from now on.
        self.dispatcher.protected = self.optimizer.placement
        if any(a.kind in (SET_LIMIT, PROTECT, SET_WEIGHT) for a in plan.actions):
            self.dispatcher.kick()
            if self.on_applied is not None:
                self.on_applied(self.state_document())
        return PassResult(plan, tuple(applied), False)

    # ----- what survives a restart or a failover ------------------------------------------

    def state_document(self) -> str:
        """What the passes applied, as JSON: the placement, limits and weights."""
        return json.dumps(
            {
                "placement": {
                    f"{node}/{ep}": sorted(models)
                    for (node, ep), models in sorted(self.optimizer.placement.items())
                },
                "limits": {f"{n}/{e}": v for (n, e), v in sorted(self.applied_limits.items())},
                "weights": dict(sorted(self.applied_weights.items())),
            },
            sort_keys=True,
        )

    def restore(self, document: str) -> None:
        """Apply again what an earlier leader's passes applied (``state_document``): the
        router keeps its placement, limits and weights across a failover. Pinned limits
        (``optimizer.pins.limits``) win over restored ones; an entry this version cannot
        read is skipped with a warning."""
        try:
            doc = json.loads(document)
            placement = {
                _endpoint_key(k): frozenset(map(str, v)) for k, v in doc["placement"].items()
            }
            limits = {_endpoint_key(k): int(v) for k, v in doc["limits"].items()}
            weights = {str(k): float(v) for k, v in doc["weights"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("optimizer: the stored state cannot be read (%s); starting afresh", exc)
            return
        scheduler = self.dispatcher.scheduler
        for key, limit in limits.items():
            if key not in self.config.pins.limits:
                scheduler.set_limit(key[0], key[1], limit)
                self.applied_limits[key] = limit
        for name, value in weights.items():
            try:
                scheduler.set_weight(name, value)
            except ValueError as exc:
                log.warning("optimizer: stored weight skipped: %s", exc)
                continue
            self.applied_weights[name] = value
        self.optimizer.placement = placement
        self.dispatcher.protected = placement
        log.info(
            "optimizer: restored %d protected endpoints, %d limits, %d weights",
            len(placement),
            len(self.applied_limits),
            len(self.applied_weights),
        )

    def findings_now(self) -> Plan:
        """A fresh dry-run plan (findings as of now), without applying anything."""
        return self.run_pass(dry_run=True).plan

    def performance(self) -> tuple[Performance, Plan]:
        plan = self.findings_now()
        now = plan.at
        failed: dict[str, int] = {}
        for run in self.dispatcher.tasks.values():
            if run.state == cluster_pb2.TASK_STATE_FAILED and run.placements:
                node = run.placements[-1].node
                failed[node] = failed.get(node, 0) + 1
        snapshot = self.dispatcher.scheduler.overlay(self.dispatcher.snapshot(), now)
        report = performance_report(
            self.history,
            snapshot,
            now,
            self.config.window_seconds,
            failed_by_node=failed,
            forecast=plan.forecast,
        )
        return report, plan

    async def run(self) -> None:
        """Pass every ``interval_seconds`` until cancelled; applies when ``auto_apply``.
        A pass that raises is logged and the loop goes on (the next pass starts fresh)."""
        while True:
            await asyncio.sleep(self.config.interval_seconds)
            try:
                self.run_pass(dry_run=not self.config.auto_apply)
            except Exception:
                log.exception("optimizer pass failed")
