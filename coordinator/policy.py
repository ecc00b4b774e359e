"""How the scheduler asks where a task goes: a ``Policy`` takes the task, the overlaid
snapshot and a ``PolicyContext`` (the time, the in-flight caps, the endpoints to avoid)
and returns a ``Decision``. ``HivePolicy`` is production's (the router); the simulator's
baselines are others.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from coordinator.routing.config import RouterConfig
from coordinator.routing.router import Decision, route
from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey
from coordinator.routing.task import TaskSpec


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What a routing policy may know besides the task and snapshot."""

    now: float
    # In-flight cap per endpoint (backpressure), for the capacity filter.
    limits: Mapping[EndpointKey, int]
    # Endpoints on which earlier attempts of this task failed.
    avoid: frozenset[EndpointKey] = frozenset()


@dataclass(frozen=True, slots=True)
class Finished:
    """A request that completed, as the client that sent it sees it: where it went, when
    it was sent and answered, and the answer's length (Ollama's ``eval_count``). A policy
    that learns from answers (LiteLLM's latency-based routing) has a ``learn(Finished)``
    method; the simulator and the coordinator's attempts call it."""

    node: str
    endpoint_id: str
    model: str
    sent_at: float
    finished_at: float
    output_tokens: int


class Policy(Protocol):
    """Chooses an endpoint: ``decision.chosen`` (None = nothing feasible now).

    A policy with ``reads_backlog = False`` declares that it never reads
    ``EndpointView.backlog_seconds``: the scheduler then leaves it 0.0 (unknown) and
    reuses an endpoint's overlaid view until its work changes, instead of re-estimating
    every running task's remaining work on every dispatch (the simulator's baselines;
    the decisions are the same, the dispatch several times cheaper)."""

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision: ...


class HivePolicy:
    """The production policy: ``coordinator.routing.route`` with the scheduler's limits."""

    name = "hive"

    def __init__(self, config: RouterConfig) -> None:
        self.config = config

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        return route(task, snapshot, self.config, limits=context.limits, avoid=context.avoid)
