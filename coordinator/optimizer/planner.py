"""The optimize pass: snapshot + history in, an explained plan of actions out.

``Optimizer.plan`` runs the detectors, finds each endpoint's knee, forecasts demand and
plans warm-ups; it reads the clock only through ``now`` and changes nothing. Applying a
plan is the caller's job (the coordinator: ``Scheduler.set_limit`` and
``Registry.warm_model``; the simulator: its own endpoints), after which it calls
``commit`` with what it applied so rate limits and the change log see it.

Rules every plan keeps:

* Pinned limits (``optimizer.pins.limits``, ``routing.scheduler.endpoint_limits``) are
  enforced and never tuned; pinned endpoints (``optimizer.pins.endpoints``) get no action.
* A subject (an endpoint's limit; an endpoint's warm-ups) changes at most once per
  ``min_change_interval_seconds``; at most ``max_actions_per_pass`` actions per pass.
  Actions held back by either rule are listed in ``deferred`` with the rule's name.
* Warm-ups never displace a model with work in flight (see ``forecast.plan_warmups``).
* The placement (PROTECT actions: per endpoint, the resident models the forecast wants
  kept there) changes per endpoint under the same interval; it moves nothing, so it does
  not count against ``max_actions_per_pass``. ``commit`` keeps the applied placement in
  ``placement``, which the caller puts in the router's snapshot.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from coordinator.optimizer.config import EndpointKey, OptimizerConfig
from coordinator.optimizer.detectors import THERMAL_THROTTLING, Finding, detect
from coordinator.optimizer.forecast import (
    forecast_rates,
    plan_placement,
    plan_warmups,
    service_seconds,
)
from coordinator.optimizer.history import History, TaskSample, recent
from coordinator.optimizer.knee import Knee, endpoint_knee, knees
from coordinator.routing.config import Weights
from coordinator.routing.snapshot import ClusterSnapshot, EndpointView

log = logging.getLogger("hive.coordinator.optimizer")

ActionKind = Literal["set_limit", "warm_model", "protect", "set_weight"]
SET_LIMIT: ActionKind = "set_limit"
WARM_MODEL: ActionKind = "warm_model"
# A placement change: the models the router should not evict on one endpoint.
PROTECT: ActionKind = "protect"
# A router weight (``routing.weights.<weight>``) set to ``value``; no node or endpoint.
SET_WEIGHT: ActionKind = "set_weight"

# (SET_WEIGHT) the predicted and measured fields of a TaskSample behind each tuned weight.
_CALIBRATION = {
    "queue_wait": ("predicted_wait_seconds", "wait_seconds"),
    "service": ("predicted_service_seconds", "service_seconds"),
}

# Why an action was held back.
DEFERRED_RATE_LIMITED = "rate_limited"
DEFERRED_PASS_CAP = "max_actions_per_pass"


@dataclass(frozen=True, slots=True)
class Action:
    """One change, with its reason. ``before``/``after`` are what an operator reads: the
    limit, or the models loaded on the endpoint."""

    kind: ActionKind
    node: str
    endpoint_id: str
    reason: str
    before: str
    after: str
    model: str = ""
    limit: int | None = None
    evict: tuple[str, ...] = ()
    keep_alive: str = ""
    # For PROTECT: the endpoint's protected models from now on (empty: none).
    protect: tuple[str, ...] = ()
    # The rule that produced it: "knee", "probe", "thermal", "pin", "forecast".
    source: str = ""
    # Set when it was held back: DEFERRED_*.
    deferred: str = ""
    # For SET_WEIGHT: which router weight, and its new value.
    weight: str = ""
    value: float | None = None

    @property
    def subject(self) -> tuple[str, str, str]:
        return (self.kind, self.node, self.endpoint_id or self.weight)

    @property
    def target(self) -> str:
        """What it changes, for logs: ``NODE/endpoint`` or ``routing.weights.<name>``."""
        return (
            f"routing.weights.{self.weight}" if self.weight else f"{self.node}/{self.endpoint_id}"
        )


@dataclass(frozen=True, slots=True)
class Plan:
    at: float
    actions: tuple[Action, ...]
    deferred: tuple[Action, ...]
    findings: tuple[Finding, ...]
    knees: tuple[Knee, ...] = ()
    forecast: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AppliedChange:
    at: float
    action: Action
    ok: bool = True
    error: str = ""


class Optimizer:
    """Plans optimize passes and remembers what was applied (for rate limits and the log).

    Not thread-safe: one owner (the coordinator's event loop, or the simulator)."""

    def __init__(self, config: OptimizerConfig | None = None, max_log: int = 200) -> None:
        self.config = config or OptimizerConfig()
        self._last_change: dict[tuple[str, str, str], float] = {}
        self.changes: deque[AppliedChange] = deque(maxlen=max_log)
        self.last_plan: Plan | None = None
        # The applied placement (PROTECT actions): what the router's snapshot carries.
        self.placement: dict[EndpointKey, frozenset[str]] = {}

    # ----- planning ----------------------------------------------------------------------

    def plan(
        self,
        snapshot: ClusterSnapshot,
        history: History,
        limits: Mapping[EndpointKey, int],
        now: float,
        weights: Weights | None = None,
    ) -> Plan:
        """One pass over ``snapshot`` (with the scheduler's in-flight work overlaid) and
        ``history``; ``limits`` are the endpoints' current in-flight limits, ``weights`` the
        router's current weights (needed to calibrate them)."""
        cfg = self.config
        window = cfg.window_seconds
        findings = detect(history, snapshot, now, cfg.detectors, window)
        wanted: list[Action] = []
        found_knees: list[Knee] = []
        hot_nodes = {f.node for f in findings if f.kind == THERMAL_THROTTLING}
        samples = recent(history.tasks, now - window)
        if cfg.tuning.enabled:
            found_knees = knees(samples, cfg.tuning.min_samples, cfg.tuning.tolerance)
        by_endpoint: dict[EndpointKey, list[Knee]] = {}
        for k in found_knees:
            by_endpoint.setdefault((k.node, k.endpoint_id), []).append(k)
        for ep in snapshot.endpoints():
            action = self._limit_action(ep, limits, by_endpoint.get(ep.key, []), hot_nodes)
            if action is not None:
                wanted.append(action)
        if cfg.weights.enabled and weights is not None:
            wanted.extend(self._weight_actions(samples, weights))
        rates: dict[str, float] = {}
        if cfg.warmup.enabled:
            rates = forecast_rates(history, now, cfg.warmup)
            service = service_seconds(history, snapshot, now)
            warmups = plan_warmups(snapshot, rates, service, cfg.warmup, cfg.pins)
            for w in warmups:
                where = snapshot.endpoint((w.node, w.endpoint_id))
                loaded = [lm.name for lm in where.loaded] if where is not None else []
                after = [m for m in loaded if m not in w.evict] + [w.model]
                wanted.append(
                    Action(
                        WARM_MODEL,
                        w.node,
                        w.endpoint_id,
                        w.reason,
                        ", ".join(loaded) or "-",
                        ", ".join(after),
                        model=w.model,
                        evict=w.evict,
                        keep_alive=cfg.warmup.keep_alive,
                        source="pin" if w.reason.startswith("pinned") else "forecast",
                    )
                )
            if cfg.warmup.protect:
                placement = plan_placement(snapshot, rates, service, warmups, cfg.warmup, cfg.pins)
                wanted.extend(self._protect_actions(snapshot, placement))
        actions: list[Action] = []
        deferred: list[Action] = []
        for a in wanted:
            last = self._last_change.get(a.subject)
            if (
                a.source != "pin"
                and last is not None
                and now - last < cfg.min_change_interval_seconds
            ):
                deferred.append(replace(a, deferred=DEFERRED_RATE_LIMITED))
            elif (
                a.source != "pin"
                and a.kind != PROTECT  # moves nothing; the cap bounds GPU and limit changes
                and sum(1 for b in actions if b.kind != PROTECT) >= cfg.max_actions_per_pass
            ):
                deferred.append(replace(a, deferred=DEFERRED_PASS_CAP))
            else:
                actions.append(a)
        plan = Plan(
            now, tuple(actions), tuple(deferred), tuple(findings), tuple(found_knees), rates
        )
        self.last_plan = plan
        return plan

    def _protect_actions(
        self,
        snapshot: ClusterSnapshot,
        placement: Mapping[EndpointKey, tuple[frozenset[str], str]],
    ) -> list[Action]:
        """One PROTECT action per endpoint whose protected set differs from the applied one."""
        out: list[Action] = []
        for ep in snapshot.endpoints():
            if ep.key in self.config.pins.endpoints:
                continue
            new, why = placement.get(ep.key, (frozenset(), ""))
            old = self.placement.get(ep.key, frozenset())
            if new == old:
                continue
            dropped = sorted(old - new)
            reason = f"keep resident: {why}" if new else "nothing here is wanted beyond its homes"
            if dropped:
                reason += f"; released {', '.join(dropped)}"
            out.append(
                Action(
                    PROTECT,
                    ep.node,
                    ep.id,
                    reason,
                    ", ".join(sorted(old)) or "-",
                    ", ".join(sorted(new)) or "-",
                    protect=tuple(sorted(new)),
                    source="forecast",
                )
            )
        return out

    def _weight_actions(self, samples: Iterable[TaskSample], weights: Weights) -> list[Action]:
        """SET_WEIGHT for each tuned, unpinned weight whose scorer's measured seconds over
        the window differ from its predicted seconds by more than ``tolerance``: the weight
        becomes their ratio, within its bounds."""
        cfg = self.config.weights
        rows = list(samples)
        out: list[Action] = []
        for name, (predicted_field, measured_field) in _CALIBRATION.items():
            if name in self.config.pins.weights:
                continue
            pairs = [
                (getattr(t, predicted_field), getattr(t, measured_field))
                for t in rows
                if getattr(t, predicted_field) >= 0.0 and getattr(t, measured_field) >= 0.0
            ]
            predicted = sum(p for p, _ in pairs)
            if len(pairs) < cfg.min_samples or predicted <= 0.0:
                continue
            measured = sum(m for _, m in pairs)
            low, high = cfg.bounds(name)
            target = round(max(low, min(high, measured / predicted)), 2)
            current = getattr(weights, name)
            if abs(target - current) <= cfg.tolerance * current:
                continue
            out.append(
                Action(
                    SET_WEIGHT,
                    "",
                    "",
                    f"{name} measured {measured:.0f}s against {predicted:.0f}s predicted "
                    f"over {len(pairs)} tasks (ratio {measured / predicted:.2f}, "
                    f"bounds {low:g}-{high:g})",
                    f"{current:g}",
                    f"{target:g}",
                    source="calibration",
                    weight=name,
                    value=target,
                )
            )
        return out

    def _limit_action(
        self,
        ep: EndpointView,
        limits: Mapping[EndpointKey, int],
        per_model: list[Knee],
        hot_nodes: set[str],
    ) -> Action | None:
        cfg = self.config
        key = ep.key
        if key in cfg.pins.endpoints:
            return None
        current = limits.get(key, ep.num_parallel)
        pinned = cfg.pins.limits.get(key)
        if pinned is not None:
            if pinned == current:
                return None
            return Action(
                SET_LIMIT,
                ep.node,
                ep.id,
                f"pinned to {pinned} by configuration",
                str(current),
                str(pinned),
                limit=pinned,
                source="pin",
            )
        ceiling = min(cfg.tuning.max_limit, ep.num_parallel + ep.max_queue)
        target: int | None = None
        source = ""
        reason = ""
        found = endpoint_knee(per_model) if cfg.tuning.enabled else None
        if found is not None:
            knee, rising, k = found
            curve = ", ".join(f"{p.concurrency}:{p.tokens_per_second:.0f}" for p in k.curve)
            if not rising:
                target, source = knee, "knee"
                reason = (
                    f"throughput of {k.model} flattens at {knee} in flight "
                    f"(tokens/s by concurrency {curve}; {k.samples} tasks)"
                )
            elif k.curve[-1].concurrency >= current:
                target, source = current + 1, "probe"
                reason = (
                    f"throughput of {k.model} still rises at the limit {current} "
                    f"(tokens/s by concurrency {curve}); probing {current + 1}"
                )
        if ep.node in hot_nodes and (target if target is not None else current) > ep.num_parallel:
            target, source = ep.num_parallel, "thermal"
            reason = f"{ep.node} is thermal-throttling: no queue beyond its {ep.num_parallel} slots"
        if target is None:
            return None
        target = max(cfg.tuning.min_limit, min(ceiling, target))
        if target == current:
            return None
        return Action(
            SET_LIMIT,
            ep.node,
            ep.id,
            reason,
            str(current),
            str(target),
            limit=target,
            source=source,
        )

    # ----- after applying ----------------------------------------------------------------

    def commit(self, applied: Iterable[AppliedChange]) -> None:
        """Record what the caller applied: starts each subject's rate-limit interval and
        logs the change with its reason. The placement is replaced, not mutated, so a
        snapshot that carries the old one keeps it."""
        placement = dict(self.placement)
        for change in applied:
            a = change.action
            self.changes.append(change)
            if change.ok:
                self._last_change[a.subject] = change.at
                if a.kind == PROTECT:
                    if a.protect:
                        placement[(a.node, a.endpoint_id)] = frozenset(a.protect)
                    else:
                        placement.pop((a.node, a.endpoint_id), None)
                log.info(
                    "optimizer: %s %s%s %s -> %s: %s",
                    a.kind,
                    a.target,
                    f" {a.model}" if a.model else "",
                    a.before,
                    a.after,
                    a.reason,
                )
            else:
                log.warning(
                    "optimizer: %s %s%s failed: %s",
                    a.kind,
                    a.target,
                    f" {a.model}" if a.model else "",
                    change.error,
                )
        self.placement = placement

    @property
    def findings(self) -> tuple[Finding, ...]:
        return self.last_plan.findings if self.last_plan is not None else ()
