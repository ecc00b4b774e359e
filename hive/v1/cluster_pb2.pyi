import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TaskState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_STATE_UNSPECIFIED: _ClassVar[TaskState]
    TASK_STATE_QUEUED: _ClassVar[TaskState]
    TASK_STATE_RUNNING: _ClassVar[TaskState]
    TASK_STATE_SUCCEEDED: _ClassVar[TaskState]
    TASK_STATE_FAILED: _ClassVar[TaskState]
    TASK_STATE_CANCELLED: _ClassVar[TaskState]

class Severity(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SEVERITY_UNSPECIFIED: _ClassVar[Severity]
    SEVERITY_INFO: _ClassVar[Severity]
    SEVERITY_WARNING: _ClassVar[Severity]
    SEVERITY_CRITICAL: _ClassVar[Severity]
TASK_STATE_UNSPECIFIED: TaskState
TASK_STATE_QUEUED: TaskState
TASK_STATE_RUNNING: TaskState
TASK_STATE_SUCCEEDED: TaskState
TASK_STATE_FAILED: TaskState
TASK_STATE_CANCELLED: TaskState
SEVERITY_UNSPECIFIED: Severity
SEVERITY_INFO: Severity
SEVERITY_WARNING: Severity
SEVERITY_CRITICAL: Severity

class GetClusterStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetClusterStatusResponse(_message.Message):
    __slots__ = ("nodes", "summary", "cluster_name", "coordinators", "metrics_address", "enroll_address")
    NODES_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    COORDINATORS_FIELD_NUMBER: _ClassVar[int]
    METRICS_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ENROLL_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    nodes: _containers.RepeatedCompositeFieldContainer[NodeStatus]
    summary: ClusterSummary
    cluster_name: str
    coordinators: _containers.RepeatedCompositeFieldContainer[CoordinatorStatus]
    metrics_address: str
    enroll_address: str
    def __init__(self, nodes: _Optional[_Iterable[_Union[NodeStatus, _Mapping]]] = ..., summary: _Optional[_Union[ClusterSummary, _Mapping]] = ..., cluster_name: _Optional[str] = ..., coordinators: _Optional[_Iterable[_Union[CoordinatorStatus, _Mapping]]] = ..., metrics_address: _Optional[str] = ..., enroll_address: _Optional[str] = ...) -> None: ...

class CoordinatorStatus(_message.Message):
    __slots__ = ("address", "role", "epoch", "lease_age_seconds", "seen_age_seconds")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    EPOCH_FIELD_NUMBER: _ClassVar[int]
    LEASE_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    SEEN_AGE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    address: str
    role: str
    epoch: int
    lease_age_seconds: float
    seen_age_seconds: float
    def __init__(self, address: _Optional[str] = ..., role: _Optional[str] = ..., epoch: _Optional[int] = ..., lease_age_seconds: _Optional[float] = ..., seen_age_seconds: _Optional[float] = ...) -> None: ...

class NodeStatus(_message.Message):
    __slots__ = ("info", "state", "draining", "telemetry", "last_heartbeat", "connected_at", "session_id", "reconnects", "running_tasks")
    INFO_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.NodeInfo
    state: _common_pb2.NodeState
    draining: bool
    telemetry: _common_pb2.NodeTelemetry
    last_heartbeat: _timestamp_pb2.Timestamp
    connected_at: _timestamp_pb2.Timestamp
    session_id: str
    reconnects: int
    running_tasks: int
    def __init__(self, info: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., state: _Optional[_Union[_common_pb2.NodeState, str]] = ..., draining: _Optional[bool] = ..., telemetry: _Optional[_Union[_common_pb2.NodeTelemetry, _Mapping]] = ..., last_heartbeat: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., session_id: _Optional[str] = ..., reconnects: _Optional[int] = ..., running_tasks: _Optional[int] = ...) -> None: ...

class ClusterSummary(_message.Message):
    __slots__ = ("nodes_total", "nodes_healthy", "gpus", "vram_total_bytes", "vram_used_bytes", "endpoints", "models", "running_tasks", "queued_tasks", "nodes_degraded")
    NODES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    NODES_HEALTHY_FIELD_NUMBER: _ClassVar[int]
    GPUS_FIELD_NUMBER: _ClassVar[int]
    VRAM_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    VRAM_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASKS_FIELD_NUMBER: _ClassVar[int]
    QUEUED_TASKS_FIELD_NUMBER: _ClassVar[int]
    NODES_DEGRADED_FIELD_NUMBER: _ClassVar[int]
    nodes_total: int
    nodes_healthy: int
    gpus: int
    vram_total_bytes: int
    vram_used_bytes: int
    endpoints: int
    models: _containers.RepeatedScalarFieldContainer[str]
    running_tasks: int
    queued_tasks: int
    nodes_degraded: int
    def __init__(self, nodes_total: _Optional[int] = ..., nodes_healthy: _Optional[int] = ..., gpus: _Optional[int] = ..., vram_total_bytes: _Optional[int] = ..., vram_used_bytes: _Optional[int] = ..., endpoints: _Optional[int] = ..., models: _Optional[_Iterable[str]] = ..., running_tasks: _Optional[int] = ..., queued_tasks: _Optional[int] = ..., nodes_degraded: _Optional[int] = ...) -> None: ...

class WatchClusterRequest(_message.Message):
    __slots__ = ("include_telemetry",)
    INCLUDE_TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    include_telemetry: bool
    def __init__(self, include_telemetry: _Optional[bool] = ...) -> None: ...

class WatchClusterResponse(_message.Message):
    __slots__ = ("at", "node_joined", "node_state_changed", "telemetry", "task", "workflow")
    AT_FIELD_NUMBER: _ClassVar[int]
    NODE_JOINED_FIELD_NUMBER: _ClassVar[int]
    NODE_STATE_CHANGED_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    node_joined: NodeStatus
    node_state_changed: NodeStatus
    telemetry: NodeStatus
    task: TaskEvent
    workflow: WorkflowChange
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., node_joined: _Optional[_Union[NodeStatus, _Mapping]] = ..., node_state_changed: _Optional[_Union[NodeStatus, _Mapping]] = ..., telemetry: _Optional[_Union[NodeStatus, _Mapping]] = ..., task: _Optional[_Union[TaskEvent, _Mapping]] = ..., workflow: _Optional[_Union[WorkflowChange, _Mapping]] = ...) -> None: ...

