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
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from coordinator.metrics import CoordinatorMetrics
from coordinator.registry import NodeRecord, NodeState, Registry, UnknownNode
from coordinator.routing import (
    ClusterSnapshot,
    Decision,
    EndpointKey,
    EndpointView,
    LoadedModelView,
    NodeView,
    Priority,
    RouterConfig,
    SpeedTracker,
    TaskSpec,
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
from hive.agent_channels import AgentChannels
from hive.serving import AGENT_TRAILER, trailer_keys
from hive.v1 import cluster_pb2, common_pb2, node_agent_pb2

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
# Prompt tokens an image costs a vision model (llava's 576; others differ: an estimate).
IMAGE_PROMPT_TOKENS = 576
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
# Output tokens assumed when a request does not bound them (num_predict), per task type.
DEFAULT_OUTPUT_TOKENS = {"inference": 256, "code_review": 512, "testing": 768}
DEFAULT_OUTPUT_TOKENS_OTHER = 1024

_PRIORITIES = {
    common_pb2.PRIORITY_UNSPECIFIED: Priority.NORMAL,
    common_pb2.PRIORITY_LOW: Priority.LOW,
    common_pb2.PRIORITY_NORMAL: Priority.NORMAL,
    common_pb2.PRIORITY_HIGH: Priority.HIGH,
}


def agent_gone(err: grpc.aio.AioRpcError) -> bool:
    """True when a RunTask ended without the agent saying so: its process died or the
    network between broke. The agent marks every status it sends itself with
    ``AGENT_TRAILER`` in the trailing metadata; a broken transport has no trailers. A retry
    then avoids every endpoint of that node, not only the one that failed: its other
    endpoints are behind the same dead agent."""
    if err.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED):
        return False
    return AGENT_TRAILER not in trailer_keys(err)


class UnknownModel(LookupError):
    """No endpoint in the cluster could ever run the model (maps to FAILED_PRECONDITION)."""


class RoutingLoop(RuntimeError):
    """Endpoints have the model, but every one leads to a Hive cluster the request has
    passed through (maps to FAILED_PRECONDITION)."""

    def __init__(self, model: str, via: Sequence[str]) -> None:
        super().__init__(
            f"every endpoint with model {model!r} leads to a Hive cluster this request has "
            f"already passed through (via {' -> '.join(via)}); sending it there would loop"
        )


class NoCapacity(RuntimeError):
    """Endpoints have the model but none can take the task now (maps to UNAVAILABLE)."""


class Overloaded(RuntimeError):
    """The coordinator's queue is full (maps to RESOURCE_EXHAUSTED with a retry hint)."""

    def __init__(self, retry_after_seconds: float) -> None:
        super().__init__(f"the coordinator's queue is full; retry after {retry_after_seconds:.1f}s")
        self.retry_after_seconds = retry_after_seconds


