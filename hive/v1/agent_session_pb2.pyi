from hive.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConnectRequest(_message.Message):
    __slots__ = ("register", "heartbeat", "ack")
    REGISTER_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    register: Register
    heartbeat: Heartbeat
    ack: ControlAck
    def __init__(self, register: _Optional[_Union[Register, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., ack: _Optional[_Union[ControlAck, _Mapping]] = ...) -> None: ...

class Register(_message.Message):
    __slots__ = ("node", "running_task_ids", "reconnects")
    NODE_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    RECONNECTS_FIELD_NUMBER: _ClassVar[int]
    node: _common_pb2.NodeInfo
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    reconnects: int
    def __init__(self, node: _Optional[_Union[_common_pb2.NodeInfo, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., reconnects: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("seq", "telemetry", "running_task_ids", "endpoints")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TELEMETRY_FIELD_NUMBER: _ClassVar[int]
    RUNNING_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    telemetry: _common_pb2.NodeTelemetry
    running_task_ids: _containers.RepeatedScalarFieldContainer[str]
    endpoints: _containers.RepeatedCompositeFieldContainer[_common_pb2.OllamaEndpoint]
    def __init__(self, seq: _Optional[int] = ..., telemetry: _Optional[_Union[_common_pb2.NodeTelemetry, _Mapping]] = ..., running_task_ids: _Optional[_Iterable[str]] = ..., endpoints: _Optional[_Iterable[_Union[_common_pb2.OllamaEndpoint, _Mapping]]] = ...) -> None: ...

class ControlAck(_message.Message):
    __slots__ = ("request_id", "ok", "error")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    ok: bool
    error: str
    def __init__(self, request_id: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ...) -> None: ...

class ConnectResponse(_message.Message):
    __slots__ = ("welcome", "drain", "warm_model")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    WARM_MODEL_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    drain: Drain
    warm_model: WarmModel
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., drain: _Optional[_Union[Drain, _Mapping]] = ..., warm_model: _Optional[_Union[WarmModel, _Mapping]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("session_id", "heartbeat_interval_seconds", "lost_after_seconds", "coordinator_version", "draining", "abandoned_task_ids")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LOST_AFTER_SECONDS_FIELD_NUMBER: _ClassVar[int]
    COORDINATOR_VERSION_FIELD_NUMBER: _ClassVar[int]
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    ABANDONED_TASK_IDS_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    heartbeat_interval_seconds: float
    lost_after_seconds: float
    coordinator_version: str
    draining: bool
    abandoned_task_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, session_id: _Optional[str] = ..., heartbeat_interval_seconds: _Optional[float] = ..., lost_after_seconds: _Optional[float] = ..., coordinator_version: _Optional[str] = ..., draining: _Optional[bool] = ..., abandoned_task_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class Drain(_message.Message):
    __slots__ = ("draining", "reason")
    DRAINING_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    draining: bool
    reason: str
    def __init__(self, draining: _Optional[bool] = ..., reason: _Optional[str] = ...) -> None: ...

class WarmModel(_message.Message):
    __slots__ = ("request_id", "endpoint_id", "model", "keep_alive")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KEEP_ALIVE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    endpoint_id: str
    model: str
    keep_alive: str
    def __init__(self, request_id: _Optional[str] = ..., endpoint_id: _Optional[str] = ..., model: _Optional[str] = ..., keep_alive: _Optional[str] = ...) -> None: ...