class WorkflowChange(_message.Message):
    __slots__ = ("workflow_id", "name", "stage", "state", "message")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    name: str
    stage: str
    state: str
    message: str
    def __init__(self, workflow_id: _Optional[str] = ..., name: _Optional[str] = ..., stage: _Optional[str] = ..., state: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class TaskEvent(_message.Message):
    __slots__ = ("task_id", "state", "node", "endpoint_id", "model", "type", "attempt", "error")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    state: TaskState
    node: str
    endpoint_id: str
    model: str
    type: _common_pb2.TaskType
    attempt: int
    error: str
    def __init__(self, task_id: _Optional[str] = ..., state: _Optional[_Union[TaskState, str]] = ..., node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., model: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., attempt: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class DrainNodeRequest(_message.Message):
    __slots__ = ("node", "drain", "reason")
    NODE_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    node: str
    drain: bool
    reason: str
    def __init__(self, node: _Optional[str] = ..., drain: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class DrainNodeResponse(_message.Message):
    __slots__ = ("node",)
    NODE_FIELD_NUMBER: _ClassVar[int]
    node: NodeStatus
    def __init__(self, node: _Optional[_Union[NodeStatus, _Mapping]] = ...) -> None: ...

class ExplainTaskRequest(_message.Message):
    __slots__ = ("task_id",)
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    def __init__(self, task_id: _Optional[str] = ...) -> None: ...

class ExplainTaskResponse(_message.Message):
    __slots__ = ("task_id", "decision", "estimated_prompt_tokens", "estimated_output_tokens", "output_estimate_source", "via")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_ESTIMATE_SOURCE_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    decision: RoutingDecision
    estimated_prompt_tokens: int
    estimated_output_tokens: int
    output_estimate_source: str
    via: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., decision: _Optional[_Union[RoutingDecision, _Mapping]] = ..., estimated_prompt_tokens: _Optional[int] = ..., estimated_output_tokens: _Optional[int] = ..., output_estimate_source: _Optional[str] = ..., via: _Optional[_Iterable[str]] = ...) -> None: ...

class RoutingDecision(_message.Message):
    __slots__ = ("candidates", "rejected", "chosen_node", "chosen_endpoint_id")
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_NODE_FIELD_NUMBER: _ClassVar[int]
    CHOSEN_ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    candidates: _containers.RepeatedCompositeFieldContainer[RoutingCandidate]
    rejected: _containers.RepeatedCompositeFieldContainer[RoutingRejection]
    chosen_node: str
    chosen_endpoint_id: str
    def __init__(self, candidates: _Optional[_Iterable[_Union[RoutingCandidate, _Mapping]]] = ..., rejected: _Optional[_Iterable[_Union[RoutingRejection, _Mapping]]] = ..., chosen_node: _Optional[str] = ..., chosen_endpoint_id: _Optional[str] = ...) -> None: ...

class RoutingCandidate(_message.Message):
    __slots__ = ("node", "endpoint_id", "total", "components")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    node: str
    endpoint_id: str
    total: float
    components: _containers.RepeatedCompositeFieldContainer[ScoreComponent]
    def __init__(self, node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., total: _Optional[float] = ..., components: _Optional[_Iterable[_Union[ScoreComponent, _Mapping]]] = ...) -> None: ...

class ScoreComponent(_message.Message):
    __slots__ = ("name", "value", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    weight: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., weight: _Optional[float] = ...) -> None: ...

class RoutingRejection(_message.Message):
    __slots__ = ("node", "endpoint_id", "reason", "detail")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    node: str
    endpoint_id: str
    reason: str
    detail: str
    def __init__(self, node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., reason: _Optional[str] = ..., detail: _Optional[str] = ...) -> None: ...

class OptimizeClusterRequest(_message.Message):
    __slots__ = ("dry_run",)
    DRY_RUN_FIELD_NUMBER: _ClassVar[int]
    dry_run: bool
    def __init__(self, dry_run: _Optional[bool] = ...) -> None: ...

class OptimizeClusterResponse(_message.Message):
    __slots__ = ("actions", "findings", "applied", "deferred")
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    actions: _containers.RepeatedCompositeFieldContainer[OptimizationAction]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    applied: bool
    deferred: _containers.RepeatedCompositeFieldContainer[OptimizationAction]
    def __init__(self, actions: _Optional[_Iterable[_Union[OptimizationAction, _Mapping]]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., applied: _Optional[bool] = ..., deferred: _Optional[_Iterable[_Union[OptimizationAction, _Mapping]]] = ...) -> None: ...

class OptimizationAction(_message.Message):
    __slots__ = ("kind", "node", "endpoint_id", "model", "reason", "before", "after", "at", "source", "deferred", "ok", "error")
    KIND_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    BEFORE_FIELD_NUMBER: _ClassVar[int]
    AFTER_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    DEFERRED_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    kind: str
    node: str
    endpoint_id: str
    model: str
    reason: str
    before: str
    after: str
    at: _timestamp_pb2.Timestamp
    source: str
    deferred: str
    ok: bool
    error: str
    def __init__(self, kind: _Optional[str] = ..., node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., before: _Optional[str] = ..., after: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., source: _Optional[str] = ..., deferred: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class Finding(_message.Message):
    __slots__ = ("kind", "severity", "subject", "evidence", "recommendation", "detected_at")
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEVERITY_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_FIELD_NUMBER: _ClassVar[int]
    RECOMMENDATION_FIELD_NUMBER: _ClassVar[int]
    DETECTED_AT_FIELD_NUMBER: _ClassVar[int]
    kind: str
    severity: Severity
    subject: str
    evidence: str
    recommendation: str
    detected_at: _timestamp_pb2.Timestamp
    def __init__(self, kind: _Optional[str] = ..., severity: _Optional[_Union[Severity, str]] = ..., subject: _Optional[str] = ..., evidence: _Optional[str] = ..., recommendation: _Optional[str] = ..., detected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetPerformanceMetricsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetPerformanceMetricsResponse(_message.Message):
    __slots__ = ("utilization_percent", "tokens_per_second", "tasks_per_second", "completion_seconds", "queue_seconds", "nodes", "findings", "tasks_succeeded", "tasks_failed", "models", "recent_changes", "window_seconds")
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TASKS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    NODES_FIELD_NUMBER: _ClassVar[int]
    FINDINGS_FIELD_NUMBER: _ClassVar[int]
    TASKS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    RECENT_CHANGES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_SECONDS_FIELD_NUMBER: _ClassVar[int]
    utilization_percent: float
    tokens_per_second: float
    tasks_per_second: float
    completion_seconds: LatencySummary
    queue_seconds: LatencySummary
    nodes: _containers.RepeatedCompositeFieldContainer[NodePerformance]
    findings: _containers.RepeatedCompositeFieldContainer[Finding]
    tasks_succeeded: int
    tasks_failed: int
    models: _containers.RepeatedCompositeFieldContainer[ModelPerformance]
    recent_changes: _containers.RepeatedCompositeFieldContainer[OptimizationAction]
    window_seconds: float
    def __init__(self, utilization_percent: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., tasks_per_second: _Optional[float] = ..., completion_seconds: _Optional[_Union[LatencySummary, _Mapping]] = ..., queue_seconds: _Optional[_Union[LatencySummary, _Mapping]] = ..., nodes: _Optional[_Iterable[_Union[NodePerformance, _Mapping]]] = ..., findings: _Optional[_Iterable[_Union[Finding, _Mapping]]] = ..., tasks_succeeded: _Optional[int] = ..., tasks_failed: _Optional[int] = ..., models: _Optional[_Iterable[_Union[ModelPerformance, _Mapping]]] = ..., recent_changes: _Optional[_Iterable[_Union[OptimizationAction, _Mapping]]] = ..., window_seconds: _Optional[float] = ...) -> None: ...

class ModelPerformance(_message.Message):
    __slots__ = ("model", "tasks_per_second", "tokens_per_second", "completion_seconds", "tasks_succeeded", "loaded_on", "forecast_tasks_per_second")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TASKS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    COMPLETION_SECONDS_FIELD_NUMBER: _ClassVar[int]
    TASKS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    LOADED_ON_FIELD_NUMBER: _ClassVar[int]
    FORECAST_TASKS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    model: str
    tasks_per_second: float
    tokens_per_second: float
    completion_seconds: LatencySummary
    tasks_succeeded: int
    loaded_on: _containers.RepeatedScalarFieldContainer[str]
    forecast_tasks_per_second: float
    def __init__(self, model: _Optional[str] = ..., tasks_per_second: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., completion_seconds: _Optional[_Union[LatencySummary, _Mapping]] = ..., tasks_succeeded: _Optional[int] = ..., loaded_on: _Optional[_Iterable[str]] = ..., forecast_tasks_per_second: _Optional[float] = ...) -> None: ...

class LatencySummary(_message.Message):
    __slots__ = ("p50", "p95", "p99", "count")
    P50_FIELD_NUMBER: _ClassVar[int]
    P95_FIELD_NUMBER: _ClassVar[int]
    P99_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    p50: float
    p95: float
    p99: float
    count: int
    def __init__(self, p50: _Optional[float] = ..., p95: _Optional[float] = ..., p99: _Optional[float] = ..., count: _Optional[int] = ...) -> None: ...

class NodePerformance(_message.Message):
    __slots__ = ("node", "utilization_percent", "tokens_per_second", "tasks_succeeded", "tasks_failed")
    NODE_FIELD_NUMBER: _ClassVar[int]
    UTILIZATION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    TOKENS_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    TASKS_SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    TASKS_FAILED_FIELD_NUMBER: _ClassVar[int]
    node: str
    utilization_percent: float
    tokens_per_second: float
    tasks_succeeded: int
    tasks_failed: int
    def __init__(self, node: _Optional[str] = ..., utilization_percent: _Optional[float] = ..., tokens_per_second: _Optional[float] = ..., tasks_succeeded: _Optional[int] = ..., tasks_failed: _Optional[int] = ...) -> None: ...
