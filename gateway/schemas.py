"""The REST API's JSON shapes (Pydantic models, hence typed OpenAPI) and their protobuf
translations.

Enums travel as short lower-case names (``running``, ``code_generation``, ``high``),
timestamps as RFC 3339 strings (``null`` when unset), byte counts as integers. Each
``*_from_proto`` function is a pure translation of one coordinator message.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from google.protobuf import timestamp_pb2
from pydantic import BaseModel, ConfigDict, Field

from hive.v1 import cluster_pb2, common_pb2, inference_pb2, workflow_pb2

PriorityName = Literal["low", "normal", "high"]
WorkflowStateName = Literal["pending", "running", "succeeded", "failed", "cancelled"]
TaskStateName = Literal["unspecified", "queued", "running", "succeeded", "failed", "cancelled"]
# "degraded": the node heartbeats but none of its Ollama endpoints is healthy.
NodeStateName = Literal["unspecified", "healthy", "degraded", "suspect", "lost"]

PRIORITY_TO_PROTO: dict[str, common_pb2.Priority] = {
    "low": common_pb2.PRIORITY_LOW,
    "normal": common_pb2.PRIORITY_NORMAL,
    "high": common_pb2.PRIORITY_HIGH,
}
WORKFLOW_STATE_TO_PROTO: dict[str, workflow_pb2.WorkflowState] = {
    "pending": workflow_pb2.WORKFLOW_STATE_PENDING,
    "running": workflow_pb2.WORKFLOW_STATE_RUNNING,
    "succeeded": workflow_pb2.WORKFLOW_STATE_SUCCEEDED,
    "failed": workflow_pb2.WORKFLOW_STATE_FAILED,
    "cancelled": workflow_pb2.WORKFLOW_STATE_CANCELLED,
}
TERMINAL_WORKFLOW_STATES = frozenset({"succeeded", "failed", "cancelled"})
TERMINAL_TASK_STATES = frozenset({"succeeded", "failed", "cancelled"})

# Bounds on client input; the coordinator checks its own limits too.
MAX_NAME_CHARS = 200
MAX_REQUIREMENTS_CHARS = 100_000
MAX_ID_CHARS = 128


def enum_name(descriptor_name: str, prefix: str) -> str:
    return descriptor_name.removeprefix(prefix).lower()


def priority_name(value: int) -> str:
    return enum_name(common_pb2.Priority.Name(value), "PRIORITY_")


def task_state_name(value: int) -> str:
    return enum_name(cluster_pb2.TaskState.Name(value), "TASK_STATE_")


def workflow_state_name(value: int) -> str:
    return enum_name(workflow_pb2.WorkflowState.Name(value), "WORKFLOW_STATE_")


def task_type_name(value: int) -> str:
    return enum_name(common_pb2.TaskType.Name(value), "TASK_TYPE_")


def node_state_name(value: int) -> str:
    return enum_name(common_pb2.NodeState.Name(value), "NODE_STATE_")


def timestamp(ts: timestamp_pb2.Timestamp) -> datetime | None:
    """A protobuf timestamp, or None when unset (the zero value)."""
    if ts.seconds == 0 and ts.nanos == 0:
        return None
    return ts.ToDatetime(tzinfo=UTC)


# --- workflows --------------------------------------------------------------------


class WorkflowCreate(BaseModel):
    """A development workflow to run, as in the seed's examples."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "REST API with Microservices",
                    "requirements": "Develop a REST API with microservices architecture, "
                    "include comprehensive testing, API documentation, containerization, "
                    "and deployment configuration.",
                    "language": "python",
                    "priority": "normal",
                }
            ]
        },
    )

    name: Annotated[str, Field(min_length=1, max_length=MAX_NAME_CHARS)]
    requirements: Annotated[
        str,
        Field(
            min_length=1,
            max_length=MAX_REQUIREMENTS_CHARS,
            description="What to build, in plain words.",
        ),
    ]
    language: Annotated[
        str, Field(max_length=64, description="Target language; empty lets the pipeline choose.")
    ] = ""
    priority: PriorityName = "normal"
    pipeline: Annotated[
        str,
        Field(max_length=MAX_NAME_CHARS, description="Pipeline template; empty for 'full'."),
    ] = ""
    request_id: Annotated[
        str | None,
        Field(
            max_length=MAX_ID_CHARS,
            description="Makes retries idempotent (or send the Idempotency-Key header).",
        ),
    ] = None
    labels: dict[
        Annotated[str, Field(max_length=MAX_NAME_CHARS)],
        Annotated[str, Field(max_length=MAX_NAME_CHARS)],
    ] = Field(default_factory=dict, max_length=64)
    wait_for_models: bool = Field(
        default=False,
        description="Accept the workflow even when a stage's model is on no node: that stage "
        "waits until a node with the model joins. Without it such a workflow is refused "
        "(422 naming the stage and the model).",
    )
    pipeline_definition: dict[str, Any] | None = Field(
        default=None,
        description="A pipeline of your own instead of a named one: an object with the keys "
        "of the YAML templates (name, description, stages: name, type, model, prompt, "
        "depends_on, ...). Refused, naming the key, when it is not a valid template.",
        json_schema_extra={
            "examples": [
                {
                    "name": "draft_and_review",
                    "stages": [
                        {
                            "name": "draft",
                            "type": "code_generation",
                            "model": "qwen2.5-coder:7b",
                            "prompt": "Write {{language}} code for: {{requirements}}",
                        },
                        {
                            "name": "review",
                            "type": "code_review",
                            "model": "llama3.1:8b",
                            "depends_on": ["draft"],
                            "prompt": "Review this code: {{draft}}",
                        },
                    ],
                }
            ]
        },
    )


