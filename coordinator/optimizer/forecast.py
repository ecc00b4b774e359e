"""Predictive warm-up: forecast each model's demand and place warm copies before it arrives.

Demand is forecast per model with Holt's linear exponential smoothing over arrival counts
in buckets of ``bucket_seconds`` (level ``l``, trend ``b``)::

    l_t = alpha * x_t + (1 - alpha) * (l_{t-1} + b_{t-1})
    b_t = beta * (l_t - l_{t-1}) + (1 - beta) * b_{t-1}
    forecast = max(0, l + horizon_buckets * b) / bucket_seconds        (tasks/s)

A model then wants ``ceil(rate * service_seconds / replica_load)`` warm copies (at least
one above ``min_rate``), where ``service_seconds`` is its measured mean run time. For each
model short of copies the planner picks an endpoint that has the model on disk, is healthy,
has spare slots, and fits it in free VRAM, or in free VRAM plus idle models that have more
copies than their own forecast wants. It never displaces a model with work in flight or a
pinned model, and warms at most one model per endpoint per pass. Among the candidates, one
that needs no eviction comes first, then one with no other model busy (a copy next to a
busy model would share its GPU: both decode at half speed), then the fastest (measured
speed, else the hardware prior).

The same forecast yields a placement (``plan_placement``): on each endpoint, the resident
models whose demand wants that copy ("homes"). The router's ``placement`` scorer charges
the reload of a protected model to a request that would evict it, so a request for a
model without a free home queues behind its warm copies, or loads where VRAM is free,
instead of swapping a protected model out and, soon after, back in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from coordinator.optimizer.config import EndpointKey, Pins, WarmupSettings
from coordinator.optimizer.history import History, recent
from coordinator.routing.snapshot import ClusterSnapshot, EndpointView, prior_speed

# Tokens assumed for a model's service time before any of its tasks finished.
PRIOR_PROMPT_TOKENS = 600
PRIOR_OUTPUT_TOKENS = 300


def holt(counts: list[float], alpha: float, beta: float, horizon: float) -> float:
    """Holt's forecast ``horizon`` steps after the last of ``counts`` (never negative)."""
    if not counts:
        return 0.0
    level, trend = counts[0], 0.0
    for x in counts[1:]:
        prev = level
        level = alpha * x + (1 - alpha) * (level + trend)
        trend = beta * (level - prev) + (1 - beta) * trend
    return max(0.0, level + horizon * trend)


