"""Hard filters: the endpoints a task may not be placed on, and why.

Each filter is a named unit that answers "no, because <reason>" or "yes" (None). Node
filters run once per node, endpoint filters once per endpoint, in the order listed; the
first rejection is recorded with a reason constant (counted in metrics, shown by
``hive explain``). Filters have no weights: they are feasibility, not preference. The
baseline policies of the simulator reuse ``feasible`` so every policy competes on the
same set of placements.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey, EndpointView, NodeView
from coordinator.routing.task import TaskSpec

REJECT_NODE_SUSPECT = "node_suspect"
REJECT_NODE_LOST = "node_lost"
REJECT_NODE_DRAINING = "node_draining"
REJECT_ENDPOINT_UNHEALTHY = "endpoint_unhealthy"
REJECT_ROUTING_LOOP = "routing_loop"
REJECT_MODEL_MISSING = "model_missing"
REJECT_MODEL_TOO_LARGE = "model_too_large"
REJECT_VRAM_BUSY = "vram_busy"
REJECT_AT_CAPACITY = "at_capacity"

REJECT_REASONS: tuple[str, ...] = (
    REJECT_NODE_SUSPECT,
    REJECT_NODE_LOST,
    REJECT_NODE_DRAINING,
    REJECT_ENDPOINT_UNHEALTHY,
    REJECT_ROUTING_LOOP,
    REJECT_MODEL_MISSING,
    REJECT_MODEL_TOO_LARGE,
    REJECT_VRAM_BUSY,
    REJECT_AT_CAPACITY,
)


@dataclass(frozen=True, slots=True)
class Rejection:
    node: str
    endpoint_id: str  # "" when the whole node was rejected
    reason: str  # one of REJECT_REASONS
    # The numbers behind the reason; ``detail`` formats them only when someone looks.
    facts: tuple[object, ...] = ()

    @property
    def detail(self) -> str:
        f = self.facts
        if self.reason == REJECT_MODEL_MISSING:
            return f"{f[0]} is not on this endpoint"
        if self.reason == REJECT_MODEL_TOO_LARGE:
            return f"{f[0]} needs {f[1]} B, endpoint has {f[2]} B"
        if self.reason == REJECT_VRAM_BUSY:
            return f"{f[0]} needs {f[1]} B, {f[2]} B free after evicting idle models"
        if self.reason == REJECT_AT_CAPACITY:
            return f"{f[0]} in flight, limit {f[1]}"
        if self.reason == REJECT_NODE_DRAINING:
            return "node is draining"
        if self.reason == REJECT_ROUTING_LOOP:
            return f"leads to Hive cluster {f[0]!r}, which the request has passed through"
        if self.reason in (REJECT_NODE_LOST, REJECT_NODE_SUSPECT):
            return f"node is {self.reason.removeprefix('node_')}"
        return "endpoint unhealthy"


NodeFilter = Callable[[NodeView], str | None]
# (task, endpoint, in-flight limit) -> reason or None
EndpointFilter = Callable[[TaskSpec, EndpointView, int], str | None]


def node_healthy(node: NodeView) -> str | None:
    """Suspect nodes missed heartbeats and lost ones are gone: work sent there may never
    be answered, so neither gets new work until it heartbeats again."""
    if node.state == "healthy":
        return None
    return REJECT_NODE_LOST if node.state == "lost" else REJECT_NODE_SUSPECT


def node_not_draining(node: NodeView) -> str | None:
    """A draining node finishes what it runs and takes nothing new (maintenance, deploys)."""
    return REJECT_NODE_DRAINING if node.draining else None


def endpoint_healthy(task: TaskSpec, ep: EndpointView, limit: int) -> str | None:
    """An endpoint whose Ollama stopped answering its agent's probes gets no work."""
    return None if ep.healthy else REJECT_ENDPOINT_UNHEALTHY


def not_a_loop(task: TaskSpec, ep: EndpointView, limit: int) -> str | None:
    """Federation: an endpoint that is another Hive cluster's gateway never gets a request
    that has passed through that cluster (this one included), or it would come back."""
    return REJECT_ROUTING_LOOP if ep.hive_cluster and ep.hive_cluster in task.via else None


def has_model(task: TaskSpec, ep: EndpointView, limit: int) -> str | None:
    """The model must be on the endpoint's disk (loaded or loadable); pulling is not routing."""
    return None if task.model in ep.models else REJECT_MODEL_MISSING