class TaskStats(BaseModel):
    prompt_eval_count: int = 0
    eval_count: int = 0
    total_duration_ns: int = 0
    load_duration_ns: int = 0
    prompt_eval_duration_ns: int = 0
    eval_duration_ns: int = 0


class TaskRecord(BaseModel):
    task_id: str
    node: str
    endpoint_id: str
    attempt: int
    state: TaskStateName
    queued_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    stats: TaskStats
    output: str
    error: str


class Stage(BaseModel):
    name: str
    type: str = Field(description="Task type, e.g. 'code_generation'.")
    model: str
    depends_on: list[str]
    state: TaskStateName
    tasks: list[TaskRecord]


class Artifact(BaseModel):
    path: str
    content: str
    kind: str
    stage: str


class WorkflowSummary(BaseModel):
    """A workflow without its stages' outputs: what lists return."""

    id: str
    name: str
    language: str
    priority: str
    pipeline: str
    state: WorkflowStateName | Literal["unspecified"]
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    error: str
    labels: dict[str, str]
    stages_total: int
    stages_finished: int
    wait_for_models: bool = Field(
        description="A stage whose model no node has waits for one (as submitted)."
    )


class Workflow(WorkflowSummary):
    """A workflow with every stage, the tasks that ran it (node, timings, tokens, output),
    and its artifacts."""

    requirements: str
    stages: list[Stage]
    artifacts: list[Artifact]


class WorkflowList(BaseModel):
    workflows: list[WorkflowSummary]
    next_page_token: str = Field(
        description="Pass as page_token for the next page; empty at the end."
    )


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Annotated[str, Field(max_length=1000)] = ""


def stats_from_proto(s: common_pb2.TaskStats) -> TaskStats:
    return TaskStats(
        prompt_eval_count=s.prompt_eval_count,
        eval_count=s.eval_count,
        total_duration_ns=s.total_duration_ns,
        load_duration_ns=s.load_duration_ns,
        prompt_eval_duration_ns=s.prompt_eval_duration_ns,
        eval_duration_ns=s.eval_duration_ns,
    )


def stage_from_proto(s: workflow_pb2.Stage) -> Stage:
    return Stage(
        name=s.name,
        type=task_type_name(s.type),
        model=s.model,
        depends_on=list(s.depends_on),
        state=task_state_name(s.state),  # type: ignore[arg-type]
        tasks=[
            TaskRecord(
                task_id=t.task_id,
                node=t.node,
                endpoint_id=t.endpoint_id,
                attempt=t.attempt,
                state=task_state_name(t.state),  # type: ignore[arg-type]
                queued_at=timestamp(t.queued_at),
                started_at=timestamp(t.started_at),
                finished_at=timestamp(t.finished_at),
                stats=stats_from_proto(t.stats),
                output=t.output,
                error=t.error,
            )
            for t in s.tasks
        ],
    )


