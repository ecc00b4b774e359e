"""The router's and scheduler's typed settings, read from a cluster file's ``routing:`` section.

```yaml
routing:
  weights:            # seconds-equivalent multipliers, see coordinator/routing/scorers.py
    queue_wait: 1.0
    cold_load: 2.0
    service: 1.0
    interference: 1.0
    eviction: 1.0
    chain: 0.5        # seconds per step down a task type's chain
    error_rate: 1.0
    utilization: 0.1
    failover: 1000.0
    placement: 3.0    # evicting a model the optimizer protects (see optimizer/placement)
  chains:             # task type -> nodes, most preferred first
    code_generation: [IRONWOOD, WALNUT, ROSEWOOD]
  speed_prior_samples: 2.0
  scheduler:          # coordinator/scheduler.py
    max_queue: 10000
    aging_seconds: 10.0
    max_attempts: 3
    queue_allowance: 2
    home_wait_factor: 1.0  # wait for a full home up to the cold load it avoids
    residual_window: 1024  # finished requests the remaining-work estimate learns from
```

Defaults live in the dataclasses below and nowhere else; every error is a
``hive.config.ConfigError`` naming the file, the key (``routing.weights.foo``) and why.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from coordinator.routing.task import TASK_TYPES
from hive.config import ConfigError


@dataclass(frozen=True, slots=True)
class Weights:
    """Multipliers of each scorer's value (all values are seconds or seconds-equivalent)."""

    queue_wait: float = 1.0
    # 2: a load delays every request of that model queued behind it, not only this one.
    cold_load: float = 2.0
    service: float = 1.0
    interference: float = 1.0
    eviction: float = 1.0
    chain: float = 0.5
    error_rate: float = 1.0
    utilization: float = 0.1
    failover: float = 1000.0
    # Reload seconds of a model the optimizer's placement protects, on top of
    # ``eviction``: its next requests wait for the reload and the swap tends to repeat.
    # 3 (benchmarks/bench_optimizer.py, 20 seeds): on the shifting mix 3 to 10 keep the
    # same loads and p95; on a steady mix 10 cost +2.6 % p95 against the optimizer off
    # (tasks queued behind protected copies), 3 is within noise of off (+0.6 %) and still
    # halves cold loads. No effect without a placement.
    placement: float = 3.0


