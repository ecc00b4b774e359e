"""The agent's attempt table (node_agent/attempts.py): an attempt outlives a caller that
went away with its coordinator, and stops when the caller cancelled it on purpose."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest

from hive.v1 import common_pb2, node_agent_pb2
from node_agent import attempts as attempts_module
from node_agent.attempts import Attempt, AttemptFailed, Attempts
from tests.conftest import eventually


class Producer:
    """A task that emits ``n`` chunks, one per ``release`` (then its result)."""

    def __init__(self, n: int = 3) -> None:
        self.n = n
        self.release = asyncio.Semaphore(0)
        self.cancelled = False

    async def __call__(self, attempt: Attempt) -> None:
        try:
            for i in range(self.n):
                await self.release.acquire()
                attempt.emit(
                    node_agent_pb2.RunTaskResponse(chunk=common_pb2.OutputChunk(text=f"{i}", seq=i))
                )
            attempt.emit(node_agent_pb2.RunTaskResponse(result=common_pb2.TaskResult()))
        except asyncio.CancelledError:
            self.cancelled = True
            raise


class Session:
    def __init__(self) -> None:
        self.over: asyncio.Event | None = asyncio.Event()

    def end(self) -> None:
        assert self.over is not None
        self.over.set()
        self.over = None


def request(task_id: str = "t1", attempt: int = 1) -> node_agent_pb2.RunTaskRequest:
    return node_agent_pb2.RunTaskRequest(task_id=task_id, attempt=attempt)


@pytest.fixture
def session() -> Session:
    return Session()


@pytest.fixture
async def table(session: Session) -> AsyncIterator[Attempts]:
    t = Attempts("node", orphan_seconds=0.3, session_over=lambda: session.over)
    yield t
    await t.close()


async def read_one(stream: AsyncIterator[node_agent_pb2.RunTaskResponse]) -> str:
    event = await anext(stream)
    return event.chunk.text


async def test_a_caller_that_cancels_while_the_session_stays_up_stops_the_attempt(
    table: Attempts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(attempts_module, "ORPHAN_WAIT_SECONDS", 0.1)
    producer = Producer()
    attempt = table.start(request(), producer)
    stream = table.follow(attempt)
    producer.release.release()
    assert await read_one(stream) == "0"
    await stream.aclose()  # what gRPC does to a cancelled RunTask
    await eventually(lambda: producer.cancelled, timeout=2, what="the producer stopped")
    assert len(table) == 0


async def test_a_caller_gone_with_its_session_leaves_an_orphan_that_is_adopted_from_the_first(
    table: Attempts, session: Session
) -> None:
    producer = Producer()
    attempt = table.start(request(), producer)
    stream = table.follow(attempt)
    producer.release.release()
    assert await read_one(stream) == "0"
    session.end()
    await stream.aclose()
    await asyncio.sleep(0.05)
    assert not producer.cancelled and table.adoptable_ids() == ["t1"]
    producer.release.release()  # it runs on while no one follows
    # A new coordinator adopts it: every event from the first.
    found = table.get("t1", 1)
    assert found is attempt and table.get("t1", 2) is None
    adopted = table.follow(attempt)
    assert [await read_one(adopted), await read_one(adopted)] == ["0", "1"]
    producer.release.release()
    events = [e async for e in adopted]
    assert events[0].chunk.text == "2" and events[-1].HasField("result")
    # Delivered: no longer running, still adoptable for a while (a leader that dies before
    # committing the result), then let go of.
    assert table.running_ids() == [] and table.adoptable_ids() == ["t1"]
    table.reap(asyncio.get_running_loop().time() + attempts_module.LINGER_SECONDS + 1)
    assert len(table) == 0 and table.expired == 0


async def orphaned(table: Attempts, session: Session) -> Producer:
    """An attempt that sent its first chunk, whose caller then went away with the session."""
    producer = Producer()
    stream = table.follow(table.start(request(), producer))
    producer.release.release()
    await read_one(stream)
    session.end()
    await stream.aclose()
    await asyncio.sleep(0.05)
    return producer


async def test_an_orphan_nobody_adopts_is_stopped_after_orphan_seconds(
    table: Attempts, session: Session
) -> None:
    producer = await orphaned(table, session)
    table.reap(asyncio.get_running_loop().time())
    assert not producer.cancelled, "stopped before orphan_seconds"
    table.reap(asyncio.get_running_loop().time() + 0.31)
    await eventually(lambda: producer.cancelled, timeout=2, what="the orphan stopped")
    assert table.expired == 1 and len(table) == 0


async def test_an_orphan_the_new_coordinator_abandons_stops_at_once(
    table: Attempts, session: Session
) -> None:
    producer = await orphaned(table, session)
    table.abandon(["t1", "not-here"])
    await eventually(lambda: producer.cancelled, timeout=2, what="the abandoned one stopped")
    assert len(table) == 0


async def test_another_attempt_of_the_task_supersedes_and_the_same_attempt_is_followed(
    table: Attempts,
) -> None:
    first = Producer()
    one = table.start(request(attempt=1), first)
    assert table.start(request(attempt=1), Producer()) is one
    follower = table.follow(one)
    await asyncio.sleep(0)  # attempt 1 is under way
    second = Producer(n=0)
    two = table.start(request(attempt=2), second)
    await eventually(lambda: first.cancelled, timeout=2, what="attempt 1 stopped")
    with pytest.raises(AttemptFailed) as ended:
        async for _ in follower:
            pass
    assert ended.value.code == grpc.StatusCode.CANCELLED
    assert table.get("t1", 2) is two and table.get("t1", 1) is None
    events = [e async for e in table.follow(two)]
    assert events[-1].HasField("result")


async def test_a_failed_attempt_ends_every_follower_with_its_status(table: Attempts) -> None:
    async def refuse(attempt: Attempt) -> None:
        raise AttemptFailed(grpc.StatusCode.NOT_FOUND, "ollama: model not found")

    attempt = table.start(request(), refuse)
    for _ in range(2):
        with pytest.raises(AttemptFailed) as failed:
            async for _ in table.follow(attempt):
                pass
        assert failed.value.code == grpc.StatusCode.NOT_FOUND
