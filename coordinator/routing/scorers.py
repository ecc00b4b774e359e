"""Soft scores: how good each feasible endpoint is for a task, in seconds.

Every scorer is a named unit returning, for each candidate endpoint, a value in seconds
(or seconds-equivalent); the router multiplies it by the scorer's weight from the cluster
file (``routing.weights.<name>``) and ranks by the sum, lowest first. Using one unit for
every score is the normalisation: a second of queueing, a second of model loading and a
second of decoding cost the same, so with default weights the total *is* the expected
completion time plus the penalties for preference and risk.

The completion model (``completion_model``) mirrors how Ollama serves requests, as the
emulator and the simulator model it: each loaded model has ``num_parallel`` slots whose
requests decode as one batch, each request at ``single / (1 + 0.25 * (batch - 1))``;
different models on one endpoint take turns on the GPU (speed divided by the number of
models decoding); requests beyond the slots wait FIFO; a model not in VRAM is loaded
first. Scorers are computed per scorer over all candidates (not per candidate over all
scorers) to keep a decision over 1,000 endpoints within two milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coordinator.routing.config import RouterConfig
from coordinator.routing.snapshot import (
    ClusterSnapshot,
    EndpointKey,
    EndpointView,
    load_seconds,
    prior_speed,
)
from coordinator.routing.task import TaskSpec

# Each extra request in a model's batch slows every request of the batch by this much.
BATCH_SLOWDOWN = 0.25


@dataclass(slots=True)
class ScoringInput:
    """What every scorer reads: the task, the feasible endpoints and the completion model,
    as parallel lists (index i is endpoint i)."""

    task: TaskSpec
    endpoints: Sequence[EndpointView]
    snapshot: ClusterSnapshot
    config: RouterConfig
    avoid: frozenset[EndpointKey]
    queue_wait: list[float]
    load: list[float]
    service: list[float]
    interference: list[float]
    eviction: list[float]
    placement: list[float]


def completion_model(
    task: TaskSpec,
    endpoints: Sequence[EndpointView],
    snapshot: ClusterSnapshot,
    config: RouterConfig,
    avoid: frozenset[EndpointKey] = frozenset(),
) -> ScoringInput:
    """Expected seconds until ``task`` completes on each endpoint, split into parts.

    For endpoint E with ``P`` slots per model, ``b`` requests of the task's model in
    flight, ``m`` models with work in flight (``D = m`` if the model is busy, else
    ``m + 1``), single-stream speeds ``dec``/``pro`` (EWMA measurement blended with the
    hardware prior: ``w = n / (n + speed_prior_samples)``):

        batch      = min(b, P - 1) + 1
        service    = prompt / pro + output / dec * (1 + 0.25 * (batch - 1)) * D
        queue_wait = max(0, b - P + 1) / P * avg_slot_seconds            (waiting for a slot)
        avg_slot_seconds = W * (1 + 0.25 * (P - 1)) * D
        W          = backlog_seconds / in_flight if the scheduler knows it, else this
                     task's own single-stream seconds
        load       = hardware load seconds if the model is not loaded, else 0
        interference = seconds this task adds to others' completion: the k requests
                     already decoding in its batch each slow by 0.25 / (1 + 0.25(k-1)),
                     or, when it brings a new model onto a busy GPU, the n requests of
                     the m models already there slow by 1/m; over half its decode time.

    It assumes the current concurrency persists for the whole request (pessimistic
    when others are about to finish, optimistic when more are about to arrive).
    """
    prior_n = config.speed_prior_samples
    speeds = snapshot.speeds
    protected = snapshot.protected
    model = task.model
    pt = float(task.prompt_tokens)
    ot = float(task.output_tokens)
    qw: list[float] = []
    ld: list[float] = []
    sv: list[float] = []
    itf: list[float] = []
    ev: list[float] = []
    pl: list[float] = []
    for ep in endpoints:
        nbytes = ep.models[model]
        prior = ep.prior_cache.get(model)
        if prior is None:
            prior = ep.prior_cache[model] = prior_speed(ep.gpu_names, model, nbytes)
        dec = prior.decode_tps
        pro = prior.prompt_tps
        measured = speeds.get((ep.node, ep.id, model))
        if measured is not None and measured.samples > 0:
            w = measured.samples / (measured.samples + prior_n)
            dec = w * measured.decode_tps + (1.0 - w) * dec
            pro = w * measured.prompt_tps + (1.0 - w) * pro
        loaded = ep.loaded_by_name.get(model)
        b = loaded.in_flight if loaded is not None else 0
        m = ep.busy_models
        d = m if b > 0 else m + 1
        p = ep.num_parallel
        batch = (b if b < p else p - 1) + 1
        decode_single = ot / dec
        prompt_s = pt / pro
        decode_s = decode_single * (1.0 + BATCH_SLOWDOWN * (batch - 1)) * d
        sv.append(prompt_s + decode_s)
        if b >= p:
            per = (
                (ep.backlog_seconds / ep.in_flight)
                if ep.backlog_seconds > 0.0
                else prompt_s + decode_single
            )
            qw.append((b - p + 1) / p * per * (1.0 + BATCH_SLOWDOWN * (p - 1)) * d)
        else:
            qw.append(0.0)
        if loaded is not None:
            ld.append(0.0)
            ev.append(0.0)
            pl.append(0.0)
        else:
            ld.append(load_seconds(model, nbytes, ep.load_bytes_per_second))
            ev.append(_eviction_seconds(ep, nbytes))
            keep = protected.get(ep.key) if protected else None
            pl.append(protected_seconds(ep, nbytes, keep) if keep else 0.0)
        if b > 0:
            k = batch - 1
            itf.append(
                k
                * BATCH_SLOWDOWN
                / (1.0 + BATCH_SLOWDOWN * (k - 1 if k > 0 else 0))
                * decode_s
                * 0.5
            )
        elif m > 0:
            others = min(ep.in_flight, m * p)
            itf.append(others / m * decode_s * 0.5)
        else:
            itf.append(0.0)
    return ScoringInput(task, endpoints, snapshot, config, avoid, qw, ld, sv, itf, ev, pl)


def _eviction_seconds(ep: EndpointView, need: int) -> float:
    """Seconds to load again the idle models that loading ``need`` bytes would push out.

    Ollama evicts least recently used first, which a snapshot does not order; this takes
    the fewest models that make room (largest first), a lower bound on what is lost."""
    free = ep.vram_total_bytes - max(ep.vram_used_bytes, sum(m.vram_bytes for m in ep.loaded))
    if free >= need:
        return 0.0
    total = 0.0
    for m in sorted((m for m in ep.loaded if m.in_flight == 0), key=lambda m: -m.vram_bytes):
        free += m.vram_bytes
        total += load_seconds(m.name, m.vram_bytes, ep.load_bytes_per_second)
        if free >= need:
            break
    return total


def protected_seconds(ep: EndpointView, need: int, keep: frozenset[str]) -> float:
    """Seconds to load again the protected idle models that loading ``need`` bytes cannot
    avoid pushing out: every unprotected idle model goes first, then protected ones,
    quickest to reload first. 0 when the room exists without touching a protected one."""
    free = ep.vram_total_bytes - max(ep.vram_used_bytes, sum(m.vram_bytes for m in ep.loaded))
    guarded: list[tuple[float, int]] = []
    for m in ep.loaded:
        if m.in_flight:
            continue
        if m.name in keep:
            guarded.append(
                (load_seconds(m.name, m.vram_bytes, ep.load_bytes_per_second), m.vram_bytes)
            )
        else:
            free += m.vram_bytes
    if free >= need:
        return 0.0
    total = 0.0
    for seconds, nbytes in sorted(guarded):
        free += nbytes
        total += seconds
        if free >= need:
            break
    return total


def queue_wait(s: ScoringInput) -> list[float]:
    """Seconds waiting for one of the model's slots on the endpoint (weight ``queue_wait``).
    Backpressure keeps this short; it is what makes a busy fast endpoint lose to an idle
    slower one."""
    return s.queue_wait


def cold_load(s: ScoringInput) -> list[float]:
    """Seconds loading the model if it is not in VRAM (weight ``cold_load``, default 2: the
    requests for that model arriving during the load wait behind it too). A warm endpoint
    avoids the load; ``eviction`` counts what the load pushes out."""
    return s.load


def service(s: ScoringInput) -> list[float]:
    """Seconds evaluating the prompt and decoding the answer at the measured (EWMA) or
    modelled speed, slowed by the batch and by other models sharing the GPU (weight
    ``service``): the fast GPU wins unless it is crowded."""
    return s.service


def interference(s: ScoringInput) -> list[float]:
    """Seconds this task adds to the completion of tasks already on the endpoint (weight
    ``interference``): joining a batch slows it a little, bringing a second model onto a
    busy GPU halves everyone's speed. Minimising own time alone would ignore this."""
    return s.interference


