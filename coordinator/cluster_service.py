"""ClusterService: the cluster's status, live events, drains, routing explanations, the
optimizer and performance, as the registry, dispatcher, roster and optimizer have them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import grpc

from coordinator.dispatch import (
    Dispatcher,
)
from coordinator.optimizer import Action, AppliedChange, Finding
from coordinator.optimizer.live import LiveOptimizer
from coordinator.optimizer.performance import Latency, Performance
from coordinator.registry import (
    Registry,
    UnknownNode,
)
from coordinator.roster import CoordinatorView, Roster
from coordinator.routing import Decision
from hive.v1 import (
    cluster_pb2,
    cluster_pb2_grpc,
)

log = logging.getLogger("hive.coordinator")

_SEVERITY = {
    "info": cluster_pb2.SEVERITY_INFO,
    "warning": cluster_pb2.SEVERITY_WARNING,
    "critical": cluster_pb2.SEVERITY_CRITICAL,
}


def decision_to_proto(decision: Decision) -> cluster_pb2.RoutingDecision:
    """A routing decision as the API shows it: every candidate with its score breakdown."""
    proto = cluster_pb2.RoutingDecision()
    for candidate in decision.candidates:
        proto.candidates.add(
            node=candidate.node,
            endpoint_id=candidate.endpoint_id,
            total=candidate.total,
            components=[
                cluster_pb2.ScoreComponent(name=n, value=v, weight=w)
                for n, v, w in zip(
                    candidate.names, candidate.values, candidate.weights, strict=True
                )
            ],
        )
    for rejection in decision.rejected:
        proto.rejected.add(
            node=rejection.node,
            endpoint_id=rejection.endpoint_id,
            reason=rejection.reason,
            detail=rejection.detail,
        )
    if decision.chosen is not None:
        proto.chosen_node = decision.chosen.node
        proto.chosen_endpoint_id = decision.chosen.endpoint_id
    return proto


def coordinator_to_proto(view: CoordinatorView) -> cluster_pb2.CoordinatorStatus:
    return cluster_pb2.CoordinatorStatus(
        address=view.address,
        role=view.role,
        epoch=view.epoch,
        lease_age_seconds=view.lease_age,
        seen_age_seconds=view.seen_age,
    )


class ClusterServicer(cluster_pb2_grpc.ClusterServiceServicer):
    """Cluster status, drain, explanations and the optimizer. ``roster`` lists the
    coordinators in the status (None: none listed)."""

    def __init__(
        self,
        registry: Registry,
        dispatcher: Dispatcher,
        optimizer: LiveOptimizer | None = None,
        roster: Roster | None = None,
    ) -> None:
        self.registry = registry
        self.dispatcher = dispatcher
        self.optimizer = optimizer
        self.roster = roster

    async def GetClusterStatus(
        self,
        request: cluster_pb2.GetClusterStatusRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.GetClusterStatusRequest, cluster_pb2.GetClusterStatusResponse
        ],
    ) -> cluster_pb2.GetClusterStatusResponse:
        coordinators = await self.roster.current() if self.roster is not None else []
        return cluster_pb2.GetClusterStatusResponse(
            nodes=[self.registry.status(r) for r in self.registry],
            summary=self.registry.summary(),
            cluster_name=self.dispatcher.cluster_name,
            coordinators=[coordinator_to_proto(c) for c in coordinators],
        )

    async def DrainNode(
        self,
        request: cluster_pb2.DrainNodeRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.DrainNodeRequest, cluster_pb2.DrainNodeResponse
        ],
    ) -> cluster_pb2.DrainNodeResponse:
        try:
            record = self.registry.set_draining(request.node, request.drain, request.reason)
            self.dispatcher.set_draining(request.node, request.drain)
        except UnknownNode:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no node {request.node!r}; nodes: {', '.join(r.name for r in self.registry)}",
            )
        return cluster_pb2.DrainNodeResponse(node=self.registry.status(record))

    async def WatchCluster(
        self,
        request: cluster_pb2.WatchClusterRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.WatchClusterRequest, cluster_pb2.WatchClusterResponse
        ],
    ) -> AsyncIterator[cluster_pb2.WatchClusterResponse]:
        queue = self.registry.watch()
        try:
            for record in self.registry:
                yield cluster_pb2.WatchClusterResponse(node_joined=self.registry.status(record))
            while True:
                try:
                    async with asyncio.timeout(1.0):
                        event = await queue.get()
                except TimeoutError:
                    if not self.registry.is_watching(queue):
                        await context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "watcher fell too far behind and was dropped; reconnect",
                        )
                    continue
                if event.HasField("telemetry") and not request.include_telemetry:
                    continue
                yield event
        finally:
            self.registry.unwatch(queue)

    async def ExplainTask(
        self,
        request: cluster_pb2.ExplainTaskRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.ExplainTaskRequest, cluster_pb2.ExplainTaskResponse
        ],
    ) -> cluster_pb2.ExplainTaskResponse:
        run = self.dispatcher.tasks.get(request.task_id)
        if run is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no task {request.task_id!r} among the last {len(self.dispatcher.tasks)} tasks",
            )
        response = cluster_pb2.ExplainTaskResponse(
            task_id=run.task_id,
            estimated_prompt_tokens=run.prompt_tokens,
            estimated_output_tokens=run.output_tokens,
            output_estimate_source=run.output_source,
            via=run.via,
        )
        if run.decisions:
            response.decision.CopyFrom(decision_to_proto(run.decisions[-1]))
        return response

    async def OptimizeCluster(
        self,
        request: cluster_pb2.OptimizeClusterRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.OptimizeClusterRequest, cluster_pb2.OptimizeClusterResponse
        ],
    ) -> cluster_pb2.OptimizeClusterResponse:
        if self.optimizer is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "the optimizer is disabled (optimizer.enabled: false in the cluster file)",
            )
        result = self.optimizer.run_pass(dry_run=request.dry_run)
        clock = _WallClock(self.optimizer.clock())
        plan = result.plan
        applied = {id(c.action): c for c in result.applied}
        actions = []
        for a in plan.actions:
            change = applied.get(id(a))
            actions.append(action_to_proto(a, clock(plan.at), change))
        return cluster_pb2.OptimizeClusterResponse(
            actions=actions,
            findings=[finding_to_proto(f, clock(f.detected_at)) for f in plan.findings],
            applied=not request.dry_run,
            deferred=[action_to_proto(a, clock(plan.at)) for a in plan.deferred],
        )

    async def GetPerformanceMetrics(
        self,
        request: cluster_pb2.GetPerformanceMetricsRequest,
        context: grpc.aio.ServicerContext[
            cluster_pb2.GetPerformanceMetricsRequest, cluster_pb2.GetPerformanceMetricsResponse
        ],
    ) -> cluster_pb2.GetPerformanceMetricsResponse:
        if self.optimizer is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                "performance metrics come from the optimizer, which is disabled "
                "(optimizer.enabled: false in the cluster file)",
            )
        report, plan = self.optimizer.performance()
        clock = _WallClock(self.optimizer.clock())
        response = performance_to_proto(report)
        response.findings.extend(finding_to_proto(f, clock(f.detected_at)) for f in plan.findings)
        response.recent_changes.extend(
            action_to_proto(c.action, clock(c.at), c)
            for c in reversed(self.optimizer.optimizer.changes)
        )
        return response


class _WallClock:
    """Maps times on the coordinator's loop clock to wall-clock seconds for the API."""

    def __init__(self, loop_now: float) -> None:
        self.offset = time.time() - loop_now

    def __call__(self, at: float) -> float:
        return at + self.offset


