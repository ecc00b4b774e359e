"""Live events over a WebSocket (``/api/distributed/ws``), built on the coordinator's
WatchCluster and WatchWorkflow streams.

Each connection owns its upstream streams, a bounded queue and one writer, all in one
TaskGroup: when the client leaves, everything it started is cancelled. A client that
reads slower than events arrive fills its queue and is disconnected (close code 1013,
"try again later") instead of buffering without bound or slowing the streams of
anyone else.

Protocol: the server sends JSON objects with a ``type``. The client may send
``{"subscribe": {...}}`` (see ``Subscription``) at any time to replace its filter; the
server answers ``{"type": "subscribed", ...}`` once the new streams are open. Without one,
a client gets the cluster's node and task events, no telemetry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Coroutine
from typing import Annotated, Any, Literal

import grpc
from fastapi import WebSocket
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.websockets import WebSocketDisconnect

from gateway import schemas
from gateway.auth import websocket_subprotocol
from gateway.problems import http_status
from gateway.upstream import Upstream
from hive.v1 import cluster_pb2, workflow_pb2

log = logging.getLogger("hive.gateway.events")

DEFAULT_QUEUE_SIZE = 256
# After an upstream stream breaks (coordinator restarting), wait this long before retrying.
RETRY_SECONDS = 1.0
# Close code for a client dropped for being too slow: RFC 6455 1013 "Try Again Later".
CLOSE_TOO_SLOW = 1013
MAX_WORKFLOWS_PER_CONNECTION = 32
# The longest a subscription waits for its upstream streams to open before it is confirmed.
READY_SECONDS = 2.0

EventType = Literal[
    "node_joined",
    "node_state_changed",
    "node_lost",
    "telemetry",
    "task",
    "workflow",
    "stage_started",
    "stage_finished",
    "stage_waiting",
    "workflow_changed",
]
# Control messages reach the client whatever its filter says.
CONTROL_TYPES = frozenset({"subscribed", "error"})
# Upstream errors after which retrying cannot help.
FINAL_CODES = frozenset(
    {
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)

Event = dict[str, Any]


class Subscription(BaseModel):
    """What a client wants to receive."""

    model_config = ConfigDict(extra="forbid")

    cluster: Annotated[
        bool,
        Field(description="Node, telemetry and task events, and every workflow's progress."),
    ] = True
    telemetry: Annotated[bool, Field(description="Also a tick per node heartbeat.")] = False
    workflow_id: Annotated[str, Field(min_length=1, max_length=schemas.MAX_ID_CHARS)] | None = None
    workflow_ids: Annotated[
        list[Annotated[str, Field(min_length=1, max_length=schemas.MAX_ID_CHARS)]],
        Field(max_length=MAX_WORKFLOWS_PER_CONNECTION),
    ] = Field(default_factory=list)
    events: Annotated[
        list[EventType] | None, Field(description="Only these event types; all if null.")
    ] = None

    def workflows(self) -> list[str]:
        ids = list(self.workflow_ids)
        if self.workflow_id and self.workflow_id not in ids:
            ids.append(self.workflow_id)
        return ids

    def wants(self, event_type: str) -> bool:
        return event_type in CONTROL_TYPES or self.events is None or event_type in self.events


class ClientMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subscribe: Subscription


def _at(ts: Any) -> str | None:
    at = schemas.timestamp(ts)
    return at.isoformat() if at is not None else None


def _task(task: cluster_pb2.TaskEvent) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "state": schemas.task_state_name(task.state),
        "node": task.node,
        "endpoint_id": task.endpoint_id,
        "model": task.model,
        "task_type": schemas.task_type_name(task.type),
        "attempt": task.attempt,
        "error": task.error,
    }


def cluster_events(event: cluster_pb2.WatchClusterResponse) -> list[Event]:
    """The client events for one WatchCluster event."""
    at = _at(event.at)
    kind = event.WhichOneof("event")
    if kind == "task":
        return [{"type": "task", "at": at, **_task(event.task)}]
    if kind == "workflow":
        w = event.workflow
        change = {"workflow_id": w.workflow_id, "name": w.name, "stage": w.stage}
        return [
            {"type": "workflow_changed", "at": at, **change, "state": w.state, "message": w.message}
        ]
    if kind is None:
        return []
    status: cluster_pb2.NodeStatus = getattr(event, kind)
    node = schemas.node_from_proto(status).model_dump(mode="json")
    if kind == "node_state_changed" and node["state"] == "lost":
        kind = "node_lost"
    return [{"type": kind, "at": at, "node": node}]


class WorkflowTracker:
    """Turns WatchWorkflow snapshots into transitions: each stage's start and finish once
    and in that order (a start is reported even if a snapshot skipped the running state),
    task events, and workflow state changes. Each transition carries its own time (the
    stage's started_at / finished_at) and they come in the order they happened, also when
    one snapshot holds several (a watch begun after some stages ran replays them)."""

    def __init__(self) -> None:
        self.state = ""
        self.stages: dict[str, str] = {}

    def events(self, update: workflow_pb2.WatchWorkflowResponse) -> list[Event]:
        w = update.workflow
        at = _at(update.at)
        now = update.at.ToNanoseconds()
        base = {"at": at, "workflow_id": w.id}
        # (when it happened in ns, event): a stage's transitions at the stage's own times.
        started: list[tuple[int, Event]] = []
        finished: list[tuple[int, Event]] = []
        for stage in w.stages:
            new = schemas.task_state_name(stage.state)
            old = self.stages.get(stage.name, "queued")
            if new == old:
                continue
            self.stages[stage.name] = new
            info = {
                **base,
                "stage": stage.name,
                "task_type": schemas.task_type_name(stage.type),
                "model": stage.model,
                "node": stage.tasks[-1].node if stage.tasks else "",
            }
            if old in ("queued", "unspecified") and new != "queued":
                started.append(_timed({"type": "stage_started", **info}, stage.started_at, now))
            if new in schemas.TERMINAL_TASK_STATES:
                finished.append(
                    _timed({"type": "stage_finished", **info, "state": new}, stage.finished_at, now)
                )
        if update.message:
            for _, event in started + finished:
                event["message"] = update.message
        own: Event | None = None
        if update.type == workflow_pb2.WORKFLOW_EVENT_TYPE_STAGE_WAITING:
            own = {
                "type": "stage_waiting",
                **base,
                "stage": update.stage,
                "model": update.task.model,
                "message": update.message,
            }
        elif update.HasField("task"):
            own = {"type": "task", **base, "stage": update.stage, **_task(update.task)}
        # In the order they happened; sorted() is stable, so of one instant a start comes
        # before the update's own event, and that before a finish.
        timed = started + ([(now, own)] if own is not None else []) + finished
        out = [event for _, event in sorted(timed, key=lambda pair: pair[0])]
        state = schemas.workflow_state_name(w.state)
        if state != self.state:
            self.state = state
            out.append({"type": "workflow", **base, "state": state, "error": w.error})
        return out


def _timed(event: Event, ts: Any, default: int) -> tuple[int, Event]:
    """``event`` at ``ts`` (its "at" set to it), or at ``default`` ns when ``ts`` is unset."""
    if not ts.seconds and not ts.nanos:
        return default, event
    event["at"] = _at(ts)
    return ts.ToNanoseconds(), event


class SlowConsumer(Exception):
    pass


class ClientGone(Exception):
    pass


class EventConnection:
    """One WebSocket client: its subscription, its upstream streams, its bounded queue."""

    def __init__(self, websocket: WebSocket, upstream: Upstream, queue_size: int) -> None:
        self.websocket = websocket
        self.upstream = upstream
        self.queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=queue_size)
        self.subscription = Subscription()
        self._streams: list[asyncio.Task[None]] = []

    def offer(self, event: Event) -> None:
        """Queue an event for the client if it wants it; a full queue drops the client."""
        if not self.subscription.wants(event["type"]):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            raise SlowConsumer(f"{self.queue.maxsize} events behind") from None

    async def run(self) -> None:
        await self.websocket.accept(subprotocol=websocket_subprotocol(self.websocket.scope))
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._read(tg), name="ws-read")
                tg.create_task(self._write(), name="ws-write")
                self._subscribe(tg, self.subscription)
        except* SlowConsumer as group:
            log.info("dropping a slow event client: %s", group.exceptions[0])
            with contextlib.suppress(Exception):
                await self.websocket.close(
                    CLOSE_TOO_SLOW, "too slow: events were dropped; reconnect"
                )
        except* ClientGone:
            pass

    def _subscribe(self, tg: asyncio.TaskGroup, subscription: Subscription) -> None:
        """Replace the subscription: cancel the old upstream streams, open the new ones.

        The ``subscribed`` answer is sent once every new stream is open at the
        coordinator (or after ``READY_SECONDS``), and the streams' events only after it:
        whatever happens after a client sees ``subscribed`` reaches it.
        """
        for task in self._streams:
            task.cancel()
        self.subscription = subscription
        acked = asyncio.Event()
        streams: list[Coroutine[Any, Any, None]] = []
        ready: list[asyncio.Event] = []
        if subscription.cluster:
            ready.append(asyncio.Event())
            streams.append(self._watch_cluster(subscription.telemetry, ready[-1], acked))
        for workflow_id in subscription.workflows():
            ready.append(asyncio.Event())
            streams.append(self._watch_workflow(workflow_id, ready[-1], acked))
        streams.append(self._acknowledge(subscription, ready, acked))
        self._streams = [tg.create_task(stream) for stream in streams]

    async def _acknowledge(
        self, subscription: Subscription, ready: list[asyncio.Event], acked: asyncio.Event
    ) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_SECONDS):
                for event in ready:
                    await event.wait()
        self.offer({"type": "subscribed", "subscription": subscription.model_dump(mode="json")})
        acked.set()

    async def _read(self, tg: asyncio.TaskGroup) -> None:
        while True:
            message = await self.websocket.receive()
            if message["type"] == "websocket.disconnect":
                raise ClientGone
            raw = message.get("text") or message.get("bytes") or b""
            try:
                parsed = ClientMessage.model_validate(json.loads(raw))
            except (ValueError, ValidationError) as exc:
                self.offer({"type": "error", "status": 400, "detail": _explain(exc)})
                continue
            self._subscribe(tg, parsed.subscribe)

    async def _write(self) -> None:
        while True:
            event = await self.queue.get()
            try:
                await self.websocket.send_text(json.dumps(event, separators=(",", ":")))
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                raise ClientGone from exc

    async def _open(self, call: Any, ready: asyncio.Event, acked: asyncio.Event) -> None:
        """Wait until the coordinator has the stream open, then until the client was told."""
        try:
            await call.wait_for_connection()
        finally:
            ready.set()
            await acked.wait()

    async def _watch_cluster(
        self, telemetry: bool, ready: asyncio.Event, acked: asyncio.Event
    ) -> None:
        request = cluster_pb2.WatchClusterRequest(include_telemetry=telemetry)
        while True:
            call = self.upstream.cluster.WatchCluster(request)
            try:
                await self._open(call, ready, acked)
                async for event in call:
                    for out in cluster_events(event):
                        self.offer(out)
            except grpc.aio.AioRpcError as err:
                self._upstream_error(err, None)
                if err.code() in FINAL_CODES:
                    return
            finally:
                call.cancel()
            await asyncio.sleep(RETRY_SECONDS)

    async def _watch_workflow(
        self, workflow_id: str, ready: asyncio.Event, acked: asyncio.Event
    ) -> None:
        request = workflow_pb2.WatchWorkflowRequest(id=workflow_id)
        tracker = WorkflowTracker()
        while True:
            call = self.upstream.workflows.WatchWorkflow(request)
            try:
                await self._open(call, ready, acked)
                async for update in call:
                    for out in tracker.events(update):
                        self.offer(out)
                return  # the workflow finished and the coordinator ended the stream
            except grpc.aio.AioRpcError as err:
                self._upstream_error(err, workflow_id)
                if err.code() in FINAL_CODES or tracker.state in schemas.TERMINAL_WORKFLOW_STATES:
                    return
            finally:
                call.cancel()
            await asyncio.sleep(RETRY_SECONDS)

    def _upstream_error(self, err: grpc.aio.AioRpcError, workflow_id: str | None) -> None:
        event: Event = {
            "type": "error",
            "status": http_status(err.code()),
            "grpc_status": err.code().name,
            "detail": err.details() or err.code().name,
        }
        if workflow_id is not None:
            event["workflow_id"] = workflow_id
        self.offer(event)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return f"not JSON: {exc}"
