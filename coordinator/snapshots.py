"""The router's view of the live cluster, built from the registry: each node's last
heartbeat (its endpoints, GPUs, loaded models) with the measured speeds and error rates,
and what an attempt's routing says about the disk speed it measured (``cold_load_bytes``).
"""

from __future__ import annotations

from collections.abc import Mapping

from coordinator.registry import NodeRecord, Registry
from coordinator.routing import (
    ClusterSnapshot,
    EndpointKey,
    EndpointView,
    LoadedModelView,
    NodeView,
    SpeedTracker,
)
from coordinator.scheduler import Assignment


def snapshot_from_registry(
    registry: Registry,
    speeds: SpeedTracker,
    protected: Mapping[EndpointKey, frozenset[str]] | None = None,
) -> ClusterSnapshot:
    """The router's view of the live cluster: what every node said in its last heartbeat,
    with the optimizer's placement (``protected``) when it published one.

    In-flight counts are left at zero here: the scheduler overlays its own, which are
    exact, on top of telemetry, which lags.
    """
    nodes = []
    rates = speeds.load_rates()
    for record in registry:
        nodes.append(_node_view(record, rates))
    # ``protected`` itself, even empty: ``Dispatcher.snapshot`` tells a placement that
    # changed by identity (``protected or {}`` made a new dict each time, so the snapshot
    # was rebuilt on every call: 12 % of a busy coordinator's CPU).
    return ClusterSnapshot(
        tuple(nodes), speeds.speeds(), speeds.error_rates(), {} if protected is None else protected
    )


def _node_view(record: NodeRecord, load_rates: Mapping[EndpointKey, float]) -> NodeView:
    info, telemetry = record.info, record.telemetry
    gpus = {g.index: g for g in info.gpus}
    gpu_samples = {g.index: g for g in telemetry.gpus}
    endpoint_samples = {e.id: e for e in telemetry.endpoints}
    endpoints = []
    for endpoint in info.endpoints:
        indices = list(endpoint.gpu_indices)
        sample = endpoint_samples.get(endpoint.id)
        samples = [gpu_samples[i] for i in indices if i in gpu_samples]
        endpoints.append(
            EndpointView(
                node=record.name,
                id=endpoint.id,
                gpu_names=tuple(gpus[i].name for i in indices if i in gpus),
                num_parallel=endpoint.num_parallel,
                max_queue=endpoint.max_queue,
                vram_total_bytes=sum(gpus[i].memory_total_bytes for i in indices if i in gpus),
                vram_used_bytes=sum(s.memory_used_bytes for s in samples),
                models={m.name: m.size_bytes for m in endpoint.models},
                loaded=tuple(
                    LoadedModelView(m.name, m.size_vram_bytes)
                    for m in (sample.loaded_models if sample else ())
                ),
                healthy=sample.healthy if sample is not None else True,
                utilization_percent=(
                    sum(s.utilization_percent for s in samples) / len(samples) if samples else 0.0
                ),
                load_bytes_per_second=load_rates.get((record.name, endpoint.id), 0.0),
                hive_cluster=endpoint.hive_cluster,
            )
        )
    return NodeView(
        name=record.name,
        state=record.state.value,
        draining=record.draining,
        specializations=tuple(info.specializations),
        endpoints=tuple(endpoints),
    )


def cold_load_bytes(assignment: Assignment, snapshot: ClusterSnapshot) -> int:
    """Size of the task's model if the router sent this attempt to load it cold, else 0.

    Ollama's ``load_duration`` is the time a request waited for its runner: a load, or
    only a turn in a busy runner's queue. Learning the disk speed from the second kind
    would make cold loads look slow wherever requests queue, so only attempts routed to
    an endpoint without the model count (0 also when the endpoint is gone or the model's
    size is unknown)."""
    if not assignment.routed_cold:
        return 0
    endpoint = snapshot.endpoint((assignment.node, assignment.endpoint_id))
    return endpoint.models.get(assignment.task.model, 0) if endpoint is not None else 0


def usable_snapshot(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The snapshot without nodes that take no work for a while (draining or lost)."""
    return ClusterSnapshot(
        tuple(n for n in snapshot.nodes if not n.draining and n.state != "lost"),
        snapshot.speeds,
        snapshot.error_rates,
    )
