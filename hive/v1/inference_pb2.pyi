from google.protobuf import struct_pb2 as _struct_pb2
from hive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GenerateRequest(_message.Message):
    __slots__ = ("model", "prompt", "system", "options", "keep_alive", "priority", "task_type", "format", "raw", "suffix", "images", "think", "logprobs", "top_logprobs", "via", "whole", "direct")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    THINK_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    model: str
    prompt: str
    system: str
    options: _struct_pb2.Struct
    keep_alive: str
    priority: _common_pb2.Priority
    task_type: _common_pb2.TaskType
    format: str
    raw: bool
    suffix: str
    images: _containers.RepeatedScalarFieldContainer[str]
    think: str
    logprobs: bool
    top_logprobs: int
    via: _containers.RepeatedScalarFieldContainer[str]
    whole: bool
    direct: bool
    def __init__(self, model: _Optional[str] = ..., prompt: _Optional[str] = ..., system: _Optional[str] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., keep_alive: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., task_type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., format: _Optional[str] = ..., raw: _Optional[bool] = ..., suffix: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ..., think: _Optional[str] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., via: _Optional[_Iterable[str]] = ..., whole: _Optional[bool] = ..., direct: _Optional[bool] = ...) -> None: ...

class GenerateResponse(_message.Message):
    __slots__ = ("assigned", "chunk", "result")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    assigned: TaskAssignment
    chunk: _common_pb2.OutputChunk
    result: _common_pb2.TaskResult
    def __init__(self, assigned: _Optional[_Union[TaskAssignment, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.OutputChunk, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class ChatRequest(_message.Message):
    __slots__ = ("model", "messages", "options", "keep_alive", "priority", "task_type", "format", "tools", "think", "logprobs", "top_logprobs", "via", "whole", "direct")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    TASK_TYPE_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    THINK_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    DIRECT_FIELD_NUMBER: _ClassVar[int]
    model: str
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    options: _struct_pb2.Struct
    keep_alive: str
    priority: _common_pb2.Priority
    task_type: _common_pb2.TaskType
    format: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    think: str
    logprobs: bool
    top_logprobs: int
    via: _containers.RepeatedScalarFieldContainer[str]
    whole: bool
    direct: bool
    def __init__(self, model: _Optional[str] = ..., messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., keep_alive: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., task_type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., format: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ..., think: _Optional[str] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., via: _Optional[_Iterable[str]] = ..., whole: _Optional[bool] = ..., direct: _Optional[bool] = ...) -> None: ...

class ChatResponse(_message.Message):
    __slots__ = ("assigned", "chunk", "result")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    assigned: TaskAssignment
    chunk: _common_pb2.OutputChunk
    result: _common_pb2.TaskResult
    def __init__(self, assigned: _Optional[_Union[TaskAssignment, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.OutputChunk, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class EmbedRequest(_message.Message):
    __slots__ = ("model", "input", "truncate", "options", "keep_alive", "priority", "dimensions", "via")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    model: str
    input: _containers.RepeatedScalarFieldContainer[str]
    truncate: bool
    options: _struct_pb2.Struct
    keep_alive: str
    priority: _common_pb2.Priority
    dimensions: int
    via: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., input: _Optional[_Iterable[str]] = ..., truncate: _Optional[bool] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., keep_alive: _Optional[str] = ..., priority: _Optional[_Union[_common_pb2.Priority, str]] = ..., dimensions: _Optional[int] = ..., via: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedResponse(_message.Message):
    __slots__ = ("assigned", "result")
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    assigned: TaskAssignment
    result: _common_pb2.TaskResult
    def __init__(self, assigned: _Optional[_Union[TaskAssignment, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class TaskAssignment(_message.Message):
    __slots__ = ("task_id", "node", "endpoint_id", "attempt", "agent_address", "follow_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    AGENT_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    node: str
    endpoint_id: str
    attempt: int
    agent_address: str
    follow_token: str
    def __init__(self, task_id: _Optional[str] = ..., node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., attempt: _Optional[int] = ..., agent_address: _Optional[str] = ..., follow_token: _Optional[str] = ...) -> None: ...

class UnloadRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class UnloadResponse(_message.Message):
    __slots__ = ("unloaded_from", "failed")
    UNLOADED_FROM_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    unloaded_from: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, unloaded_from: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ...) -> None: ...

class PullRequest(_message.Message):
    __slots__ = ("model", "endpoints", "insecure")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    model: str
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    insecure: bool
    def __init__(self, model: _Optional[str] = ..., endpoints: _Optional[_Iterable[str]] = ..., insecure: _Optional[bool] = ...) -> None: ...

class PullResponse(_message.Message):
    __slots__ = ("endpoint", "status", "digest", "total", "completed", "error")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    status: str
    digest: str
    total: int
    completed: int
    error: str
    def __init__(self, endpoint: _Optional[str] = ..., status: _Optional[str] = ..., digest: _Optional[str] = ..., total: _Optional[int] = ..., completed: _Optional[int] = ..., error: _Optional[str] = ...) -> None: ...

class DeleteRequest(_message.Message):
    __slots__ = ("model", "endpoints")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    model: str
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[str] = ..., endpoints: _Optional[_Iterable[str]] = ...) -> None: ...

class DeleteResponse(_message.Message):
    __slots__ = ("deleted_from", "failed")
    DELETED_FROM_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    deleted_from: _containers.RepeatedScalarFieldContainer[str]
    failed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, deleted_from: _Optional[_Iterable[str]] = ..., failed: _Optional[_Iterable[str]] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ClusterModel]
    def __init__(self, models: _Optional[_Iterable[_Union[ClusterModel, _Mapping]]] = ...) -> None: ...

class ClusterModel(_message.Message):
    __slots__ = ("info", "endpoints", "loaded_on")
    INFO_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    LOADED_ON_FIELD_NUMBER: _ClassVar[int]
    info: _common_pb2.ModelInfo
    endpoints: _containers.RepeatedScalarFieldContainer[str]
    loaded_on: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, info: _Optional[_Union[_common_pb2.ModelInfo, _Mapping]] = ..., endpoints: _Optional[_Iterable[str]] = ..., loaded_on: _Optional[_Iterable[str]] = ...) -> None: ...
