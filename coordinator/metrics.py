"""Every Prometheus metric the coordinator exports, defined here and nowhere else.

Two kinds:

* **State, read at scrape time** by ``ClusterCollector`` from the registry of nodes and
  the scheduler: the whole cluster as the last heartbeats describe it (``hive_cluster_*``:
  per-GPU utilisation, VRAM, temperature, power; per-endpoint slots, queue, loaded
  models), node states, reconnects, queue depth. Nothing to keep in sync, no stale label
  sets when a node goes away, and scrapes run on the event loop (see ``hive.metrics``),
  so reading that state needs no lock.
* **Events, counted where they happen** (``dispatch.py``): tasks finished by type, state
  and node, assignment latency and task duration histograms, tokens generated, router
  decisions by reason and filter rejections by reason constant.

Labels stay low-cardinality: node, gpu index, endpoint id, model name, task type, state,
reason constants. Never task, workflow or session ids.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from coordinator.registry import REPORTED_STATES
from coordinator.routing.filters import REJECT_REASONS
from coordinator.routing.scorers import SCORER_NAMES
from coordinator.routing.task import Priority
from hive.metrics import LATENCY_BUCKETS_SECONDS, GpuGauges, build_info
from hive.v1 import cluster_pb2, common_pb2

if TYPE_CHECKING:
    from coordinator.registry import Registry
    from coordinator.routing import Decision
    from coordinator.routing.speed import SpeedTracker
    from coordinator.scheduler import Scheduler


class _Placed(Protocol):
    @property
    def node(self) -> str: ...


class _Run(Protocol):
    @property
    def state(self) -> int: ...
    @property
    def type(self) -> str: ...
    @property
    def placements(self) -> Sequence[_Placed]: ...


class DispatchView(Protocol):
    """What the collector reads of the dispatcher at scrape time (``Dispatcher`` is one):
    a read-only view, so that this module does not import the dispatcher that imports it."""

    @property
    def scheduler(self) -> Scheduler: ...
    @property
    def speeds(self) -> SpeedTracker: ...
    @property
    def tasks(self) -> Mapping[str, _Run]: ...


# States in hive_node_state and hive_nodes: liveness, and "degraded" for a heartbeating
# node with no healthy endpoint (coordinator.registry.NodeRecord.degraded).
NODE_STATES = REPORTED_STATES
# Terminal task states in hive_tasks_total.
TASK_STATES = ("succeeded", "failed", "cancelled")
# Workflow states in hive_workflows (workflow.proto's WorkflowState, lower case).
WORKFLOW_STATES = ("pending", "running", "succeeded", "failed", "cancelled")
VENDORS = {
    common_pb2.GPU_VENDOR_NVIDIA: "nvidia",
    common_pb2.GPU_VENDOR_AMD: "amd",
}
# Router decision reason when there was nothing to compare against.
ONLY_CANDIDATE = "only_candidate"


def decision_reason(decision: Decision) -> str:
    """Why the router chose what it chose, as one scorer name.

    Scores are costs (lower wins). The reason is the scorer in which the chosen endpoint
    beat the runner-up by the most, weighted: "cold_load" means it won because its model
    was already loaded, "specialization" because the seed's chain prefers it, and so on.
    """
    if len(decision.candidates) < 2:
        return ONLY_CANDIDATE
    chosen, runner = decision.candidates[0], decision.candidates[1]
    best, margin = ONLY_CANDIDATE, float("-inf")
    for name, cv, cw, rv, rw in zip(
        chosen.names, chosen.values, chosen.weights, runner.values, runner.weights, strict=True
    ):
        gain = rv * rw - cv * cw
        if gain > margin:
            best, margin = name, gain
    return best


class CoordinatorMetrics:
    """The coordinator's metrics on their own registry (one per Coordinator)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        build_info(r, "coordinator")
        self.tasks = Counter(
            "hive_tasks",
            "Tasks that ended, by task type, final state and the node of their last attempt "
            '("none" if never placed).',
            ["type", "state", "node"],
            registry=r,
        )
        self.assignment_latency = Histogram(
            "hive_task_assignment_latency_seconds",
            "Time from a task's submission (or requeue) to its assignment to an endpoint.",
            ["type"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.task_duration = Histogram(
            "hive_task_duration_seconds",
            "Time from assignment to the final result, for attempts that succeeded.",
            ["type", "node"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.adoptions = Counter(
            "hive_task_adoptions",
            "Attempts an earlier coordinator (a dead leader, this one before a restart) had "
            "running, by what became of them: adopted from the agent that runs them, or "
            "gone (run again).",
            ["outcome"],
            registry=r,
        )
        self.requeues = Counter(
            "hive_task_requeues",
            "Attempts that failed and were put back in the queue, by node they failed on.",
            ["node"],
            registry=r,
        )
        self.generated_tokens = Counter(
            "hive_generated_tokens",
            "Output tokens generated by finished tasks (Ollama's eval_count).",
            ["node", "model"],
            registry=r,
        )
        self.router_decisions = Counter(
            "hive_router_decisions",
            "Placements by the scorer that decided them (see coordinator.metrics."
            "decision_reason), or only_candidate.",
            ["reason"],
            registry=r,
        )
        self.router_rejections = Counter(
            "hive_router_rejections",
            "Endpoints a filter removed while placing a task, by reason constant.",
            ["reason"],
            registry=r,
        )
        # Set by the workflow engine, or computed at scrape time: see count_workflows_with.
        self.workflows = Gauge(
            "hive_workflows",
            "Workflows known to the coordinator, by state.",
            ["state"],
            registry=r,
        )
        self.is_leader = Gauge(
            "hive_coordinator_is_leader",
            "1 while this coordinator is the leader (the only coordinator always is); 0 for "
            "a standby.",
            registry=r,
        )
        self.failovers = Counter(
            "hive_coordinator_failovers",
            "Times this coordinator took the lease over from another leader (epoch > 1).",
            registry=r,
        )
        self.lease_renew_seconds = Gauge(
            "hive_coordinator_lease_renew_seconds",
            "How long the leader's last lease renewal took (PostgreSQL round trip).",
            registry=r,
        )
        self.state_writable = Gauge(
            "hive_state_writable",
            "1 while the coordinator's state disk takes writes; 0 while it refuses them "
            "(full or read-only): new workflows and access changes are refused meanwhile.",
            registry=r,
        )
        self.workflows_finished = Counter(
            "hive_workflows_finished",
            "Workflows that reached a final state (succeeded, failed, cancelled).",
            ["state"],
            registry=r,
        )
        # Known label values start at 0, so rate() and alerts see a series from the start.
        for reason in REJECT_REASONS:
            self.router_rejections.labels(reason)
        for reason in (*SCORER_NAMES, ONLY_CANDIDATE):
            self.router_decisions.labels(reason)
        for state in WORKFLOW_STATES:
            self.workflows.labels(state)
        for state in WORKFLOW_STATES[2:]:
            self.workflows_finished.labels(state)
        self._collector: ClusterCollector | None = None

    def attach(self, registry: Registry, dispatcher: DispatchView) -> None:
        """Export the live state of ``registry`` and ``dispatcher`` at every scrape."""
        if self._collector is None:
            self._collector = ClusterCollector(registry, dispatcher)
            self.registry.register(self._collector)

    def count_workflows_with(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Let the workflow engine report ``{state: count}`` at scrape time."""
        for state in WORKFLOW_STATES:
            self.workflows.labels(state).set_function(_count_of(counts, state))

    # --- events, called by the dispatcher ----------------------------------------------

    def task_assigned(self, task_type: str, queued_seconds: float, decision: Decision) -> None:
        self.assignment_latency.labels(task_type).observe(max(0.0, queued_seconds))
        self.router_decisions.labels(decision_reason(decision)).inc()
        for reason, count in decision.rejection_counts().items():
            self.router_rejections.labels(reason).inc(count)

    def task_ended(self, task_type: str, state: str, node: str) -> None:
        self.tasks.labels(task_type, state, node or "none").inc()

    def task_succeeded(
        self, task_type: str, node: str, model: str, seconds: float, tokens: int
    ) -> None:
        self.task_duration.labels(task_type, node).observe(max(0.0, seconds))
        if tokens > 0:
            self.generated_tokens.labels(node, model).inc(tokens)


def _count_of(counts: Callable[[], Mapping[str, int]], state: str) -> Callable[[], float]:
    return lambda: float(counts().get(state, 0))


class ClusterCollector(Collector):
    """Reads the registry and scheduler at scrape time (on the event loop)."""

    def __init__(self, registry: Registry, dispatcher: DispatchView) -> None:
        self.registry = registry
        self.dispatcher = dispatcher

    def describe(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        return []  # collected lazily: registering must not read state

    def collect(self) -> Iterable[GaugeMetricFamily | CounterMetricFamily]:
        node_state = GaugeMetricFamily(
            "hive_node_state",
            "1 for the node's current state (healthy, degraded: every endpoint unhealthy, "
            "suspect, lost), else 0.",
            labels=["node", "state"],
        )
        nodes = GaugeMetricFamily(
            "hive_nodes", "Nodes known to the coordinator, by state.", labels=["state"]
        )
        draining = GaugeMetricFamily(
            "hive_node_draining", "1 while the node takes no new work.", labels=["node"]
        )
        heartbeat = GaugeMetricFamily(
            "hive_node_last_heartbeat_timestamp_seconds",
            "Unix time of the node's last heartbeat.",
            labels=["node"],
        )
        reconnects = CounterMetricFamily(
            "hive_node_session_reconnects",
            "Times the node's agent opened a new session after its first, since this "
            "coordinator started.",
            labels=["node"],
        )
        running = GaugeMetricFamily(
            "hive_node_running_tasks",
            "Tasks the coordinator has running on the node.",
            labels=["node"],
        )
        gpus = GpuGauges("hive_cluster_", ", from the node's last heartbeat")
        ep_labels = ["node", "endpoint"]
        ep_up = GaugeMetricFamily(
            "hive_cluster_endpoint_up",
            "1 if the node's agent reached this Ollama endpoint at its last heartbeat.",
            labels=ep_labels,
        )
        ep_slots = GaugeMetricFamily(
            "hive_cluster_endpoint_slots",
            "Parallel request slots of the endpoint (OLLAMA_NUM_PARALLEL).",
            labels=ep_labels,
        )
        ep_busy = GaugeMetricFamily(
            "hive_cluster_endpoint_slots_busy",
            "Slots in use at the last heartbeat.",
            labels=ep_labels,
        )
        ep_queue = GaugeMetricFamily(
            "hive_cluster_endpoint_queue_length",
            "Requests waiting at the endpoint for a free slot at the last heartbeat.",
            labels=ep_labels,
        )
        ep_loaded = GaugeMetricFamily(
            "hive_cluster_endpoint_loaded_models",
            "Models resident in the endpoint's memory at the last heartbeat.",
            labels=ep_labels,
        )
        model_vram = GaugeMetricFamily(
            "hive_cluster_endpoint_model_vram_bytes",
            "VRAM held by each loaded model.",
            labels=[*ep_labels, "model"],
        )
        ep_running = GaugeMetricFamily(
            "hive_endpoint_running_tasks",
            "Tasks the scheduler has running on the endpoint.",
            labels=ep_labels,
        )
        tps = GaugeMetricFamily(
            "hive_tokens_per_second",
            "Measured single-stream decode speed (EWMA of recent tasks).",
            labels=[*ep_labels, "model"],
        )
        queue = GaugeMetricFamily(
            "hive_scheduler_queue_length",
            "Tasks waiting in the coordinator's queue, by priority.",
            labels=["priority"],
        )
        tasks_live = GaugeMetricFamily(
            "hive_tasks_in_progress",
            "Tasks queued or running now, by type, state and node (running only).",
            labels=["type", "state", "node"],
        )

        counts = dict.fromkeys(NODE_STATES, 0)
        for record in self.registry:
            name = record.name
            state = record.reported_state
            counts[state] = counts.get(state, 0) + 1
            for s in NODE_STATES:
                node_state.add_metric([name, s], 1.0 if s == state else 0.0)
            draining.add_metric([name], 1.0 if record.draining else 0.0)
            heartbeat.add_metric([name], record.last_heartbeat_wall)
            reconnects.add_metric([name], float(record.reconnects))
            running.add_metric([name], float(self.registry.running[name]))
            described = {g.index: g for g in record.info.gpus}
            for gpu_sample in record.telemetry.gpus:
                gpu = described.get(gpu_sample.index)
                gpus.add(
                    name,
                    gpu_sample,
                    gpu.name if gpu else "",
                    VENDORS.get(gpu.vendor, "other") if gpu else "other",
                    gpu.memory_total_bytes if gpu else None,
                )
            samples = {e.id: e for e in record.telemetry.endpoints}
            for endpoint in record.info.endpoints:
                labels = [name, endpoint.id]
                sample = samples.get(endpoint.id)
                slots = endpoint.num_parallel
                in_flight = sample.in_flight if sample else 0
                ep_up.add_metric(labels, 1.0 if sample is not None and sample.healthy else 0.0)
                ep_slots.add_metric(labels, float(slots))
                ep_busy.add_metric(labels, float(min(in_flight, slots)))
                ep_queue.add_metric(labels, float(max(0, in_flight - slots)))
                loaded = list(sample.loaded_models) if sample else []
                ep_loaded.add_metric(labels, float(len(loaded)))
                for model in loaded:
                    model_vram.add_metric([*labels, model.name], float(model.size_vram_bytes))
        for state, n in counts.items():
            nodes.add_metric([state], float(n))

        scheduler = self.dispatcher.scheduler
        for (node_name, endpoint_id), n in sorted(scheduler.running_by_endpoint().items()):
            ep_running.add_metric([node_name, endpoint_id], float(n))
        by_priority = scheduler.queue_depth_by_priority()
        for priority in Priority:
            queue.add_metric([priority.name.lower()], float(by_priority.get(priority, 0)))
        for (node_name, endpoint_id, model_name), speed in sorted(
            self.dispatcher.speeds.speeds().items()
        ):
            tps.add_metric([node_name, endpoint_id, model_name], speed.decode_tps)
        live: dict[tuple[str, str, str], int] = {}
        for run in self.dispatcher.tasks.values():
            if run.state == cluster_pb2.TASK_STATE_QUEUED:
                key = (run.type, "queued", "none")
            elif run.state == cluster_pb2.TASK_STATE_RUNNING:
                node = run.placements[-1].node if run.placements else "none"
                key = (run.type, "running", node)
            else:
                continue
            live[key] = live.get(key, 0) + 1
        for key, n in sorted(live.items()):
            tasks_live.add_metric(list(key), float(n))

        yield from (
            node_state,
            nodes,
            draining,
            heartbeat,
            reconnects,
            running,
        )
        yield from gpus.families()
        yield from (
            ep_up,
            ep_slots,
            ep_busy,
            ep_queue,
            ep_loaded,
            model_vram,
            ep_running,
            tps,
            queue,
            tasks_live,
        )
