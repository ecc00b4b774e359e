"""The discrete-event simulator: production router and scheduler on a simulated clock.

One heap of events (arrivals, and per endpoint "something finishes here"); after every
event the scheduler is handed a snapshot built from the simulated endpoints and asked to
dispatch, exactly as the coordinator does with telemetry. The policy under test is the
only thing that changes between runs; workload sampling and tie-breaks are seeded, so a
run is deterministic for a seed.

Measured over tasks arriving in ``[warmup, end of arrivals]``: completion time (arrival →
last token), queueing delay (arrival → a slot on an endpoint, model load excluded),
throughput, GPU utilisation (fraction of time an endpoint has a request in a slot or a
model loading, weighted by its GPUs), slot utilisation (busy slot-seconds over each
endpoint's ``num_parallel`` slots for the window), and p95 per priority; cold loads, evictions and
warm-ups are those that happen in the same window (not the loads that fill an empty
cluster at time 0).
"""

from __future__ import annotations

import heapq
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from coordinator.dispatch import DEFAULT_OUTPUT_TOKENS, DEFAULT_OUTPUT_TOKENS_OTHER
from coordinator.optimizer import (
    PROTECT,
    SET_LIMIT,
    SET_WEIGHT,
    AppliedChange,
    Arrival,
    History,
    LoadEvent,
    Optimizer,
    OptimizerConfig,
    QueueSample,
    TaskSample,
)
from coordinator.policy import Finished
from coordinator.routing.config import RouterConfig
from coordinator.routing.lengths import AnswerLengths
from coordinator.routing.snapshot import ClusterSnapshot, EndpointView, LoadedModelView, NodeView
from coordinator.routing.speed import SpeedTracker
from coordinator.routing.task import Priority
from coordinator.scheduler import Assignment, FinishKind, QueueFull, Scheduler, Unroutable
from coordinator.sim.catalog import homeless
from coordinator.sim.cluster import BATCH_SLOWDOWN, Request, SimEndpoint, build_endpoints
from coordinator.sim.mismatch import Mismatch
from coordinator.sim.policies import make_policy
from coordinator.sim.workload import Workload
from hive.config import ClusterConfig, ConfigError

# Event-heap marker of an optimizer pass (arrivals are -1, endpoints >= 0).
_OPTIMIZE = -2

# Stop a run that cannot drain (an unstable policy at high load) after this many
# multiples of the arrival period; unfinished tasks count with their age at the cut.
DRAIN_LIMIT_FACTOR = 3.0


def capacity(cluster: ClusterConfig, workload: Workload) -> float:
    """Tasks per second the cluster can sustain for the workload's mix (a fluid model).

    Each endpoint offers ``P / (1 + 0.25 (P - 1))`` single-stream seconds per second
    (one model's batch full); a task of model m costs its mean prompt and decode seconds
    there. Models are placed greedily, scarcest first, fastest endpoint first; binary
    search finds the largest arrival rate that fits. Endpoints that share their GPUs
    share one endpoint's worth of capacity (the largest of theirs). Model loads are
    ignored, so real
    capacity is a little lower: an offered load of 1.0 is at or beyond saturation. ``hive
    sim`` measures the saturation rate instead (``coordinator.sim.saturation``); this
    sizes the arrivals of that measurement.

    A workload whose model mix shifts is only sustainable at the rate its hardest mix
    sustains (above it the queue grows for as long as that mix lasts), so its capacity is
    the smallest over its phases: offered load 0.7 means no phase runs above 70 %.
    """
    return min(
        mix_capacity(cluster, workload, workload.model_weights(at))
        for at in workload.phase_starts()
    )


