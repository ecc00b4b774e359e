"""Workload files for the simulator: what arrives, when, and how big.

```yaml
name: mixed-dev
seed: 7
arrival:
  process: poisson            # exponential inter-arrival times
  offered_load: 0.85          # fraction of the cluster's modelled capacity, or
  # rate: 0.5                 # tasks per second
duration_seconds: 3600        # arrivals stop then (or `tasks: N`)
warmup_seconds: 300           # arrivals before this are not measured
task_types: {code_generation: 3, code_review: 2, testing: 2, inference: 1}
models:                       # per task type (or `default`): model -> weight
  default: {qwen2.5-coder:7b: 1}
model_shifts:                 # optional: from `at_seconds`, these mixes replace `models`
  - at_seconds: 1800
    models: {default: {llama3.1:8b: 1}}
bursts:                       # optional: the arrival rate times `factor` for `seconds`
  - {at_seconds: 2400, seconds: 300, factor: 2.0}
tokens:                       # per task type or `default`
  default:
    prompt: {dist: lognormal, median: 600, sigma: 0.9, max: 8000}
    output: {dist: pareto, min: 80, alpha: 1.6, max: 4000}
output_estimate: mean         # what the router is told: `mean` of the type's
                              # distribution, or `exact` (an oracle, for comparison)
priorities: {high: 1, normal: 6, low: 3}
deadline_seconds: null        # relative deadline given to every task, or null
catalog:                      # optional: numbers for GPUs and models that
  gpus: {}                    # hive/hardware.py lacks (see coordinator/sim/catalog.py)
  models: {my-model:1b: {size_gb: 0.8, parameters: 1B}}
```

``offered_load`` is a fraction of the cluster's measured saturation rate for the
workload, phase by phase (``coordinator/sim/saturation.py``; ``hive sim`` and the
benchmark measure it, and ``simulate`` without one falls back to the fluid ``capacity``):
each model-mix phase arrives at ``offered_load`` times its own saturation rate, and a
burst multiplies the rate in force. A ``rate`` is used as given (bursts multiply it too).

Every model the workload names must be in ``hive/hardware.py``'s catalog or in its own
``catalog.models``. Every error is a ``hive.config.ConfigError`` naming the file and
key. Sampling is deterministic for a seed: one ``random.Random(seed)`` draws everything
in arrival order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from coordinator.routing.task import TASK_TYPES, Priority, TaskSpec
from coordinator.sim.catalog import Catalog, parse_catalog
from hive.config import ConfigError

DISTRIBUTIONS = ("lognormal", "pareto", "fixed", "uniform")
# The parameters each distribution reads (``max`` clips every one; uniform's is its top).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "lognormal": ("median", "sigma", "max"),
    "pareto": ("min", "alpha", "max"),
    "fixed": ("value", "max"),
    "uniform": ("min", "max"),
}


@dataclass(frozen=True, slots=True)
class TokenDist:
    """A token-count distribution, clipped to [1, max]."""

    dist: str = "lognormal"
    median: float = 400.0  # lognormal
    sigma: float = 0.8  # lognormal
    min: float = 50.0  # pareto scale, uniform low
    alpha: float = 1.8  # pareto shape (heavier tail when smaller)
    max: float = 8000.0  # clip; also uniform high
    value: float = 256.0  # fixed

    def sample(self, rng: random.Random) -> int:
        if self.dist == "lognormal":
            x = rng.lognormvariate(math.log(self.median), self.sigma)
        elif self.dist == "pareto":
            x = self.min * rng.paretovariate(self.alpha)
        elif self.dist == "uniform":
            x = rng.uniform(self.min, self.max)
        else:
            x = self.value
        return max(1, min(int(x), int(self.max)))

    def mean(self) -> float:
        """Mean of the clipped distribution (numerically, for lognormal and pareto)."""
        if self.dist == "fixed":
            return float(max(1, min(self.value, self.max)))
        if self.dist == "uniform":
            return (self.min + self.max) / 2
        # Deterministic quadrature over 2,000 quantiles.
        n = 2000
        total = 0.0
        for i in range(n):
            q = (i + 0.5) / n
            if self.dist == "lognormal":
                x = math.exp(math.log(self.median) + self.sigma * _norm_ppf(q))
            else:
                x = self.min / (1 - q) ** (1 / self.alpha)
            total += max(1.0, min(x, self.max))
        return total / n


@dataclass(frozen=True, slots=True)
class TokenMix:
    prompt: TokenDist = field(default_factory=lambda: TokenDist(median=600, sigma=0.9))
    output: TokenDist = field(
        default_factory=lambda: TokenDist("pareto", min=80, alpha=1.6, max=4000)
    )


@dataclass(frozen=True, slots=True)
class ModelShift:
    at_seconds: float
    models: Mapping[str, Mapping[str, float]]


@dataclass(frozen=True, slots=True)
class Burst:
    """Arrivals ``factor`` times faster during ``[at_seconds, at_seconds + seconds)``."""

    at_seconds: float
    seconds: float
    factor: float


@dataclass(frozen=True, slots=True)
class Workload:
    source: str
    name: str = "workload"
    seed: int = 1
    rate: float | None = None
    offered_load: float | None = 0.85
    duration_seconds: float | None = 3600.0
    tasks: int | None = None
    warmup_seconds: float = 0.0
    task_types: Mapping[str, float] = field(default_factory=lambda: {"inference": 1.0})
    models: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {"default": {"qwen2.5-coder:7b": 1.0}}
    )
    model_shifts: tuple[ModelShift, ...] = ()
    bursts: tuple[Burst, ...] = ()
    tokens: Mapping[str, TokenMix] = field(default_factory=lambda: {"default": TokenMix()})
    output_estimate: str = "mean"
    priorities: Mapping[Priority, float] = field(
        default_factory=lambda: {Priority.HIGH: 1.0, Priority.NORMAL: 6.0, Priority.LOW: 3.0}
    )
    deadline_seconds: float | None = None
    catalog: Catalog = field(default_factory=Catalog)
    # Each model's first key in the file (e.g. ``models.inference.my-model:1b``), for errors.
    model_keys: Mapping[str, str] = field(default_factory=dict)

    def with_load(self, offered_load: float) -> Workload:
        """This workload at ``offered_load`` times the cluster's capacity (> 0)."""
        from dataclasses import replace

        if not offered_load > 0:
            raise ValueError(f"the offered load must be > 0, got {offered_load!r}")
        return replace(self, offered_load=offered_load, rate=None)

    def model_key(self, model: str) -> str:
        return self.model_keys.get(model, "models")

    def models_for(self, task_type: str, at: float) -> Mapping[str, float]:
        mixes = self.models
        for shift in self.model_shifts:
            if at >= shift.at_seconds:
                mixes = shift.models
        return mixes.get(task_type) or mixes.get("default") or {}

    def tokens_for(self, task_type: str) -> TokenMix:
        return self.tokens.get(task_type) or self.tokens.get("default") or TokenMix()

    def phase_starts(self) -> list[float]:
        """Times at which the model mix changes: 0 and each shift's ``at_seconds``."""
        return [0.0, *(s.at_seconds for s in self.model_shifts)]

    def model_weights(self, at: float = 0.0) -> dict[str, float]:
        """Probability of each model among tasks arriving at ``at`` (the mix in force
        then, weighted by the task-type mix)."""
        total_t = sum(self.task_types.values())
        out: dict[str, float] = {}
        for tt, wt in self.task_types.items():
            mix = self.models_for(tt, at)
            total_m = sum(mix.values()) or 1.0
            for m, wm in mix.items():
                out[m] = out.get(m, 0.0) + wt / total_t * wm / total_m
        return out

    def rate_segments(self, rates: float | Sequence[float]) -> list[tuple[float, float]]:
        """The arrival rate over time as (start, tasks/s) segments, in order: ``rates``
        is one rate, or one per phase (``phase_starts``); bursts multiply it."""
        starts = self.phase_starts()
        per_phase = [float(rates)] * len(starts) if isinstance(rates, int | float) else rates
        if len(per_phase) != len(starts):
            raise ValueError(f"{len(starts)} phases but {len(per_phase)} rates")
        cuts = sorted(
            {*starts, *(b.at_seconds for b in self.bursts)}
            | {b.at_seconds + b.seconds for b in self.bursts}
        )
        out: list[tuple[float, float]] = []
        for t in cuts:
            phase = max(i for i, s in enumerate(starts) if s <= t)
            r = per_phase[phase]
            for b in self.bursts:
                if b.at_seconds <= t < b.at_seconds + b.seconds:
                    r *= b.factor
            if out and out[-1][1] == r:
                continue
            out.append((t, r))
        return out

    def generate(self, rate: float | Sequence[float]) -> list[tuple[float, TaskSpec, int]]:
        """Arrivals as (time, task as the router sees it, true output tokens), at
        ``rate`` tasks/s or one rate per phase (``rate_segments``).

        A Poisson process with a piecewise-constant rate, by time rescaling: each gap is
        a unit exponential spent at the rate in force, crossing into the next segment
        with what is left. With one segment this is ``expovariate(rate)``, exactly."""
        rng = random.Random(self.seed)
        segments = self.rate_segments(rate)
        seg = 0
        types = list(self.task_types)
        type_w = [self.task_types[t] for t in types]
        prios = list(self.priorities)
        prio_w = [self.priorities[p] for p in prios]
        out: list[tuple[float, TaskSpec, int]] = []
        now = 0.0
        limit_n = self.tasks if self.tasks is not None else 10**9
        end = self.duration_seconds if self.duration_seconds is not None else math.inf
        means: dict[str, float] = {}
        while len(out) < limit_n:
            gap = rng.expovariate(1.0)
            while True:
                r = segments[seg][1]
                nxt = segments[seg + 1][0] if seg + 1 < len(segments) else math.inf
                if r > 0 and now + gap / r <= nxt:
                    now += gap / r
                    break
                if nxt == math.inf:
                    now = math.inf
                    break
                gap -= (nxt - now) * r
                now = nxt
                seg += 1
            if now > end:
                break
            tt = rng.choices(types, type_w)[0]
            mix = self.models_for(tt, now)
            model = rng.choices(list(mix), list(mix.values()))[0]
            toks = self.tokens_for(tt)
            prompt = toks.prompt.sample(rng)
            output = toks.output.sample(rng)
            prio = rng.choices(prios, prio_w)[0]
            if self.output_estimate == "exact":
                est = output
            else:
                if tt not in means:
                    means[tt] = toks.output.mean()
                est = int(means[tt])
            deadline = now + self.deadline_seconds if self.deadline_seconds is not None else None
            spec = TaskSpec(f"t{len(out):06d}", tt, model, prio, prompt, est, deadline)
            out.append((now, spec, output))
        return out


