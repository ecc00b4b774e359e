"""What the dispatcher tells its callers about a task: where each attempt runs
(``Placement``, ``Assigned``), what it remembers for ``hive explain`` (``TaskRun``), where
an earlier coordinator left it running (``Adoption``), and the ways a task is refused or
fails for good (domain errors; the servicers map each to one gRPC status).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import grpc

from coordinator.routing import Decision
from hive.v1 import cluster_pb2


class UnknownModel(LookupError):
    """No endpoint in the cluster could ever run the model (maps to FAILED_PRECONDITION)."""


class RoutingLoop(RuntimeError):
    """Endpoints have the model, but every one leads to a Hive cluster the request has
    passed through (maps to FAILED_PRECONDITION)."""

    def __init__(self, model: str, via: Sequence[str]) -> None:
        super().__init__(
            f"every endpoint with model {model!r} leads to a Hive cluster this request has "
            f"already passed through (via {' -> '.join(via)}); sending it there would loop"
        )


class NoCapacity(RuntimeError):
    """Endpoints have the model but none can take the task now (maps to UNAVAILABLE)."""


class Overloaded(RuntimeError):
    """The coordinator's queue is full (maps to RESOURCE_EXHAUSTED with a retry hint)."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"the coordinator's queue is full; retry after {retry_after_seconds:.1f}s")
        self.retry_after_seconds = retry_after_seconds


class AttemptsExhausted(RuntimeError):
    """The task failed for good; carries the gRPC status to report."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    endpoint_id: str
    agent_address: str


@dataclass(frozen=True, slots=True)
class Adoption:
    """Where an earlier coordinator (a dead leader, this one before a restart) had a task
    running: the next ``Dispatcher.run`` of that task id takes the attempt on there, if
    the node re-reports it, instead of running the task again."""

    node: str
    endpoint_id: str
    attempt: int


@dataclass
class Assigned:
    """Emitted when an attempt is placed; emitted again when a retry moves the task."""

    task_id: str
    placement: Placement
    attempt: int
    # A direct run's token for FollowTask on the attempt's agent ("" otherwise).
    follow_token: str = ""


@dataclass
class TaskRun:
    """What the coordinator remembers about one task (kept for ``ExplainTask``)."""

    task_id: str
    model: str
    type: str
    placements: list[Placement] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    state: cluster_pb2.TaskState = cluster_pb2.TASK_STATE_QUEUED
    error: str = ""
    # The size the router priced: prompt and expected answer tokens, and the answer
    # estimate's source ("learned_for_cap", "learned", "default", "num_predict").
    prompt_tokens: int = 0
    output_tokens: int = 0
    output_source: str = ""
    # On the coordinator's clock: accepted, and when an agent first reported it running.
    submitted_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    # Federation: the clusters the task passed through, this one last.
    via: tuple[str, ...] = ()
