"""The routing decision: filters, then scorers, then a ranking, all explained.

``route(task, snapshot, config)`` is a pure function: the same inputs give the same
Decision (ties are broken by node name, then endpoint id; nothing is random), it reads
no clock and does no I/O. The Decision carries every candidate with its score broken
down by scorer, and every rejected endpoint with a reason constant, which is what
``hive explain`` prints and what the task record keeps.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.routing.config import RouterConfig
from coordinator.routing.filters import Rejection, feasible
from coordinator.routing.scorers import SCORER_NAMES, SCORERS, completion_model
from coordinator.routing.snapshot import ClusterSnapshot, EndpointKey
from coordinator.routing.task import TaskSpec


@dataclass(frozen=True, slots=True)
class Component:
    """One scorer's contribution: ``value`` (seconds) times ``weight``."""

    name: str
    value: float
    weight: float

    @property
    def weighted(self) -> float:
        return self.value * self.weight


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    endpoint_id: str
    total: float
    # Per-scorer values and weights, in the order of ``names`` (SCORER_NAMES for the router).
    values: tuple[float, ...]
    weights: tuple[float, ...]
    names: tuple[str, ...] = SCORER_NAMES

    @property
    def key(self) -> EndpointKey:
        return (self.node, self.endpoint_id)

    @property
    def components(self) -> tuple[Component, ...]:
        return tuple(
            Component(n, v, w)
            for n, v, w in zip(self.names, self.values, self.weights, strict=True)
        )

    def value(self, name: str) -> float:
        return self.values[self.names.index(name)]

    @property
    def expected_seconds(self) -> float:
        """Expected completion time (queue wait + load + service) where the scorer knows it."""
        total = 0.0
        for part in ("queue_wait", "cold_load", "service"):
            if part in self.names:
                total += self.value(part)
        return total


# Why the scheduler kept a task queued although an endpoint had room (``Hold.reason``).
HOLD_WAIT_FOR_HOME = "wait_for_home"
HOLD_REASONS: tuple[str, ...] = (HOLD_WAIT_FOR_HOME,)


@dataclass(frozen=True, slots=True)
class Hold:
    """The scheduler held the task back from its best candidate this round: for
    HOLD_WAIT_FOR_HOME, that candidate would load the model cold while the model has a
    home in the optimizer's placement (``node``/``endpoint_id``) that is only full; the
    task waits for it until it has waited ``bound_seconds`` in all."""

    reason: str  # one of HOLD_REASONS
    node: str
    endpoint_id: str
    waited_seconds: float
    bound_seconds: float

    @property
    def detail(self) -> str:
        return (
            f"home {self.node}/{self.endpoint_id} at its in-flight limit; waited "
            f"{self.waited_seconds:.1f}s of {self.bound_seconds:.1f}s rather than load cold"
        )