def _summary_fields(w: workflow_pb2.Workflow) -> dict[str, object]:
    return {
        "id": w.id,
        "name": w.name,
        "language": w.language,
        "priority": priority_name(w.priority),
        "pipeline": w.pipeline,
        "state": workflow_state_name(w.state),
        "created_at": timestamp(w.created_at),
        "started_at": timestamp(w.started_at),
        "finished_at": timestamp(w.finished_at),
        "error": w.error,
        "labels": dict(w.labels),
        "wait_for_models": w.wait_for_models,
        "stages_total": len(w.stages),
        "stages_finished": sum(
            1 for s in w.stages if task_state_name(s.state) in TERMINAL_TASK_STATES
        ),
    }


def workflow_summary_from_proto(w: workflow_pb2.Workflow) -> WorkflowSummary:
    return WorkflowSummary.model_validate(_summary_fields(w))


def workflow_from_proto(w: workflow_pb2.Workflow) -> Workflow:
    return Workflow.model_validate(
        {
            **_summary_fields(w),
            "requirements": w.requirements,
            "stages": [stage_from_proto(s) for s in w.stages],
            "artifacts": [
                Artifact(path=a.path, content=a.content, kind=a.kind, stage=a.stage)
                for a in w.artifacts
            ],
        }
    )


def submit_request(body: WorkflowCreate, request_id: str) -> workflow_pb2.SubmitWorkflowRequest:
    return workflow_pb2.SubmitWorkflowRequest(
        name=body.name,
        requirements=body.requirements,
        language=body.language,
        priority=PRIORITY_TO_PROTO[body.priority],
        pipeline=body.pipeline,
        request_id=request_id,
        labels=body.labels,
        wait_for_models=body.wait_for_models,
        pipeline_definition=json.dumps(body.pipeline_definition)
        if body.pipeline_definition is not None
        else "",
    )


# --- cluster ----------------------------------------------------------------------


class Gpu(BaseModel):
    index: int
    name: str
    vendor: str
    memory_total_bytes: int
    memory_used_bytes: int
    utilization_percent: float
    temperature_celsius: float
    power_watts: float
    throttled: bool


class LoadedModel(BaseModel):
    name: str
    size_vram_bytes: int
    expires_at: datetime | None


class Endpoint(BaseModel):
    id: str
    url: str
    gpu_indices: list[int]
    num_parallel: int
    max_queue: int
    version: str
    models: list[str]
    healthy: bool
    loaded_models: list[LoadedModel]
    in_flight: int
    error: str
    # Federation: the Hive cluster this endpoint is the gateway of; "" for an Ollama.
    hive_cluster: str = ""


class Node(BaseModel):
    name: str
    state: NodeStateName
    draining: bool
    labels: dict[str, str]
    specializations: list[str]
    features: list[str]
    agent_address: str
    agent_version: str
    telemetry_provider: str
    gpus: list[Gpu]
    endpoints: list[Endpoint]
    last_heartbeat: datetime | None
    connected_at: datetime | None
    reconnects: int
    running_tasks: int


class ClusterSummary(BaseModel):
    nodes_total: int
    nodes_healthy: int
    nodes_degraded: Annotated[
        int, Field(description="Nodes that heartbeat but have no healthy Ollama endpoint.")
    ]
    gpus: int
    vram_total_bytes: int
    vram_used_bytes: int
    endpoints: int
    models: list[str]
    running_tasks: int
    queued_tasks: int


CoordinatorRole = Literal["leader", "standby", "gone"]
COORDINATOR_ROLES: tuple[CoordinatorRole, ...] = ("leader", "standby", "gone")


def coordinator_role(role: str) -> CoordinatorRole:
    """A role this gateway knows; one it does not (a newer coordinator's) reads as standby."""
    return next((known for known in COORDINATOR_ROLES if known == role), "standby")


