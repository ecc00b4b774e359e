"""The workflow domain: records of workflows, stages and tasks, and the errors of the engine.

These are plain mutable dataclasses owned by the engine (one event loop); the store
persists them and the servicer translates them to protobuf. States and priorities reuse
the hive.v1 enum values (plain ints) so that no second vocabulary exists.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from hive.v1 import cluster_pb2, common_pb2, workflow_pb2

# Workflow states (hive.v1.WorkflowState).
WF_PENDING = workflow_pb2.WORKFLOW_STATE_PENDING
WF_RUNNING = workflow_pb2.WORKFLOW_STATE_RUNNING
WF_SUCCEEDED = workflow_pb2.WORKFLOW_STATE_SUCCEEDED
WF_FAILED = workflow_pb2.WORKFLOW_STATE_FAILED
WF_CANCELLED = workflow_pb2.WORKFLOW_STATE_CANCELLED
WF_TERMINAL = frozenset({WF_SUCCEEDED, WF_FAILED, WF_CANCELLED})
WF_STATE_NAMES = {
    WF_PENDING: "pending",
    WF_RUNNING: "running",
    WF_SUCCEEDED: "succeeded",
    WF_FAILED: "failed",
    WF_CANCELLED: "cancelled",
}

# Stage and task states (hive.v1.TaskState). A stage that has not started is QUEUED.
QUEUED = cluster_pb2.TASK_STATE_QUEUED
RUNNING = cluster_pb2.TASK_STATE_RUNNING
SUCCEEDED = cluster_pb2.TASK_STATE_SUCCEEDED
FAILED = cluster_pb2.TASK_STATE_FAILED
CANCELLED = cluster_pb2.TASK_STATE_CANCELLED
TASK_STATE_NAMES = {
    QUEUED: "queued",
    RUNNING: "running",
    SUCCEEDED: "succeeded",
    FAILED: "failed",
    CANCELLED: "cancelled",
}

PRIORITIES = {
    "low": common_pb2.PRIORITY_LOW,
    "normal": common_pb2.PRIORITY_NORMAL,
    "high": common_pb2.PRIORITY_HIGH,
}

STAT_FIELDS = (
    "prompt_eval_count",
    "eval_count",
    "total_duration_ns",
    "load_duration_ns",
    "prompt_eval_duration_ns",
    "eval_duration_ns",
)

APPROVE = "approve"
CHANGES_REQUESTED = "changes_requested"


class WorkflowError(Exception):
    """Base of the engine's domain errors; the servicer maps each to a gRPC status."""


class InvalidWorkflow(WorkflowError):
    """A submission the engine refuses; names the request field at fault."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class MissingModel(WorkflowError):
    """A stage of the submitted pipeline needs a model no node has (maps to
    FAILED_PRECONDITION; the REST API answers 422)."""

    def __init__(self, stage: str, model: str) -> None:
        super().__init__(
            f"stage {stage!r} needs model {model!r}, which no node in the cluster has; "
            "pull it onto a node, or submit with wait_for_models to queue the workflow "
            "until a node with it joins"
        )
        self.stage = stage
        self.model = model


class UnknownWorkflow(WorkflowError, LookupError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow {workflow_id!r}")
        self.workflow_id = workflow_id


class WorkflowFinished(WorkflowError):
    """The operation needs an unfinished workflow (maps to FAILED_PRECONDITION)."""


class StageFailed(WorkflowError):
    """A stage's task failed after the dispatcher's retries; carries the reason."""


@dataclass(frozen=True, slots=True)
class Submission:
    """What a client asks for; validated by the engine."""

    name: str
    requirements: str
    language: str = "python"
    priority: int = common_pb2.PRIORITY_NORMAL
    pipeline: str = ""
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # Accept a pipeline whose models no node has yet: its stages wait for one.
    wait_for_models: bool = False
    # A template of the submitter's own (JSON text), instead of a named ``pipeline``.
    pipeline_definition: str = ""


@dataclass(slots=True)
class TaskRec:
    task_id: str
    stage: str
    role: str
    iteration: int
    model: str
    queued_at: float
    state: int = QUEUED
    node: str = ""
    endpoint_id: str = ""
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    stats: dict[str, int] = field(default_factory=dict)
    output: str = ""
    error: str = ""


@dataclass(slots=True)
class StageRec:
    name: str
    type: int
    model: str
    depends_on: tuple[str, ...]
    state: int = QUEUED
    iteration: int = 0
    output: str = ""
    error: str = ""
    verdict: str = ""
    # Notes from the stage that looped back to this one, fed to its prompt as {{feedback}}.
    feedback: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    tasks: list[TaskRec] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Artifact:
    path: str
    content: str
    kind: str
    stage: str


@dataclass(slots=True)
class WorkflowRec:
    id: str
    name: str
    requirements: str
    language: str
    priority: int
    pipeline: str
    # The pipeline template as accepted (a JSON document), so a resumed workflow runs
    # the same stages even if the template files changed meanwhile.
    pipeline_spec: str
    created_at: float
    request_id: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    state: int = WF_PENDING
    error: str = ""
    started_at: float | None = None
    finished_at: float | None = None
    stages: dict[str, StageRec] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    # Insertion order in the store; the paging key.
    seq: int = 0
    # A stage whose model no node has waits for one (else the submission was refused).
    wait_for_models: bool = False

    @property
    def finished(self) -> bool:
        return self.state in WF_TERMINAL

    def summary(self) -> WorkflowRec:
        """A copy without outputs or artifact contents: what lists and events carry."""
        stages = {
            name: dataclasses.replace(
                s,
                output="",
                feedback="",
                tasks=[dataclasses.replace(t, output="", stats=dict(t.stats)) for t in s.tasks],
            )
            for name, s in self.stages.items()
        }
        return dataclasses.replace(
            self,
            stages=stages,
            labels=dict(self.labels),
            artifacts=[dataclasses.replace(a, content="") for a in self.artifacts],
        )


@dataclass(frozen=True, slots=True)
class WorkflowEvent:
    """One thing that happened to a workflow, as WatchWorkflow streams it."""

    type: int  # hive.v1.WorkflowEventType
    at: float
    workflow: WorkflowRec  # a summary copy taken when the event happened
    stage: str = ""
    task: TaskRec | None = None
    message: str = ""
