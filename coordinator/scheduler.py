"""The coordinator's scheduler core: queues, backpressure, retries, drain, deadlines.

It is sans-IO: it never reads a clock (every method that needs the time takes ``now``),
never sleeps, never talks to a network. The real coordinator and the simulator drive the
same object; the caller does what an ``Assignment`` says (call the agent's ``RunTask``)
and reports back with ``finished``. All mutable scheduling state lives here, owned by one
event loop.

Lifecycle of a task::

    submit ──▶ QUEUED ──dispatch──▶ RUNNING ──finished(ok)──▶ COMPLETED
                  ▲                   │ finished(failed, retryable) / node_lost
                  └─── (attempt < max_attempts) ◀──┘          otherwise ──▶ FAILED
    cancel: QUEUED/RUNNING ──▶ CANCELLED         expire: deadline passed ──▶ FAILED

Invariants:

* A task is in exactly one state; it is in the queue iff QUEUED and counted on exactly
  one endpoint iff RUNNING. Terminal tasks are forgotten at once (their outcome was
  returned to the caller), so memory is bounded by ``max_queue`` plus running work.
  The queue and deadline heaps drop entries lazily (an ended task's deadline entry stays
  until the deadline passes), so a heap is rebuilt from the live tasks once it holds more
  than twice their number plus ``STALE_HEAP_SLACK``: with the gateway's one-hour deadline
  on every request, the deadline heap once kept an entry per request for an hour.
* Each dispatch of a task increments its ``attempt``. Only ``finished`` for the current
  attempt of a RUNNING task changes anything; any other report (an attempt that was
  already requeued after ``node_lost``, a duplicate, a report after cancel or expiry) is
  STALE and ignored, so a task completes at most once.
* An endpoint never has more tasks RUNNING from this scheduler than its limit
  (``num_parallel + queue_allowance`` unless overridden); excess work waits here.

Ordering (aging): a task of priority ``p`` (LOW 0, NORMAL 1, HIGH 2) submitted at ``t``
is served in order of ``t - p * aging_seconds``: its effective priority rises by one
level every ``aging_seconds`` it waits. A LOW task that has waited ``2 * aging_seconds``
(20 s by default) goes before a HIGH task arriving now, so LOW never starves. Because
every waiting task ages at the same rate the order never changes while they wait, and a
heap with fixed keys suffices. ``aging_seconds = 0`` means strict priority, FIFO within.

Holding for a home: with the optimizer's placement (``ClusterSnapshot.protected``), a
task whose best endpoint would load its model cold while the model's home is merely full
stays queued for a bounded time (``home_wait_factor`` times the seconds of that load and
of the protected reloads it causes, counted from submission), then takes the load; the
hold is recorded in ``Decision.hold`` (reason HOLD_WAIT_FOR_HOME). Without a placement
nothing is ever held.

Failure modes: a policy that never finds a feasible endpoint for a model leaves its
tasks queued until their deadline (``submit`` already refuses models that no endpoint
could ever run, with ``Unroutable``); a full queue refuses new work with ``QueueFull``.

The pieces live by name: ``task_states`` (a task's states, assignments, outcomes and
refusals), ``policy`` (what picks an endpoint), ``overlay`` (the scheduler's work on an
endpoint's view), ``holds`` (holding a task for its model's home). Their public names
are importable from here too.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable
from dataclasses import replace

from coordinator.holds import hold_for_home
from coordinator.overlay import overlay_endpoint, work_seconds
from coordinator.policy import HivePolicy, Policy, PolicyContext
from coordinator.residual import ResidualLife
from coordinator.routing.config import WEIGHT_KEYS, RouterConfig
from coordinator.routing.filters import could_ever_run
from coordinator.routing.router import Decision
from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey, EndpointView, NodeView
from coordinator.routing.task import Priority, TaskSpec
from coordinator.task_states import (
    FAIL_ATTEMPTS,
    FAIL_DEADLINE,
    FAIL_NOT_RETRYABLE,
    Assignment,
    DuplicateTask,
    FinishKind,
    FinishOutcome,
    QueueFull,
    TaskInfo,
    TaskRecord,
    TaskState,
    Unroutable,
)

__all__ = [
    "FAIL_ATTEMPTS",
    "FAIL_DEADLINE",
    "FAIL_NOT_RETRYABLE",
    "STALE_HEAP_SLACK",
    "Assignment",
    "DuplicateTask",
    "FinishKind",
    "FinishOutcome",
    "HivePolicy",
    "Policy",
    "PolicyContext",
    "QueueFull",
    "Scheduler",
    "TaskInfo",
    "TaskState",
    "Unroutable",
]

# Stale heap entries tolerated beyond twice the live tasks before a heap is rebuilt: the
# rebuild costs O(entries) and comes after at least as many submissions, so O(1) each.
STALE_HEAP_SLACK = 64


class Scheduler:
    """Priority queues with aging, per-endpoint in-flight limits, admission control,
    retries with failover, drain, node loss, deadlines and cancellation.

    ``policy`` picks endpoints (default: ``HivePolicy(config)``); the simulator passes its
    baselines here so every policy runs through the same queueing and backpressure.
    """

    def __init__(self, config: RouterConfig | None = None, policy: Policy | None = None) -> None:
        self.config = config if config is not None else RouterConfig()
        self.settings = self.config.scheduler
        self.policy: Policy = policy if policy is not None else HivePolicy(self.config)
        self._tasks: dict[str, TaskRecord] = {}
        self._heap: list[tuple[float, float, int, str]] = []
        self._seq = 0
        self._queued = 0
        self._queued_by_priority = {p: 0 for p in Priority}
        self._running: dict[EndpointKey, dict[str, TaskRecord]] = {}
        # Bumped whenever an endpoint's running set changes; with the overlaid view cached
        # for policies that do not read backlog_seconds: key -> (telemetry view, version,
        # overlaid view).
        self._running_version: dict[EndpointKey, int] = {}
        self._bare_views: dict[EndpointKey, tuple[EndpointView, int, EndpointView]] = {}
        self._deadlines: list[tuple[float, str]] = []
        self._draining: set[str] = set()
        self._limit_overrides: dict[EndpointKey, int] = {}
        for name, limit in self.settings.endpoint_limits.items():
            node, ep = name.split("/", 1)
            self._limit_overrides[(node, ep)] = limit
        self._recent_dispatches: deque[float] = deque(maxlen=256)
        # Dispatch rounds in which a task was held for its model's home (see Hold).
        self.holds = 0
        # Remaining work of running requests, learned from finished ones (None: off).
        window = self.settings.residual_window
        self.residual = ResidualLife(window) if window > 0 else None

    # ----- admission -------------------------------------------------------------------

    def submit(
        self,
        task: TaskSpec,
        snapshot: ClusterSnapshot,
        now: float,
        avoid: Iterable[EndpointKey] = (),
        attempts_before: int = 0,
    ) -> None:
        """Queue ``task``. Raises Unroutable if no endpoint in ``snapshot`` could ever run
        its model, QueueFull when ``max_queue`` tasks wait, DuplicateTask for a live id.
        ``avoid`` lists endpoints to steer away from as if an attempt had failed there
        (the failover penalty: a preference, not a filter), e.g. distinct reviewers.
        ``attempts_before``: attempts an earlier coordinator made (its next is one more)."""
        if task.id in self._tasks:
            raise DuplicateTask(f"task {task.id!r} is already {self._tasks[task.id].state.value}")
        if not could_ever_run(task.model, snapshot, task.via):
            raise Unroutable(task.model)
        if self._queued >= self.settings.max_queue:
            raise QueueFull(self.retry_after(now))
        rec = TaskRecord(task, now, failed_on=list(avoid), attempt=attempts_before)
        self._tasks[task.id] = rec
        self._enqueue(rec)
        if task.deadline is not None:
            heapq.heappush(self._deadlines, (task.deadline, task.id))

    def adopt(
        self, task: TaskSpec, node: str, endpoint_id: str, attempt: int, now: float
    ) -> Assignment:
        """Take on attempt ``attempt`` of ``task``, already running on ``node``/
        ``endpoint_id`` for an earlier coordinator: RUNNING there from now, counted against
        the endpoint's limit, finished (or requeued) like any attempt. Raises DuplicateTask
        for a live id."""
        if task.id in self._tasks:
            raise DuplicateTask(f"task {task.id!r} is already {self._tasks[task.id].state.value}")
        decision = Decision(task.id, task.model, (), (), policy="adopted")
        rec = TaskRecord(
            task,
            now,
            state=TaskState.RUNNING,
            attempt=attempt,
            node=node,
            endpoint_id=endpoint_id,
            dispatched_at=now,
            decision=decision,
        )
        self._tasks[task.id] = rec
        self._running.setdefault((node, endpoint_id), {})[task.id] = rec
        self._ran((node, endpoint_id))
        if task.deadline is not None:
            heapq.heappush(self._deadlines, (task.deadline, task.id))
        return Assignment(task, attempt, node, endpoint_id, decision, 0.0, adopted=True)

    def retry_after(self, now: float) -> float:
        """Seconds until the queue has likely drained by one tenth: queue depth over the
        recent dispatch rate, clamped to [0.5, 60]."""
        times = self._recent_dispatches
        if len(times) < 2 or now <= times[0]:
            return 5.0
        rate = len(times) / (now - times[0])
        return min(60.0, max(0.5, 0.1 * self._queued / rate))

    def _enqueue(self, rec: TaskRecord) -> None:
        self._seq += 1
        rec.queue_seq = self._seq
        rec.state = TaskState.QUEUED
        p = int(rec.spec.priority)
        aging = self.settings.aging_seconds
        if aging > 0:
            key = (rec.submitted_at - p * aging, 0.0)
        else:
            key = (float(-p), rec.submitted_at)
        heapq.heappush(self._heap, (key[0], key[1], self._seq, rec.spec.id))
        self._queued += 1
        self._queued_by_priority[rec.spec.priority] += 1

    def _forget(self, task_id: str) -> None:
        """Drop a task that ended; rebuild a heap whose stale entries (ended tasks, tasks
        dequeued since) outnumber the live tasks by STALE_HEAP_SLACK beyond twice."""
        del self._tasks[task_id]
        tasks = self._tasks
        bound = 2 * len(tasks) + STALE_HEAP_SLACK
        if len(self._deadlines) > bound:
            self._deadlines = [e for e in self._deadlines if e[1] in tasks]
            heapq.heapify(self._deadlines)
        if len(self._heap) > bound:
            self._heap = [
                e
                for e in self._heap
                if (rec := tasks.get(e[3])) is not None
                and rec.state is TaskState.QUEUED
                and rec.queue_seq == e[2]
            ]
            heapq.heapify(self._heap)

    def _unqueue(self, rec: TaskRecord) -> None:
        # The heap entry stays behind and is skipped (its queue_seq no longer matches).
        self._queued -= 1
        self._queued_by_priority[rec.spec.priority] -= 1
        rec.queue_seq = -1

    # ----- dispatch --------------------------------------------------------------------

    def limit(self, ep: EndpointView) -> int:
        """The in-flight cap of ``ep``: override, else ``num_parallel + queue_allowance``
        (never above what Ollama itself accepts, ``num_parallel + max_queue``)."""
        override = self._limit_overrides.get((ep.node, ep.id))
        if override is not None:
            return override
        return ep.num_parallel + min(self.settings.queue_allowance, ep.max_queue)

    def set_weight(self, name: str, value: float) -> None:
        """Set router weight ``routing.weights.<name>`` for decisions from now on."""
        if name not in WEIGHT_KEYS:
            raise ValueError(f"unknown router weight {name!r}")
        self.config = replace(self.config, weights=replace(self.config.weights, **{name: value}))
        if isinstance(self.policy, HivePolicy):
            self.policy.config = self.config

    def limit_override(self, node: str, endpoint_id: str) -> int | None:
        """The in-flight cap set for one endpoint (``set_limit``), None when it has none."""
        return self._limit_overrides.get((node, endpoint_id))

    def set_limit(self, node: str, endpoint_id: str, limit: int | None) -> None:
        """Override (or with None, restore) one endpoint's in-flight cap."""
        if limit is None:
            self._limit_overrides.pop((node, endpoint_id), None)
        else:
            self._limit_overrides[(node, endpoint_id)] = max(1, limit)

    def dispatch(self, snapshot: ClusterSnapshot, now: float) -> list[Assignment]:
        """Assign queued tasks, best first, while endpoints have room.

        The snapshot is overlaid with what the scheduler knows better than telemetry:
        its own in-flight tasks per endpoint and model, their remaining work, and drained
        nodes. Tasks whose model has nowhere to go this round are skipped (others behind
        them may still fit elsewhere); tasks past their deadline are left for ``expire``.
        """
        backlog = getattr(self.policy, "reads_backlog", True)
        snap = self.overlay(snapshot, now, backlog)
        limits: dict[EndpointKey, int] = {}
        free = 0
        for node in snap.nodes:
            usable = node.state == "healthy" and not node.draining
            for ep in node.endpoints:
                lim = self.limit(ep)
                limits[(ep.node, ep.id)] = lim
                if usable and ep.healthy:
                    free += max(0, lim - ep.in_flight)
        out: list[Assignment] = []
        if free <= 0 or self._queued == 0:
            return out
        deferred: list[tuple[float, float, int, str]] = []
        blocked_models: set[str] = set()
        heap = self._heap
        while heap and free > 0:
            entry = heapq.heappop(heap)
            rec = self._tasks.get(entry[3])
            if rec is None or rec.state is not TaskState.QUEUED or rec.queue_seq != entry[2]:
                continue  # stale heap entry
            task = rec.spec
            if task.model in blocked_models or (task.deadline is not None and task.deadline <= now):
                deferred.append(entry)
                continue
            ctx = PolicyContext(now, limits, frozenset(rec.failed_on))
            decision = self.policy(task, snap, ctx)
            chosen: EndpointView | None = None
            for cand in decision.candidates:
                found = snap.endpoint(cand.key)
                if found is not None and found.in_flight < limits.get(cand.key, 0):
                    chosen = found
                    break
            if chosen is None:
                blocked_models.add(task.model)
                deferred.append(entry)
                continue
            if snap.protected and self.settings.home_wait_factor > 0.0:
                hold = hold_for_home(rec, chosen, snap, limits, now, self.settings.home_wait_factor)
                if hold is not None:
                    # Tasks of the same model behind it wait too: they must not take the
                    # cold load this one, served first, was kept from.
                    rec.decision = replace(decision, hold=hold)
                    self.holds += 1
                    blocked_models.add(task.model)
                    deferred.append(entry)
                    continue
            self._unqueue(rec)
            rec.state = TaskState.RUNNING
            rec.attempt += 1
            rec.node, rec.endpoint_id = chosen.node, chosen.id
            rec.decision = decision
            rec.dispatched_at = now
            rec.work_seconds = work_seconds(task, chosen, snap, self.config.speed_prior_samples)
            self._running.setdefault(chosen.key, {})[task.id] = rec
            self._ran(chosen.key)
            self._recent_dispatches.append(now)
            free -= 1
            snap = self._overlay_node(snap, chosen.node, now, backlog)
            out.append(
                Assignment(
                    task,
                    rec.attempt,
                    chosen.node,
                    chosen.id,
                    decision,
                    now - rec.submitted_at,
                )
            )
        for entry in deferred:
            heapq.heappush(heap, entry)
        return out

    # ----- the scheduler's view on top of telemetry ----------------------------------------

    def overlay(
        self, snapshot: ClusterSnapshot, now: float, backlog: bool = True
    ) -> ClusterSnapshot:
        """``snapshot`` with this scheduler's in-flight work and drains applied.

        In-flight counts (per endpoint and per model) are the scheduler's own: telemetry
        lags behind assignments by up to a heartbeat. A model with work assigned counts as
        loaded (it is, or is loading). Endpoints the scheduler has nothing on keep their
        reported numbers. Without ``backlog`` the views' ``backlog_seconds`` stay 0.0 (for
        a policy that does not read them) and an endpoint's overlaid view is reused while
        neither its telemetry view nor its running tasks changed."""
        nodes = list(snapshot.nodes)
        changed = False
        for i, node in enumerate(nodes):
            new = self._overlay_one(node, now, backlog)
            if new is not node:
                nodes[i] = new
                changed = True
        if not changed:
            return snapshot
        return ClusterSnapshot(
            tuple(nodes), snapshot.speeds, snapshot.error_rates, snapshot.protected
        )

    def _overlay_node(
        self, snap: ClusterSnapshot, name: str, now: float, backlog: bool = True
    ) -> ClusterSnapshot:
        node = snap.node(name)
        assert node is not None
        new = self._overlay_one(node, now, backlog)
        return snap if new is node else snap.replace_node(new)

    def _overlay_one(self, node: NodeView, now: float, backlog: bool = True) -> NodeView:
        draining = node.draining or node.name in self._draining
        eps = node.endpoints
        new_eps: list[EndpointView] | None = None
        running = self._running
        for j, ep in enumerate(eps):
            key = (ep.node, ep.id)
            mine = running.get(key)
            if not mine and ep.in_flight == 0:
                continue
            if backlog:
                new_ep = overlay_endpoint(ep, mine or {}, now, self.residual)
            else:
                version = self._running_version.get(key, 0)
                cached = self._bare_views.get(key)
                if cached is not None and cached[0] is ep and cached[1] == version:
                    new_ep = cached[2]
                else:
                    new_ep = overlay_endpoint(ep, mine or {}, now, self.residual, backlog=False)
                    self._bare_views[key] = (ep, version, new_ep)
            if new_eps is None:
                new_eps = list(eps)
            new_eps[j] = new_ep
        if new_eps is None and draining == node.draining:
            return node
        return NodeView(
            node.name,
            node.state,
            draining,
            node.specializations,
            tuple(new_eps) if new_eps is not None else eps,
        )

    # ----- results ---------------------------------------------------------------------

    def finished(
        self,
        task_id: str,
        attempt: int,
        now: float,
        ok: bool,
        retryable: bool = True,
        error: str = "",
        also_avoid: Iterable[EndpointKey] = (),
    ) -> FinishOutcome:
        """Report the end of attempt ``attempt`` of ``task_id``. A failure is retried on
        another endpoint when ``retryable`` and attempts remain (steering away from the
        failed endpoint and ``also_avoid``: the rest of a node whose agent died); a report
        for anything but the current attempt of a running task is STALE and changes
        nothing."""
        rec = self._tasks.get(task_id)
        if rec is None or rec.state is not TaskState.RUNNING or rec.attempt != attempt:
            return FinishOutcome(FinishKind.STALE, task_id, attempt)
        node, ep = rec.node, rec.endpoint_id
        self._release(rec)
        if ok:
            if self.residual is not None:
                self.residual.observe(now - rec.dispatched_at, rec.work_seconds)
            self._forget(task_id)
            return FinishOutcome(FinishKind.COMPLETED, task_id, attempt, node, ep)
        rec.failed_on.extend(k for k in also_avoid if k != (node, ep))
        return self._retry_or_fail(rec, now, retryable, error)

    def _release(self, rec: TaskRecord) -> None:
        key = (rec.node, rec.endpoint_id)
        mine = self._running.get(key)
        if mine is not None:
            mine.pop(rec.spec.id, None)
            if not mine:
                del self._running[key]
        self._ran(key)

    def _ran(self, key: EndpointKey) -> None:
        """The set of tasks running on ``key`` changed: its cached overlaid view is stale."""
        self._running_version[key] = self._running_version.get(key, 0) + 1

    def _retry_or_fail(
        self, rec: TaskRecord, now: float, retryable: bool, error: str
    ) -> FinishOutcome:
        task_id, attempt, node, ep = rec.spec.id, rec.attempt, rec.node, rec.endpoint_id
        rec.failed_on.append((node, ep))
        rec.last_error = error
        reason = ""
        if not retryable:
            reason = FAIL_NOT_RETRYABLE
        elif rec.attempt >= self.settings.max_attempts:
            reason = FAIL_ATTEMPTS
        elif rec.spec.deadline is not None and rec.spec.deadline <= now:
            reason = FAIL_DEADLINE
        if reason:
            self._forget(task_id)
            rec.state = TaskState.FAILED
            return FinishOutcome(FinishKind.FAILED, task_id, attempt, node, ep, reason, error)
        rec.node = rec.endpoint_id = ""
        self._enqueue(rec)
        return FinishOutcome(FinishKind.REQUEUED, task_id, attempt, node, ep, "", error)

    def node_lost(self, node: str, now: float) -> list[FinishOutcome]:
        """The node's agent is gone: every attempt running there failed (retryable). Its
        tasks are requeued (avoiding that node's endpoint) or fail if out of attempts; a
        late result from the lost attempts is STALE."""
        out: list[FinishOutcome] = []
        for key in [k for k in self._running if k[0] == node]:
            for rec in sorted(self._running[key].values(), key=lambda r: r.spec.id):
                self._release(rec)
                out.append(self._retry_or_fail(rec, now, True, f"node {node} lost"))
        return out

    def drain(self, node: str) -> None:
        """Send ``node`` no new work; what runs there finishes normally."""
        self._draining.add(node)

    def undrain(self, node: str) -> None:
        self._draining.discard(node)

    def is_draining(self, node: str) -> bool:
        return node in self._draining

    def expire(self, now: float) -> list[FinishOutcome]:
        """Fail every task whose deadline is at or before ``now``. For one that was running,
        the outcome names where: the caller cancels that RPC (its late result is STALE)."""
        out: list[FinishOutcome] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, task_id = heapq.heappop(self._deadlines)
            rec = self._tasks.get(task_id)
            if rec is None or rec.spec.deadline is None or rec.spec.deadline > now:
                continue
            node, ep = rec.node, rec.endpoint_id
            if rec.state is TaskState.QUEUED:
                self._unqueue(rec)
            elif rec.state is TaskState.RUNNING:
                self._release(rec)
            rec.state = TaskState.FAILED
            self._forget(task_id)
            out.append(
                FinishOutcome(FinishKind.FAILED, task_id, rec.attempt, node, ep, FAIL_DEADLINE)
            )
        return out

    def cancel(self, task_id: str) -> FinishOutcome | None:
        """Withdraw a queued or running task; None if unknown (or already finished). For a
        running one the outcome names where, so the caller cancels that RPC."""
        rec = self._tasks.get(task_id)
        if rec is None:
            return None
        node, ep = rec.node, rec.endpoint_id
        if rec.state is TaskState.QUEUED:
            self._unqueue(rec)
        elif rec.state is TaskState.RUNNING:
            self._release(rec)
        rec.state = TaskState.CANCELLED
        self._forget(task_id)
        return FinishOutcome(FinishKind.CANCELLED, task_id, rec.attempt, node, ep)

    # ----- counters --------------------------------------------------------------------

    @property
    def queue_depth(self) -> int:
        return self._queued

    def queue_depth_by_priority(self) -> dict[Priority, int]:
        return dict(self._queued_by_priority)

    @property
    def running_count(self) -> int:
        return sum(len(v) for v in self._running.values())

    def running_by_endpoint(self) -> dict[EndpointKey, int]:
        return {k: len(v) for k, v in self._running.items()}

    def task(self, task_id: str) -> TaskInfo | None:
        rec = self._tasks.get(task_id)
        if rec is None:
            return None
        return TaskInfo(
            rec.spec.id,
            rec.state,
            rec.attempt,
            rec.node,
            rec.endpoint_id,
            rec.submitted_at,
            tuple(rec.failed_on),
            rec.decision,
        )