class Coordinator(BaseModel):
    """One coordinator sharing the cluster's state, as the leader sees it."""

    address: Annotated[str, Field(description="Its gRPC address as clients reach it.")]
    role: Annotated[
        CoordinatorRole,
        Field(
            description='"leader" holds the lease and serves; "standby" redirects to it and '
            'takes over when the lease expires; "gone" has not been seen for a lease.'
        ),
    ]
    epoch: Annotated[
        int, Field(description="The fencing epoch it holds or last saw; 0 with SQLite.")
    ]
    lease_age_seconds: Annotated[
        float, Field(description="The leader's: since it last renewed its lease; else 0.")
    ]
    seen_age_seconds: Annotated[
        float, Field(description="Since it last wrote its row in the shared store.")
    ]


class ClusterStatus(BaseModel):
    """Cluster health and capacity: every node with its GPUs, Ollama endpoints and models,
    and the coordinators (the leader first)."""

    # The cluster's name (coordinator.name, or the coordinator's host and port).
    cluster_name: str = ""
    summary: ClusterSummary
    nodes: list[Node]
    coordinators: Annotated[
        list[Coordinator],
        Field(
            description="The leader first, then the standbys; empty when the coordinator "
            "could not read them from its store in time."
        ),
    ] = []


def node_from_proto(n: cluster_pb2.NodeStatus) -> Node:
    info, tel = n.info, n.telemetry
    gpu_tel = {g.index: g for g in tel.gpus}
    ep_tel = {e.id: e for e in tel.endpoints}
    gpus = []
    for g in info.gpus:
        t = gpu_tel.get(g.index, common_pb2.GpuTelemetry())
        gpus.append(
            Gpu(
                index=g.index,
                name=g.name,
                vendor=enum_name(common_pb2.GpuVendor.Name(g.vendor), "GPU_VENDOR_"),
                memory_total_bytes=g.memory_total_bytes,
                memory_used_bytes=t.memory_used_bytes,
                utilization_percent=t.utilization_percent,
                temperature_celsius=t.temperature_celsius,
                power_watts=t.power_watts,
                throttled=t.throttled,
            )
        )
    endpoints = []
    for e in info.endpoints:
        t2 = ep_tel.get(e.id, common_pb2.EndpointTelemetry())
        endpoints.append(
            Endpoint(
                id=e.id,
                url=e.url,
                gpu_indices=list(e.gpu_indices),
                num_parallel=e.num_parallel,
                max_queue=e.max_queue,
                version=e.version,
                models=[m.name for m in e.models],
                hive_cluster=e.hive_cluster,
                healthy=t2.healthy,
                loaded_models=[
                    LoadedModel(
                        name=m.name,
                        size_vram_bytes=m.size_vram_bytes,
                        expires_at=timestamp(m.expires_at),
                    )
                    for m in t2.loaded_models
                ],
                in_flight=t2.in_flight,
                error=t2.error,
            )
        )
    return Node(
        name=info.name,
        state=node_state_name(n.state),  # type: ignore[arg-type]
        draining=n.draining,
        labels=dict(info.labels),
        specializations=list(info.specializations),
        features=list(info.features),
        agent_address=info.agent_address,
        agent_version=info.agent_version,
        telemetry_provider=info.telemetry_provider,
        gpus=gpus,
        endpoints=endpoints,
        last_heartbeat=timestamp(n.last_heartbeat),
        connected_at=timestamp(n.connected_at),
        reconnects=n.reconnects,
        running_tasks=n.running_tasks,
    )


def cluster_status_from_proto(r: cluster_pb2.GetClusterStatusResponse) -> ClusterStatus:
    s = r.summary
    return ClusterStatus(
        cluster_name=r.cluster_name,
        summary=ClusterSummary(
            nodes_total=s.nodes_total,
            nodes_healthy=s.nodes_healthy,
            nodes_degraded=s.nodes_degraded,
            gpus=s.gpus,
            vram_total_bytes=s.vram_total_bytes,
            vram_used_bytes=s.vram_used_bytes,
            endpoints=s.endpoints,
            models=list(s.models),
            running_tasks=s.running_tasks,
            queued_tasks=s.queued_tasks,
        ),
        nodes=[node_from_proto(n) for n in r.nodes],
        coordinators=[
            Coordinator(
                address=c.address,
                role=coordinator_role(c.role),
                epoch=c.epoch,
                lease_age_seconds=c.lease_age_seconds,
                seen_age_seconds=c.seen_age_seconds,
            )
            for c in r.coordinators
        ],
    )


