"""The coordinator's per-request structures stay bounded (issue 17, item 6: memory crept by
1-2 MB per 1,000 chat requests past the explain history's cap).

Two things grew with every request: the scheduler's deadline heap kept an entry (the
deadline, the task id) for every finished task until its deadline passed, an hour for every
request through the gateway; and the optimizer's history kept two fresh strings (model,
task type) in each of its up to 50,000 samples and arrivals. These tests count entries
and check sharing, never RSS (``benchmarks/bench_memory.py`` measures bytes).
"""

from __future__ import annotations

import asyncio

import grpc
import pytest

import coordinator.dispatch
from coordinator.routing import (
    ClusterSnapshot,
    EndpointView,
    NodeView,
    RouterConfig,
    SchedulerConfig,
    TaskSpec,
)
from coordinator.scheduler import STALE_HEAP_SLACK, FinishKind, Scheduler
from hive.hardware import GB
from hive.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from tests.conftest import running_dev

MODEL = "qwen2.5-coder:7b"
# What the gateway gives every generation (gateway.inference.GENERATION_TIMEOUT_SECONDS).
HOUR = 3600.0


def one_slot_cluster() -> ClusterSnapshot:
    endpoint = EndpointView(
        node="A",
        id="gpu0",
        gpu_names=("NVIDIA GeForce RTX 3070",),
        num_parallel=1,
        max_queue=8,
        vram_total_bytes=8 * 2**30,
        vram_used_bytes=0,
        models={MODEL: int(4.7 * GB)},
    )
    return ClusterSnapshot((NodeView("A", endpoints=(endpoint,)),))


def scheduler() -> Scheduler:
    return Scheduler(RouterConfig(scheduler=SchedulerConfig(queue_allowance=0)))


def task(task_id: str, deadline: float | None = None) -> TaskSpec:
    return TaskSpec(task_id, "inference", MODEL, deadline=deadline)


def bound(s: Scheduler) -> int:
    """The most heap entries the scheduler may hold for its live tasks."""
    live = s.queue_depth + s.running_count
    return 2 * live + STALE_HEAP_SLACK


def test_deadline_heap_forgets_finished_tasks() -> None:
    """5,000 tasks with an hour's deadline run and finish one after another: the deadline
    heap holds about the live tasks, not one entry per finished task for an hour."""
    s, snap = scheduler(), one_slot_cluster()
    for i in range(5_000):
        now = i * 0.01
        s.submit(task(f"t{i}", deadline=now + HOUR), snap, now)
        (assignment,) = s.dispatch(snap, now)
        outcome = s.finished(assignment.task.id, assignment.attempt, now, ok=True)
        assert outcome.kind is FinishKind.COMPLETED
        assert len(s._deadlines) <= bound(s)


def test_a_live_deadline_survives_rebuilds() -> None:
    """Rebuilding the deadline heap keeps the entries of live tasks: a task running the
    whole time still fails at its deadline after thousands of others finished."""
    s, snap = scheduler(), one_slot_cluster()
    s.submit(task("long", deadline=100.0), snap, 0.0)
    (running,) = s.dispatch(snap, 0.0)
    assert running.task.id == "long"
    for i in range(2_000):
        s.submit(task(f"t{i}", deadline=HOUR), snap, 1.0)
        assert s.cancel(f"t{i}") is not None  # withdrawn while queued (the slot is taken)
        assert len(s._deadlines) <= bound(s)
        assert len(s._heap) <= bound(s)
    assert s.expire(99.0) == []
    (expired,) = s.expire(100.0)
    assert (expired.task_id, expired.kind) == ("long", FinishKind.FAILED)


def test_queue_heap_forgets_withdrawn_tasks() -> None:
    """Clients that give up while their task waits (a full cluster, no dispatch possible)
    leave no queue entry behind, and the tasks still waiting keep their order."""
    s, snap = scheduler(), one_slot_cluster()
    s.submit(task("busy"), snap, 0.0)
    s.dispatch(snap, 0.0)
    s.submit(task("first"), snap, 1.0)
    for i in range(3_000):
        s.submit(task(f"gone{i}"), snap, 2.0)
        s.cancel(f"gone{i}")
        assert len(s._heap) <= bound(s)
    s.submit(task("second"), snap, 3.0)
    s.finished("busy", 1, 4.0, ok=True)
    assert [a.task.id for a in s.dispatch(snap, 4.0)] == ["first"]
    s.finished("first", 1, 5.0, ok=True)
    assert [a.task.id for a in s.dispatch(snap, 5.0)] == ["second"]


async def test_chat_requests_past_the_explain_cap_leave_bounded_state(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """300 chat requests over gRPC with the gateway's one-hour timeout, past an explain
    history of 50: the explain history holds 50, the scheduler's heaps about nothing, and
    the optimizer's samples share one string per model and task type."""
    monkeypatch.setattr(coordinator.dispatch, "EXPLAIN_HISTORY", 50)
    async with running_dev() as dev:
        assert dev.coordinator is not None and dev.coordinator.optimizer is not None
        dispatcher = dev.coordinator.dispatcher
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)

            async def chat(i: int) -> None:
                request = inference_pb2.ChatRequest(
                    model="llama3.1:8b",
                    messages=[common_pb2.ChatMessage(role="user", content=f"hello {i}")],
                )
                request.options.update({"num_predict": 4})
                async for _ in stub.Chat(request, timeout=HOUR):
                    pass

            for batch in range(30):
                await asyncio.gather(*(chat(batch * 10 + k) for k in range(10)))
        s = dispatcher.scheduler
        assert len(dispatcher.tasks) == 50
        assert s.queue_depth == 0 and s.running_count == 0
        assert len(s._deadlines) <= STALE_HEAP_SLACK
        assert len(s._heap) <= STALE_HEAP_SLACK
        samples = list(dev.coordinator.optimizer.history.tasks)
        assert len(samples) == 300
        assert len({id(x.model) for x in samples}) == 1
        assert len({id(x.task_type) for x in samples}) == 1
