"""The attempts an agent runs, apart from the RunTask calls that asked for them.

Each attempt runs as its own asyncio task (the *producer*: the request to the local
Ollama) and records every event it sends; a RunTask call *follows* it, replaying what was
recorded and then waiting for more. So an attempt can outlive the coordinator that asked
for it, and the next leader picks it up where it is instead of running it again (issue 18).

Rules:

* A caller that cancels while the agent's session with the coordinator stays up for
  ``ORPHAN_WAIT_SECONDS`` cancelled on purpose (the client went away, a deadline passed, a
  workflow was cancelled): the attempt stops and its request to Ollama is closed.
* A caller that goes away with the session (the coordinator was SIGKILLed, partitioned,
  or stepped down) leaves an *orphan*: it runs on, and the agent lists it in the Register
  of its next session. That coordinator adopts it (``RunTaskRequest.adopt``: the events
  from the first, then as they come) or names it abandoned in its Welcome (stopped at
  once); an orphan nobody adopts within ``orphan_seconds`` is stopped.
* A follower that read the last event *delivered* the attempt; it stays listed for
  ``LINGER_SECONDS`` more (in Register, not in heartbeats), so a leader that died between
  reading a result and committing it has a successor that adopts the result rather than
  running the task again.
* A direct attempt (started with a ``follow_token``) sends its output only to callers of
  FollowTask that hold the token (a gateway); its RunTask call carries TaskStarted and the
  result. A follower counts as a caller: the attempt runs on while one reads it, even when
  its coordinator went away, and a new coordinator does not abandon it.
* Only the newest attempt of a task lives here: a RunTask for another attempt of the same
  task stops the older one; a second RunTask for the same attempt follows it.

The coordinator accepts an attempt's result once: its scheduler counts only the current
attempt of a running task, and a new leader adopts only attempts its store has running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any

import grpc

from hive.v1 import node_agent_pb2

log = logging.getLogger("hive.agent")

# How long a cancelled caller's session may take to end too before the cancel counts as
# deliberate: a SIGKILLed coordinator's two connections (session, RunTask) break within
# milliseconds of each other, but the agent reads them one after the other.
ORPHAN_WAIT_SECONDS = 0.5
# How long a delivered attempt stays adoptable.
LINGER_SECONDS = 5.0
# How often expired orphans and delivered attempts are let go of.
REAP_EVERY_SECONDS = 1.0


class AttemptFailed(Exception):
    """How an attempt ended when it did not succeed: the RunTask status to end with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Attempt:
    """One attempt of one task on this node: its request, its events so far, its end."""

    def __init__(self, request: node_agent_pb2.RunTaskRequest) -> None:
        self.request = request
        self.task_id = request.task_id
        self.number = request.attempt
        self.events: list[node_agent_pb2.RunTaskResponse] = []
        self.failure: AttemptFailed | None = None
        self.done = False
        self.followers = 0
        self.delivered = False
        # Loop time after which an orphaned or delivered attempt is let go of; None while
        # a caller follows it.
        self.expires_at: float | None = None
        self.producer: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def emit(self, event: node_agent_pb2.RunTaskResponse) -> None:
        self.events.append(event)
        self._notify()

    def finish(self, failure: AttemptFailed | None) -> None:
        if not self.done:
            self.done, self.failure = True, failure
            self._notify()

    def _notify(self) -> None:
        wake, self._wake = self._wake, asyncio.Event()
        wake.set()

    async def replay(self) -> AsyncIterator[node_agent_pb2.RunTaskResponse]:
        """Every event from the first, then each as it comes; raises AttemptFailed at the
        end of an attempt that failed."""
        sent = 0
        while True:
            while sent < len(self.events):
                yield self.events[sent]
                sent += 1
            if self.done:
                if self.failure is not None:
                    raise self.failure
                return
            await self._wake.wait()


