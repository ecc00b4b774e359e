import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from hive.v1 import cluster_pb2 as _cluster_pb2
from hive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_STATE_UNSPECIFIED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_PENDING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_RUNNING: _ClassVar[WorkflowState]
    WORKFLOW_STATE_SUCCEEDED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_FAILED: _ClassVar[WorkflowState]
    WORKFLOW_STATE_CANCELLED: _ClassVar[WorkflowState]

class WorkflowEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    WORKFLOW_EVENT_TYPE_UNSPECIFIED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_SNAPSHOT: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_WORKFLOW_STATE: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_STAGE_STARTED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_STAGE_FINISHED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_ASSIGNED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_TASK_FINISHED: _ClassVar[WorkflowEventType]
    WORKFLOW_EVENT_TYPE_STAGE_WAITING: _ClassVar[WorkflowEventType]
WORKFLOW_STATE_UNSPECIFIED: WorkflowState
WORKFLOW_STATE_PENDING: WorkflowState
WORKFLOW_STATE_RUNNING: WorkflowState
WORKFLOW_STATE_SUCCEEDED: WorkflowState
WORKFLOW_STATE_FAILED: WorkflowState
WORKFLOW_STATE_CANCELLED: WorkflowState
WORKFLOW_EVENT_TYPE_UNSPECIFIED: WorkflowEventType
WORKFLOW_EVENT_TYPE_SNAPSHOT: WorkflowEventType
WORKFLOW_EVENT_TYPE_WORKFLOW_STATE: WorkflowEventType
WORKFLOW_EVENT_TYPE_STAGE_STARTED: WorkflowEventType
WORKFLOW_EVENT_TYPE_STAGE_FINISHED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_ASSIGNED: WorkflowEventType
WORKFLOW_EVENT_TYPE_TASK_FINISHED: WorkflowEventType
WORKFLOW_EVENT_TYPE_STAGE_WAITING: WorkflowEventType

class SubmitWorkflowRequest(_message.Message):
    __slots__ = ("name", "requirements", "language", "priority", "pipeline", "request_id", "labels", "wait_for_models", "pipeline_definition")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_MODELS_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_DEFINITION_FIELD_NUMBER: _ClassVar[int]
    name: str
    requirements: str
    language: str
    priority: _common_pb2.Priority
    pipeline: str
    request_id: str
    labels: _containers.ScalarMap[str, str]
    wait_for_models: bool
    pipeline_definition: str
    def __init__(self, name: _Optional[str] = ..., requirements: _Optional[str] = ..., language: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., pipeline: _Optional[str] = ..., request_id: _Optional[str] = ..., labels: _Optional[_Mapping[str, str]] = ..., wait_for_models: _Optional[bool] = ..., pipeline_definition: _Optional[str] = ...) -> None: ...