def mix_capacity(cluster: ClusterConfig, workload: Workload, weights: dict[str, float]) -> float:
    types_total = sum(workload.task_types.values())
    # Mean single-stream seconds per (endpoint, model) over the token distributions.
    mean_prompt = 0.0
    mean_output = 0.0
    for tt, wt in workload.task_types.items():
        toks = workload.tokens_for(tt)
        mean_prompt += wt / types_total * toks.prompt.mean()
        mean_output += wt / types_total * toks.output.mean()
    eps = build_endpoints(cluster, workload.catalog)
    # One pool of capacity per set of endpoints on the same GPUs (its first endpoint's index).
    pool = [min([i, *(eps.index(p) for p in e.peers)]) for i, e in enumerate(eps)]
    cap = [0.0] * len(eps)
    for i, e in enumerate(eps):
        own = e.num_parallel / (1 + BATCH_SLOWDOWN * (e.num_parallel - 1))
        cap[pool[i]] = max(cap[pool[i]], own)
    cost: dict[str, list[tuple[float, int]]] = {}
    for m in weights:
        options = []
        for i, e in enumerate(eps):
            if m in e.models and e.models[m] <= e.vram_total:
                dec, pro = e.speed(m)
                options.append((mean_prompt / pro + mean_output / dec, pool[i]))
        if options:
            cost[m] = sorted(options)
    routable = {m: w for m, w in weights.items() if m in cost}
    total_w = sum(routable.values())
    if total_w <= 0:
        return 0.0

    def fits(rate: float) -> bool:
        left = list(cap)
        for m in sorted(routable, key=lambda m: len(cost[m])):
            demand = rate * routable[m] / total_w
            for c, i in cost[m]:
                take = min(demand, left[i] / c)
                left[i] -= take * c
                demand -= take
                if demand <= 1e-12:
                    break
            if demand > 1e-9:
                return False
        return True

    lo, hi = 0.0, sum(cap) / min(c for opts in cost.values() for c, _ in opts)
    for _ in range(50):
        mid = (lo + hi) / 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


@dataclass(frozen=True, slots=True)
class Saturation:
    """A cluster's measured saturation for a workload (``coordinator.sim.saturation``):
    tasks/s completed in steady state with arrivals far above capacity, and the slot
    utilisation then, one per model-mix phase (``Workload.phase_starts``)."""

    rates: tuple[float, ...]
    utilization: tuple[float, ...]
    cached: bool = False


@dataclass(slots=True)
class _TaskStats:
    arrival: float
    priority: Priority
    output_tokens: int
    task_type: str = ""
    first_slot: float = -1.0
    finished: float = -1.0
    failed: bool = False


@dataclass(slots=True)
class SimResult:
    policy: str
    workload: str
    seed: int
    offered_load: float | None
    arrival_rate: float
    capacity_tasks_per_second: float
    tasks: int
    completed: int
    failed: int
    rejected: int
    unfinished: int
    sim_seconds: float
    utilization: float
    node_utilization: dict[str, float]
    throughput_tasks_per_second: float
    throughput_tokens_per_second: float
    completion: dict[str, float]
    queueing: dict[str, float]
    completion_p95_by_priority: dict[str, float]
    cold_loads: int
    evictions: int
    mean_decision_us: float
    # Tasks (over the whole run) that no endpoint could ever run, by model.
    unroutable: dict[str, int] = field(default_factory=dict)
    # Busy slot-seconds over available (num_parallel per endpoint) in the window.
    slot_utilization: float = 0.0
    # Measured saturation tasks/s per phase (empty: the load is against ``capacity``)
    # and the arrival rate per phase (bursts aside).
    saturation_tasks_per_second: list[float] = field(default_factory=list)
    phase_rates: list[float] = field(default_factory=list)
    # Mismatch sigma between the router's priors and the simulated truth (0: off).
    mismatch: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": math.nan, "p95": math.nan, "p99": math.nan, "mean": math.nan}
    v = sorted(values)

    def q(p: float) -> float:
        return v[min(len(v) - 1, max(0, math.ceil(p * len(v)) - 1))]

    return {"p50": q(0.50), "p95": q(0.95), "p99": q(0.99), "mean": sum(v) / len(v)}