def forecast_rates(history: History, now: float, s: WarmupSettings) -> dict[str, float]:
    """Forecast arrivals per second of every model seen in the window."""
    n = max(1, int(history.window_seconds // s.bucket_seconds))
    start = now - n * s.bucket_seconds
    counts: dict[str, list[float]] = {}
    for a in recent(history.arrivals, start):
        i = min(n - 1, int((a.at - start) // s.bucket_seconds))
        counts.setdefault(a.model, [0.0] * n)[i] += 1
    return {
        m: holt(c, s.alpha, s.beta, s.horizon_buckets) / s.bucket_seconds
        for m, c in sorted(counts.items())
    }


def service_seconds(history: History, snapshot: ClusterSnapshot, now: float) -> dict[str, float]:
    """Mean run seconds per model over the window's finished tasks; for models without any,
    the hardware prior on the first endpoint that has the model."""
    total: dict[str, list[float]] = {}
    for t in recent(history.tasks, now - history.window_seconds):
        if t.ok and t.run_seconds > 0:
            acc = total.setdefault(t.model, [0.0, 0.0])
            acc[0] += t.run_seconds
            acc[1] += 1
    out = {m: v[0] / v[1] for m, v in total.items()}
    for ep in snapshot.endpoints():
        for m, size in ep.models.items():
            if m not in out:
                p = prior_speed(ep.gpu_names, m, size)
                out[m] = PRIOR_PROMPT_TOKENS / p.prompt_tps + PRIOR_OUTPUT_TOKENS / p.decode_tps
    return out


@dataclass(frozen=True, slots=True)
class Warmup:
    node: str
    endpoint_id: str
    model: str
    evict: tuple[str, ...]
    reason: str


def _usable(snapshot: ClusterSnapshot) -> list[EndpointView]:
    return [
        ep
        for n in snapshot.nodes
        if n.state == "healthy" and not n.draining
        for ep in n.endpoints
        if ep.healthy
    ]


def _speed(ep: EndpointView, model: str, snapshot: ClusterSnapshot) -> float:
    measured = snapshot.speeds.get((ep.node, ep.id, model))
    if measured is not None and measured.samples > 0:
        return measured.decode_tps
    return prior_speed(ep.gpu_names, model, ep.models.get(model, 0)).decode_tps


def plan_warmups(
    snapshot: ClusterSnapshot,
    rates: Mapping[str, float],
    service: Mapping[str, float],
    s: WarmupSettings,
    pins: Pins,
    skip: frozenset[EndpointKey] = frozenset(),
) -> list[Warmup]:
    """Warm-ups that bring every forecast model up to the copies it wants (see module doc).

    ``snapshot`` must include the scheduler's in-flight work (``Scheduler.overlay``) so a
    model with running tasks is never chosen for eviction. ``skip``: endpoints not to touch.
    Another Hive cluster's gateway (federation) is never warmed: its own optimizer does.
    """
    eps = [
        e
        for e in _usable(snapshot)
        if e.key not in pins.endpoints and e.key not in skip and not e.hive_cluster
    ]
    want = wanted_copies(rates, service, s)
    have: dict[str, int] = {}
    for e in _usable(snapshot):
        for lm in e.loaded:
            have[lm.name] = have.get(lm.name, 0) + 1
    out: list[Warmup] = []
    used: set[EndpointKey] = set()
    # Pinned models first: they stay loaded whatever the forecast says.
    for e in eps:
        for m in pins.models.get(e.key, ()):
            if m in e.models and m not in e.loaded_by_name and e.key not in used:
                victims = _make_room(e, m, have, want, pins)
                if victims is not None:
                    out.append(Warmup(e.node, e.id, m, victims, "pinned by optimizer.pins.models"))
                    used.add(e.key)
                    _account(have, m, victims)
    order = sorted(want, key=lambda m: (-(want[m] - have.get(m, 0)), -rates[m], m))
    for m in order:
        while want[m] > have.get(m, 0):
            best: tuple[tuple[float, ...], EndpointView, tuple[str, ...]] | None = None
            for e in eps:
                if e.key in used or m not in e.models or m in e.loaded_by_name:
                    continue
                if e.in_flight >= e.num_parallel:
                    continue
                victims = _make_room(e, m, have, want, pins)
                if victims is None:
                    continue
                rank = (
                    float(len(victims)),
                    float(e.busy_models),
                    -_speed(e, m, snapshot),
                    float(e.in_flight),
                )
                if best is None or rank < best[0]:
                    best = (rank, e, victims)
            if best is None:
                break
            _, e, victims = best
            rate = rates[m]
            reason = (
                f"forecast {rate * 60:.1f} {m} tasks/min x {service.get(m, 0.0):.1f}s each wants "
                f"{want[m]} warm cop{'y' if want[m] == 1 else 'ies'}, {have.get(m, 0)} loaded"
            )
            if victims:
                reason += f"; displaces idle {', '.join(victims)} (more copies than its demand)"
            out.append(Warmup(e.node, e.id, m, victims, reason))
            used.add(e.key)
            _account(have, m, victims)
    return out


def wanted_copies(
    rates: Mapping[str, float], service: Mapping[str, float], s: WarmupSettings
) -> dict[str, int]:
    """Warm copies each forecast model wants: ``ceil(rate * service / replica_load)``, at
    least one above ``min_rate``; models below it are absent."""
    want: dict[str, int] = {}
    for m, rate in rates.items():
        if rate >= s.min_rate:
            load = rate * service.get(m, 0.0)
            want[m] = max(1, math.ceil(load / s.replica_load))
    return want


def plan_placement(
    snapshot: ClusterSnapshot,
    rates: Mapping[str, float],
    service: Mapping[str, float],
    warmups: list[Warmup],
    s: WarmupSettings,
    pins: Pins,
) -> dict[EndpointKey, tuple[frozenset[str], str]]:
    """The models each endpoint should keep resident, with the reason (see module doc).

    A model's resident copies (after ``warmups``) are ranked fastest first and the first
    ``wanted_copies`` of them are protected: those copies are its homes, and evicting one
    costs a reload soon. Pinned models are always protected where they are pinned. Only
    endpoints with something protected appear; pinned endpoints never do.
    """
    want = wanted_copies(rates, service, s)
    resident: dict[EndpointKey, set[str]] = {}
    for e in _usable(snapshot):
        resident[e.key] = {lm.name for lm in e.loaded}
    for w in warmups:
        here = resident.setdefault((w.node, w.endpoint_id), set())
        here.difference_update(w.evict)
        here.add(w.model)
    by_key = {e.key: e for e in snapshot.endpoints()}
    keep: dict[EndpointKey, dict[str, str]] = {}
    for m in sorted(want):
        homes = sorted(
            (k for k, names in resident.items() if m in names),
            key=lambda k: (-_speed(by_key[k], m, snapshot), k),
        )
        for k in homes[: want[m]]:
            keep.setdefault(k, {})[m] = (
                f"{m}: forecast {rates[m] * 60:.1f}/min wants {want[m]}, {len(homes)} resident"
            )
    for k, names in pins.models.items():
        for m in names:
            if m in resident.get(k, ()):
                keep.setdefault(k, {})[m] = f"{m}: pinned by optimizer.pins.models"
    return {
        k: (frozenset(v), "; ".join(v[m] for m in sorted(v)))
        for k, v in sorted(keep.items())
        if k not in pins.endpoints
    }


def _account(have: dict[str, int], model: str, victims: tuple[str, ...]) -> None:
    have[model] = have.get(model, 0) + 1
    for v in victims:
        have[v] -= 1


def _make_room(
    e: EndpointView,
    model: str,
    have: Mapping[str, int],
    want: Mapping[str, int],
    pins: Pins,
) -> tuple[str, ...] | None:
    """Idle models to displace so ``model`` fits on ``e`` (() when it fits now); None when
    it cannot fit without displacing a busy, pinned or still-wanted model."""
    need = e.models.get(model, 0)
    resident = sum(lm.vram_bytes for lm in e.loaded)
    free = e.vram_total_bytes - max(e.vram_used_bytes, resident)
    if need <= free:
        return ()
    pinned = set(pins.models.get(e.key, ()))
    spare = sorted(
        (
            lm
            for lm in e.loaded
            if lm.in_flight == 0
            and lm.name not in pinned
            and have.get(lm.name, 0) > want.get(lm.name, 0)
        ),
        key=lambda lm: (want.get(lm.name, 0), lm.name),
    )
    victims: list[str] = []
    for lm in spare:
        if need <= free:
            break
        victims.append(lm.name)
        free += lm.vram_bytes
    return tuple(victims) if need <= free else None
