"""The optimizer's typed settings, read from a cluster file's ``optimizer:`` section.

```yaml
optimizer:
  enabled: true                 # run the periodic pass in the coordinator
  auto_apply: true              # the periodic pass applies its plan (false: findings only)
  interval_seconds: 15          # between periodic passes
  window_seconds: 600           # history the detectors and the knee finder read
  min_change_interval_seconds: 120   # one change per endpoint (or endpoint+model) per this
  max_actions_per_pass: 6
  tuning:
    enabled: false              # knee tuning of in-flight limits (opt-in, see TuningSettings)
    min_samples: 8              # finished tasks per concurrency level to trust it
    tolerance: 0.08             # knee: least concurrency within this fraction of the best
    min_limit: 1
    max_limit: 16
  weights:
    enabled: false              # calibrate router weights to measured/predicted (opt-in)
    min_samples: 50             # finished tasks with both figures before a change
    tolerance: 0.1              # change a weight only when off by more than this fraction
    queue_wait_min: 0.5         # bounds of each tuned weight
    queue_wait_max: 3.0
    service_min: 0.5
    service_max: 2.0
  warmup:
    enabled: true
    bucket_seconds: 30          # arrivals are counted per bucket, then smoothed
    alpha: 0.5                  # Holt level smoothing
    beta: 0.3                   # Holt trend smoothing
    horizon_buckets: 4          # forecast this many buckets (2 minutes) ahead
    min_rate: 0.005             # tasks/s below which a model needs no warm copy
    replica_load: 1.25          # busy slots one warm copy should carry
    keep_alive: 10m             # Ollama keep_alive sent with a warm-up
    protect: true               # protect wanted resident copies from router evictions
  detectors:
    queue_window_seconds: 60
    queue_min_depth: 10
    queue_growth_ratio: 1.25    # arrivals / completions in the window
    slow_ratio: 0.5             # efficiency vs the peers' median on the same model
    slow_min_samples: 5
    thrash_reloads: 3           # reloads of evicted models per endpoint in the window
    thermal_celsius: 85
    thermal_fraction: 0.5       # of a GPU's samples in the window
    flap_losses: 3              # session losses per node in the window
  pins:
    limits: {IRONWOOD/gtx1070: 6}            # fixed in-flight limits, never tuned
    models: {ROSEWOOD/rtx: [qwen2.5-coder:14b]}   # kept loaded, never displaced
    endpoints: [ACACIA/gpu0]                 # hands off: no optimizer action at all
    weights: [queue_wait]                    # router weights never tuned
```

Defaults live in the dataclasses below and nowhere else; every error is a
``hive.config.ConfigError`` naming the file, the key and why. Limits the operator set in
``routing.scheduler.endpoint_limits`` count as pinned too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from hive.config import ConfigError

EndpointKey = tuple[str, str]

_T = TypeVar("_T")

_KEEP_ALIVE = re.compile(r"^-?[0-9]+(\.[0-9]+)?(ms|s|m|h)?$")


@dataclass(frozen=True, slots=True)
class TuningSettings:
    # Off by default: in the simulator (benchmarks/bench_optimizer.py) knee tuning alone
    # raised p95 completion by 10-20 % on a shifting mix; turn it on per cluster.
    enabled: bool = False
    min_samples: int = 8
    tolerance: float = 0.08
    min_limit: int = 1
    max_limit: int = 16


# Router weights the optimizer may calibrate: each scales a scorer whose value is a
# prediction in seconds that a finished task can be checked against.
TUNED_WEIGHTS = ("queue_wait", "service")


@dataclass(frozen=True, slots=True)
class WeightSettings:
    """Calibration of router weights: each tuned weight is set, within its bounds, to the
    ratio of measured to predicted seconds of its scorer over the window (the router's
    queue-wait prediction assumes the current batch persists; a weight of 1.8 says the
    waits came out 1.8x longer). Off by default: in the simulator, weights calibrated to
    the measured ratios did not improve p95 (benchmarks/bench_optimizer.py)."""

    enabled: bool = False
    min_samples: int = 50
    tolerance: float = 0.1
    queue_wait_min: float = 0.5
    queue_wait_max: float = 3.0
    service_min: float = 0.5
    service_max: float = 2.0

    def bounds(self, name: str) -> tuple[float, float]:
        return (getattr(self, f"{name}_min"), getattr(self, f"{name}_max"))


@dataclass(frozen=True, slots=True)
class WarmupSettings:
    enabled: bool = True
    # Chosen in benchmarks/bench_optimizer.py (shifting mix, passes every 15 s): 30 s
    # buckets, 2 minutes ahead, 1.25 busy slots per copy cut cold loads by 47 % at NVMe
    # speed and 54-58 % at SATA speed or slower (40 seeds); 60 s buckets, 1 minute ahead,
    # 1.5 per copy, passes every 30 s cut them by 46 % (20 seeds). 1.0 per copy saves more
    # loads but costs a steady mix p95 (+4.4 % against +2.6 %, 20 seeds).
    bucket_seconds: float = 30.0
    alpha: float = 0.5
    beta: float = 0.3
    horizon_buckets: float = 4.0
    min_rate: float = 0.005
    # Busy slots (arrival rate x service seconds) one warm copy of a model should carry.
    replica_load: float = 1.25
    keep_alive: str = "10m"
    # Publish a placement: the router charges evicting a model whose copy the forecast wants.
    protect: bool = True


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    queue_window_seconds: float = 60.0
    queue_min_depth: int = 10
    queue_growth_ratio: float = 1.25
    slow_ratio: float = 0.5
    slow_min_samples: int = 5
    thrash_reloads: int = 3
    thermal_celsius: float = 85.0
    thermal_fraction: float = 0.5
    flap_losses: int = 3


@dataclass(frozen=True, slots=True)
class Pins:
    limits: Mapping[EndpointKey, int] = field(default_factory=dict)
    models: Mapping[EndpointKey, tuple[str, ...]] = field(default_factory=dict)
    endpoints: frozenset[EndpointKey] = frozenset()
    weights: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OptimizerConfig:
    enabled: bool = True
    auto_apply: bool = True
    interval_seconds: float = 15.0
    window_seconds: float = 600.0
    min_change_interval_seconds: float = 120.0
    max_actions_per_pass: int = 6
    tuning: TuningSettings = field(default_factory=TuningSettings)
    weights: WeightSettings = field(default_factory=WeightSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    pins: Pins = field(default_factory=Pins)

    @classmethod
    def from_mapping(
        cls,
        data: Any,
        source: str,
        operator_limits: Mapping[str, int] | None = None,
    ) -> OptimizerConfig:
        """Parse an ``optimizer:`` section (None or missing = defaults).
        ``operator_limits`` (``routing.scheduler.endpoint_limits``) become pinned limits."""
        r = _Section(source, "optimizer", {} if data is None else data)
        top = {f.name for f in fields(cls)}
        r.reject_unknown(top)
        d = cls()
        pins = _pins(r.sub("pins"))
        if operator_limits:
            merged = {
                _endpoint_key(source, "routing.scheduler.endpoint_limits", k): v
                for k, v in operator_limits.items()
            }
            merged.update(pins.limits)
            pins = Pins(merged, pins.models, pins.endpoints, pins.weights)
        return cls(
            enabled=r.boolean("enabled", d.enabled),
            auto_apply=r.boolean("auto_apply", d.auto_apply),
            interval_seconds=r.number("interval_seconds", d.interval_seconds, positive=True),
            window_seconds=r.number("window_seconds", d.window_seconds, positive=True),
            min_change_interval_seconds=r.number(
                "min_change_interval_seconds", d.min_change_interval_seconds
            ),
            max_actions_per_pass=r.integer("max_actions_per_pass", d.max_actions_per_pass, 0),
            tuning=_dataclass(r.sub("tuning"), TuningSettings()),
            weights=_dataclass(r.sub("weights"), WeightSettings()),
            warmup=_dataclass(r.sub("warmup"), WarmupSettings()),
            detectors=_dataclass(r.sub("detectors"), DetectorSettings()),
            pins=pins,
        )


class _Section:
    def __init__(self, source: str, key: str, data: Any) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(source, key, f"expected a mapping, got {type(data).__name__}")
        self.source, self.key, self.data = source, key, data

    def at(self, name: str) -> str:
        return f"{self.key}.{name}"

    def reject_unknown(self, allowed: set[str]) -> None:
        for name in self.data:
            if name not in allowed:
                raise ConfigError(
                    self.source,
                    self.at(str(name)),
                    f"unknown key; expected one of {', '.join(sorted(allowed))}",
                )

    def sub(self, name: str) -> _Section:
        value = self.data.get(name)
        return _Section(self.source, self.at(name), {} if value is None else value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self.data.get(name, default)
        if not isinstance(value, bool):
            raise ConfigError(self.source, self.at(name), f"expected true or false, got {value!r}")
        return value

    def number(self, name: str, default: float, *, positive: bool = False) -> float:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(self.source, self.at(name), f"expected a number, got {value!r}")
        if not math.isfinite(value) or value < 0 or (positive and value == 0):
            raise ConfigError(
                self.source, self.at(name), f"must be {'>' if positive else '>='} 0, got {value!r}"
            )
        return float(value)

    def integer(self, name: str, default: int, minimum: int) -> int:
        value = self.data.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(self.source, self.at(name), f"expected an integer, got {value!r}")
        if value < minimum:
            raise ConfigError(self.source, self.at(name), f"must be >= {minimum}, got {value}")
        return value

    def string(self, name: str, default: str) -> str:
        value = self.data.get(name, default)
        if not isinstance(value, str):
            raise ConfigError(self.source, self.at(name), f"expected a string, got {value!r}")
        return value


def _dataclass(r: _Section, default: _T) -> _T:
    """Read every field of the settings dataclass ``default`` from ``r`` by its type."""
    r.reject_unknown({f.name for f in fields(default)})  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for f in fields(default):  # type: ignore[arg-type]
        current = getattr(default, f.name)
        if isinstance(current, bool):
            values[f.name] = r.boolean(f.name, current)
        elif isinstance(current, int):
            values[f.name] = r.integer(f.name, current, 0)
        elif isinstance(current, float):
            values[f.name] = r.number(f.name, current)
        else:
            values[f.name] = r.string(f.name, current)
    out = type(default)(**values)
    _check(r, out)
    return out


def _check(r: _Section, settings: object) -> None:
    if isinstance(settings, TuningSettings):
        if settings.min_limit < 1:
            raise ConfigError(r.source, r.at("min_limit"), "must be >= 1")
        if settings.max_limit < settings.min_limit:
            raise ConfigError(r.source, r.at("max_limit"), "must be >= min_limit")
        if not 0 <= settings.tolerance < 1:
            raise ConfigError(r.source, r.at("tolerance"), "must be in [0, 1)")
    if isinstance(settings, WeightSettings):
        if not 0 <= settings.tolerance < 1:
            raise ConfigError(r.source, r.at("tolerance"), "must be in [0, 1)")
        for name in TUNED_WEIGHTS:
            low, high = settings.bounds(name)
            if low <= 0:
                raise ConfigError(r.source, r.at(f"{name}_min"), "must be > 0")
            if high < low:
                raise ConfigError(r.source, r.at(f"{name}_max"), f"must be >= {name}_min")
    if isinstance(settings, WarmupSettings):
        for name in ("alpha", "beta"):
            if not 0 < getattr(settings, name) <= 1:
                raise ConfigError(r.source, r.at(name), "must be in (0, 1]")
        if settings.bucket_seconds <= 0:
            raise ConfigError(r.source, r.at("bucket_seconds"), "must be > 0")
        if not _KEEP_ALIVE.match(settings.keep_alive):
            raise ConfigError(
                r.source,
                r.at("keep_alive"),
                f"expected a duration like 10m or 300s, got {settings.keep_alive!r}",
            )


def _endpoint_key(source: str, key: str, name: Any) -> EndpointKey:
    if not isinstance(name, str) or name.count("/") != 1 or not all(name.split("/")):
        raise ConfigError(source, f"{key}.{name}", "expected a key of the form NODE/endpoint")
    node, ep = name.split("/")
    return (node, ep)


def _pins(r: _Section) -> Pins:
    r.reject_unknown({"limits", "models", "endpoints", "weights"})
    limits: dict[EndpointKey, int] = {}
    raw_limits = r.sub("limits")
    for name in raw_limits.data:
        limits[_endpoint_key(r.source, raw_limits.key, name)] = raw_limits.integer(str(name), 1, 1)
    models: dict[EndpointKey, tuple[str, ...]] = {}
    raw_models = r.sub("models")
    for name, value in raw_models.data.items():
        key = _endpoint_key(r.source, raw_models.key, name)
        if not isinstance(value, list) or not all(isinstance(m, str) and m for m in value):
            raise ConfigError(r.source, raw_models.at(str(name)), "expected a list of model names")
        models[key] = tuple(value)
    raw_eps = r.data.get("endpoints", []) or []
    if not isinstance(raw_eps, list):
        raise ConfigError(r.source, r.at("endpoints"), "expected a list of NODE/endpoint")
    endpoints = frozenset(_endpoint_key(r.source, r.at("endpoints"), name) for name in raw_eps)
    raw_weights = r.data.get("weights", []) or []
    if not isinstance(raw_weights, list) or not all(w in TUNED_WEIGHTS for w in raw_weights):
        raise ConfigError(
            r.source,
            r.at("weights"),
            f"expected a list of router weights from {', '.join(TUNED_WEIGHTS)}",
        )
    return Pins(limits, models, endpoints, frozenset(raw_weights))