@dataclass(frozen=True, slots=True)
class Decision:
    task_id: str
    model: str
    candidates: tuple[Candidate, ...]  # best first
    rejected: tuple[Rejection, ...]
    policy: str = "hive"
    # Set by the scheduler when it kept the task queued despite a candidate with room.
    hold: Hold | None = None

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def rejection_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.rejected:
            counts[r.reason] = counts.get(r.reason, 0) + 1
        return counts

    def to_dict(self, max_candidates: int | None = None) -> dict[str, Any]:
        """JSON-ready form for the task record and the API."""
        cands = self.candidates if max_candidates is None else self.candidates[:max_candidates]
        return {
            "task_id": self.task_id,
            "model": self.model,
            "policy": self.policy,
            "chosen": None
            if self.chosen is None
            else {"node": self.chosen.node, "endpoint": self.chosen.endpoint_id},
            "candidates": [
                {
                    "node": c.node,
                    "endpoint": c.endpoint_id,
                    "total": c.total,
                    "components": [
                        {"name": p.name, "value": p.value, "weight": p.weight} for p in c.components
                    ],
                }
                for c in cands
            ],
            "rejected": [
                {"node": r.node, "endpoint": r.endpoint_id, "reason": r.reason, "detail": r.detail}
                for r in self.rejected
            ],
            "hold": None
            if self.hold is None
            else {
                "reason": self.hold.reason,
                "node": self.hold.node,
                "endpoint": self.hold.endpoint_id,
                "waited_seconds": self.hold.waited_seconds,
                "bound_seconds": self.hold.bound_seconds,
                "detail": self.hold.detail,
            },
        }

    def explain(self, max_candidates: int = 10) -> str:
        """A human-readable account: the pick, each candidate's breakdown, each rejection."""
        lines = [f"task {self.task_id} model {self.model} policy {self.policy}"]
        chosen = self.chosen
        if chosen is None:
            lines.append("no feasible endpoint")
        else:
            lines.append(f"chosen {chosen.node}/{chosen.endpoint_id} total {chosen.total:.3f}")
        if self.hold is not None:
            lines.append(f"held: {self.hold.reason} ({self.hold.detail})")
        for rank, c in enumerate(self.candidates[:max_candidates], 1):
            parts = ", ".join(
                f"{p.name}={p.value:.3f}x{p.weight:g}" for p in c.components if p.value != 0.0
            )
            lines.append(f"  {rank}. {c.node}/{c.endpoint_id} total={c.total:.3f} [{parts}]")
        if len(self.candidates) > max_candidates:
            lines.append(f"  ... {len(self.candidates) - max_candidates} more")
        for r in self.rejected:
            where = f"{r.node}/{r.endpoint_id}" if r.endpoint_id else r.node
            lines.append(f"  rejected {where}: {r.reason} ({r.detail})")
        return "\n".join(lines)


def route(
    task: TaskSpec,
    snapshot: ClusterSnapshot,
    config: RouterConfig,
    *,
    limits: Mapping[EndpointKey, int] | None = None,
    avoid: frozenset[EndpointKey] = frozenset(),
) -> Decision:
    """Rank the feasible endpoints for ``task``; the first candidate is the choice.

    Only the best ``config.max_candidates`` are kept in the Decision (every rejection is).

    ``limits`` caps in-flight requests per endpoint (the scheduler's backpressure; absent
    endpoints default to ``num_parallel + max_queue``). ``avoid`` lists endpoints that
    already failed this task; they are penalised by the ``failover`` weight, not removed.

        total = sum(weight[s] * value[s] for s in SCORERS)      (seconds, lower is better)

    which with default weights is the expected completion time (queue wait + cold load +
    prompt and decode time) plus the delay imposed on others, the chain preference, the
    expected retry cost of recent errors and unseen GPU load.
    """
    eps, rejected = feasible(task, snapshot, limits)
    if not eps:
        return Decision(task.id, task.model, (), tuple(rejected))
    inp = completion_model(task, eps, snapshot, config, avoid)
    w = config.weights
    weights = tuple(float(getattr(w, s.name)) for s in SCORERS)
    columns = [s.fn(inp) for s in SCORERS]
    totals = [0.0] * len(eps)
    for col, wt in zip(columns, weights, strict=True):
        if wt != 0.0:
            totals = [t + v * wt for t, v in zip(totals, col, strict=True)]
    n = len(eps)
    keep = config.max_candidates
    if n > keep:
        # Only the best ``keep`` (plus any tied with the last) are ranked and explained,
        # as Nomad keeps the top scores: building all 1,000 would cost more than choosing.
        best = heapq.nsmallest(keep, range(n), key=totals.__getitem__)
        cut = totals[best[-1]]
        picked = [i for i in range(n) if totals[i] <= cut]
    else:
        picked = list(range(n))
    picked.sort(key=lambda i: (totals[i], eps[i].node, eps[i].id))
    candidates = tuple(
        Candidate(eps[i].node, eps[i].id, totals[i], tuple(col[i] for col in columns), weights)
        for i in picked[:keep]
    )
    return Decision(task.id, task.model, candidates, tuple(rejected))
