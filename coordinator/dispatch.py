"""Running tasks on agents: the production driver of the sans-IO scheduler.

``Dispatcher.run`` submits a task to the ``Scheduler`` (admission control, priority
queues, backpressure), waits for it to be assigned, calls ``RunTask`` on the chosen
agent and relays its stream. When an attempt fails in a way another endpoint could
fix (the agent died, the endpoint is busy or broken) the scheduler requeues it,
avoiding the endpoints that failed, at most ``max_attempts`` times; the caller sees
a fresh assignment and discards the partial output of the failed attempt. A lost
node's running attempts are requeued at once, and a late result from them is stale.

All scheduler calls happen on the event loop, so its state has one owner. One
background loop (``_dispatch_loop``) turns "something changed" kicks into
``Scheduler.dispatch`` rounds and delivers each assignment to the waiting ``run``.

The pieces live by name: ``task_runs`` (errors and value types), ``task_specs`` (a
request as the router sees it), ``snapshots`` (the routing snapshot from the registry),
``attempts`` (one attempt on an agent and its retry accounting). Their public names are
importable from here too.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping

import grpc

from coordinator.attempts import (
    CALLER_ERRORS,
    RETRYABLE,
    AttemptDone,
    AttemptEvent,
    AttemptRunner,
    Inbox,
    ResultObserver,
    agent_gone,
    gather_chunks,
    merge_chunks,
)
from coordinator.metrics import CoordinatorMetrics
from coordinator.policy import Policy
from coordinator.registry import NodeRecord, NodeState, Registry, UnknownNode
from coordinator.routing import (
    ClusterSnapshot,
    EndpointKey,
    RouterConfig,
    SpeedTracker,
    could_ever_run,
)
from coordinator.routing.lengths import AnswerLengths
from coordinator.scheduler import (
    Assignment,
    FinishKind,
    FinishOutcome,
    QueueFull,
    Scheduler,
    Unroutable,
)
from coordinator.snapshots import cold_load_bytes, snapshot_from_registry, usable_snapshot
from coordinator.task_runs import (
    Adoption,
    Assigned,
    AttemptsExhausted,
    NoCapacity,
    Overloaded,
    Placement,
    RoutingLoop,
    TaskRun,
    UnknownModel,
)
from coordinator.task_specs import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_OUTPUT_TOKENS_OTHER,
    IMAGE_PROMPT_TOKENS,
    answer_cap,
    answer_estimate,
    task_spec,
    task_type_name,
)
from hive.agent_channels import AgentChannels
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2

__all__ = [
    "ADOPT_WAIT_SECONDS",
    "CALLER_ERRORS",
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_OUTPUT_TOKENS_OTHER",
    "EXPLAIN_HISTORY",
    "IMAGE_PROMPT_TOKENS",
    "REJOIN_SECONDS",
    "RETRYABLE",
    "SPEEDS_STALENESS_SECONDS",
    "TICK_SECONDS",
    "Adoption",
    "Assigned",
    "AttemptsExhausted",
    "Dispatcher",
    "NoCapacity",
    "Overloaded",
    "Placement",
    "RoutingLoop",
    "TaskRun",
    "UnknownModel",
    "_Done",
    "_Event",
    "_Inbox",
    "agent_gone",
    "answer_cap",
    "answer_estimate",
    "cold_load_bytes",
    "gather_chunks",
    "merge_chunks",
    "snapshot_from_registry",
    "task_spec",
    "task_type_name",
]

log = logging.getLogger("hive.coordinator.dispatch")

# How often the dispatch loop runs even without a kick (deadlines, telemetry changes).
TICK_SECONDS = 0.25
# A routing snapshot is rebuilt when the registry changes; measured speeds and error
# rates, which change with every finished task, may be this stale.
SPEEDS_STALENESS_SECONDS = 0.25
# A coordinator that just started (or just took over as leader) knows no node until the
# agents reconnect (their reconnect_max_seconds defaults to 10): for this long after the
# dispatcher starts, a task arriving before any node registered waits for the first one
# instead of being refused as "no node has the model".
REJOIN_SECONDS = 10.0
# How long after the dispatcher starts a task an earlier coordinator had running waits for
# its node to register again and re-report it (then it is run again instead).
ADOPT_WAIT_SECONDS = 15.0
# Decisions kept for `hive explain`, most recent tasks.
EXPLAIN_HISTORY = 10_000

# The inbox's items under the names the token-path tests import from here.
_Event = AttemptEvent
_Done = AttemptDone
_Inbox = Inbox


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        channels: AgentChannels,
        config: RouterConfig,
        clock: Callable[[], float],
        metrics: CoordinatorMetrics | None = None,
        policy: Policy | None = None,
    ) -> None:
        """``policy`` places tasks (default: the router, ``HivePolicy``); a baseline's
        ``learn``, when it has one, is told of every answer as a client sees it."""
        self.registry = registry
        self.channels = channels
        self.clock = clock
        # This cluster's name (federation; Coordinator.cluster_name), set once serving.
        self.cluster_name = ""
        self.metrics = metrics or CoordinatorMetrics()
        self.scheduler = Scheduler(config, policy=policy)
        self.speeds = SpeedTracker()
        # Answer lengths of finished tasks, for the next tasks' estimates.
        self.lengths = AnswerLengths()
        # Called with (placement, request, assignment, stats) for every result an
        # agent returns, on the event loop (the optimizer records its history from them).
        self.result_observers: list[ResultObserver] = []
        self.tasks: collections.OrderedDict[str, TaskRun] = collections.OrderedDict()
        self._inboxes: dict[str, Inbox] = {}
        # Tasks the store had running on agents when this coordinator started (Adoption).
        self._adoptable: dict[str, Adoption] = {}
        # Until the state's running tasks are known (``expect``), every re-reported task
        # is kept: an agent may register before the workflow engine has read the store.
        self.adoptions_known = False
        self._kicked = asyncio.Event()
        # The optimizer's placement (endpoint -> models not to evict), set by LiveOptimizer.
        self.protected: Mapping[EndpointKey, frozenset[str]] = {}
        self._snapshot: ClusterSnapshot | None = None
        self._snapshot_version = -1
        self._snapshot_at = 0.0
        # The snapshot without draining or lost nodes, derived with it.
        self._usable: ClusterSnapshot | None = None
        self._loop: asyncio.Task[None] | None = None
        self._started_at = clock()
        # One attempt on an agent, and its end reported to the scheduler.
        self._attempts = AttemptRunner(
            registry,
            channels,
            self.scheduler,
            self.speeds,
            self.lengths,
            self.metrics,
            clock,
            self.snapshot,
            self.result_observers,
            learn=getattr(policy, "learn", None),
        )
        registry.on_state_change.append(self._node_changed)

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> None:
        self._started_at = self.clock()
        self._loop = asyncio.create_task(self._dispatch_loop(), name="dispatch")

    def rejoining(self) -> bool:
        """Whether no node has registered yet within REJOIN_SECONDS of the start: the
        agents may still be reconnecting, so an empty cluster says nothing yet."""
        return (
            not self.registry.first_join.is_set()
            and self.clock() - self._started_at < REJOIN_SECONDS
        )

    async def _await_first_node(self) -> None:
        """Before any node registered, and within REJOIN_SECONDS of the start, wait for
        the first (bounded by what is left of that time)."""
        left = REJOIN_SECONDS - (self.clock() - self._started_at)
        if self.registry.first_join.is_set() or left <= 0:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(left):
                await self.registry.first_join.wait()

    def expect(self, task_id: str, adoption: Adoption) -> None:
        """The state says ``task_id`` was running as ``adoption`` says: adopt it when it
        is run (``run``), and keep the agent from stopping it meanwhile (``keeps``)."""
        self._adoptable[task_id] = adoption

    def keeps(self, task_id: str) -> bool:
        """Whether this coordinator runs ``task_id`` or will adopt it: an agent's orphan
        it does not keep is abandoned (``Welcome.abandoned_task_ids``)."""
        return not self.adoptions_known or task_id in self._inboxes or task_id in self._adoptable

    async def _reported(self, task_id: str, adoption: Adoption) -> bool:
        """Whether ``adoption``'s node re-reports ``task_id``: waits for the node to
        register, within ADOPT_WAIT_SECONDS of the start."""
        while True:
            try:
                record = self.registry.get(adoption.node)
            except UnknownNode:
                record = None
            if record is not None and record.state is not NodeState.LOST:
                return task_id in record.agent_running
            if self.clock() - self._started_at >= ADOPT_WAIT_SECONDS:
                return False
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    def kick(self) -> None:
        """Something changed (a task arrived or ended, a node came or went): dispatch soon."""
        self._kicked.set()

    def snapshot(self) -> ClusterSnapshot:
        """The cluster as the router sees it, rebuilt only when the registry changed (or
        the speeds are older than SPEEDS_STALENESS_SECONDS): building one costs about
        15 µs per node, and every submit and dispatch round reads one."""
        now = self.clock()
        if (
            self._snapshot is None
            or self._snapshot_version != self.registry.version
            or now - self._snapshot_at > SPEEDS_STALENESS_SECONDS
            or self._snapshot.protected is not self.protected
        ):
            self._snapshot = snapshot_from_registry(self.registry, self.speeds, self.protected)
            self._snapshot_version = self.registry.version
            self._snapshot_at = now
            self._usable = None
        return self._snapshot

    def usable_snapshot(self) -> ClusterSnapshot:
        """``snapshot()`` without the nodes that take no work for a while (draining or
        lost), derived once per snapshot rather than on every submit."""
        snapshot = self.snapshot()
        if self._usable is None:
            self._usable = usable_snapshot(snapshot)
        return self._usable

    async def _dispatch_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._kicked.wait()
            self._kicked.clear()
            now = self.clock()
            for outcome in self.scheduler.expire(now):
                self._deliver(outcome)
            if self.scheduler.queue_depth == 0:
                continue
            for assignment in self.scheduler.dispatch(self.snapshot(), now):
                inbox = self._inboxes.get(assignment.task.id)
                if inbox is None:  # its caller went away between submit and now
                    self.scheduler.cancel(assignment.task.id)
                    continue
                inbox.put_nowait(assignment)

    def _deliver(self, outcome: FinishOutcome) -> None:
        inbox = self._inboxes.get(outcome.task_id)
        if inbox is not None:
            inbox.put_nowait(outcome)

    def _node_changed(self, record: NodeRecord, old: NodeState) -> None:
        if record.state is NodeState.LOST:
            for outcome in self.scheduler.node_lost(record.name, self.clock()):
                if outcome.kind is FinishKind.REQUEUED:
                    self.metrics.requeues.labels(record.name).inc()
                log.warning(
                    "task %s: attempt %d on lost node %s %s",
                    outcome.task_id,
                    outcome.attempt,
                    record.name,
                    "requeued" if outcome.kind is FinishKind.REQUEUED else "failed",
                )
                self._deliver(outcome)
        self.kick()

    def set_draining(self, node: str, draining: bool) -> None:
        if draining:
            self.scheduler.drain(node)
        else:
            self.scheduler.undrain(node)
        self.kick()

    # --- running one task --------------------------------------------------------

    def _remember(self, run: TaskRun) -> None:
        self.tasks[run.task_id] = run
        while len(self.tasks) > EXPLAIN_HISTORY:
            self.tasks.popitem(last=False)

    async def run(
        self,
        request: node_agent_pb2.RunTaskRequest,
        priority: int = common_pb2.PRIORITY_NORMAL,
        deadline_seconds: float | None = None,
        avoid_nodes: Collection[str] = (),
        chain_only: bool = False,
        direct: bool = False,
    ) -> AsyncIterator[Assigned | node_agent_pb2.RunTaskResponse]:
        """Run ``request``; yield assignments and the agent's events.

        ``direct``: each attempt gets a follow token (in its ``Assigned``), and its output
        goes only to whoever follows it on the agent with that token; the events yielded
        here are the assignments, TaskStarted and the result.

        The caller sets ``task_id``; closing or cancelling the iteration withdraws the
        task (cancelling it on its agent). ``deadline_seconds`` bounds the whole task,
        queueing included. ``avoid_nodes`` are placed only when nothing else fits well
        (distinct reviewers of one stage); ``chain_only`` adds every node outside the task
        type's specialization chain to them (workflow stages stay on their chain's nodes
        unless none of those can run the model).
        """
        await self._await_first_node()
        adoption = self._adoptable.get(request.task_id)
        adopt = adoption is not None and await self._reported(request.task_id, adoption)
        self._adoptable.pop(request.task_id, None)
        now = self.clock()
        deadline = None if deadline_seconds is None else now + deadline_seconds
        if self.cluster_name and self.cluster_name not in request.via:
            # Every task, a workflow's stages too, leaves with this cluster in its route,
            # so no federated cluster sends it back here.
            request.via.append(self.cluster_name)
        answer, answer_source = answer_estimate(request, task_type_name(request.type), self.lengths)
        spec = task_spec(request, priority, deadline, answer)
        snapshot = self.snapshot()
        taken: Assignment | None = None
        try:
            chain = self.scheduler.config.chains.get(spec.type, ())
            outside = (
                {n.name for n in snapshot.nodes if n.name not in chain}
                if chain_only and chain
                else set()
            )
            avoid = [
                ep.key
                for n in snapshot.nodes
                if n.name in avoid_nodes or n.name in outside
                for ep in n.endpoints
            ]
            if adopt:
                assert adoption is not None
                taken = self.scheduler.adopt(
                    spec, adoption.node, adoption.endpoint_id, adoption.attempt, now
                )
            else:
                self.scheduler.submit(
                    spec, snapshot, now, avoid, adoption.attempt if adoption else 0
                )
        except Unroutable:
            if spec.via and could_ever_run(spec.model, snapshot):
                raise RoutingLoop(request.model, request.via) from None
            raise UnknownModel(request.model) from None
        except QueueFull as exc:
            raise Overloaded(exc.retry_after_seconds) from None
        usable = self.usable_snapshot()
        if not adopt and not could_ever_run(spec.model, usable, spec.via):
            self.scheduler.cancel(spec.id)
            where = "is on a draining or lost node"
            if spec.via and could_ever_run(spec.model, usable):
                where += (
                    " or leads to a Hive cluster this request has already passed through "
                    f"(via {' -> '.join(request.via)})"
                )
            raise NoCapacity(f"every endpoint with model {spec.model!r} {where}")
        run = TaskRun(
            request.task_id,
            request.model,
            spec.type,
            prompt_tokens=spec.prompt_tokens,
            output_tokens=spec.output_tokens,
            output_source=answer_source,
            submitted_at=now,
            via=tuple(request.via),
        )
        self._remember(run)
        inbox: Inbox = asyncio.Queue()
        self._inboxes[request.task_id] = inbox
        if taken is not None:
            inbox.put_nowait(taken)
        elif adoption is not None:
            self.metrics.adoptions.labels("gone").inc()
        self.kick()
        pump: asyncio.Task[None] | None = None
        # The attempt whose events count; None once the scheduler ended it (node lost,
        # deadline) and until the next assignment, so its late events and end are ignored.
        attempt: int | None = None
        assigned_at = now
        tokens = 0
        # An item taken from the inbox while gathering chunks, handled next.
        held: Assignment | AttemptEvent | AttemptDone | FinishOutcome | None = None
        try:
            while True:
                item, held = (held, None) if held is not None else (await inbox.get(), None)
                if isinstance(item, Assignment):
                    attempt = item.attempt
                    placement = Placement(item.node, item.endpoint_id, self._address(item.node))
                    run.placements.append(placement)
                    run.decisions.append(item.decision)
                    if run.assigned_at is None:
                        run.assigned_at = self.clock()
                    run.state = cluster_pb2.TASK_STATE_RUNNING
                    self._announce(run, request.type, attempt)
                    assigned_at = self.clock()
                    if item.adopted:
                        self.metrics.adoptions.labels("adopted").inc()
                        log.info(
                            "task %s: adopted attempt %d on %s/%s from the earlier coordinator",
                            request.task_id,
                            attempt,
                            item.node,
                            item.endpoint_id,
                        )
                    else:
                        self.metrics.task_assigned(spec.type, item.queued_seconds, item.decision)
                    token = secrets.token_urlsafe(18) if direct and not item.adopted else ""
                    yield Assigned(request.task_id, placement, attempt, token)
                    pump = asyncio.create_task(
                        self._attempts.pump(request, item, placement, inbox, token)
                    )
                elif isinstance(item, AttemptEvent):
                    if item.attempt == attempt:
                        if run.started_at is None and item.event.HasField("started"):
                            run.started_at = self.clock()
                        if item.event.HasField("result"):
                            tokens = item.event.result.stats.eval_count
                        elif item.event.HasField("chunk"):
                            held = gather_chunks(item.event.chunk, inbox, attempt)
                        yield item.event
                elif isinstance(item, AttemptDone):
                    if item.attempt != attempt:
                        continue  # an attempt the scheduler already ended (stale)
                    if self._attempts.finish(
                        run, item, adopted=taken is not None and item.attempt == taken.attempt
                    ):
                        self._announce(run, request.type, item.attempt)
                        node = run.placements[-1].node
                        self.metrics.task_succeeded(
                            spec.type, node, run.model, self.clock() - assigned_at, tokens
                        )
                        self.metrics.task_ended(spec.type, "succeeded", node)
                        return
                else:  # the scheduler ended this attempt: node lost, deadline passed
                    if pump is not None:
                        pump.cancel()
                    # Whatever the ended attempt's RPC still says (a real SIGKILL breaks
                    # its stream just after the session's) is stale: ignore it.
                    attempt = None
                    if item.kind is FinishKind.REQUEUED:
                        continue
                    code = (
                        grpc.StatusCode.DEADLINE_EXCEEDED
                        if item.reason == "deadline_exceeded"
                        else grpc.StatusCode.UNAVAILABLE
                    )
                    raise AttemptsExhausted(
                        code, f"task {run.task_id} failed: {item.reason} {item.error}".strip()
                    )
        except BaseException as exc:
            if run.state in (cluster_pb2.TASK_STATE_QUEUED, cluster_pb2.TASK_STATE_RUNNING):
                cancelled = isinstance(exc, asyncio.CancelledError | GeneratorExit)
                run.state = (
                    cluster_pb2.TASK_STATE_CANCELLED if cancelled else cluster_pb2.TASK_STATE_FAILED
                )
                run.error = str(exc)
                self.metrics.task_ended(
                    spec.type,
                    "cancelled" if cancelled else "failed",
                    run.placements[-1].node if run.placements else "",
                )
                self._announce(run, request.type, attempt or 0)
            raise
        finally:
            if pump is not None and not pump.done():
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            self._inboxes.pop(request.task_id, None)
            if self.scheduler.task(request.task_id) is not None:
                self.scheduler.cancel(request.task_id)
            self.kick()

    def _announce(self, run: TaskRun, task_type: common_pb2.TaskType, attempt: int) -> None:
        """Tell the cluster's watchers the task's state now: running (each attempt, where
        it was placed), then how it ended."""
        where = run.placements[-1] if run.placements else None
        self.registry.task_changed(
            cluster_pb2.TaskEvent(
                task_id=run.task_id,
                state=run.state,
                node=where.node if where else "",
                endpoint_id=where.endpoint_id if where else "",
                model=run.model,
                type=task_type,
                attempt=attempt,
                error=run.error,
            )
        )

    def _address(self, node: str) -> str:
        return self.registry.get(node).info.agent_address