def eviction(s: ScoringInput) -> list[float]:
    """Seconds to reload the idle models a cold load would evict (weight ``eviction``, the
    chance they are wanted again soon). Without it the router thrashes: each model
    pushes out the one the next task needs."""
    return s.eviction


def placement(s: ScoringInput) -> list[float]:
    """Seconds to reload the models the optimizer's placement protects here that a cold
    load would evict (weight ``placement``, on top of ``eviction``). The optimizer
    protects a resident model when its forecast demand wants that copy, so evicting it
    means a reload soon; this makes the router queue a request for model B behind B's
    warm copies, or load B where VRAM is free, rather than swap out a protected A and
    back. Zero everywhere when the snapshot carries no placement (optimizer off)."""
    return s.placement


def chain(s: ScoringInput) -> list[float]:
    """Steps down the task type's chain (0 = first choice, chain length = not in it); the
    weight ``chain`` is seconds per step. The seed's operators ordered nodes by what they
    are good at; with default weights this only decides between near-equal endpoints."""
    nodes = s.config.chains.get(s.task.type)
    if not nodes:
        return [0.0] * len(s.endpoints)
    rank = {name: float(i) for i, name in enumerate(nodes)}
    last = float(len(nodes))
    return [rank.get(ep.node, last) for ep in s.endpoints]