def _norm_ppf(q: float) -> float:
    # Acklam's rational approximation of the standard normal quantile (|error| < 1.2e-9).
    a = (
        -39.69683028665376,
        220.9460984245205,
        -275.9285104469687,
        138.357751867269,
        -30.66479806614716,
        2.506628277459239,
    )
    b = (
        -54.47609879822406,
        161.5858368580409,
        -155.6989798598866,
        66.80131188771972,
        -13.28068155288572,
    )
    c = (
        -0.007784894002430293,
        -0.3223964580411365,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    )
    d = (0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416)
    lo = 0.02425
    if q < lo:
        r = math.sqrt(-2 * math.log(q))
        return (((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) / (
            (((d[0] * r + d[1]) * r + d[2]) * r + d[3]) * r + 1
        )
    if q > 1 - lo:
        return -_norm_ppf(1 - q)
    s = q - 0.5
    r = s * s
    return (
        (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5])
        * s
        / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
    )


# ----- parsing -------------------------------------------------------------------------


def _num(source: str, key: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(source, key, f"expected a number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(source, key, f"must be {'>' if positive else '>='} 0, got {value!r}")
    return float(value)


def _mapping(source: str, key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(source, key, f"expected a mapping, got {type(value).__name__}")
    return value


def _reject_unknown(source: str, key: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for k in data:
        if k not in allowed:
            where = f"{key}.{k}" if key else str(k)
            raise ConfigError(
                source, where, f"unknown key; expected one of {', '.join(sorted(allowed))}"
            )


def _weights(source: str, key: str, value: Any) -> dict[str, float]:
    data = _mapping(source, key, value)
    out = {str(k): _num(source, f"{key}.{k}", v, positive=False) for k, v in data.items()}
    if not out or sum(out.values()) <= 0:
        raise ConfigError(source, key, "needs at least one positive weight")
    return out


def _model_mixes(source: str, key: str, value: Any) -> dict[str, dict[str, float]]:
    data = _mapping(source, key, value)
    out: dict[str, dict[str, float]] = {}
    for tt, mix in data.items():
        if tt != "default" and tt not in TASK_TYPES:
            raise ConfigError(
                source,
                f"{key}.{tt}",
                f"unknown task type; expected default or one of {', '.join(TASK_TYPES)}",
            )
        out[str(tt)] = _weights(source, f"{key}.{tt}", mix)
    return out


def _dist(source: str, key: str, value: Any) -> TokenDist:
    data = _mapping(source, key, value)
    _reject_unknown(source, key, data, {"dist", "median", "sigma", "min", "alpha", "max", "value"})
    dist = data.get("dist", "lognormal")
    if dist not in DISTRIBUTIONS:
        raise ConfigError(
            source, f"{key}.dist", f"{dist!r} is not one of {', '.join(DISTRIBUTIONS)}"
        )
    # A parameter the distribution does not read would be ignored silently (a "fixed" with
    # a "median" ran at the default 256 tokens): refused, naming the ones it takes.
    takes = PARAMETERS[str(dist)]
    for name in data:
        if name != "dist" and name not in takes:
            raise ConfigError(
                source,
                f"{key}.{name}",
                f"does not apply to dist {dist}, which takes {', '.join(takes)}",
            )
    d = TokenDist()
    kw = {
        name: _num(source, f"{key}.{name}", data.get(name, getattr(d, name)))
        for name in ("median", "sigma", "min", "alpha", "max", "value")
    }
    return TokenDist(str(dist), **kw)


def parse_workload(data: Any, source: str) -> Workload:
    top = _mapping(source, "<top>", data)
    _reject_unknown(
        source,
        "",
        top,
        {
            "name",
            "seed",
            "arrival",
            "duration_seconds",
            "tasks",
            "warmup_seconds",
            "task_types",
            "models",
            "model_shifts",
            "bursts",
            "tokens",
            "output_estimate",
            "priorities",
            "deadline_seconds",
            "catalog",
        },
    )
    catalog = parse_catalog(source, top.get("catalog"))
    d = Workload(source)
    arrival = _mapping(source, "arrival", top.get("arrival", {}))
    _reject_unknown(source, "arrival", arrival, {"process", "rate", "offered_load"})
    if arrival.get("process", "poisson") != "poisson":
        raise ConfigError(source, "arrival.process", "only poisson is supported")
    rate = offered = None
    if "rate" in arrival:
        rate = _num(source, "arrival.rate", arrival["rate"])
    else:
        offered = _num(source, "arrival.offered_load", arrival.get("offered_load", 0.85))
    duration = top.get("duration_seconds", None if "tasks" in top else 3600.0)
    duration = None if duration is None else _num(source, "duration_seconds", duration)
    tasks = top.get("tasks")
    if tasks is not None and (isinstance(tasks, bool) or not isinstance(tasks, int) or tasks < 1):
        raise ConfigError(source, "tasks", f"expected a positive integer, got {tasks!r}")
    seed = top.get("seed", 1)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(source, "seed", f"expected an integer, got {seed!r}")
    task_types = _weights(source, "task_types", top.get("task_types", {"inference": 1}))
    for tt in task_types:
        if tt not in TASK_TYPES:
            raise ConfigError(
                source,
                f"task_types.{tt}",
                f"unknown task type; expected one of {', '.join(TASK_TYPES)}",
            )
    models = _model_mixes(source, "models", top.get("models", {"default": {"qwen2.5-coder:7b": 1}}))
    for tt in task_types:
        if tt not in models and "default" not in models:
            raise ConfigError(source, "models", f"no model mix for task type {tt!r} and no default")
    shifts_raw = top.get("model_shifts", []) or []
    if not isinstance(shifts_raw, list):
        raise ConfigError(source, "model_shifts", "expected a list")
    shifts = []
    for i, s in enumerate(shifts_raw):
        k = f"model_shifts[{i}]"
        sm = _mapping(source, k, s)
        _reject_unknown(source, k, sm, {"at_seconds", "models"})
        shifts.append(
            ModelShift(
                _num(source, f"{k}.at_seconds", sm.get("at_seconds"), positive=False),
                _model_mixes(source, f"{k}.models", sm.get("models")),
            )
        )
    model_keys: dict[str, str] = {}
    for prefix, mixes in (
        ("models", models),
        *((f"model_shifts[{i}].models", s.models) for i, s in enumerate(shifts)),
    ):
        for tt, mix in mixes.items():
            for model in mix:
                model_keys.setdefault(model, f"{prefix}.{tt}.{model}")
                if catalog.model(model) is None:
                    raise ConfigError(
                        source,
                        f"{prefix}.{tt}.{model}",
                        f"model {model!r} is not in the catalog (hive/hardware.py) and this file "
                        "does not give its numbers: add it under catalog.models with size_gb "
                        "and parameters",
                    )
    shifts.sort(key=lambda s: s.at_seconds)
    bursts_raw = top.get("bursts", []) or []
    if not isinstance(bursts_raw, list):
        raise ConfigError(source, "bursts", "expected a list")
    bursts = []
    for i, b in enumerate(bursts_raw):
        k = f"bursts[{i}]"
        bm = _mapping(source, k, b)
        _reject_unknown(source, k, bm, {"at_seconds", "seconds", "factor"})
        bursts.append(
            Burst(
                _num(source, f"{k}.at_seconds", bm.get("at_seconds"), positive=False),
                _num(source, f"{k}.seconds", bm.get("seconds")),
                _num(source, f"{k}.factor", bm.get("factor")),
            )
        )
    tokens: dict[str, TokenMix] = {}
    for tt, mix in _mapping(source, "tokens", top.get("tokens", {})).items():
        k = f"tokens.{tt}"
        if tt != "default" and tt not in TASK_TYPES:
            raise ConfigError(source, k, "unknown task type")
        m = _mapping(source, k, mix)
        _reject_unknown(source, k, m, {"prompt", "output"})
        base = TokenMix()
        tokens[str(tt)] = TokenMix(
            _dist(source, f"{k}.prompt", m["prompt"]) if "prompt" in m else base.prompt,
            _dist(source, f"{k}.output", m["output"]) if "output" in m else base.output,
        )
    if "default" not in tokens:
        tokens["default"] = TokenMix()
    estimate = top.get("output_estimate", "mean")
    if estimate not in ("mean", "exact"):
        raise ConfigError(source, "output_estimate", f"{estimate!r} is not one of mean, exact")
    prio_raw = _weights(
        source, "priorities", top.get("priorities", {"high": 1, "normal": 6, "low": 3})
    )
    prios: dict[Priority, float] = {}
    for name, w in prio_raw.items():
        try:
            prios[Priority[name.upper()]] = w
        except KeyError:
            raise ConfigError(
                source, f"priorities.{name}", "expected high, normal or low"
            ) from None
    deadline = top.get("deadline_seconds")
    return Workload(
        source=source,
        name=str(top.get("name", Path(source).stem)),
        seed=seed,
        rate=rate,
        offered_load=offered,
        duration_seconds=duration,
        tasks=tasks,
        warmup_seconds=_num(
            source, "warmup_seconds", top.get("warmup_seconds", d.warmup_seconds), positive=False
        ),
        task_types=task_types,
        models=models,
        model_shifts=tuple(shifts),
        bursts=tuple(bursts),
        tokens=tokens,
        output_estimate=str(estimate),
        priorities=prios,
        deadline_seconds=None if deadline is None else _num(source, "deadline_seconds", deadline),
        catalog=catalog,
        model_keys=model_keys,
    )


def load_workload(path: str | Path) -> Workload:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ConfigError(str(path), "<file>", exc.strerror or str(exc)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "<yaml>", str(exc).replace("\n", " ")) from None
    return parse_workload(data, str(path))