class SubmitWorkflowResponse(_message.Message):
    __slots__ = ("workflow", "created")
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    created: bool
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class Workflow(_message.Message):
    __slots__ = ("id", "name", "requirements", "language", "priority", "pipeline", "state", "stages", "created_at", "started_at", "finished_at", "error", "artifacts", "labels", "wait_for_models")
    class LabelsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    REQUIREMENTS_FIELD_NUMBER: _ClassVar[int]
    LANGUAGE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    PIPELINE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    STAGES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ARTIFACTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    WAIT_FOR_MODELS_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    requirements: str
    language: str
    priority: _common_pb2.Priority
    pipeline: str
    state: WorkflowState
    stages: _containers.RepeatedCompositeFieldContainer[Stage]
    created_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    error: str
    artifacts: _containers.RepeatedCompositeFieldContainer[Artifact]
    labels: _containers.ScalarMap[str, str]
    wait_for_models: bool
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., requirements: _Optional[str] = ..., language: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., pipeline: _Optional[str] = ..., state: _Optional[_Union[WorkflowState, str]] = ..., stages: _Optional[_Iterable[_Union[Stage, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., error: _Optional[str] = ..., artifacts: _Optional[_Iterable[_Union[Artifact, _Mapping]]] = ..., labels: _Optional[_Mapping[str, str]] = ..., wait_for_models: _Optional[bool] = ...) -> None: ...

class Stage(_message.Message):
    __slots__ = ("name", "type", "model", "depends_on", "state", "tasks", "output", "error", "iteration", "started_at", "finished_at", "verdict")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEPENDS_ON_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    TASKS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: _common_pb2.TaskType
    model: str
    depends_on: _containers.RepeatedScalarFieldContainer[str]
    state: _cluster_pb2.TaskState
    tasks: _containers.RepeatedCompositeFieldContainer[TaskRecord]
    output: str
    error: str
    iteration: int
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    verdict: str
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., model: _Optional[str] = ..., depends_on: _Optional[_Iterable[str]] = ..., state: _Optional[_Union[_cluster_pb2.TaskState, str]] = ..., tasks: _Optional[_Iterable[_Union[TaskRecord, _Mapping]]] = ..., output: _Optional[str] = ..., error: _Optional[str] = ..., iteration: _Optional[int] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., verdict: _Optional[str] = ...) -> None: ...

class TaskRecord(_message.Message):
    __slots__ = ("task_id", "node", "endpoint_id", "attempt", "state", "queued_at", "started_at", "finished_at", "stats", "output", "error", "role", "iteration")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    QUEUED_AT_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    ITERATION_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node: str
    endpoint_id: str
    attempt: int
    state: _cluster_pb2.TaskState
    queued_at: _timestamp_pb2.Timestamp
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    stats: _common_pb2.TaskStats
    output: str
    error: str
    role: str
    iteration: int
    def __init__(self, task_id: _Optional[str] = ..., node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., attempt: _Optional[int] = ..., state: _Optional[_Union[_cluster_pb2.TaskState, str]] = ..., queued_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., stats: _Optional[_Union[_common_pb2.TaskStats, _Mapping]] = ..., output: _Optional[str] = ..., error: _Optional[str] = ..., role: _Optional[str] = ..., iteration: _Optional[int] = ...) -> None: ...

class Artifact(_message.Message):
    __slots__ = ("path", "content", "kind", "stage")
    PATH_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    path: str
    content: str
    kind: str
    stage: str
    def __init__(self, path: _Optional[str] = ..., content: _Optional[str] = ..., kind: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class GetWorkflowRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class GetWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class ListWorkflowsRequest(_message.Message):
    __slots__ = ("state", "page_size", "page_token")
    STATE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    state: WorkflowState
    page_size: int
    page_token: str
    def __init__(self, state: _Optional[_Union[WorkflowState, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListWorkflowsResponse(_message.Message):
    __slots__ = ("workflows", "next_page_token")
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[Workflow]
    next_page_token: str
    def __init__(self, workflows: _Optional[_Iterable[_Union[Workflow, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CancelWorkflowRequest(_message.Message):
    __slots__ = ("id", "reason")
    ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    id: str
    reason: str
    def __init__(self, id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class CancelWorkflowResponse(_message.Message):
    __slots__ = ("workflow",)
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    workflow: Workflow
    def __init__(self, workflow: _Optional[_Union[Workflow, _Mapping]] = ...) -> None: ...

class WatchWorkflowRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class WatchWorkflowResponse(_message.Message):
    __slots__ = ("at", "workflow", "stage", "task", "type", "message")
    AT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    at: _timestamp_pb2.Timestamp
    workflow: Workflow
    stage: str
    task: _cluster_pb2.TaskEvent
    type: WorkflowEventType
    message: str
    def __init__(self, at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., workflow: _Optional[_Union[Workflow, _Mapping]] = ..., stage: _Optional[str] = ..., task: _Optional[_Union[_cluster_pb2.TaskEvent, _Mapping]] = ..., type: _Optional[_Union[WorkflowEventType, str]] = ..., message: _Optional[str] = ...) -> None: ...
