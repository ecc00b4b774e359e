"""Baseline routing policies the router must beat, behind the same interface.

Every baseline applies the router's hard filters (``coordinator.routing.feasible``:
healthy, not draining, model on disk, fits VRAM, capacity under the scheduler's limit)
so the comparison is about choosing among feasible endpoints, not about feasibility.
Each returns a ``Decision`` whose candidates carry the baseline's own score, so
``explain`` works for them too. Randomness is seeded from the run's seed and the task id.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable

from coordinator.routing.config import RouterConfig
from coordinator.routing.filters import feasible
from coordinator.routing.router import Candidate, Decision
from coordinator.routing.snapshot import ClusterSnapshot, EndpointView
from coordinator.routing.task import TaskSpec
from coordinator.scheduler import HivePolicy, Policy, PolicyContext


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


POLICY_NAMES: tuple[str, ...] = (
    "hive",
    "round_robin",
    "random",
    "least_outstanding",
    "p2c",
    "static_chain",
    "hive_original",
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
    }
    try:
        return factories[name]()
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; known: {', '.join(POLICY_NAMES)}") from None
