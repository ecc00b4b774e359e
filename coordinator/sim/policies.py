"""Baseline routing policies the router must beat, behind the same interface.

Every baseline applies the router's hard filters (``coordinator.routing.feasible``:
healthy, not draining, model on disk, fits VRAM, capacity under the scheduler's limit)
so the comparison is about choosing among feasible endpoints, not about feasibility.
Each returns a ``Decision`` whose candidates carry the baseline's own score, so
``explain`` works for them too. Randomness is seeded from the run's seed and the task id.
Those that never read ``EndpointView.backlog_seconds`` say so (``reads_backlog =
False``), which lets the scheduler skip estimating it on every dispatch.

Two kinds: the simple ones (round robin, random, least outstanding, power of two, the
seed's static chains, the original Hive formula) and the strong ones, each imitating a
scheduler people run and citing the code it follows: least expected work by measured
speed (with and without a warm-model preference), llm-d's endpoint picker, LiteLLM's
``least-busy`` and ``latency-based-routing``, GPUStack's binpack and spread placement.
The strong ones know what the production router knows and no more: the snapshot the
scheduler hands every policy (in-flight work per endpoint and model, loaded models, the
speeds measured from finished tasks, the hardware priors) and, for those that learn
from answers as LiteLLM does, what a client sees of each finished request
(``Finished``, passed to a policy's ``learn``); never the simulator's ground truth.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from coordinator.policy import Finished
from coordinator.routing.config import RouterConfig
from coordinator.routing.filters import feasible
from coordinator.routing.router import Candidate, Decision
from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey, EndpointView, prior_speed
from coordinator.routing.task import TaskSpec
from coordinator.scheduler import HivePolicy, Policy, PolicyContext

V = TypeVar("V")


def _feasible(
    task: TaskSpec, snapshot: ClusterSnapshot, ctx: PolicyContext
) -> tuple[list[EndpointView], Decision]:
    eps, rejected = feasible(task, snapshot, ctx.limits)
    # A retry avoids endpoints that failed it when any other is feasible (like the router).
    if ctx.avoid:
        others = [e for e in eps if (e.node, e.id) not in ctx.avoid]
        eps = others or eps
    return eps, Decision(task.id, task.model, (), tuple(rejected))


def _decide(
    base: Decision, ranked: list[tuple[float, EndpointView]], name: str, score: str
) -> Decision:
    cands = tuple(
        Candidate(e.node, e.id, s, (s,), (1.0,), (score,))
        for s, e in sorted(ranked, key=lambda x: (x[0], x[1].node, x[1].id))
    )
    return Decision(base.task_id, base.model, cands, base.rejected, policy=name)


def _load(e: EndpointView) -> float:
    return e.in_flight / e.num_parallel


class RoundRobin:
    """Cycle through all endpoints in cluster order; take the next feasible one."""

    name = "round_robin"
    reads_backlog = False

    def __init__(self, seed: int = 0) -> None:
        self._next = 0

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        order = {(e.node, e.id): i for i, e in enumerate(snapshot.endpoints())}
        n = len(order)
        best = min(eps, key=lambda e: (order[(e.node, e.id)] - self._next) % n)
        self._next = (order[(best.node, best.id)] + 1) % n
        ranked = [(float((order[(e.node, e.id)] - self._next + 1) % n), e) for e in eps]
        return _decide(base, ranked, self.name, "rr_distance")


class RandomChoice:
    """Uniformly random feasible endpoint (seeded from the run seed and the task id)."""

    name = "random"
    reads_backlog = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        rng = random.Random(f"{self.seed}:{task.id}:{len(context.avoid)}")
        pick = rng.choice(eps)
        return _decide(base, [(0.0 if e is pick else 1.0, e) for e in eps], self.name, "random")


class LeastOutstanding:
    """Fewest outstanding requests per parallel slot (Envoy's least_request, normalised by
    slots so a 4-slot endpoint is not treated like a 2-slot one)."""

    name = "least_outstanding"
    reads_backlog = False

    def __init__(self, seed: int = 0) -> None:
        pass

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        return _decide(base, [(_load(e), e) for e in eps], self.name, "outstanding_per_slot")


class PowerOfTwo:
    """Ray Serve's pow-2: sample two feasible endpoints, take the one with fewer outstanding
    requests per slot (ties: name)."""

    name = "p2c"
    reads_backlog = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if len(eps) <= 2:
            sample = eps
        else:
            rng = random.Random(f"{self.seed}:{task.id}:{len(context.avoid)}")
            sample = rng.sample(eps, 2)
        ranked = [(_load(e), e) for e in sample]
        ranked += [(float("inf"), e) for e in eps if e not in sample]
        d = _decide(
            base, [r for r in ranked if r[0] != float("inf")], self.name, "outstanding_per_slot"
        )
        return d


class StaticChain:
    """The seed's static routing: the first node of the task type's chain that can take it
    (its feasible endpoint with the fewest outstanding per slot); if none can, the feasible
    endpoint with the fewest outstanding per slot."""

    name = "static_chain"
    reads_backlog = False

    def __init__(self, config: RouterConfig, seed: int = 0) -> None:
        self.chains = config.chains

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        chain = self.chains.get(task.type, ())
        rank = {n: i for i, n in enumerate(chain)}
        last = len(chain)
        ranked = [(rank.get(e.node, last) * 1000.0 + _load(e), e) for e in eps]
        return _decide(base, ranked, self.name, "chain_rank")


class HiveOriginal:
    """The original Hive coordinator: among healthy nodes specialised for the task type
    (any healthy node if none), the lowest
    ``current_load / max_concurrent - 0.1 * 1 / (avg_exec_time_s + 1)``, ``avg_exec_time``
    over the node's last 100 tasks; then the node's least loaded feasible endpoint."""

    name = "hive_original"
    reads_backlog = False

    def __init__(self, seed: int = 0) -> None:
        self._history: dict[str, deque[float]] = {}

    def observe(self, node: str, endpoint_id: str, seconds: float) -> None:
        self._history.setdefault(node, deque(maxlen=100)).append(seconds)

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        by_node: dict[str, list[EndpointView]] = {}
        for e in eps:
            by_node.setdefault(e.node, []).append(e)
        special = [
            n
            for n, node in ((n, snapshot.node(n)) for n in by_node)
            if node is not None and task.type in node.specializations
        ]
        pool = special or list(by_node)
        ranked: list[tuple[float, EndpointView]] = []
        for name in pool:
            node = snapshot.node(name)
            assert node is not None
            load = sum(e.in_flight for e in node.endpoints)
            cap = sum(e.num_parallel for e in node.endpoints)
            hist = self._history.get(name)
            avg = sum(hist) / len(hist) if hist else 0.0
            score = load / cap - 0.1 * 1.0 / (avg + 1.0)
            best = min(by_node[name], key=lambda e: (_load(e), e.id))
            ranked.append((score, best))
        return _decide(base, ranked, self.name, "original_formula")


def _ranked(
    base: Decision,
    rows: Sequence[tuple[tuple[float, ...], float, tuple[float, ...], EndpointView]],
    name: str,
    names: tuple[str, ...],
    weights: tuple[float, ...],
) -> Decision:
    """A Decision from (sort key, total, values, endpoint) rows, best (smallest key) first;
    ties by node and endpoint id."""
    ordered = sorted(rows, key=lambda r: (r[0], r[3].node, r[3].id))
    cands = tuple(Candidate(e.node, e.id, t, v, weights, names) for _, t, v, e in ordered)
    return Decision(base.task_id, base.model, cands, base.rejected, policy=name)


def _speeds(ep: EndpointView, model: str, snapshot: ClusterSnapshot) -> tuple[float, float]:
    """(decode, prompt) single-stream tokens/s of ``model`` on ``ep`` as the router knows
    them: the EWMA measured from finished tasks once there is one, else the hardware prior
    (the catalog's bandwidth model; unknown GPUs at its fallback speed)."""
    measured = snapshot.speeds.get((ep.node, ep.id, model))
    if measured is not None and measured.samples > 0:
        return measured.decode_tps, measured.prompt_tps
    prior = ep.prior_cache.get(model)
    if prior is None:
        prior = ep.prior_cache[model] = prior_speed(ep.gpu_names, model, ep.models[model])
    return prior.decode_tps, prior.prompt_tps


def _model_in_flight(ep: EndpointView, model: str) -> int:
    loaded = ep.loaded_by_name.get(model)
    return loaded.in_flight if loaded is not None else 0


# ----- strong baselines ------------------------------------------------------------------


class LeastWork:
    """Least expected work by measured speed (issue 20's outside baseline): the endpoint
    whose assigned work plus this task's, at the endpoint's measured speed, per slot is
    smallest:

        work  = prompt_tokens / prompt_tps + output_tokens / decode_tps
        score = (backlog_seconds + work) / num_parallel

    ``backlog_seconds`` is the scheduler's estimate of the single-stream work its in-flight
    tasks there have left (in every policy's snapshot); speeds are the EWMA learned from
    finished tasks (``_speeds``), the hardware prior until one finishes. It knows GPU speed
    and queue state, not hive's model of batching, model switching or load times. With
    ``warm`` (``least_work_warm``), endpoints that have the model loaded (or loading)
    come first whatever their score: a cold one only when no warm one is feasible, so it
    fails by piling onto a slow warm endpoint while a fast idle one could load the model.
    """

    reads_backlog = True

    def __init__(self, warm: bool = False, seed: int = 0) -> None:
        self.warm = warm
        # In the explanation: a cold endpoint ranks after every warm one (a tier, shown
        # as a weight no score reaches).
        self.cold_weight = 1e6 if warm else 0.0
        self.name = "least_work_warm" if warm else "least_work"

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        rows = []
        for e in eps:
            dec, pro = _speeds(e, task.model, snapshot)
            work = task.prompt_tokens / pro + task.output_tokens / dec
            score = (e.backlog_seconds + work) / e.num_parallel
            cold = 0.0 if task.model in e.loaded_by_name else 1.0
            key = (cold, score) if self.warm else (score,)
            total = score + cold * self.cold_weight
            rows.append((key, total, (score, cold), e))
        return _ranked(
            base,
            rows,
            self.name,
            ("work_per_slot", "cold"),
            (1.0, self.cold_weight),
        )


class LlmdEndpointPicker:
    """llm-d's endpoint picker with the scorers and weights it ships by default
    (llm-d/llm-d-inference-scheduler, ``pkg/epp/config/loader/defaults.go``,
    ``loadDefaultConfig``: queue-scorer 2, kv-cache-utilization-scorer 2,
    prefix-cache-scorer 3; max-score picker), each score in [0, 1], higher is better:

        queue    = (max_w - w) / (max_w - min_w) over the candidates, 1 if all equal
                   (``scorer/queuedepth/queue.go``, QueueScorer.Score); w is the
                   requests waiting for a slot: sum over its models of max(0, n_m - P)
        kv_cache = 1 - busy slots / slots of its loaded models
                   (``scorer/kvcacheutilization``: 1 - KVCacheUsagePercent)
        locality = 1 if the model is loaded there, else 0: the prefix-cache scorer's
                   "fraction of the request already cached" where what is cached is the
                   model itself (``scorer/prefix``; an Ollama endpoint has no shared
                   prompt prefixes to match, and llm-d's loaded-adapter scorer,
                   ``scorer/loraaffinity``, likewise gives 1.0 where it is active)
        total    = 2 queue + 2 kv_cache + 3 locality; the highest wins, ties at random
                   (``picker/maxscore/picker.go``: shuffle, then a stable sort)

    It never looks at GPU speed: a slow idle card scores like a fast idle one.
    """

    name = "llm_d"
    reads_backlog = False
    QUEUE_WEIGHT = 2.0
    KV_CACHE_WEIGHT = 2.0
    LOCALITY_WEIGHT = 3.0

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    @staticmethod
    def waiting(ep: EndpointView) -> int:
        """Requests on ``ep`` waiting for a slot of their model (vLLM's num_requests_waiting)."""
        p = ep.num_parallel
        return sum(max(0, m.in_flight - p) for m in ep.loaded)

    @staticmethod
    def kv_usage(ep: EndpointView) -> float:
        """Fraction of the slots of ``ep``'s loaded models holding a request."""
        p = ep.num_parallel
        busy = sum(min(m.in_flight, p) for m in ep.loaded)
        return busy / (p * max(1, len(ep.loaded)))

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        waits = [self.waiting(e) for e in eps]
        lo, hi = min(waits), max(waits)
        rng = random.Random(f"{self.seed}:{task.id}:{len(context.avoid)}")
        order = list(range(len(eps)))
        rng.shuffle(order)
        rows = []
        for rank, i in enumerate(order):
            e = eps[i]
            q = 1.0 if hi == lo else (hi - waits[i]) / (hi - lo)
            kv = 1.0 - self.kv_usage(e)
            loc = 1.0 if task.model in e.loaded_by_name else 0.0
            total = self.QUEUE_WEIGHT * q + self.KV_CACHE_WEIGHT * kv + self.LOCALITY_WEIGHT * loc
            rows.append(((-total, float(rank)), total, (q, kv, loc), e))
        return _ranked(
            base,
            rows,
            self.name,
            ("queue", "kv_cache", "locality"),
            (self.QUEUE_WEIGHT, self.KV_CACHE_WEIGHT, self.LOCALITY_WEIGHT),
        )


class _TtlCache(Generic[V]):
    """One key of LiteLLM's in-memory router cache per model group (litellm,
    ``litellm/caching/in_memory_cache.py``): a value expires ``ttl`` seconds after it was
    first written; later writes do not extend it (``allow_ttl_override``), and a read
    after expiry finds nothing. Reads return the stored object itself, as LiteLLM's do."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._values: dict[str, V] = {}
        self._expires: dict[str, float] = {}

    def get(self, key: str, now: float) -> V | None:
        if key in self._values and now > self._expires[key]:
            del self._values[key], self._expires[key]
        return self._values.get(key)

    def set(self, key: str, value: V, now: float) -> None:
        self._values[key] = value
        if key not in self._expires or now > self._expires[key]:
            self._expires[key] = now + self.ttl


class LiteLLMLeastBusy:
    """LiteLLM's ``least-busy`` routing (BerriAI/litellm,
    ``litellm/router_strategy/least_busy.py``, LeastBusyLoggingHandler): per model group
    (here: model) a count of requests in flight per deployment (here: endpoint), +1 when
    a request is sent (``log_pre_api_call``), -1 when it ends (``log_success_event``).
    ``_get_available_deployments`` adds the healthy deployments it has not seen with 0,
    then takes the first deployment with the smallest count in the dict's insertion order
    (first use), and if that one is not healthy (here: not feasible) a random healthy one.
    The counts live in the router's in-memory cache, which LiteLLM writes without a TTL,
    so the cache's default of 600 s applies (``InMemoryCache(default_ttl=600)``): every 600
    s the counts start again from nothing while requests are still in flight, and those
    requests' ends then push counts below zero, as in LiteLLM. It counts requests, not
    work, and knows neither speeds nor loaded models."""

    name = "litellm_least_busy"
    reads_backlog = False
    CACHE_TTL_SECONDS = 600.0

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._cache: _TtlCache[dict[EndpointKey, int]] = _TtlCache(self.CACHE_TTL_SECONDS)

    def counts(self, model: str, now: float) -> dict[EndpointKey, int]:
        """The in-flight counts LiteLLM would read now (a copy)."""
        return dict(self._cache.get(model, now) or {})

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        now = context.now
        stored = self._cache.get(task.model, now)
        counts: dict[EndpointKey, int] = stored if stored is not None else {}
        for e in eps:
            counts.setdefault(e.key, 0)  # persists when the cache holds the dict
        best: EndpointKey | None = None
        least = float("inf")
        for k, v in counts.items():
            if v < least:
                least, best = v, k
        by_key = {e.key: e for e in eps}
        pick = by_key.get(best) if best is not None else None
        if pick is None:
            pick = random.Random(f"{self.seed}:{task.id}:{len(context.avoid)}").choice(eps)
        # log_pre_api_call: count the request on the deployment it is sent to.
        current = self._cache.get(task.model, now) or {}
        current[pick.key] = current.get(pick.key, 0) + 1
        self._cache.set(task.model, current, now)
        rows = [
            (
                (0.0 if e is pick else 1.0, float(counts.get(e.key, 0))),
                float(counts[e.key]),
                (float(counts[e.key]),),
                e,
            )
            for e in eps
        ]
        return _ranked(base, rows, self.name, ("requests_in_flight",), (1.0,))

    def learn(self, done: Finished) -> None:
        counts = self._cache.get(done.model, done.finished_at) or {}
        key = (done.node, done.endpoint_id)
        counts[key] = counts.get(key, 0) - 1
        self._cache.set(done.model, counts, done.finished_at)


class LiteLLMLatency:
    """LiteLLM's ``latency-based-routing`` (BerriAI/litellm,
    ``litellm/router_strategy/lowest_latency.py``, LowestLatencyLoggingHandler, with its
    RoutingArgs defaults: ttl 1 h, lowest_latency_buffer 0, max_latency_list_size 10).

    On success it records the request's latency per output token, ``(end - start) /
    completion_tokens`` (start: when it was sent, so time queued in Ollama counts), in the
    deployment's list: appended while it holds fewer than 10, else the list becomes its
    first 9 plus the new value (LiteLLM keeps the oldest nine). A deployment's latency is
    the sum of its float entries over the list's length; one not seen yet gets the int
    entry 0 (so it scores 0 and is tried first), and because the cache hands back the
    dict it stores, that 0 stays in its list and counts in the average's length. The
    deployments are shuffled, stably sorted by latency, and one of those within the
    buffer of the lowest (with buffer 0: those equal to it) is picked at random. The map
    expires 1 h after it was first written and then starts again empty. It learns speed
    only from finished requests, reacts to queueing after the fact and ignores loads.
    """

    name = "litellm_latency"
    reads_backlog = False
    TTL_SECONDS = 3600.0
    LOWEST_LATENCY_BUFFER = 0.0
    MAX_LATENCY_LIST_SIZE = 10

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._cache: _TtlCache[dict[EndpointKey, list[float]]] = _TtlCache(self.TTL_SECONDS)

    def latency(self, model: str, key: EndpointKey, now: float) -> float | None:
        """LiteLLM's average latency per output token of ``key`` for ``model`` (None:
        no entry)."""
        table = self._cache.get(model, now) or {}
        samples = table.get(key)
        if not samples:
            return None
        return sum(x for x in samples if isinstance(x, float)) / len(samples)

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        if not eps:
            return base
        stored = self._cache.get(task.model, context.now)
        table: dict[EndpointKey, list[float]] = stored if stored is not None else {}
        for e in eps:
            if e.key not in table:
                table[e.key] = [0]  # LiteLLM's {"latency": [0]} for a new deployment
        rng = random.Random(f"{self.seed}:{task.id}:{len(context.avoid)}")
        items = rng.sample(list(table.items()), len(table))
        by_key = {e.key: e for e in eps}
        scored: list[tuple[EndpointView, float]] = []
        for k, samples in items:
            found = by_key.get(k)
            if found is None:
                continue
            total = sum(x for x in samples if isinstance(x, float))
            scored.append((found, total / len(samples)))
        scored.sort(key=lambda x: x[1])
        lowest = scored[0][1]
        valid = [x for x in scored if x[1] <= lowest + self.LOWEST_LATENCY_BUFFER * lowest]
        pick = rng.choice(valid)[0]
        rows = [((0.0 if e is pick else 1.0, lat), lat, (lat,), e) for e, lat in scored]
        return _ranked(base, rows, self.name, ("seconds_per_token",), (1.0,))

    def learn(self, done: Finished) -> None:
        if done.output_tokens <= 0:
            return  # LiteLLM divides by completion_tokens; the error is swallowed
        value = (done.finished_at - done.sent_at) / done.output_tokens
        table = self._cache.get(done.model, done.finished_at) or {}
        key = (done.node, done.endpoint_id)
        samples = table.setdefault(key, [])
        if len(samples) < self.MAX_LATENCY_LIST_SIZE:
            samples.append(value)
        else:
            table[key] = [*samples[: self.MAX_LATENCY_LIST_SIZE - 1], value]
        self._cache.set(done.model, table, done.finished_at)


class GpuStackPlacement:
    """GPUStack's placement with least-busy dispatch (gpustack/gpustack,
    ``gpustack/policies/scorers/placement_scorer.py``, PlacementScorer; docs/scheduler.md).

    GPUStack places model instances (a model running on a worker's GPUs) and proxies each
    request to one of the model's instances. Here an instance is a model loaded on an
    endpoint. A task goes to the feasible endpoint where its model runs with the fewest of
    its requests in flight (least busy; GPUStack's proxy itself cycles round robin,
    ``gpustack/http_proxy/strategies.py``). When no running instance can take it (none,
    or all at their in-flight limit), a new instance is placed (GPUStack's scale-up) among
    the feasible endpoints, preferring those where it fits in free VRAM (GPUStack's
    resource-fit filter; evicting idle models comes second, which Ollama would do), by:

    * ``binpack`` (``score_binpack``): the highest ``claim / allocatable`` VRAM, i.e. the
      fullest fit, leaving whole GPUs free for large models;
    * ``spread`` (``score_spread``, SpreadScoreWeights): ``0.85 worker + 0.15 gpu``, the
      worker score from the node's instances of this model (``current``) and of others
      (``others``), inverse-normalised over the candidates' nodes with the base scores
      0.85/0.45/0.50 and weights of ``_score_spread_worker_score``; the gpu score
      ``1 / (1 + current + 0.2 others)`` of the endpoint's own instances.

    Neither knows GPU speed or queue length when placing; dispatch knows only counts.
    """

    reads_backlog = False

    def __init__(self, strategy: str, seed: int = 0) -> None:
        if strategy not in ("binpack", "spread"):
            raise ValueError(f"unknown GPUStack placement strategy {strategy!r}")
        self.strategy = strategy
        self.name = f"gpustack_{strategy}"

    @staticmethod
    def binpack_score(ep: EndpointView, need: int) -> float:
        free = ep.vram_total_bytes - ep.vram_used_bytes
        allocatable = free if need <= free else ep.reclaimable_bytes
        return need / allocatable if allocatable > 0 else 0.0

    @staticmethod
    def spread_scores(
        eps: list[EndpointView], snapshot: ClusterSnapshot, model: str
    ) -> list[float]:
        counts: dict[str, tuple[int, int]] = {}
        for e in eps:
            if e.node in counts:
                continue
            node = snapshot.node(e.node)
            cur = oth = 0
            for ne in node.endpoints if node is not None else (e,):
                for lm in ne.loaded:
                    if lm.name == model:
                        cur += 1
                    else:
                        oth += 1
            counts[e.node] = (cur, oth)
        curs = [c for c, _ in counts.values()]
        oths = [o for _, o in counts.values()]
        any_zero = any(c == 0 for c in curs)
        lo_c, hi_c, lo_o, hi_o = min(curs), max(curs), min(oths), max(oths)

        def inv(v: int, lo: int, hi: int) -> float:
            return 1.0 if hi <= lo else 1.0 - (v - lo) / (hi - lo)

        out = []
        for e in eps:
            cur, oth = counts[e.node]
            if any_zero and cur == 0:
                worker = 0.85 + 0.15 * inv(oth, lo_o, hi_o)
            elif any_zero:
                worker = 0.45 + 0.35 * inv(cur, lo_c, hi_c) + 0.20 * inv(oth, lo_o, hi_o)
            else:
                worker = 0.50 + 0.25 * inv(cur, lo_c, hi_c) + 0.15 * inv(oth, lo_o, hi_o)
            ecur = sum(1 for lm in e.loaded if lm.name == model)
            gpu = 1.0 / (1.0 + ecur + 0.2 * (len(e.loaded) - ecur))
            out.append(0.85 * worker + 0.15 * gpu)
        return out

    def __call__(
        self, task: TaskSpec, snapshot: ClusterSnapshot, context: PolicyContext
    ) -> Decision:
        eps, base = _feasible(task, snapshot, context)
        model = task.model
        running = [e for e in eps if model in e.loaded_by_name]
        others = [e for e in eps if model not in e.loaded_by_name]
        rows = [
            (
                (0.0, float(_model_in_flight(e, model))),
                0.0,
                (float(_model_in_flight(e, model)), 0.0),
                e,
            )
            for e in running
        ]
        if others:
            if self.strategy == "binpack":
                place = [self.binpack_score(e, e.models[model]) for e in others]
            else:
                place = self.spread_scores(others, snapshot, model)
            for e, p in zip(others, place, strict=True):
                fits_free = e.models[model] <= e.vram_total_bytes - e.vram_used_bytes
                tier = 1.0 if fits_free else 2.0
                rows.append(((tier, -p), tier, (0.0, p), e))
        return _ranked(base, rows, self.name, ("instance_in_flight", "placement"), (1.0, -1.0))


POLICY_NAMES: tuple[str, ...] = (
    "hive",
    "round_robin",
    "random",
    "least_outstanding",
    "p2c",
    "static_chain",
    "hive_original",
    "least_work",
    "least_work_warm",
    "llm_d",
    "litellm_least_busy",
    "litellm_latency",
    "gpustack_binpack",
    "gpustack_spread",
)


def make_policy(name: str, config: RouterConfig, seed: int) -> Policy:
    factories: dict[str, Callable[[], Policy]] = {
        "hive": lambda: HivePolicy(config),
        "round_robin": lambda: RoundRobin(seed),
        "random": lambda: RandomChoice(seed),
        "least_outstanding": lambda: LeastOutstanding(seed),
        "p2c": lambda: PowerOfTwo(seed),
        "static_chain": lambda: StaticChain(config, seed),
        "hive_original": lambda: HiveOriginal(seed),
        "least_work": lambda: LeastWork(False, seed),
        "least_work_warm": lambda: LeastWork(True, seed),
        "llm_d": lambda: LlmdEndpointPicker(seed),
        "litellm_least_busy": lambda: LiteLLMLeastBusy(seed),
        "litellm_latency": lambda: LiteLLMLatency(seed),
        "gpustack_binpack": lambda: GpuStackPlacement("binpack", seed),
        "gpustack_spread": lambda: GpuStackPlacement("spread", seed),
    }
    try:
        return factories[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None