class Simulation:
    """One run of one policy. ``run()`` returns its SimResult."""

    def __init__(
        self,
        cluster: ClusterConfig,
        workload: Workload,
        policy: str,
        seed: int | None = None,
        router: RouterConfig | None = None,
        optimizer: OptimizerConfig | None = None,
        mismatch: float = 0.0,
        saturation: Saturation | None = None,
    ) -> None:
        self.cluster = cluster
        self.workload = workload
        self.seed = workload.seed if seed is None else seed
        if seed is not None and seed != workload.seed:
            self.workload = replace(workload, seed=seed)
        self.router = router or RouterConfig.from_mapping(
            cluster.routing, cluster.source, [n.name for n in cluster.nodes]
        )
        self.policy_name = policy
        self.policy = make_policy(policy, self.router, self.seed)
        # What a policy that learns from answers (LiteLLM's) is told of each finished task.
        self._learn: Callable[[Finished], None] | None = getattr(self.policy, "learn", None)
        self.scheduler = Scheduler(self.router, self.policy)
        # Mismatch mode: the truth differs from the router's priors, answer lengths are
        # learned (``coordinator.sim.mismatch``).
        self.mismatch = Mismatch(mismatch, self.seed)
        self.lengths = AnswerLengths() if self.mismatch.on else None
        self.saturation = saturation
        # Stop when arrivals stop instead of draining (the saturation measurement's runs).
        self.stop_at_end = False
        self.endpoints = build_endpoints(cluster, self.workload.catalog, self.mismatch)
        position = {id(e): i for i, e in enumerate(self.endpoints)}
        # Each endpoint's GPU sharers, by index: a change on one changes their speed too.
        self._peers = [[position[id(p)] for p in e.peers] for e in self.endpoints]
        self.by_key = {e.key: e for e in self.endpoints}
        # The snapshot's views, rebuilt for the endpoints marked changed (``_mark``).
        self._node_of: list[int] = []
        self._node_range: list[tuple[int, int]] = []  # (first endpoint, endpoints)
        for n, spec in enumerate(cluster.nodes):
            self._node_range.append((len(self._node_of), len(spec.endpoints)))
            self._node_of.extend([n] * len(spec.endpoints))
        self._views = [self._view(e, {}) for e in self.endpoints]
        self._node_views = [
            NodeView(spec.name, "healthy", False, spec.specializations, ())
            for spec in cluster.nodes
        ]
        self._dirty: set[int] = set(range(len(self.endpoints)))
        self._snap: ClusterSnapshot | None = None
        self.speeds = SpeedTracker()
        self._events: list[tuple[float, int, int, int]] = []  # (time, seq, endpoint or -1, version)
        self._seq = 0
        self._versions = [0] * len(self.endpoints)
        self._decision_seconds = 0.0
        self._decisions = 0
        # The optimizer, run every ``interval_seconds`` of simulated time on what the
        # simulation records (None: off, the plain router).
        self.optimizer = Optimizer(optimizer) if optimizer is not None else None
        self.history = History(optimizer.window_seconds if optimizer else 600.0)
        self._task_types: dict[str, str] = {}
        self._queued_by_type: dict[str, int] = {}
        # (task, attempt) -> the router's predicted (queue wait, service) seconds.
        self._predicted: dict[tuple[str, int], tuple[float, float]] = {}
        self.applied: list[AppliedChange] = []
        self._window_counts = (0, 0, 0)
        # Slot-seconds per endpoint when the measured window opens and closes; the rates.
        self._slots_open = [0.0] * len(self.endpoints)
        self._slots_close = [0.0] * len(self.endpoints)
        self._rates: list[float] = []
        if optimizer is not None:
            for e in self.endpoints:
                e.load_log = []

    # ----- the snapshot the scheduler sees ---------------------------------------------

    def snapshot(self) -> ClusterSnapshot:
        """The cluster as the scheduler sees it now. Views are rebuilt only for endpoints
        whose state changed since the last snapshot (``_mark``), and the snapshot itself
        is reused while nothing it holds changed: most events touch one endpoint."""
        speeds = self.speeds.speeds()
        errors = self.speeds.error_rates()
        placement = self.optimizer.placement if self.optimizer is not None else {}
        if self._dirty:
            rates = self.speeds.load_rates()
            nodes = set()
            for i in self._dirty:
                self._views[i] = self._view(self.endpoints[i], rates)
                nodes.add(self._node_of[i])
            self._dirty.clear()
            for n in nodes:
                old = self._node_views[n]
                first, count = self._node_range[n]
                eps = tuple(self._views[first : first + count])
                self._node_views[n] = NodeView(
                    old.name, old.state, old.draining, old.specializations, eps
                )
        elif (
            self._snap is not None
            and self._snap.speeds is speeds
            and self._snap.error_rates is errors
            and self._snap.protected is placement
        ):
            return self._snap
        self._snap = ClusterSnapshot(tuple(self._node_views), speeds, errors, placement)
        return self._snap

    @staticmethod
    def _view(e: SimEndpoint, rates: dict[tuple[str, str], float]) -> EndpointView:
        loaded = tuple(
            LoadedModelView(name, r.kind.size_bytes, e.per_model.get(name, 0))
            for name, r in e.runners.items()
        )
        return EndpointView(
            node=e.node,
            id=e.id,
            gpu_names=e.gpu_names,
            num_parallel=e.num_parallel,
            max_queue=e.max_queue,
            vram_total_bytes=e.vram_total,
            vram_used_bytes=e.vram_used(),
            models=e.models,
            loaded=loaded,
            in_flight=e.assigned,
            healthy=True,
            utilization_percent=100.0 if e.busy else 0.0,
            load_bytes_per_second=rates.get(e.key, 0.0),
        )

    def _mark(self, idx: int) -> None:
        """Endpoint ``idx`` changed (a request, a runner, a load): its view and its GPU
        sharers' (which count its memory as used) are rebuilt for the next snapshot."""
        self._dirty.add(idx)
        self._dirty.update(self._peers[idx])

    # ----- the run ---------------------------------------------------------------------

    def _schedule(self, idx: int) -> None:
        e = self.endpoints[idx]
        t = e.next_event()
        self._versions[idx] += 1
        if t != math.inf:
            self._seq += 1
            heapq.heappush(self._events, (t, self._seq, idx, self._versions[idx]))

    def run(self) -> SimResult:
        import time

        wl = self.workload
        cap = capacity(self.cluster, wl)
        load = wl.offered_load if wl.offered_load is not None else 0.85
        rates: list[float]
        if wl.rate is not None:
            rates = [wl.rate] * len(wl.phase_starts())
        elif self.saturation is not None:
            rates = [load * r for r in self.saturation.rates]
        else:
            rates = [load * cap] * len(wl.phase_starts())
        if min(rates) <= 0:
            raise self._nowhere()
        # The result's one arrival rate: the mean over phases when they differ.
        rate = rates[0] if len(set(rates)) == 1 else statistics.fmean(rates)
        arrivals = wl.generate(rates[0] if len(set(rates)) == 1 else rates)
        end_arrivals = arrivals[-1][0] if arrivals else 0.0
        if wl.duration_seconds is not None and wl.tasks is None:
            end_arrivals = wl.duration_seconds
        warmup = min(wl.warmup_seconds, end_arrivals)
        stats: dict[str, _TaskStats] = {}
        true_output: dict[str, int] = {}
        for k, (t, _spec, _out) in enumerate(arrivals):
            self._seq += 1
            heapq.heappush(self._events, (t, self._seq, -1, k))
        horizon = max(end_arrivals, 1.0) * DRAIN_LIMIT_FACTOR + 600.0
        if self.stop_at_end:
            horizon = end_arrivals
        if self.optimizer is not None:
            self._seq += 1
            tick = self.optimizer.config.interval_seconds
            heapq.heappush(self._events, (tick, self._seq, _OPTIMIZE, 0))
        rejected = 0
        # Tasks refused because no endpoint could ever run their model, by model.
        unroutable: dict[str, int] = {}
        now = 0.0
        index = {e.key: i for i, e in enumerate(self.endpoints)}
        observe = getattr(self.policy, "observe", None)
        busy_window = [0.0] * len(self.endpoints)
        window_open = warmup <= 0.0
        # (loads, evictions, warm-ups) summed over endpoints when the window opens/closes.
        counts_open = (0, 0, 0)
        counts_close: tuple[int, int, int] | None = None
        busy_at_close: list[float] | None = None
        while self._events:
            t, _, idx, ver = heapq.heappop(self._events)
            if t > horizon:
                break
            if not window_open and t >= warmup:
                for j, e in enumerate(self.endpoints):
                    e.advance(warmup)
                    busy_window[j] = e.busy_seconds
                    self._slots_open[j] = e.slot_seconds
                counts_open = self._load_counts()
                window_open = True
            if busy_at_close is None and t >= end_arrivals:
                for e in self.endpoints:
                    e.advance(end_arrivals)
                busy_at_close = [e.busy_seconds for e in self.endpoints]
                self._slots_close = [e.slot_seconds for e in self.endpoints]
                counts_close = self._load_counts()
            now = t
            touched: set[int] = set()
            if idx == _OPTIMIZE:
                touched |= self._optimize(now, index)
                if now < end_arrivals:
                    self._seq += 1
                    tick = now + self.optimizer.config.interval_seconds  # type: ignore[union-attr]
                    heapq.heappush(self._events, (tick, self._seq, _OPTIMIZE, 0))
            elif idx < 0:
                _, spec, out = arrivals[ver]
                if self.lengths is not None:
                    # The truth is the model's own; the router hears what it has learned.
                    out = max(1, round(out * self.mismatch.length(spec.model)))
                    guess = self.lengths.estimate(spec.type, spec.model)
                    if guess is None:
                        guess = DEFAULT_OUTPUT_TOKENS.get(spec.type, DEFAULT_OUTPUT_TOKENS_OTHER)
                    spec = replace(spec, output_tokens=guess)
                stats[spec.id] = _TaskStats(t, spec.priority, out, spec.type)
                true_output[spec.id] = out
                if self.optimizer is not None:
                    self._task_types[spec.id] = spec.type
                    self.history.add(Arrival(now, spec.type, spec.model))
                    self._queued_by_type[spec.type] = self._queued_by_type.get(spec.type, 0) + 1
                try:
                    self.scheduler.submit(spec, self.snapshot(), now)
                except QueueFull:
                    rejected += 1
                    stats[spec.id].failed = True
                except Unroutable:
                    unroutable[spec.model] = unroutable.get(spec.model, 0) + 1
                    stats[spec.id].failed = True
            else:
                if ver != self._versions[idx]:
                    continue
                e = self.endpoints[idx]
                e.advance(now)
                for q in e.step():
                    self._finish(e, q, now, stats, observe)
                self._mark(idx)
                touched.add(idx)
            for f in self.scheduler.expire(now):
                st = stats.get(f.task_id)
                if st is not None:
                    st.failed = True
                if f.node:
                    j = index[(f.node, f.endpoint_id)]
                    self.endpoints[j].advance(now)
                    self.endpoints[j].remove(f.task_id)
                    self._mark(j)
                    touched.add(j)
            if self.scheduler.queue_depth:
                t0 = time.perf_counter()
                assignments = self.scheduler.dispatch(self.snapshot(), now)
                self._decision_seconds += time.perf_counter() - t0
                self._decisions += len(assignments)
                for a in assignments:
                    j = index[(a.node, a.endpoint_id)]
                    e = self.endpoints[j]
                    if self.optimizer is not None:
                        if a.attempt == 1:
                            self._queued_by_type[a.task.type] -= 1
                        self._predicted[(a.task.id, a.attempt)] = _predicted(a)
                    e.advance(now)
                    e.submit(
                        Request(
                            a.task.id,
                            a.attempt,
                            a.task.model,
                            a.task.prompt_tokens,
                            true_output[a.task.id],
                            now,
                        )
                    )
                    e.step()
                    self._mark(j)
                    touched.add(j)
            for j in list(touched):
                touched.update(self._peers[j])
            for j in touched:
                e = self.endpoints[j]
                e.advance(now)
                for q in e.step():
                    self._finish(e, q, now, stats, observe)
                self._mark(j)
                self._schedule(j)
            # first-slot times: read from requests that got a slot
            for j in touched:
                for r in self.endpoints[j].runners.values():
                    for q in r.slots:
                        st = stats[q.task_id]
                        if st.first_slot < 0:
                            st.first_slot = q.slot_at
        end = now
        if busy_at_close is None:
            for e in self.endpoints:
                e.advance(max(end, end_arrivals))
            busy_at_close = [e.busy_seconds for e in self.endpoints]
            self._slots_close = [e.slot_seconds for e in self.endpoints]
            counts_close = self._load_counts()
        assert counts_close is not None
        # The window's (loads, evictions, warm-ups), read by _result and _extra.
        self._window_counts = (
            counts_close[0] - counts_open[0],
            counts_close[1] - counts_open[1],
            counts_close[2] - counts_open[2],
        )
        self._rates = rates
        return self._result(
            stats,
            cap,
            rate,
            warmup,
            end_arrivals,
            end,
            busy_window,
            busy_at_close,
            rejected + sum(unroutable.values()),
            unroutable,
        )

    def _nowhere(self) -> ConfigError:
        """Why the cluster's capacity for the workload is 0: the first phase's models that
        no endpoint can run, located in the workload file."""
        wl = self.workload
        for at in wl.phase_starts():
            models = sorted(wl.model_weights(at))
            lost = homeless(self.cluster, wl.catalog, models)
            if len(lost) == len(models):
                m = models[0]
                reason = f"model {m!r} runs nowhere: {lost[m]}"
                if len(models) > 1:
                    others = "; ".join(f"{o!r}: {lost[o]}" for o in models[1:])
                    reason += f"; nor do the others in use from {at:g} s ({others})"
                return ConfigError(wl.source, wl.model_key(m), reason)
        return ConfigError(wl.source, "models", "the cluster's capacity for this workload is 0")

    def _load_counts(self) -> tuple[int, int, int]:
        return (
            sum(e.loads for e in self.endpoints),
            sum(e.evictions for e in self.endpoints),
            sum(e.warm_loads for e in self.endpoints),
        )

    def _finish(
        self,
        e: SimEndpoint,
        q: Request,
        now: float,
        stats: dict[str, _TaskStats],
        observe: Any,
    ) -> None:
        out = self.scheduler.finished(q.task_id, q.attempt, now, ok=True)
        if out.kind is not FinishKind.COMPLETED:
            return
        st = stats[q.task_id]
        st.finished = now
        if self.lengths is not None:
            self.lengths.observe(st.task_type, q.model, q.output_tokens)
        decode_wall = now - q.decode_started
        concurrency = 1.0
        if q.decode_single > 0 and decode_wall > 0:
            slow = decode_wall / q.decode_single
            concurrency = max(1.0, 1.0 + (slow - 1.0) / BATCH_SLOWDOWN)
        self.speeds.observe(
            e.node,
            e.id,
            q.model,
            ok=True,
            eval_count=q.output_tokens,
            eval_duration_ns=int(decode_wall * 1e9),
            prompt_eval_count=q.prompt_tokens,
            prompt_eval_duration_ns=int(q.prompt_seconds * 1e9),
            concurrency=concurrency,
            load_duration_ns=int(q.load_seconds * 1e9),
            model_bytes=e.models.get(q.model, 0),
        )
        if observe is not None:
            observe(e.node, e.id, now - q.slot_at)
        if self._learn is not None:
            self._learn(Finished(e.node, e.id, q.model, q.assigned_at, now, q.output_tokens))
        if self.optimizer is not None:
            wait, service = self._predicted.pop((q.task_id, q.attempt), (-1.0, -1.0))
            self.history.add(
                TaskSample(
                    now,
                    e.node,
                    e.id,
                    q.model,
                    self._task_types.pop(q.task_id, "inference"),
                    queued_seconds=q.assigned_at - st.arrival,
                    run_seconds=now - q.assigned_at - q.load_seconds,
                    eval_count=q.output_tokens,
                    eval_seconds=decode_wall,
                    concurrency=e.assigned + 1,
                    load_seconds=q.load_seconds,
                    predicted_wait_seconds=wait,
                    wait_seconds=q.slot_at - q.assigned_at,
                    predicted_service_seconds=service,
                    service_seconds=q.prompt_seconds + decode_wall,
                )
            )

    def _optimize(self, now: float, index: dict[tuple[str, str], int]) -> set[int]:
        """One optimizer pass on the simulated clock: record, plan, apply, commit. Returns
        the endpoints whose state changed (warm-ups)."""
        opt = self.optimizer
        assert opt is not None
        h = self.history
        for tt, depth in sorted(self._queued_by_type.items()):
            h.add(QueueSample(now, tt, depth))
        for e in self.endpoints:
            assert e.load_log is not None
            for at, model, kind in e.load_log:
                h.add(LoadEvent(at, e.node, e.id, model, kind))  # type: ignore[arg-type]
            e.load_log.clear()
        h.trim(now)
        snap = self.snapshot()
        limits = {ep.key: self.scheduler.limit(ep) for ep in snap.endpoints()}
        plan = opt.plan(snap, h, limits, now, weights=self.scheduler.config.weights)
        touched: set[int] = set()
        applied = []
        for a in plan.actions:
            if a.kind == SET_WEIGHT:
                if a.value is not None:
                    self.scheduler.set_weight(a.weight, a.value)
                applied.append(AppliedChange(now, a))
                continue
            j = index[(a.node, a.endpoint_id)]
            if a.kind == SET_LIMIT:
                self.scheduler.set_limit(a.node, a.endpoint_id, a.limit)
                applied.append(AppliedChange(now, a))
            elif a.kind == PROTECT:
                # The placement takes effect through the snapshot once committed.
                applied.append(AppliedChange(now, a))
            else:
                e = self.endpoints[j]
                e.advance(now)
                ok = e.warm(a.model, a.evict)
                self._mark(j)
                applied.append(AppliedChange(now, a, ok, "" if ok else "did not fit"))
                touched.add(j)
        opt.commit(applied)
        self.applied.extend(applied)
        return touched

    def _result(
        self,
        stats: dict[str, _TaskStats],
        cap: float,
        rate: float,
        warmup: float,
        end_arrivals: float,
        end: float,
        busy_open: list[float],
        busy_close: list[float],
        rejected: int,
        unroutable: dict[str, int],
    ) -> SimResult:
        window = max(1e-9, end_arrivals - warmup)
        measured = {k: s for k, s in stats.items() if warmup <= s.arrival <= end_arrivals}
        completion: list[float] = []
        queueing: list[float] = []
        by_prio: dict[str, list[float]] = {p.name.lower(): [] for p in Priority}
        unfinished = failed = 0
        for s in measured.values():
            if s.failed:
                failed += 1
                continue
            if s.finished < 0:
                unfinished += 1
                c = end - s.arrival
            else:
                c = s.finished - s.arrival
            completion.append(c)
            by_prio[s.priority.name.lower()].append(c)
            queueing.append((s.first_slot if s.first_slot >= 0 else end) - s.arrival)
        done_in_window = [s for s in stats.values() if warmup <= s.finished <= end_arrivals]
        gpu_busy = 0.0
        gpus = 0
        slots_busy = sum(self._slots_close) - sum(self._slots_open)
        slots_total = window * sum(e.num_parallel for e in self.endpoints)
        node_busy: dict[str, list[float]] = {}
        for e, a, b in zip(self.endpoints, busy_open, busy_close, strict=True):
            frac = (b - a) / window
            gpu_busy += frac * e.gpu_count
            gpus += e.gpu_count
            nb = node_busy.setdefault(e.node, [0.0, 0.0])
            nb[0] += frac * e.gpu_count
            nb[1] += e.gpu_count
        return SimResult(
            policy=self.policy_name,
            workload=self.workload.name,
            seed=self.seed,
            offered_load=self.workload.offered_load if self.workload.rate is None else None,
            arrival_rate=rate,
            capacity_tasks_per_second=cap,
            tasks=len(measured),
            completed=sum(1 for s in measured.values() if s.finished >= 0),
            failed=failed,
            rejected=rejected,
            unfinished=unfinished,
            sim_seconds=end,
            utilization=gpu_busy / gpus if gpus else 0.0,
            node_utilization={n: v[0] / v[1] for n, v in node_busy.items()},
            throughput_tasks_per_second=len(done_in_window) / window,
            throughput_tokens_per_second=sum(s.output_tokens for s in done_in_window) / window,
            completion=percentiles(completion),
            queueing=percentiles(queueing),
            completion_p95_by_priority={p: percentiles(v)["p95"] for p, v in by_prio.items()},
            cold_loads=self._window_counts[0],
            evictions=self._window_counts[1],
            mean_decision_us=1e6 * self._decision_seconds / max(1, self._decisions),
            unroutable=dict(sorted(unroutable.items())),
            slot_utilization=slots_busy / slots_total if slots_total else 0.0,
            saturation_tasks_per_second=(
                list(self.saturation.rates) if self.saturation is not None else []
            ),
            phase_rates=list(self._rates),
            mismatch=self.mismatch.sigma,
            extra=self._extra(),
        )

    def _extra(self) -> dict[str, Any]:
        if self.optimizer is None:
            return {}
        kinds: dict[str, int] = {}
        for change in self.applied:
            if change.ok:
                key = f"{change.action.kind}:{change.action.source}"
                kinds[key] = kinds.get(key, 0) + 1
        findings: dict[str, int] = {}
        plan = self.optimizer.last_plan
        for f in plan.findings if plan is not None else ():
            findings[f.kind] = findings.get(f.kind, 0) + 1
        return {
            "warm_loads": self._window_counts[2],
            "optimizer_changes": kinds,
            "final_limits": {
                f"{e.node}/{e.id}": self.scheduler.limit(ep)
                for e, ep in zip(self.endpoints, self.snapshot().endpoints(), strict=True)
            },
            "findings_at_end": findings,
            "home_holds": self.scheduler.holds,
        }


def _predicted(a: Assignment) -> tuple[float, float]:
    """The router's predicted (queue wait, service) seconds for an assignment's endpoint;
    (-1, -1) when its policy does not predict them (the baselines)."""
    chosen = a.candidate
    if chosen is None:
        return -1.0, -1.0
    return chosen.value("queue_wait"), chosen.value("service")


def simulate(
    cluster: ClusterConfig,
    workload: Workload,
    policy: str,
    seed: int | None = None,
    router: RouterConfig | None = None,
    optimizer: OptimizerConfig | None = None,
    mismatch: float = 0.0,
    saturation: Saturation | None = None,
) -> SimResult:
    """Run ``policy`` on ``cluster`` under ``workload``, with the optimizer when given a
    config; deterministic for a seed. ``mismatch``: sigma of the truth's factors over the
    router's priors (``coordinator.sim.mismatch``; 0 off). ``saturation``: the measured
    rates ``offered_load`` is a fraction of (``coordinator.sim.saturation``); without it,
    of the fluid ``capacity``."""
    return Simulation(
        cluster, workload, policy, seed, router, optimizer, mismatch, saturation
    ).run()