class AttemptsExhausted(RuntimeError):
    """The task failed for good; carries the gRPC status to report."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Placement:
    node: str
    endpoint_id: str
    agent_address: str


@dataclass(frozen=True, slots=True)
class Adoption:
    """Where an earlier coordinator (a dead leader, this one before a restart) had a task
    running: the next ``Dispatcher.run`` of that task id takes the attempt on there, if
    the node re-reports it, instead of running the task again."""

    node: str
    endpoint_id: str
    attempt: int


@dataclass
class Assigned:
    """Emitted when an attempt is placed; emitted again when a retry moves the task."""

    task_id: str
    placement: Placement
    attempt: int
    # A direct run's token for FollowTask on the attempt's agent ("" otherwise).
    follow_token: str = ""


@dataclass
class TaskRun:
    """What the coordinator remembers about one task (kept for ``ExplainTask``)."""

    task_id: str
    model: str
    type: str
    placements: list[Placement] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    state: cluster_pb2.TaskState = cluster_pb2.TASK_STATE_QUEUED
    error: str = ""
    # The size the router priced: prompt and expected answer tokens, and the answer
    # estimate's source ("learned", "default", "num_predict").
    prompt_tokens: int = 0
    output_tokens: int = 0
    output_source: str = ""
    # On the coordinator's clock: accepted, and when an agent first reported it running.
    submitted_at: float = 0.0
    assigned_at: float | None = None
    started_at: float | None = None
    # Federation: the clusters the task passed through, this one last.
    via: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Event:
    attempt: int
    event: node_agent_pb2.RunTaskResponse


@dataclass(frozen=True, slots=True)
class _Done:
    attempt: int
    error: grpc.aio.AioRpcError | None


_Inbox = asyncio.Queue[Assignment | _Event | _Done | FinishOutcome]


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
    chunk: common_pb2.OutputChunk, inbox: _Inbox, attempt: int
) -> Assignment | _Event | _Done | FinishOutcome | None:
    """Merge into ``chunk`` the chunks of ``attempt`` queued behind it in ``inbox`` (the
    caller reads slower than the agent sends: a busy coordinator), so they go on as one
    message, fewer messages exactly when they cost most. Returns the first item taken that
    could not be merged (to be handled next), or None."""
    while not inbox.empty():
        following = inbox.get_nowait()
        if not (
            isinstance(following, _Event)
            and following.attempt == attempt
            and following.event.HasField("chunk")
            and merge_chunks(chunk, following.event.chunk)
        ):
            return following
    return None


def snapshot_from_registry(
    registry: Registry,
    speeds: SpeedTracker,
    protected: Mapping[EndpointKey, frozenset[str]] | None = None,
) -> ClusterSnapshot:
    """The router's view of the live cluster: what every node said in its last heartbeat,
    with the optimizer's placement (``protected``) when it published one.

    In-flight counts are left at zero here: the scheduler overlays its own, which are
    exact, on top of telemetry, which lags.
    """
    nodes = []
    rates = speeds.load_rates()
    for record in registry:
        nodes.append(_node_view(record, rates))
    # ``protected`` itself, even empty: ``Dispatcher.snapshot`` tells a placement that
    # changed by identity (``protected or {}`` made a new dict each time, so the snapshot
    # was rebuilt on every call: 12 % of a busy coordinator's CPU).
    return ClusterSnapshot(
        tuple(nodes), speeds.speeds(), speeds.error_rates(), {} if protected is None else protected
    )


def _node_view(record: NodeRecord, load_rates: Mapping[EndpointKey, float]) -> NodeView:
    info, telemetry = record.info, record.telemetry
    gpus = {g.index: g for g in info.gpus}
    gpu_samples = {g.index: g for g in telemetry.gpus}
    endpoint_samples = {e.id: e for e in telemetry.endpoints}
    endpoints = []
    for endpoint in info.endpoints:
        indices = list(endpoint.gpu_indices)
        sample = endpoint_samples.get(endpoint.id)
        samples = [gpu_samples[i] for i in indices if i in gpu_samples]
        endpoints.append(
            EndpointView(
                node=record.name,
                id=endpoint.id,
                gpu_names=tuple(gpus[i].name for i in indices if i in gpus),
                num_parallel=endpoint.num_parallel,
                max_queue=endpoint.max_queue,
                vram_total_bytes=sum(gpus[i].memory_total_bytes for i in indices if i in gpus),
                vram_used_bytes=sum(s.memory_used_bytes for s in samples),
                models={m.name: m.size_bytes for m in endpoint.models},
                loaded=tuple(
                    LoadedModelView(m.name, m.size_vram_bytes)
                    for m in (sample.loaded_models if sample else ())
                ),
                healthy=sample.healthy if sample is not None else True,
                utilization_percent=(
                    sum(s.utilization_percent for s in samples) / len(samples) if samples else 0.0
                ),
                load_bytes_per_second=load_rates.get((record.name, endpoint.id), 0.0),
                hive_cluster=endpoint.hive_cluster,
            )
        )
    return NodeView(
        name=record.name,
        state=record.state.value,
        draining=record.draining,
        specializations=tuple(info.specializations),
        endpoints=tuple(endpoints),
    )


def cold_load_bytes(assignment: Assignment, snapshot: ClusterSnapshot) -> int:
    """Size of the task's model if the router sent this attempt to load it cold, else 0.

    Ollama's ``load_duration`` is the time a request waited for its runner: a load, or
    only a turn in a busy runner's queue. Learning the disk speed from the second kind
    would make cold loads look slow wherever requests queue, so only attempts routed to
    an endpoint without the model count (0 also when the endpoint is gone or the model's
    size is unknown)."""
    if not assignment.routed_cold:
        return 0
    endpoint = snapshot.endpoint((assignment.node, assignment.endpoint_id))
    return endpoint.models.get(assignment.task.model, 0) if endpoint is not None else 0


def _usable(snapshot: ClusterSnapshot) -> ClusterSnapshot:
    """The snapshot without nodes that take no work for a while (draining or lost)."""
    return ClusterSnapshot(
        tuple(n for n in snapshot.nodes if not n.draining and n.state != "lost"),
        snapshot.speeds,
        snapshot.error_rates,
    )


def task_type_name(value: int) -> str:
    """The router's name of a proto TaskType ("code_review" for TASK_TYPE_CODE_REVIEW);
    unspecified or unknown values are plain inference."""
    if value == common_pb2.TASK_TYPE_UNSPECIFIED:
        return "inference"
    try:
        return common_pb2.TaskType.Name(value).removeprefix("TASK_TYPE_").lower()
    except ValueError:
        return "inference"


def answer_cap(request: node_agent_pb2.RunTaskRequest) -> int:
    """The request's ``num_predict`` when it caps the answer (> 0), else 0."""
    options = request.options.fields
    bound = options["num_predict"].number_value if "num_predict" in options else 0
    return int(bound) if bound > 0 else 0