WEIGHT_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Weights))


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Settings of ``coordinator.scheduler.Scheduler``.

    ``aging_seconds``: a waiting task gains one priority level per this many seconds, so a
    LOW task that has waited ``2 * aging_seconds`` outranks a HIGH task that just arrived.
    10 (issue 20, seed mix at a true 85 % load, mismatch 0.3, 30 seeds): with 30 a LOW
    task waited in this queue behind every NORMAL task up to 30 s younger, and its p95
    came to 1.17x HIGH's (1.27x over seeds 11-20, 1.45x at 95 % load); 10 gives 1.05x
    (1.15x at 95 %) with overall p95 unchanged at 85 % (+0.9 %, noise) and 3 % lower at
    95 %. HIGH still goes first in a queue shorter than 20 s.
    ``queue_allowance``: in-flight requests per endpoint beyond its ``num_parallel`` slots
    (a short queue inside Ollama hides the dispatch round trip, and lets a task wait for
    a fast endpoint's next slot rather than take a slow one now); ``endpoint_limits``
    overrides the resulting limit per ``"NODE/endpoint"``. 2: in the simulator (20 seeds)
    1 is 8 % worse at p95; 3 is 3.8 % better on the steady seed mix but 2.3 % worse on
    the shifting mix with the optimizer at SATA disk speed, and 4-6 no better than 3.
    ``home_wait_factor``: with the optimizer's placement, a task whose best endpoint would
    load its model cold while the model's home is merely full waits for the home up to
    this many times the seconds that load (and the reload of protected models it evicts)
    would cost (0 = never wait). 1: waiting longer than the load would take costs the
    task more than loading; in benchmarks/bench_optimizer.py (20 seeds) factors 0-4 all
    halve cold loads on the shifting mix, and above 1 the waits show in p95 on a steady
    mix (factor 4: +6 %).
    ``residual_window``: how many recently finished requests the estimate of a running
    request's remaining work learns from (``coordinator/residual.py``); 0 = elapsed time
    subtracted from the task's own estimate, which says a long answer is nearly done
    just when it is likely to run longest.
    """

    max_queue: int = 10_000
    aging_seconds: float = 10.0
    max_attempts: int = 3
    queue_allowance: int = 2
    endpoint_limits: Mapping[str, int] = field(default_factory=dict)
    home_wait_factor: float = 1.0
    residual_window: int = 1024

    @classmethod
    def from_mapping(
        cls, data: Any, source: str, key: str = "routing.scheduler"
    ) -> SchedulerConfig:
        if not isinstance(data, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {type(data).__name__}")
        allowed = {
            "max_queue",
            "aging_seconds",
            "max_attempts",
            "queue_allowance",
            "endpoint_limits",
            "home_wait_factor",
            "residual_window",
        }
        for name in data:
            if name not in allowed:
                raise ConfigError(
                    source,
                    f"{key}.{name}",
                    f"unknown key; expected one of {', '.join(sorted(allowed))}",
                )
        d = cls()
        limits_raw = data.get("endpoint_limits", {})
        if not isinstance(limits_raw, Mapping):
            raise ConfigError(
                source, f"{key}.endpoint_limits", "expected a mapping of NODE/endpoint to int"
            )
        limits: dict[str, int] = {}
        for name, value in limits_raw.items():
            k = f"{key}.endpoint_limits.{name}"
            if not isinstance(name, str) or name.count("/") != 1:
                raise ConfigError(source, k, "expected a key of the form NODE/endpoint")
            limits[name] = int(_number(source, k, value, minimum=1, integer=True))

        def num(name: str, minimum: float) -> float:
            return _number(source, f"{key}.{name}", data.get(name, getattr(d, name)), minimum)

        def integer(name: str, minimum: int) -> int:
            value = data.get(name, getattr(d, name))
            return int(_number(source, f"{key}.{name}", value, minimum, integer=True))

        return cls(
            max_queue=integer("max_queue", 1),
            aging_seconds=num("aging_seconds", 0.0),
            max_attempts=integer("max_attempts", 1),
            queue_allowance=integer("queue_allowance", 0),
            endpoint_limits=limits,
            home_wait_factor=num("home_wait_factor", 0.0),
            residual_window=integer("residual_window", 0),
        )


@dataclass(frozen=True, slots=True)
class RouterConfig:
    weights: Weights = field(default_factory=Weights)
    # Task type -> node names, most preferred first.
    chains: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # A measured speed counts as this many samples' worth against the hardware prior.
    speed_prior_samples: float = 2.0
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    # Ranked candidates kept in a Decision (the best ones; ties with the last are cut).
    max_candidates: int = 16
    # Which policy places tasks: "hive" (the router) or, to compare the router with what
    # other schedulers do on a real cluster, one of the simulator's named baselines
    # (coordinator/sim/policies.py; the coordinator checks the name when it starts).
    policy: str = "hive"

    @classmethod
    def from_mapping(
        cls, data: Any, source: str, node_names: Collection[str] | None = None
    ) -> RouterConfig:
        """Parse a ``routing:`` section; ``node_names`` (when given) must contain every chain
        node. Raises ConfigError naming the key."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(source, "routing", f"expected a mapping, got {type(data).__name__}")
        allowed = {"weights", "chains", "speed_prior_samples", "scheduler", "policy"}
        for name in data:
            if name not in allowed:
                raise ConfigError(
                    source,
                    f"routing.{name}",
                    f"unknown key; expected one of {', '.join(sorted(allowed))}",
                )
        raw_weights = data.get("weights", {}) or {}
        if not isinstance(raw_weights, Mapping):
            raise ConfigError(
                source, "routing.weights", "expected a mapping of weight name to number"
            )
        values: dict[str, float] = {}
        for name, value in raw_weights.items():
            key = f"routing.weights.{name}"
            if name not in WEIGHT_KEYS:
                raise ConfigError(
                    source, key, f"unknown weight; expected one of {', '.join(WEIGHT_KEYS)}"
                )
            values[str(name)] = _number(source, key, value, minimum=0.0, allow_zero=True)
        raw_chains = data.get("chains", {}) or {}
        if not isinstance(raw_chains, Mapping):
            raise ConfigError(
                source, "routing.chains", "expected a mapping of task type to node list"
            )
        chains: dict[str, tuple[str, ...]] = {}
        known = set(node_names) if node_names is not None else None
        for task_type, nodes in raw_chains.items():
            key = f"routing.chains.{task_type}"
            if task_type not in TASK_TYPES:
                raise ConfigError(
                    source, key, f"unknown task type; expected one of {', '.join(TASK_TYPES)}"
                )
            if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
                raise ConfigError(source, key, "expected a list of node names")
            if len(set(nodes)) != len(nodes):
                raise ConfigError(source, key, "a node is listed twice")
            for i, n in enumerate(nodes):
                if known is not None and n not in known:
                    raise ConfigError(
                        source,
                        f"{key}[{i}]",
                        f"unknown node {n!r}; known: {', '.join(sorted(known))}",
                    )
            chains[str(task_type)] = tuple(nodes)
        prior = _number(
            source,
            "routing.speed_prior_samples",
            data.get("speed_prior_samples", 2.0),
            0.0,
            allow_zero=True,
        )
        scheduler = SchedulerConfig.from_mapping(data.get("scheduler", {}) or {}, source)
        policy = data.get("policy", "hive")
        if not isinstance(policy, str) or not policy:
            raise ConfigError(source, "routing.policy", "expected a policy name such as 'hive'")
        return cls(Weights(**values), chains, prior, scheduler, policy=policy)


def _number(
    source: str,
    key: str,
    value: Any,
    minimum: float,
    integer: bool = False,
    allow_zero: bool = True,
) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(source, key, f"expected a number, got {type(value).__name__}")
    if integer and not isinstance(value, int):
        raise ConfigError(source, key, f"expected an integer, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(source, key, f"must be finite, got {value!r}")
    if value < minimum or (not allow_zero and value == 0):
        raise ConfigError(source, key, f"must be >= {minimum}, got {value!r}")
    return float(value)
