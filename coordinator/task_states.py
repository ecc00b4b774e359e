"""A task's life in the scheduler, as values: its states, the assignment of an attempt,
how an attempt ends (``FinishOutcome`` and its ``FAIL_*`` reasons), the record the
scheduler keeps of a live task and its read-only view, and the ways ``submit`` refuses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from coordinator.routing.router import Candidate, Decision
from coordinator.routing.snapshot import EndpointKey
from coordinator.routing.task import TaskSpec

FAIL_DEADLINE = "deadline_exceeded"
FAIL_ATTEMPTS = "attempts_exhausted"
FAIL_NOT_RETRYABLE = "not_retryable"


class QueueFull(Exception):
    """The queue holds ``max_queue`` tasks; maps to RESOURCE_EXHAUSTED with a retry hint."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"queue full; retry after {retry_after_seconds:.1f}s")
        self.retry_after_seconds = retry_after_seconds


class Unroutable(Exception):
    """No endpoint in the cluster has the model on disk with enough VRAM for it; maps to
    FAILED_PRECONDITION naming the model."""

    def __init__(self, model: str) -> None:
        super().__init__(f"no node can run model {model!r}: no endpoint has it with enough VRAM")
        self.model = model


class DuplicateTask(ValueError):
    """A task with this id is already queued or running."""


class TaskState(enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True)
class Assignment:
    """Run attempt ``attempt`` of ``task`` on ``node``/``endpoint_id``; report the result
    with ``finished(task.id, attempt, ...)``."""

    task: TaskSpec
    attempt: int
    node: str
    endpoint_id: str
    decision: Decision
    # Seconds the task waited in the coordinator's queue before this attempt.
    queued_seconds: float
    # An attempt an earlier coordinator started, taken on as it runs (``adopt``).
    adopted: bool = False

    @property
    def candidate(self) -> Candidate | None:
        """The router's scored candidate for the endpoint this attempt went to (None when
        the policy did not score it with the router's scorers, e.g. a baseline)."""
        key = (self.node, self.endpoint_id)
        for c in self.decision.candidates:
            if c.key == key and "cold_load" in c.names:
                return c
        return None

    @property
    def routed_cold(self) -> bool:
        """Whether the router sent this attempt to an endpoint that had to load its model."""
        chosen = self.candidate
        return chosen is not None and chosen.value("cold_load") > 0.0


class FinishKind(enum.Enum):
    COMPLETED = "completed"
    REQUEUED = "requeued"  # the attempt failed; the task waits for another attempt
    FAILED = "failed"  # terminally
    CANCELLED = "cancelled"
    STALE = "stale"  # not the current attempt of a running task: ignored


@dataclass(frozen=True, slots=True)
class FinishOutcome:
    kind: FinishKind
    task_id: str
    attempt: int
    # Where the attempt ran ("" when it was not running).
    node: str = ""
    endpoint_id: str = ""
    # FAIL_* constant for FAILED, else "".
    reason: str = ""
    error: str = ""


@dataclass(slots=True)
class TaskRecord:
    """The scheduler's mutable record of a live task (``TaskInfo`` is its read-only view)."""

    spec: TaskSpec
    submitted_at: float
    state: TaskState = TaskState.QUEUED
    attempt: int = 0
    node: str = ""
    endpoint_id: str = ""
    failed_on: list[EndpointKey] = field(default_factory=list)
    queue_seq: int = 0
    dispatched_at: float = 0.0
    # Estimated single-stream seconds of work on the endpoint it runs on.
    work_seconds: float = 0.0
    decision: Decision | None = None
    last_error: str = ""


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """A read-only view of a live task."""

    id: str
    state: TaskState
    attempt: int
    node: str
    endpoint_id: str
    submitted_at: float
    failed_on: tuple[EndpointKey, ...]
    decision: Decision | None
