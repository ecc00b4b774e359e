"""The immutable view of the cluster that one routing decision reads.

The registry builds a ``ClusterSnapshot`` from agent telemetry (what each node said in
its last heartbeat) and the scheduler overlays what only it knows (tasks it assigned that
telemetry has not caught up with). Everything here is a frozen, slotted dataclass built
from facts a registry has; derived facts (free VRAM after eviction, the loaded set) are
computed once at construction so the router's inner loop only reads attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from hive import hardware
from hive.config import ClusterConfig

NodeState = Literal["healthy", "suspect", "lost"]
# (node name, endpoint id): an Ollama endpoint's identity across the cluster.
EndpointKey = tuple[str, str]
# (node name, endpoint id, model name).
SpeedKey = tuple[str, str, str]

# Speeds assumed for GPUs missing from hive.hardware's catalog: a mid-range 8 GB card
# decoding a 7B Q4 model, scaled by model size like the catalog's bandwidth model.
FALLBACK_BANDWIDTH_BYTES_PER_SECOND = 300e9


@dataclass(frozen=True, slots=True)
class SpeedEstimate:
    """Measured single-stream speed of one model on one endpoint (EWMA), and how many
    finished tasks it rests on."""

    decode_tps: float
    prompt_tps: float
    samples: int


@dataclass(frozen=True, slots=True)
class LoadedModelView:
    """A model resident (or loading) on an endpoint, with its assigned unfinished tasks."""

    name: str
    vram_bytes: int
    in_flight: int = 0


@dataclass(frozen=True, slots=True)
class EndpointView:
    """One Ollama endpoint as the registry last saw it.

    ``models`` maps every model the endpoint has on disk to the VRAM bytes it needs.
    ``in_flight`` counts assigned, unfinished requests of all models (running or queued
    inside Ollama). ``backlog_seconds`` is the scheduler's estimate of single-stream work
    still to do here (0.0 = unknown; the router then assumes the in-flight tasks are like
    the one being placed).
    """

    node: str
    id: str
    gpu_names: tuple[str, ...]
    num_parallel: int
    max_queue: int
    vram_total_bytes: int
    vram_used_bytes: int
    models: Mapping[str, int]
    loaded: tuple[LoadedModelView, ...] = ()
    in_flight: int = 0
    healthy: bool = True
    utilization_percent: float = 0.0
    backlog_seconds: float = 0.0
    # Measured disk-to-VRAM speed of this endpoint's host (from Ollama's load_duration),
    # bytes/s; 0.0 = not measured yet, assume hive.hardware's default.
    load_bytes_per_second: float = 0.0
    # Federation: the name of the Hive cluster this endpoint is the gateway of; "" for an
    # Ollama server.
    hive_cluster: str = ""
    # Derived in __post_init__.
    loaded_by_name: Mapping[str, LoadedModelView] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )
    # VRAM free now plus what evicting idle (no in-flight) loaded models would free.
    reclaimable_bytes: int = field(init=False, repr=False, compare=False, default=0)
    # Distinct loaded models with work in flight (they take turns on the GPU).
    busy_models: int = field(init=False, repr=False, compare=False, default=0)
    # Memo of prior_speed per model for this endpoint's GPUs (filled by the router).
    prior_cache: dict[str, SpeedEstimate] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        by_name = {m.name: m for m in self.loaded}
        idle = sum(m.vram_bytes for m in self.loaded if m.in_flight == 0)
        resident = sum(m.vram_bytes for m in self.loaded)
        object.__setattr__(self, "loaded_by_name", by_name)
        object.__setattr__(
            self,
            "reclaimable_bytes",
            # Telemetry may lag the loaded list: trust whichever claims more VRAM; and
            # busy models cannot be evicted whatever the numbers say.
            max(
                0,
                min(
                    self.vram_total_bytes - max(self.vram_used_bytes, resident) + idle,
                    self.vram_total_bytes - (resident - idle),
                ),
            ),
        )
        object.__setattr__(self, "busy_models", sum(1 for m in self.loaded if m.in_flight > 0))

    @property
    def key(self) -> EndpointKey:
        return (self.node, self.id)


@dataclass(frozen=True, slots=True)
class NodeView:
    name: str
    state: NodeState = "healthy"
    draining: bool = False
    specializations: tuple[str, ...] = ()
    endpoints: tuple[EndpointView, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Everything the router may read. ``speeds`` and ``error_rates`` come from a
    ``SpeedTracker``; a missing entry means "no measurement yet". ``protected`` is the
    optimizer's placement: per endpoint, the resident models its demand forecast wants
    kept there (the ``placement`` scorer charges for evicting them); empty when the
    optimizer is off, and then the router behaves as if it did not exist."""

    nodes: tuple[NodeView, ...]
    speeds: Mapping[SpeedKey, SpeedEstimate] = field(default_factory=dict)
    error_rates: Mapping[EndpointKey, float] = field(default_factory=dict)
    protected: Mapping[EndpointKey, frozenset[str]] = field(default_factory=dict)
    node_index: Mapping[str, int] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "node_index", {n.name: i for i, n in enumerate(self.nodes)})

    def node(self, name: str) -> NodeView | None:
        i = self.node_index.get(name)
        return None if i is None else self.nodes[i]

    def endpoint(self, key: EndpointKey) -> EndpointView | None:
        node = self.node(key[0])
        if node is None:
            return None
        for ep in node.endpoints:
            if ep.id == key[1]:
                return ep
        return None

    def endpoints(self) -> list[EndpointView]:
        return [ep for n in self.nodes for ep in n.endpoints]

    def replace_node(self, node: NodeView) -> ClusterSnapshot:
        """A copy with ``node`` (matched by name) swapped in; O(nodes)."""
        i = self.node_index[node.name]
        nodes = (*self.nodes[:i], node, *self.nodes[i + 1 :])
        return ClusterSnapshot(nodes, self.speeds, self.error_rates, self.protected)