class Attempts:
    """The node's table of attempts (task id → its newest attempt)."""

    def __init__(
        self,
        node: str,
        orphan_seconds: float,
        session_over: Callable[[], asyncio.Event | None],
    ) -> None:
        self.node = node
        self.orphan_seconds = orphan_seconds
        # The event set when the current session ends; None when there is none.
        self._session_over = session_over
        self._table: dict[str, Attempt] = {}
        # Set (and replaced) whenever an attempt starts: what ``find`` waits on.
        self._arrivals = asyncio.Event()
        self._decisions: set[asyncio.Task[None]] = set()
        # Orphans adopted by a coordinator, and stopped unadopted (metrics and tests).
        self.adopted = 0
        self.expired = 0

    def __len__(self) -> int:
        return len(self._table)

    def get(self, task_id: str, number: int) -> Attempt | None:
        attempt = self._table.get(task_id)
        return attempt if attempt is not None and attempt.number == number else None

    async def find(self, task_id: str, number: int, timeout: float) -> Attempt | None:
        """``get``, waiting up to ``timeout`` seconds for the attempt to start: a follower
        told of an assignment may ask before the coordinator's RunTask reaches the agent."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (attempt := self.get(task_id, number)) is None:
            left = deadline - loop.time()
            if left <= 0:
                return None
            arrivals = self._arrivals
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):
                    await arrivals.wait()
        return attempt

    def running_ids(self) -> list[str]:
        """Tasks with an attempt not yet delivered (heartbeats, GetNode)."""
        return [t for t, a in self._table.items() if not a.delivered]

    def adoptable_ids(self) -> list[str]:
        """Every task a new coordinator may adopt (Register)."""
        return list(self._table)

    def start(
        self,
        request: node_agent_pb2.RunTaskRequest,
        produce: Callable[[Attempt], Coroutine[Any, Any, None]],
    ) -> Attempt:
        """The attempt ``request`` names: the one already here, or a new one whose
        producer ``produce(attempt)`` starts now (stopping an older attempt of the task)."""
        old = self._table.get(request.task_id)
        if old is not None:
            if old.number == request.attempt:
                return old
            self.stop(old, f"superseded by attempt {request.attempt}")
        attempt = Attempt(request)
        self._table[attempt.task_id] = attempt
        arrivals, self._arrivals = self._arrivals, asyncio.Event()
        arrivals.set()
        attempt.producer = asyncio.create_task(
            self._produce(attempt, produce), name=f"attempt:{attempt.task_id}"
        )
        return attempt

    async def _produce(
        self, attempt: Attempt, produce: Callable[[Attempt], Coroutine[Any, Any, None]]
    ) -> None:
        try:
            await produce(attempt)
        except AttemptFailed as exc:
            attempt.finish(exc)
        except asyncio.CancelledError:
            attempt.finish(AttemptFailed(grpc.StatusCode.CANCELLED, "the attempt was stopped"))
            raise
        except Exception as exc:  # a bug here must end the attempt, not leave it hanging
            log.exception("agent %s: task %s failed", self.node, attempt.task_id)
            attempt.finish(AttemptFailed(grpc.StatusCode.INTERNAL, f"{type(exc).__name__}: {exc}"))
        else:
            attempt.finish(None)

    async def follow(
        self, attempt: Attempt, output: bool = True
    ) -> AsyncGenerator[node_agent_pb2.RunTaskResponse, None]:
        """A caller's view of ``attempt`` (see ``Attempt.replay``); without ``output``, its
        TaskStarted and result only (the output goes to a direct follower). A caller that
        stops reading before the end leaves the attempt to ``_after_caller_left``."""
        attempt.followers += 1
        attempt.expires_at = None
        complete = False
        try:
            async for event in attempt.replay():
                if output or not event.HasField("chunk"):
                    yield event
            complete = True
        except AttemptFailed:
            complete = True
            raise
        finally:
            attempt.followers -= 1
            loop = asyncio.get_running_loop()
            if complete:
                attempt.delivered = True
                if attempt.followers == 0:
                    attempt.expires_at = loop.time() + LINGER_SECONDS
            elif attempt.followers == 0:
                over = self._session_over()
                decide = loop.create_task(self._after_caller_left(attempt, over))
                self._decisions.add(decide)
                decide.add_done_callback(self._decisions.discard)

    async def _after_caller_left(self, attempt: Attempt, over: asyncio.Event | None) -> None:
        """Stop an attempt its caller cancelled on purpose; keep an orphan running."""
        if over is not None and not over.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ORPHAN_WAIT_SECONDS):
                    await over.wait()
        if attempt.followers > 0 or self._table.get(attempt.task_id) is not attempt:
            return  # adopted meanwhile, or already gone
        if over is not None and not over.is_set():
            self.stop(attempt, "cancelled by the coordinator")
            return
        attempt.expires_at = asyncio.get_running_loop().time() + self.orphan_seconds
        log.warning(
            "agent %s: task %s attempt %d outlives its coordinator; kept %.0fs for the next "
            "leader to adopt",
            self.node,
            attempt.task_id,
            attempt.number,
            self.orphan_seconds,
        )

    def adopt(self, attempt: Attempt) -> None:
        self.adopted += 1
        log.info(
            "agent %s: task %s attempt %d adopted by the coordinator (%s)",
            self.node,
            attempt.task_id,
            attempt.number,
            "finished" if attempt.done else "running",
        )

    def abandon(self, task_ids: list[str]) -> None:
        """Stop the attempts a new coordinator said it will not adopt."""
        for task_id in task_ids:
            attempt = self._table.get(task_id)
            if attempt is not None and attempt.followers == 0:
                self.stop(attempt, "abandoned by the coordinator")

    def stop(self, attempt: Attempt, why: str) -> None:
        if self._table.get(attempt.task_id) is attempt:
            del self._table[attempt.task_id]
        if attempt.producer is not None and not attempt.producer.done():
            log.info("agent %s: task %s stopped: %s", self.node, attempt.task_id, why)
            attempt.producer.cancel()

    def reap(self, now: float) -> None:
        """Let go of orphans and delivered attempts whose time is up."""
        for attempt in list(self._table.values()):
            if attempt.expires_at is not None and attempt.expires_at <= now:
                if not attempt.delivered:
                    self.expired += 1
                    log.warning(
                        "agent %s: task %s attempt %d was not adopted within %.0fs; stopped",
                        self.node,
                        attempt.task_id,
                        attempt.number,
                        self.orphan_seconds,
                    )
                self.stop(attempt, "not adopted in time")

    async def reaper(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(REAP_EVERY_SECONDS)
            self.reap(loop.time())

    async def close(self) -> None:
        """Stop every attempt (the agent is stopping)."""
        for task in list(self._decisions):
            task.cancel()
        producers = [a.producer for a in self._table.values() if a.producer is not None]
        for attempt in list(self._table.values()):
            self.stop(attempt, "the agent is stopping")
        await asyncio.gather(*producers, *self._decisions, return_exceptions=True)