def answer_estimate(
    request: node_agent_pb2.RunTaskRequest, kind: str, lengths: AnswerLengths | None
) -> tuple[int, str]:
    """Expected answer tokens and where the number came from: "learned", "default" or
    "num_predict" (the request's cap, when below the other two); an embedding has none
    ("embedding")."""
    if request.WhichOneof("input") == "embed":
        return 0, "embedding"
    learned = lengths.estimate(kind, request.model) if lengths is not None else None
    if learned is not None:
        output, source = learned, "learned"
    else:
        output, source = DEFAULT_OUTPUT_TOKENS.get(kind, DEFAULT_OUTPUT_TOKENS_OTHER), "default"
    cap = answer_cap(request)
    if cap and cap < output:
        output, source = cap, "num_predict"
    return output, source


def task_spec(
    request: node_agent_pb2.RunTaskRequest,
    priority: int,
    deadline: float | None,
    output_tokens: int | None = None,
) -> TaskSpec:
    """The router's view of a task: type, model, urgency and an estimate of its size.

    ``output_tokens`` is the answer's estimate (``answer_estimate``); without it, the task
    type's default, capped by ``num_predict``."""
    kind = task_type_name(request.type)
    source = request.WhichOneof("input")
    images = 0
    if source == "chat":
        chat = request.chat
        # The tools' schemas are part of the prompt the model reads.
        chars = sum(len(m.content) for m in chat.messages) + sum(map(len, chat.tools))
        images = sum(len(m.images) for m in chat.messages)
    elif source == "embed":
        chars = sum(len(text) for text in request.embed.input)
    else:
        g = request.generate
        chars = len(g.prompt) + len(g.system) + len(g.suffix)
        images = len(g.images)
    output = output_tokens if output_tokens is not None else answer_estimate(request, kind, None)[0]
    return TaskSpec(
        id=request.task_id,
        type=kind,
        model=request.model,
        priority=_PRIORITIES.get(priority, Priority.NORMAL),  # type: ignore[call-overload]
        prompt_tokens=max(1, chars // 4) + images * IMAGE_PROMPT_TOKENS,
        output_tokens=output,
        deadline=deadline,
        via=frozenset(request.via),
    )


class Dispatcher:
    def __init__(
        self,
        registry: Registry,
        channels: AgentChannels,
        config: RouterConfig,
        clock: Callable[[], float],
        metrics: CoordinatorMetrics | None = None,
    ) -> None:
        self.registry = registry
        self.channels = channels
        self.clock = clock
        # This cluster's name (federation; Coordinator.cluster_name), set once serving.
        self.cluster_name = ""
        self.metrics = metrics or CoordinatorMetrics()
        self.scheduler = Scheduler(config)
        self.speeds = SpeedTracker()
        # Answer lengths of finished tasks, for the next tasks' estimates.
        self.lengths = AnswerLengths()
        # Called with (placement, request, assignment, stats) for every result an
        # agent returns, on the event loop (the optimizer records its history from them).
        self.result_observers: list[
            Callable[
                [Placement, node_agent_pb2.RunTaskRequest, Assignment, common_pb2.TaskStats], None
            ]
        ] = []
        self.tasks: collections.OrderedDict[str, TaskRun] = collections.OrderedDict()
        self._inboxes: dict[str, _Inbox] = {}
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
            self._usable = _usable(snapshot)
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
        inbox: _Inbox = asyncio.Queue()
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
        held: Assignment | _Event | _Done | FinishOutcome | None = None
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
                    pump = asyncio.create_task(self._pump(request, item, placement, inbox, token))
                elif isinstance(item, _Event):
                    if item.attempt == attempt:
                        if run.started_at is None and item.event.HasField("started"):
                            run.started_at = self.clock()
                        if item.event.HasField("result"):
                            tokens = item.event.result.stats.eval_count
                        elif item.event.HasField("chunk"):
                            held = gather_chunks(item.event.chunk, inbox, attempt)
                        yield item.event
                elif isinstance(item, _Done):
                    if item.attempt != attempt:
                        continue  # an attempt the scheduler already ended (stale)
                    if self._finish(
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

    def _finish(self, run: TaskRun, done: _Done, adopted: bool = False) -> bool:
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
            also_avoid=self._node_endpoints(placement.node) if agent_gone(err) else (),
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

    async def _pump(
        self,
        request: node_agent_pb2.RunTaskRequest,
        assignment: Assignment,
        placement: Placement,
        inbox: _Inbox,
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
                    # An answer cut off at num_predict ("length") says only the cap; an
                    # embedding's 0 tokens are not learned (AnswerLengths skips them).
                    if event.result.done_reason != "length":
                        self.lengths.observe(
                            task_type_name(request.type), request.model, stats.eval_count
                        )
                    for observe in self.result_observers:
                        observe(placement, request, assignment, stats)
                inbox.put_nowait(_Event(assignment.attempt, event))
            inbox.put_nowait(_Done(assignment.attempt, None))
        except grpc.aio.AioRpcError as err:
            inbox.put_nowait(_Done(assignment.attempt, err))
        finally:
            self.registry.running[placement.node] -= 1

    def _node_endpoints(self, node: str) -> list[EndpointKey]:
        for view in self.snapshot().nodes:
            if view.name == node:
                return [ep.key for ep in view.endpoints]
        return []

    def _address(self, node: str) -> str:
        return self.registry.get(node).info.agent_address