@lru_cache(maxsize=4096)
def prior_speed(gpu_names: tuple[str, ...], model: str, model_bytes: int) -> SpeedEstimate:
    """Single-stream speed before any measurement, from ``hive.hardware``'s model.

    Known GPUs use the catalog's bandwidth model; an unknown GPU (or an endpoint that
    lists none) is assumed to have ``FALLBACK_BANDWIDTH_BYTES_PER_SECOND``. The model's
    size comes from the catalog when known, else from the bytes the endpoint reported.
    """
    gpus: list[hardware.GpuKind] = []
    for name in gpu_names:
        kind = hardware.GPU_CATALOG.get(name)
        if kind is None:
            kind = hardware.GpuKind(
                name, "other", 8 * hardware.GIB, FALLBACK_BANDWIDTH_BYTES_PER_SECOND, 0
            )
        gpus.append(kind)
    if not gpus:
        gpus = [
            hardware.GpuKind("?", "other", 8 * hardware.GIB, FALLBACK_BANDWIDTH_BYTES_PER_SECOND, 0)
        ]
    try:
        kind_m = hardware.model_kind(model)
    except KeyError:
        kind_m = hardware.ModelKind(model, "?", "?", "?", max(1, model_bytes))
    decode = hardware.decode_tokens_per_second(gpus, kind_m)
    return SpeedEstimate(decode, decode * hardware.PROMPT_SPEEDUP, 0)


@lru_cache(maxsize=4096)
def load_seconds(model: str, model_bytes: int, bytes_per_second: float = 0.0) -> float:
    """Seconds to load ``model`` cold at ``bytes_per_second`` (0: hive.hardware's default
    disk speed): its catalog size if it has one, else ``model_bytes``."""
    speed = bytes_per_second if bytes_per_second > 0.0 else hardware.LOAD_BYTES_PER_SECOND
    try:
        return hardware.load_seconds(hardware.model_kind(model), speed)
    except KeyError:
        return hardware.LOAD_FIXED_SECONDS + model_bytes / speed


def snapshot_from_cluster(cluster: ClusterConfig) -> ClusterSnapshot:
    """An idle snapshot of a cluster file: every node healthy, nothing loaded or running.

    Model sizes and GPU memory come from ``hive.hardware`` (unknown models count as 0 bytes
    since a node file need not name only catalog models; the agent reports real sizes)."""
    nodes = []
    for spec in cluster.nodes:
        eps = []
        for e in spec.endpoints:
            gpus = [spec.gpus[i] for i in e.gpus]
            models: dict[str, int] = {}
            for m in e.models:
                try:
                    models[m] = hardware.model_kind(m).size_bytes
                except KeyError:
                    models[m] = 0
            eps.append(
                EndpointView(
                    node=spec.name,
                    id=e.id,
                    gpu_names=tuple(g.name for g in gpus),
                    num_parallel=e.num_parallel,
                    max_queue=e.max_queue,
                    vram_total_bytes=sum(g.memory_bytes for g in gpus),
                    vram_used_bytes=0,
                    models=models,
                )
            )
        nodes.append(NodeView(spec.name, "healthy", False, spec.specializations, tuple(eps)))
    return ClusterSnapshot(tuple(nodes))
