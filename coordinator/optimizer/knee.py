"""Self-tuning: each endpoint's throughput curve against concurrency, and its knee.

For one (node, endpoint, model), finished tasks are grouped by the number of requests in
flight on the endpoint when they ended (``c``). By Little's law the endpoint's delivered
throughput at that level is::

    X(c) = c * median(eval_count / run_seconds)          (tokens/s, over the level's tasks)

``run_seconds`` includes the wait inside Ollama once its slots are full, so X rises while
more requests share the batch and flattens once extra requests only queue. The knee is the
least concurrency whose throughput is within ``tolerance`` of the best level's: beyond it,
more in flight adds latency, not throughput. Levels with fewer than ``min_samples`` tasks
are ignored; the median keeps one huge answer from moving a level. When the best level is
also the highest one measured the curve may still be rising (``rising``): the tuner then
probes one step above the current limit, and only lowers a limit to a knee it has seen
the curve flatten beyond.

Failure modes: a curve with one trusted level has no knee (None); a model mix that changes
token counts between levels skews X (the median damps it, it does not remove it).
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from coordinator.optimizer.history import TaskSample


@dataclass(frozen=True, slots=True)
class CurvePoint:
    concurrency: int
    tokens_per_second: float
    samples: int


@dataclass(frozen=True, slots=True)
class Knee:
    node: str
    endpoint_id: str
    model: str
    curve: tuple[CurvePoint, ...]
    knee: int
    # True when the best throughput is at the highest level measured (may rise further).
    rising: bool

    @property
    def samples(self) -> int:
        return sum(p.samples for p in self.curve)


def throughput_curve(samples: Iterable[TaskSample], min_samples: int) -> list[CurvePoint]:
    """X(c) per concurrency level with at least ``min_samples`` successful timed tasks."""
    rates: dict[int, list[float]] = {}
    for s in samples:
        if not s.ok or s.eval_count <= 0 or s.run_seconds <= 0:
            continue
        rates.setdefault(max(1, s.concurrency), []).append(s.eval_count / s.run_seconds)
    return [
        CurvePoint(c, c * statistics.median(rates[c]), len(rates[c]))
        for c in sorted(rates)
        if len(rates[c]) >= min_samples
    ]


def find_knee(curve: list[CurvePoint], tolerance: float) -> tuple[int, bool] | None:
    """(knee concurrency, still rising) or None with fewer than two trusted levels."""
    if len(curve) < 2:
        return None
    best = max(curve, key=lambda p: p.tokens_per_second)
    target = (1.0 - tolerance) * best.tokens_per_second
    knee = next(p.concurrency for p in curve if p.tokens_per_second >= target)
    return knee, best.concurrency == curve[-1].concurrency and knee == best.concurrency


def knees(samples: Iterable[TaskSample], min_samples: int, tolerance: float) -> list[Knee]:
    """The knee of every (node, endpoint, model) with enough history, sorted by key."""
    by_key: dict[tuple[str, str, str], list[TaskSample]] = {}
    for s in samples:
        by_key.setdefault(s.key, []).append(s)
    out = []
    for key in sorted(by_key):
        curve = throughput_curve(by_key[key], min_samples)
        found = find_knee(curve, tolerance)
        if found is not None:
            out.append(Knee(key[0], key[1], key[2], tuple(curve), found[0], found[1]))
    return out


def endpoint_knee(per_model: list[Knee]) -> tuple[int, bool, Knee] | None:
    """One endpoint's limit from its models' knees: the knee of the model with the most
    evidence (the endpoint's limit is shared by all its models)."""
    if not per_model:
        return None
    k = max(per_model, key=lambda k: (k.samples, k.model))
    return k.knee, k.rising, k
