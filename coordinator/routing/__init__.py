"""Task placement as pure functions: cluster snapshot + task + config → explained Decision.

Public API::

    route(task, snapshot, config, *, limits=None, avoid=frozenset()) -> Decision
    feasible(task, snapshot, limits=None) -> (endpoints, rejections)
    could_ever_run(model, snapshot, via) -> bool
    RouterConfig.from_mapping(cluster.routing, source, node_names) -> RouterConfig
    SpeedTracker: EWMA speeds and error rates from finished tasks → snapshot fields
"""

from coordinator.routing.config import RouterConfig, SchedulerConfig, Weights
from coordinator.routing.filters import REJECT_REASONS, Rejection, could_ever_run, feasible
from coordinator.routing.router import Candidate, Component, Decision, route
from coordinator.routing.snapshot import (
    ClusterSnapshot,
    EndpointKey,
    EndpointView,
    LoadedModelView,
    NodeState,
    NodeView,
    SpeedEstimate,
)
from coordinator.routing.speed import SpeedTracker
from coordinator.routing.task import TASK_TYPES, Priority, TaskSpec

__all__ = [
    "REJECT_REASONS",
    "TASK_TYPES",
    "Candidate",
    "ClusterSnapshot",
    "Component",
    "Decision",
    "EndpointKey",
    "EndpointView",
    "LoadedModelView",
    "NodeState",
    "NodeView",
    "Priority",
    "Rejection",
    "RouterConfig",
    "SchedulerConfig",
    "SpeedEstimate",
    "SpeedTracker",
    "TaskSpec",
    "Weights",
    "could_ever_run",
    "feasible",
    "route",
]
