"""Every Prometheus metric a node agent exports, defined here and nowhere else.

Local hardware and endpoints (``hive_gpu_*``, ``hive_endpoint_*``) are read at scrape
time from what the agent last measured (the telemetry of its last heartbeat) and from
its endpoints, on the event loop (see ``hive.metrics``). Session and task events are
counted where they happen (``agent.py``, ``service.py``). The coordinator exports the
same GPU and endpoint numbers for the whole cluster as ``hive_cluster_*``; these are the
agent's own, still scraped when the coordinator is down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hive.metrics import LATENCY_BUCKETS_SECONDS, GpuGauges, build_info

if TYPE_CHECKING:
    from hive.config import AgentConfig
    from hive.v1 import common_pb2
    from node_agent.endpoints import LocalEndpoint
    from node_agent.telemetry import TelemetryProvider


class AgentView(Protocol):
    """What the metrics read of their agent at scrape time (``node_agent.agent.Agent`` is
    one): a view, so that this module does not import the agent that imports it."""

    @property
    def name(self) -> str: ...
    @property
    def started(self) -> bool: ...
    @property
    def provider(self) -> TelemetryProvider: ...
    @property
    def config(self) -> AgentConfig: ...
    @property
    def last_telemetry(self) -> common_pb2.NodeTelemetry | None: ...
    @property
    def endpoints(self) -> Mapping[str, LocalEndpoint]: ...


TASK_OUTCOMES = ("succeeded", "failed", "cancelled")


class AgentMetrics:
    """One agent's metrics on their own registry."""

    def __init__(self, agent: AgentView, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        node = agent.name
        build_info(r, "node_agent")
        self.connected = Gauge(
            "hive_agent_connected",
            "1 while the agent holds a session with the coordinator.",
            ["node"],
            registry=r,
        ).labels(node)
        self.sessions = Counter(
            "hive_agent_sessions",
            "Sessions the coordinator welcomed.",
            ["node"],
            registry=r,
        ).labels(node)
        self.reconnects = Counter(
            "hive_agent_reconnects",
            "Times the agent dialled the coordinator again after a session ended or failed.",
            ["node"],
            registry=r,
        ).labels(node)
        self.heartbeats = Counter(
            "hive_agent_heartbeats",
            "Heartbeats sent to the coordinator.",
            ["node"],
            registry=r,
        ).labels(node)
        self.tasks = Counter(
            "hive_agent_tasks",
            "Tasks this agent ran on its Ollama endpoints, by outcome.",
            ["node", "endpoint", "model", "outcome"],
            registry=r,
        )
        self.task_duration = Histogram(
            "hive_agent_task_duration_seconds",
            "Time from RunTask to the end of Ollama's stream, for tasks that succeeded.",
            ["node", "endpoint"],
            buckets=LATENCY_BUCKETS_SECONDS,
            registry=r,
        )
        self.generated_tokens = Counter(
            "hive_agent_generated_tokens",
            "Output tokens generated (Ollama's eval_count).",
            ["node", "endpoint", "model"],
            registry=r,
        )
        self.tokens_per_second = Gauge(
            "hive_agent_tokens_per_second",
            "Decode speed of the last finished task (eval_count / eval_duration).",
            ["node", "endpoint", "model"],
            registry=r,
        )
        self.node = node
        r.register(AgentCollector(agent))

    def task_ended(
        self,
        endpoint: str,
        model: str,
        outcome: str,
        seconds: float,
        eval_count: int = 0,
        eval_duration_ns: int = 0,
    ) -> None:
        self.tasks.labels(self.node, endpoint, model, outcome).inc()
        if outcome != "succeeded":
            return
        self.task_duration.labels(self.node, endpoint).observe(max(0.0, seconds))
        if eval_count > 0:
            self.generated_tokens.labels(self.node, endpoint, model).inc(eval_count)
            if eval_duration_ns > 0:
                self.tokens_per_second.labels(self.node, endpoint, model).set(
                    eval_count / (eval_duration_ns / 1e9)
                )


class AgentCollector(Collector):
    """The agent's GPUs (last sample) and endpoints (now), read at scrape time."""

    def __init__(self, agent: AgentView) -> None:
        self.agent = agent

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []

    def collect(self) -> Iterable[GaugeMetricFamily]:
        agent = self.agent
        node = agent.name
        gpus = GpuGauges("hive_")
        ep_labels = ["node", "endpoint"]
        up = GaugeMetricFamily(
            "hive_endpoint_up", "1 if the endpoint's Ollama answered.", labels=ep_labels
        )
        slots = GaugeMetricFamily(
            "hive_endpoint_slots", "Parallel request slots of the endpoint.", labels=ep_labels
        )
        busy = GaugeMetricFamily(
            "hive_endpoint_slots_busy", "Slots running a request now.", labels=ep_labels
        )
        queue = GaugeMetricFamily(
            "hive_endpoint_queue_length",
            "Requests sent to the endpoint and waiting for a slot.",
            labels=ep_labels,
        )
        loaded = GaugeMetricFamily(
            "hive_endpoint_loaded_models",
            "Models resident in the endpoint's memory (as of its last /api/ps).",
            labels=ep_labels,
        )

        names = {}
        if agent.started:
            names = {g.index: (g.name, g.vendor) for g in agent.provider.gpus()}
        if not names:
            names = {i: (g.name, g.vendor) for i, g in enumerate(agent.config.node.gpus)}
        telemetry = agent.last_telemetry
        for sample in telemetry.gpus if telemetry is not None else ():
            name, vendor = names.get(sample.index, ("", "other"))
            gpus.add(node, sample, name, vendor)
        for endpoint in agent.endpoints.values():
            labels = [node, endpoint.id]
            n = endpoint.spec.num_parallel
            up.add_metric(labels, 1.0 if endpoint.healthy else 0.0)
            slots.add_metric(labels, float(n))
            busy.add_metric(labels, float(min(endpoint.in_flight, n)))
            queue.add_metric(labels, float(max(0, endpoint.in_flight - n)))
            loaded.add_metric(labels, float(len(endpoint.loaded)))
        yield from (*gpus.families(), up, slots, busy, queue, loaded)