def finding_to_proto(finding: Finding, wall: float) -> cluster_pb2.Finding:
    proto = cluster_pb2.Finding(
        kind=finding.kind,
        severity=_SEVERITY[finding.severity],
        subject=finding.subject,
        evidence=finding.evidence,
        recommendation=finding.recommendation,
    )
    proto.detected_at.FromNanoseconds(int(wall * 1e9))
    return proto


def action_to_proto(
    action: Action, wall: float, change: AppliedChange | None = None
) -> cluster_pb2.OptimizationAction:
    proto = cluster_pb2.OptimizationAction(
        kind=action.kind,
        node=action.node,
        endpoint_id=action.endpoint_id,
        model=action.model,
        reason=action.reason,
        before=action.before,
        after=action.after,
        source=action.source,
        deferred=action.deferred,
        ok=change.ok if change is not None else False,
        error=change.error if change is not None else "",
    )
    proto.at.FromNanoseconds(int(wall * 1e9))
    return proto


def _latency(value: Latency) -> cluster_pb2.LatencySummary:
    return cluster_pb2.LatencySummary(
        p50=value.p50, p95=value.p95, p99=value.p99, count=value.count
    )


def performance_to_proto(report: Performance) -> cluster_pb2.GetPerformanceMetricsResponse:
    return cluster_pb2.GetPerformanceMetricsResponse(
        utilization_percent=report.utilization_percent,
        tokens_per_second=report.tokens_per_second,
        tasks_per_second=report.tasks_per_second,
        completion_seconds=_latency(report.completion),
        queue_seconds=_latency(report.queueing),
        nodes=[
            cluster_pb2.NodePerformance(
                node=n.node,
                utilization_percent=n.utilization_percent,
                tokens_per_second=n.tokens_per_second,
                tasks_succeeded=n.tasks_succeeded,
                tasks_failed=n.tasks_failed,
            )
            for n in report.nodes
        ],
        tasks_succeeded=report.tasks_succeeded,
        tasks_failed=report.tasks_failed,
        models=[
            cluster_pb2.ModelPerformance(
                model=m.model,
                tasks_per_second=m.tasks_per_second,
                tokens_per_second=m.tokens_per_second,
                completion_seconds=_latency(m.completion),
                tasks_succeeded=m.tasks_succeeded,
                loaded_on=m.loaded_on,
                forecast_tasks_per_second=m.forecast_tasks_per_second,
            )
            for m in report.models
        ],
        window_seconds=report.window_seconds,
    )