class Health(BaseModel):
    status: Annotated[
        Literal["healthy", "degraded"],
        Field(
            description='"degraded" while a node heartbeats but none of its Ollama endpoints '
            "is healthy (it gets no work); the answer is 200 either way."
        ),
    ]
    version: str
    nodes_healthy: int
    nodes_degraded: Annotated[
        list[str],
        Field(
            description="The degraded nodes by name; `hive status` shows their endpoints' errors."
        ),
    ] = []


class DistributedHealth(BaseModel):
    status: Literal["healthy", "degraded", "down"]
    nodes: dict[str, NodeStateName] = Field(description="Every node's state by name.")
    nodes_total: int
    nodes_healthy: int
    nodes_degraded: int = 0


# --- optimizer and metrics ----------------------------------------------------------


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: Annotated[bool, Field(description="Plan the actions without applying them.")] = False


class Finding(BaseModel):
    """A bottleneck found, with its evidence."""

    kind: str
    severity: Literal["unspecified", "info", "warning", "critical"]
    subject: str
    evidence: str
    recommendation: str
    detected_at: datetime | None


class OptimizationAction(BaseModel):
    kind: str
    node: str
    endpoint_id: str
    model: str
    reason: str
    before: str
    after: str


class OptimizationResult(BaseModel):
    actions: list[OptimizationAction]
    findings: list[Finding]
    applied: bool


class LatencySummary(BaseModel):
    p50: float
    p95: float
    p99: float
    count: int


class NodePerformance(BaseModel):
    node: str
    utilization_percent: float
    tokens_per_second: float
    tasks_succeeded: int
    tasks_failed: int


class PerformanceMetrics(BaseModel):
    utilization_percent: float
    tokens_per_second: float
    tasks_per_second: float
    completion_seconds: LatencySummary
    queue_seconds: LatencySummary
    nodes: list[NodePerformance]
    findings: list[Finding]
    tasks_succeeded: int
    tasks_failed: int


def finding_from_proto(f: cluster_pb2.Finding) -> Finding:
    return Finding(
        kind=f.kind,
        severity=enum_name(cluster_pb2.Severity.Name(f.severity), "SEVERITY_"),  # type: ignore[arg-type]
        subject=f.subject,
        evidence=f.evidence,
        recommendation=f.recommendation,
        detected_at=timestamp(f.detected_at),
    )


def latency_from_proto(s: cluster_pb2.LatencySummary) -> LatencySummary:
    return LatencySummary(p50=s.p50, p95=s.p95, p99=s.p99, count=s.count)


def optimization_from_proto(r: cluster_pb2.OptimizeClusterResponse) -> OptimizationResult:
    return OptimizationResult(
        actions=[
            OptimizationAction(
                kind=a.kind,
                node=a.node,
                endpoint_id=a.endpoint_id,
                model=a.model,
                reason=a.reason,
                before=a.before,
                after=a.after,
            )
            for a in r.actions
        ],
        findings=[finding_from_proto(f) for f in r.findings],
        applied=r.applied,
    )


def metrics_from_proto(r: cluster_pb2.GetPerformanceMetricsResponse) -> PerformanceMetrics:
    return PerformanceMetrics(
        utilization_percent=r.utilization_percent,
        tokens_per_second=r.tokens_per_second,
        tasks_per_second=r.tasks_per_second,
        completion_seconds=latency_from_proto(r.completion_seconds),
        queue_seconds=latency_from_proto(r.queue_seconds),
        nodes=[
            NodePerformance(
                node=n.node,
                utilization_percent=n.utilization_percent,
                tokens_per_second=n.tokens_per_second,
                tasks_succeeded=n.tasks_succeeded,
                tasks_failed=n.tasks_failed,
            )
            for n in r.nodes
        ],
        findings=[finding_from_proto(f) for f in r.findings],
        tasks_succeeded=r.tasks_succeeded,
        tasks_failed=r.tasks_failed,
    )


def model_names(r: inference_pb2.ListModelsResponse) -> list[str]:
    return [m.info.name for m in r.models]