def model_fits(task: TaskSpec, ep: EndpointView, limit: int) -> str | None:
    """The model must fit the endpoint's VRAM at all, and fit now counting what evicting
    idle models would free. If busy models hold the room, Ollama would park the request
    until they finish: better to keep it in the coordinator's queue, free to go elsewhere."""
    if task.model in ep.loaded_by_name:
        return None
    need = ep.models[task.model]
    if need > ep.vram_total_bytes:
        return REJECT_MODEL_TOO_LARGE
    if need > ep.reclaimable_bytes:
        return REJECT_VRAM_BUSY
    return None


def has_capacity(task: TaskSpec, ep: EndpointView, limit: int) -> str | None:
    """Backpressure: beyond ``limit`` in-flight requests (the scheduler's cap, by default
    ``num_parallel + max_queue``) the task waits in the coordinator instead of Ollama."""
    return REJECT_AT_CAPACITY if ep.in_flight >= limit else None


NODE_FILTERS: tuple[NodeFilter, ...] = (node_healthy, node_not_draining)
ENDPOINT_FILTERS: tuple[EndpointFilter, ...] = (
    endpoint_healthy,
    not_a_loop,
    has_model,
    model_fits,
    has_capacity,
)


def _facts(reason: str, task: TaskSpec, ep: EndpointView, limit: int) -> tuple[object, ...]:
    if reason == REJECT_MODEL_MISSING:
        return (task.model,)
    if reason == REJECT_ROUTING_LOOP:
        return (ep.hive_cluster,)
    if reason == REJECT_MODEL_TOO_LARGE:
        return (task.model, ep.models[task.model], ep.vram_total_bytes)
    if reason == REJECT_VRAM_BUSY:
        return (task.model, ep.models[task.model], ep.reclaimable_bytes)
    if reason == REJECT_AT_CAPACITY:
        return (ep.in_flight, limit)
    return ()


def endpoint_limit(ep: EndpointView, limits: Mapping[EndpointKey, int] | None) -> int:
    """The in-flight cap of ``ep``: the scheduler's when given, else what Ollama accepts."""
    if limits is not None:
        limit = limits.get((ep.node, ep.id))
        if limit is not None:
            return limit
    return ep.num_parallel + ep.max_queue


def feasible(
    task: TaskSpec,
    snapshot: ClusterSnapshot,
    limits: Mapping[EndpointKey, int] | None = None,
) -> tuple[list[EndpointView], list[Rejection]]:
    """Endpoints passing every filter, in snapshot order, and a Rejection for the rest.

    An endpoint first meets one inlined check equivalent to all ENDPOINT_FILTERS (the
    common case, kept cheap for 1,000-endpoint clusters); only one that fails it is run
    through the named filters to find its reason. tests/test_router.py holds the two to
    agreement."""
    ok: list[EndpointView] = []
    rejected: list[Rejection] = []
    model = task.model
    for node in snapshot.nodes:
        reason: str | None = None
        for nf in NODE_FILTERS:
            reason = nf(node)
            if reason is not None:
                break
        if reason is not None:
            rejected.append(Rejection(node.name, "", reason))
            continue
        for ep in node.endpoints:
            limit = endpoint_limit(ep, limits)
            need = ep.models.get(model)
            if (
                ep.healthy
                and not (ep.hive_cluster and ep.hive_cluster in task.via)
                and need is not None
                and (model in ep.loaded_by_name or need <= ep.reclaimable_bytes)
                and ep.in_flight < limit
            ):
                ok.append(ep)
                continue
            for ef in ENDPOINT_FILTERS:
                reason = ef(task, ep, limit)
                if reason is not None:
                    rejected.append(
                        Rejection(node.name, ep.id, reason, _facts(reason, task, ep, limit))
                    )
                    break
            else:  # pragma: no cover - the inlined check and the filters disagree
                raise AssertionError(f"filters accept {ep.node}/{ep.id} but the fast check did not")
    return ok, rejected


def passes_filters(task: TaskSpec, ep: EndpointView, limit: int) -> bool:
    """The named filters alone, without the inlined fast path (for tests)."""
    return all(ef(task, ep, limit) is None for ef in ENDPOINT_FILTERS)


def could_ever_run(
    model: str, snapshot: ClusterSnapshot, via: Collection[str] = frozenset()
) -> bool:
    """Whether any endpoint in the snapshot, whatever its state, has ``model`` on disk and
    enough total VRAM for it, and does not lead to a Hive cluster in ``via`` (a request's
    route so far). False means waiting cannot help: fail the task now."""
    for node in snapshot.nodes:
        for ep in node.endpoints:
            if ep.hive_cluster and ep.hive_cluster in via:
                continue
            need = ep.models.get(model)
            if need is not None and need <= ep.vram_total_bytes:
                return True
    return False
