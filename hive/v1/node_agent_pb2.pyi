from google.protobuf import struct_pb2 as _struct_pb2
from hive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class RunTaskRequest(_message.Message):
    __slots__ = ("task_id", "attempt", "endpoint_id", "model", "type", "generate", "chat", "embed", "options", "keep_alive", "think", "logprobs", "top_logprobs", "via", "adopt", "whole", "follow_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    GENERATE_FIELD_NUMBER: _ClassVar[int]
    CHAT_FIELD_NUMBER: _ClassVar[int]
    EMBED_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    THINK_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    VIA_FIELD_NUMBER: _ClassVar[int]
    ADOPT_FIELD_NUMBER: _ClassVar[int]
    WHOLE_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    endpoint_id: str
    model: str
    type: _common_pb2.TaskType
    generate: GenerateInput
    chat: ChatInput
    embed: EmbedInput
    options: _struct_pb2.Struct
    keep_alive: str
    think: str
    logprobs: bool
    top_logprobs: int
    via: _containers.RepeatedScalarFieldContainer[str]
    adopt: bool
    whole: bool
    follow_token: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., endpoint_id: _Optional[str] = ..., model: _Optional[str] = ..., type: _Optional[_Union[_common_pb2.TaskType, str]] = ..., generate: _Optional[_Union[GenerateInput, _Mapping]] = ..., chat: _Optional[_Union[ChatInput, _Mapping]] = ..., embed: _Optional[_Union[EmbedInput, _Mapping]] = ..., options: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., keep_alive: _Optional[str] = ..., think: _Optional[str] = ..., logprobs: _Optional[bool] = ..., top_logprobs: _Optional[int] = ..., via: _Optional[_Iterable[str]] = ..., adopt: _Optional[bool] = ..., whole: _Optional[bool] = ..., follow_token: _Optional[str] = ...) -> None: ...

class FollowTaskRequest(_message.Message):
    __slots__ = ("task_id", "attempt", "follow_token")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_TOKEN_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    attempt: int
    follow_token: str
    def __init__(self, task_id: _Optional[str] = ..., attempt: _Optional[int] = ..., follow_token: _Optional[str] = ...) -> None: ...

class FollowTaskResponse(_message.Message):
    __slots__ = ("started", "chunk", "result")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    started: TaskStarted
    chunk: _common_pb2.OutputChunk
    result: _common_pb2.TaskResult
    def __init__(self, started: _Optional[_Union[TaskStarted, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.OutputChunk, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class GenerateInput(_message.Message):
    __slots__ = ("prompt", "system", "format", "raw", "suffix", "images")
    PROMPT_FIELD_NUMBER: _ClassVar[int]
    SYSTEM_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    SUFFIX_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    prompt: str
    system: str
    format: str
    raw: bool
    suffix: str
    images: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, prompt: _Optional[str] = ..., system: _Optional[str] = ..., format: _Optional[str] = ..., raw: _Optional[bool] = ..., suffix: _Optional[str] = ..., images: _Optional[_Iterable[str]] = ...) -> None: ...

class ChatInput(_message.Message):
    __slots__ = ("messages", "format", "tools")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    FORMAT_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_common_pb2.ChatMessage]
    format: str
    tools: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, messages: _Optional[_Iterable[_Union[_common_pb2.ChatMessage, _Mapping]]] = ..., format: _Optional[str] = ..., tools: _Optional[_Iterable[str]] = ...) -> None: ...

class EmbedInput(_message.Message):
    __slots__ = ("input", "truncate", "dimensions")
    INPUT_FIELD_NUMBER: _ClassVar[int]
    TRUNCATE_FIELD_NUMBER: _ClassVar[int]
    DIMENSIONS_FIELD_NUMBER: _ClassVar[int]
    input: _containers.RepeatedScalarFieldContainer[str]
    truncate: bool
    dimensions: int
    def __init__(self, input: _Optional[_Iterable[str]] = ..., truncate: _Optional[bool] = ..., dimensions: _Optional[int] = ...) -> None: ...

class RunTaskResponse(_message.Message):
    __slots__ = ("started", "chunk", "result")
    STARTED_FIELD_NUMBER: _ClassVar[int]
    CHUNK_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    started: TaskStarted
    chunk: _common_pb2.OutputChunk
    result: _common_pb2.TaskResult
    def __init__(self, started: _Optional[_Union[TaskStarted, _Mapping]] = ..., chunk: _Optional[_Union[_common_pb2.OutputChunk, _Mapping]] = ..., result: _Optional[_Union[_common_pb2.TaskResult, _Mapping]] = ...) -> None: ...

class TaskStarted(_message.Message):
    __slots__ = ("node", "endpoint_id", "model")
    NODE_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    node: str
    endpoint_id: str
    model: str
    def __init__(self, node: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class PullModelRequest(_message.Message):
    __slots__ = ("endpoint_id", "model", "insecure")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    model: str
    insecure: bool
    def __init__(self, endpoint_id: _Optional[str] = ..., model: _Optional[str] = ..., insecure: _Optional[bool] = ...) -> None: ...

class PullModelResponse(_message.Message):
    __slots__ = ("status", "digest", "total", "completed", "announced_seq")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    ANNOUNCED_SEQ_FIELD_NUMBER: _ClassVar[int]
    status: str
    digest: str
    total: int
    completed: int
    announced_seq: int
    def __init__(self, status: _Optional[str] = ..., digest: _Optional[str] = ..., total: _Optional[int] = ..., completed: _Optional[int] = ..., announced_seq: _Optional[int] = ...) -> None: ...

class DeleteModelRequest(_message.Message):
    __slots__ = ("endpoint_id", "model")
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    endpoint_id: str
    model: str
    def __init__(self, endpoint_id: _Optional[str] = ..., model: _Optional[str] = ...) -> None: ...

class DeleteModelResponse(_message.Message):
    __slots__ = ("announced_seq", "absent")
    ANNOUNCED_SEQ_FIELD_NUMBER: _ClassVar[int]
    ABSENT_FIELD_NUMBER: _ClassVar[int]
    announced_seq: int
    absent: str
    def __init__(self, announced_seq: _Optional[int] = ..., absent: _Optional[str] = ...) -> None: ...

class GetNodeRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetNodeResponse(_message.Message):
    __slots__ = ("node", "telemetry", "running_task_ids")
    NODE_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    telemetry: _common_pb2.NodeTelemetry
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., telemetry: _Optional[_Union[_common_pb2.NodeTelemetry, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...
