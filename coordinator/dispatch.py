"""Running one task on an agent: pick an endpoint, call RunTask, relay, fail over.

The dispatcher turns a task into a RunTask call on the chosen agent and relays
its stream. When an attempt fails in a way another endpoint could fix (the
agent died, the endpoint is busy or broken) it moves the task to the next
candidate, at most ``max_attempts`` times, telling the caller with a fresh
assignment so partial output from the failed attempt can be discarded.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from coordinator.registry import NodeRecord, NodeState, Registry
from hive.serving import channel_options
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2, node_agent_pb2_grpc

log = logging.getLogger("hive.coordinator.dispatch")

# Failures another endpoint may not have: retried elsewhere.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
}


class UnknownModel(LookupError):
    """No endpoint in the cluster has the model (maps to FAILED_PRECONDITION)."""


class NoCapacity(RuntimeError):
    """Endpoints have the model but none can take the task now (maps to UNAVAILABLE)."""


class AttemptsExhausted(RuntimeError):
    """Every attempt failed; carries the last gRPC status."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    endpoint_id: str
    agent_address: str


@dataclass
class Assigned:
    """Emitted when an attempt is placed; emitted again when a retry moves the task."""

    task_id: str
    placement: Placement
    attempt: int


@dataclass
class TaskRun:
    """What the coordinator remembers about one task while it is known."""

    task_id: str
    model: str
    type: common_pb2.TaskType
    placements: list[Placement] = field(default_factory=list)
    state: cluster_pb2.TaskState = cluster_pb2.TASK_STATE_QUEUED
    error: str = ""


class AgentChannels:
    """One gRPC channel per agent address, reused by every task sent there."""

    def __init__(self, max_message_bytes: int) -> None:
        self._options = channel_options(max_message_bytes)
        self._channels: dict[str, grpc.aio.Channel] = {}

    def stub(self, address: str) -> node_agent_pb2_grpc.NodeAgentServiceAsyncStub:
        channel = self._channels.get(address)
        if channel is None:
            channel = grpc.aio.insecure_channel(address, options=self._options)
            self._channels[address] = channel
        return node_agent_pb2_grpc.NodeAgentServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


Placer = Callable[[str, set[tuple[str, str]]], Placement]


class Dispatcher:
    def __init__(self, registry: Registry, channels: AgentChannels, max_attempts: int = 3) -> None:
        self.registry = registry
        self.channels = channels
        self.max_attempts = max_attempts
        self.tasks: dict[str, TaskRun] = {}
        self.place: Placer = self._least_loaded

    def _least_loaded(self, model: str, exclude: set[tuple[str, str]]) -> Placement:
        """Placeholder policy: the healthy, undrained endpoint with the model and fewest tasks."""
        has_model = False
        best: tuple[int, str, str] | None = None
        best_record: NodeRecord | None = None
        for record in self.registry:
            for endpoint in record.info.endpoints:
                if not any(m.name == model for m in endpoint.models):
                    continue
                has_model = True
                if record.state is not NodeState.HEALTHY or record.draining:
                    continue
                if (record.name, endpoint.id) in exclude:
                    continue
                key = (self.registry.running[record.name], record.name, endpoint.id)
                if best is None or key < best:
                    best, best_record = key, record
        if best is None or best_record is None:
            if not has_model:
                raise UnknownModel(model)
            raise NoCapacity(f"no healthy endpoint with model {model!r} can take the task now")
        return Placement(best_record.name, best[2], best_record.info.agent_address)

    async def run(
        self,
        request: node_agent_pb2.RunTaskRequest,
        priority: common_pb2.Priority = common_pb2.PRIORITY_NORMAL,
    ) -> AsyncIterator[Assigned | node_agent_pb2.RunTaskResponse]:
        """Run ``request`` (endpoint chosen here); yield assignments and the agent's events.

        The caller sets ``task_id``; closing or cancelling the iteration cancels the task
        on its agent.
        """
        run = TaskRun(request.task_id, request.model, request.type)
        self.tasks[request.task_id] = run
        failed: set[tuple[str, str]] = set()
        last: AttemptsExhausted | None = None
        try:
            for attempt in range(1, self.max_attempts + 1):
                try:
                    placement = self.place(request.model, failed)
                except NoCapacity:
                    if last is not None:
                        raise last from None
                    raise
                run.placements.append(placement)
                run.state = cluster_pb2.TASK_STATE_RUNNING
                yield Assigned(request.task_id, placement, attempt)
                call_request = node_agent_pb2.RunTaskRequest()
                call_request.CopyFrom(request)
                call_request.endpoint_id = placement.endpoint_id
                call_request.attempt = attempt
                self.registry.running[placement.node] += 1
                try:
                    stub = self.channels.stub(placement.agent_address)
                    async for event in stub.RunTask(call_request):
                        yield event
                    run.state = cluster_pb2.TASK_STATE_SUCCEEDED
                    return
                except grpc.aio.AioRpcError as err:
                    if err.code() not in RETRYABLE:
                        raise
                    log.warning(
                        "task %s attempt %d on %s/%s failed: %s %s",
                        request.task_id,
                        attempt,
                        placement.node,
                        placement.endpoint_id,
                        err.code().name,
                        err.details(),
                    )
                    failed.add((placement.node, placement.endpoint_id))
                    last = AttemptsExhausted(
                        err.code(),
                        f"task {request.task_id} failed on {placement.node}/"
                        f"{placement.endpoint_id} (attempt {attempt}/{self.max_attempts}): "
                        f"{err.details()}",
                    )
                finally:
                    self.registry.running[placement.node] -= 1
            assert last is not None
            raise last
        except BaseException as exc:
            run.state = (
                cluster_pb2.TASK_STATE_CANCELLED
                if isinstance(exc, GeneratorExit | KeyboardInterrupt) or _is_cancel(exc)
                else cluster_pb2.TASK_STATE_FAILED
            )
            run.error = str(exc)
            raise


def _is_cancel(exc: BaseException) -> bool:
    return isinstance(exc, asyncio.CancelledError)