def error_rate(s: ScoringInput) -> list[float]:
    """Expected seconds lost to failure (weight ``error_rate``): with recent error rate
    ``e``, the attempt is repeated ``e / (1 - e)`` times on average, each costing about the
    completion time here."""
    rates = s.snapshot.error_rates
    out: list[float] = []
    for i, ep in enumerate(s.endpoints):
        e = rates.get((ep.node, ep.id), 0.0)
        if e <= 0.0:
            out.append(0.0)
            continue
        e = min(e, 0.95)
        out.append(e / (1.0 - e) * (s.queue_wait[i] + s.load[i] + s.service[i]))
    return out


def utilization(s: ScoringInput) -> list[float]:
    """GPU busy fraction times the service time (weight ``utilization``): telemetry sees
    load the coordinator did not assign (other clients of the same Ollama, other
    processes on the GPU), which the in-flight counts miss."""
    return [ep.utilization_percent / 100.0 * s.service[i] for i, ep in enumerate(s.endpoints)]


def failover(s: ScoringInput) -> list[float]:
    """1 for an endpoint that already failed this task, else 0 (weight ``failover``, in
    seconds): a retry prefers any other endpoint but may go back if none other is free."""
    if not s.avoid:
        return [0.0] * len(s.endpoints)
    return [1.0 if (ep.node, ep.id) in s.avoid else 0.0 for ep in s.endpoints]


@dataclass(frozen=True, slots=True)
class Scorer:
    name: str  # also the weight's key under routing.weights
    fn: Callable[[ScoringInput], list[float]]


SCORERS: tuple[Scorer, ...] = (
    Scorer("queue_wait", queue_wait),
    Scorer("cold_load", cold_load),
    Scorer("service", service),
    Scorer("interference", interference),
    Scorer("eviction", eviction),
    Scorer("placement", placement),
    Scorer("chain", chain),
    Scorer("error_rate", error_rate),
    Scorer("utilization", utilization),
    Scorer("failover", failover),
)
SCORER_NAMES: tuple[str, ...] = tuple(s.name for s in SCORERS)
