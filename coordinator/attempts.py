"""One attempt of a task on an agent, and how its end is accounted for.

``AttemptRunner.pump`` calls ``RunTask`` on the attempt's agent and forwards every event,
then the attempt's end, to the task's inbox (learning speeds and answer lengths from its
result on the way). ``AttemptRunner.finish`` reports that end to the scheduler, which
requeues the task elsewhere when another endpoint could fix the failure (``RETRYABLE``)
or fails it for good. The chunk gathering here lets a slow reader take the agent's
queued chunks as one message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from coordinator.metrics import CoordinatorMetrics
from coordinator.policy import Finished
from coordinator.registry import Registry
from coordinator.routing import ClusterSnapshot, EndpointKey, SpeedTracker
from coordinator.routing.lengths import AnswerLengths
from coordinator.scheduler import Assignment, FinishKind, FinishOutcome, Scheduler
from coordinator.snapshots import cold_load_bytes
from coordinator.task_runs import AttemptsExhausted, Placement, TaskRun
from coordinator.task_specs import answer_cap, task_type_name
from hive.agent_channels import AgentChannels
from hive.serving import AGENT_TRAILER, trailer_keys
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2

# The dispatcher's logger: an attempt's lines read as they did before they moved here.
log = logging.getLogger("hive.coordinator.dispatch")

# Failures another endpoint may not have: retried elsewhere. CANCELLED counts: the
# coordinator cancels an attempt by cancelling its task, never by the RPC status, so a
# CANCELLED status means the agent's side went away (an agent stopping mid-task).
RETRYABLE = {
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.ABORTED,
}
# Failures the caller caused (bad options, a prompt over the model's limits): not retried
# (not in RETRYABLE) and not held against the endpoint's error rate, so one client's bad
# requests do not steer everyone's traffic away from a healthy node.
CALLER_ERRORS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE}


def agent_gone(err: grpc.aio.AioRpcError) -> bool:
    """True when a RunTask ended without the agent saying so: its process died or the
    network between broke. The agent marks every status it sends itself with
    ``AGENT_TRAILER`` in the trailing metadata; a broken transport has no trailers. A retry
    then avoids every endpoint of that node, not only the one that failed: its other
    endpoints are behind the same dead agent."""
    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return False
    return AGENT_TRAILER not in trailer_keys(err)


@dataclass(frozen=True, slots=True)
class AttemptEvent:
    attempt: int
    event: node_agent_pb2.RunTaskResponse


@dataclass(frozen=True, slots=True)
class AttemptDone:
    attempt: int
    error: grpc.aio.AioRpcError | None


Inbox = asyncio.Queue[Assignment | AttemptEvent | AttemptDone | FinishOutcome]


def merge_chunks(into: common_pb2.OutputChunk, more: common_pb2.OutputChunk) -> bool:
    """Append ``more`` to ``into`` when the result reads the same as the two in order
    (text after text, thinking before text, no tool calls in either); False, and nothing
    changed, otherwise. ``into`` keeps its ``seq``."""
    if into.tool_calls or more.tool_calls or (more.thinking and into.text):
        return False
    into.text += more.text
    into.thinking += more.thinking
    into.logprobs.extend(more.logprobs)
    return True


def gather_chunks(
    chunk: common_pb2.OutputChunk, inbox: Inbox, attempt: int
) -> Assignment | AttemptEvent | AttemptDone | FinishOutcome | None:
    """Merge into ``chunk`` the chunks of ``attempt`` queued behind it in ``inbox`` (the
    caller reads slower than the agent sends: a busy coordinator), so they go on as one
    message, fewer messages exactly when they cost most. Returns the first item taken that
    could not be merged (to be handled next), or None."""
    while not inbox.empty():
        following = inbox.get_nowait()
        if not (
            isinstance(following, AttemptEvent)
            and following.attempt == attempt
            and following.event.HasField("chunk")
            and merge_chunks(chunk, following.event.chunk)
        ):
            return following
    return None


# Called with (placement, request, assignment, stats) for every result an agent returns.
ResultObserver = Callable[
    [Placement, node_agent_pb2.RunTaskRequest, Assignment, common_pb2.TaskStats], None
]


class AttemptRunner:
    """Runs the dispatcher's attempts: shares its registry, channels, scheduler, speeds,
    answer lengths, metrics, clock, snapshot and result observers (the same objects)."""

    def __init__(
        self,
        registry: Registry,
        channels: AgentChannels,
        scheduler: Scheduler,
        speeds: SpeedTracker,
        lengths: AnswerLengths,
        metrics: CoordinatorMetrics,
        clock: Callable[[], float],
        snapshot: Callable[[], ClusterSnapshot],
        result_observers: list[ResultObserver],
        learn: Callable[[Finished], None] | None = None,
    ) -> None:
        self.registry = registry
        self.channels = channels
        self.scheduler = scheduler
        self.speeds = speeds
        self.lengths = lengths
        self.metrics = metrics
        self.clock = clock
        self.snapshot = snapshot
        self.result_observers = result_observers
        # A policy that learns from answers (coordinator.policy.Finished), if placing.
        self.learn = learn

    def finish(self, run: TaskRun, done: AttemptDone, adopted: bool = False) -> bool:
        """Report an attempt's end to the scheduler; True when the task succeeded,
        False when it was requeued; raises when it failed for good. An adopted attempt
        the agent no longer has (NOT_FOUND: it ended unread, or the agent restarted) is
        run again."""
        placement = run.placements[-1]
        now = self.clock()
        if done.error is None:
            self.scheduler.finished(run.task_id, done.attempt, now, ok=True)
            run.state = cluster_pb2.TASK_STATE_SUCCEEDED
            return True
        err = done.error
        gone = adopted and err.code() is grpc.StatusCode.NOT_FOUND
        if gone:
            self.metrics.adoptions.labels("gone").inc()
        retryable = gone or err.code() in RETRYABLE
        if err.code() not in CALLER_ERRORS and not gone:
            self.speeds.observe(placement.node, placement.endpoint_id, run.model, ok=False)
        outcome = self.scheduler.finished(
            run.task_id,
            done.attempt,
            now,
            ok=False,
            retryable=retryable,
            error=err.details() or "",
            also_avoid=self.node_endpoints(placement.node) if agent_gone(err) else (),
        )
        if outcome.kind is FinishKind.STALE:
            # The scheduler ended this attempt first (its node was lost, its deadline
            # passed) and its outcome is on its way to this task's inbox: that decides.
            log.info(
                "task %s attempt %d on %s/%s ended after its node was lost: %s %s",
                run.task_id,
                done.attempt,
                placement.node,
                placement.endpoint_id,
                err.code().name,
                err.details(),
            )
            return False
        log.warning(
            "task %s attempt %d on %s/%s failed (%s): %s %s",
            run.task_id,
            done.attempt,
            placement.node,
            placement.endpoint_id,
            outcome.kind.value,
            err.code().name,
            err.details(),
        )
        if outcome.kind is FinishKind.REQUEUED:
            self.metrics.requeues.labels(placement.node).inc()
            return False
        if not retryable:
            raise err
        raise AttemptsExhausted(
            err.code(),
            f"task {run.task_id} failed on {placement.node}/{placement.endpoint_id} "
            f"(attempt {done.attempt}): {err.details()}",
        )

    async def pump(
        self,
        request: node_agent_pb2.RunTaskRequest,
        assignment: Assignment,
        placement: Placement,
        inbox: Inbox,
        follow_token: str = "",
    ) -> None:
        """Run one attempt on its agent, forwarding every event to the task's inbox."""
        call = node_agent_pb2.RunTaskRequest()
        call.CopyFrom(request)
        call.endpoint_id = placement.endpoint_id
        call.attempt = assignment.attempt
        call.adopt = assignment.adopted
        call.follow_token = follow_token
        self.registry.running[placement.node] += 1
        record = self.registry.find(placement.node)
        sent_at = self.clock()
        try:
            async for event in self.channels.stub(placement.agent_address, placement.node).RunTask(
                call
            ):
                if record is not None:
                    self.registry.heard(record)
                if event.HasField("result"):
                    stats = event.result.stats
                    self.speeds.observe(
                        placement.node,
                        placement.endpoint_id,
                        request.model,
                        ok=True,
                        eval_count=stats.eval_count,
                        eval_duration_ns=stats.eval_duration_ns,
                        prompt_eval_count=stats.prompt_eval_count,
                        prompt_eval_duration_ns=stats.prompt_eval_duration_ns,
                        load_duration_ns=stats.load_duration_ns,
                        model_bytes=cold_load_bytes(assignment, self.snapshot()),
                    )
                    # An answer cut off at num_predict ("length") says only the cap (it is
                    # learned for that cap alone); an embedding's 0 tokens are not learned
                    # (AnswerLengths skips them).
                    self.lengths.observe(
                        task_type_name(request.type),
                        request.model,
                        stats.eval_count,
                        cap=answer_cap(request),
                        cut=event.result.done_reason == "length",
                    )
                    for observe in self.result_observers:
                        observe(placement, request, assignment, stats)
                    if self.learn is not None:
                        self.learn(
                            Finished(
                                placement.node,
                                placement.endpoint_id,
                                request.model,
                                sent_at,
                                self.clock(),
                                stats.eval_count,
                            )
                        )
                inbox.put_nowait(AttemptEvent(assignment.attempt, event))
            inbox.put_nowait(AttemptDone(assignment.attempt, None))
        except grpc.aio.AioRpcError as err:
            inbox.put_nowait(AttemptDone(assignment.attempt, err))
        finally:
            self.registry.running[placement.node] -= 1

    def node_endpoints(self, node: str) -> list[EndpointKey]:
        for view in self.snapshot().nodes:
            if view.name == node:
                return [ep.key for ep in view.endpoints]
        return []
