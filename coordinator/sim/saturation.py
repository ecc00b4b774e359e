"""A cluster's saturation rate for a workload, measured, so that a load means load.

The fluid ``capacity`` ignores model loads, swaps and GPU sharing, so an offered load of
"0.95" of it can be overloaded on one cluster and a quarter busy on another. This runs
the cluster saturated instead: for each model-mix phase of the workload (its own mix,
no shifts, no bursts), arrivals at ``OVERLOAD`` times the fluid capacity for
``SECONDS`` of simulated time with the production router (``POLICY``) and the run's
seed and mismatch; the saturation rate is the tasks completed per second after
``WARMUP`` seconds (the steady state of a queue that never empties). ``hive sim
--load 0.85`` then offers 85 % of each phase's own saturation rate.

A measurement takes seconds to minutes on a large cluster, so it is cached: one JSON
file, ``$HIVE_SIM_CACHE`` or ``$XDG_CACHE_HOME/hive/sim-saturation.json`` (default
``~/.cache/hive/sim-saturation.json``), mapping a key to the rates. The key is a SHA-256
of the parsed cluster and workload (what they say, not how the files are spelt or
where they lie: the catalog's path too is left out; the arrival rate, duration and
warm-up, which a saturated run replaces, left out), the seed, the mismatch sigma, this
module's parameters and the source of the code the measurement runs (``CODE``: the
router, the scheduler and the simulator), so a change of the router measures again
instead of reading rates the old router reached. Delete the file to measure again.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

from coordinator.sim.engine import Saturation, Simulation, mix_capacity
from coordinator.sim.workload import Workload
from hive.config import ClusterConfig

# Arrivals this many times the fluid capacity: far above what the cluster completes
# (doubled until the run completes under 90 % of what arrives).
OVERLOAD = 3.0
# Simulated seconds of a saturated run and the first seconds not measured.
SECONDS = 900.0
WARMUP = 300.0
# The policy the saturation is measured with: the production router.
POLICY = "hive"
# Bumped when the measurement changes, so old cache entries are not read.
VERSION = 1
# The modules whose code decides what a saturated run completes (their source is hashed
# into the cache key): the router, the scheduler and the simulator.
CODE = (
    "coordinator/routing",
    "coordinator/sim",
    "coordinator/scheduler.py",
    "coordinator/policy.py",
    "coordinator/overlay.py",
    "coordinator/residual.py",
    "coordinator/task_states.py",
    "coordinator/holds.py",
    "coordinator/optimizer",
)


@functools.cache
def code_digest() -> str:
    """SHA-256 over the source of ``CODE`` (read once per process)."""
    root = Path(__file__).resolve().parent.parent.parent
    digest = hashlib.sha256()
    for name in CODE:
        path = root / name
        for f in sorted(path.rglob("*.py")) if path.is_dir() else [path]:
            digest.update(str(f.relative_to(root)).encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()


def cache_path() -> Path:
    """Where measurements are cached (see the module's docstring)."""
    explicit = os.environ.get("HIVE_SIM_CACHE")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hive" / "sim-saturation.json"


def cache_key(cluster: ClusterConfig, workload: Workload, seed: int, mismatch: float) -> str:
    """The measurement's key: what it depends on, hashed."""
    shape = replace(
        workload,
        seed=seed,
        rate=None,
        offered_load=None,
        duration_seconds=None,
        tasks=None,
        warmup_seconds=0.0,
        bursts=(),
        source="",
        name="",
        catalog=replace(workload.catalog, source=""),
    )
    where = replace(cluster, source="")
    parts = (VERSION, code_digest(), OVERLOAD, SECONDS, WARMUP, POLICY, where, shape)
    text = repr((*parts, seed, mismatch))
    return hashlib.sha256(text.encode()).hexdigest()


def phase_workload(workload: Workload, at: float, seed: int) -> Workload:
    """The workload's model mix in force at ``at``, saturated: no shifts, no bursts, a
    fixed simulated time."""
    return replace(
        workload,
        seed=seed,
        models=_mixes_at(workload, at),
        model_shifts=(),
        bursts=(),
        tasks=None,
        duration_seconds=SECONDS,
        warmup_seconds=WARMUP,
    )


def _mixes_at(workload: Workload, at: float) -> dict[str, dict[str, float]]:
    mixes = workload.models
    for shift in workload.model_shifts:
        if at >= shift.at_seconds:
            mixes = shift.models
    return {tt: dict(mix) for tt, mix in mixes.items()}


def measure(
    cluster: ClusterConfig,
    workload: Workload,
    seed: int | None = None,
    mismatch: float = 0.0,
    cache: Path | None = None,
) -> Saturation:
    """The saturation rate and slot utilisation per phase, from the cache when it holds
    them (``cached`` True), else measured and stored. A phase whose models run nowhere
    gets 0 (the simulation then says which model and why)."""
    seed = workload.seed if seed is None else seed
    path = cache or cache_path()
    key = cache_key(cluster, workload, seed, mismatch)
    stored = _read(path)
    hit = stored.get(key)
    if isinstance(hit, dict) and "rates" in hit and "utilization" in hit:
        return Saturation(
            tuple(float(r) for r in hit["rates"]),
            tuple(float(u) for u in hit["utilization"]),
            cached=True,
        )
    rates: list[float] = []
    utils: list[float] = []
    for at in workload.phase_starts():
        wl = phase_workload(workload, at, seed)
        fluid = mix_capacity(cluster, wl, wl.model_weights())
        if fluid <= 0:
            rates.append(0.0)
            utils.append(0.0)
            continue
        overload = OVERLOAD
        while True:
            sim = Simulation(
                cluster, replace(wl, rate=overload * fluid), POLICY, seed, mismatch=mismatch
            )
            sim.stop_at_end = True
            r = sim.run()
            # Completing nearly all that arrives is not saturated (a cluster faster than
            # the fluid model, or mismatch factors above 1): offer more.
            if r.throughput_tasks_per_second < 0.9 * overload * fluid or overload >= 32:
                break
            overload *= 2
        rates.append(r.throughput_tasks_per_second)
        utils.append(r.slot_utilization)
    stored = _read(path)  # another process may have added entries meanwhile
    stored[key] = {
        "workload": workload.name,
        "seed": seed,
        "mismatch": mismatch,
        "phases": workload.phase_starts(),
        "rates": rates,
        "utilization": utils,
    }
    _write(path, stored)
    return Saturation(tuple(rates), tuple(utils))


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: dict[str, object]) -> None:
    """Write atomically (a temporary file renamed over), so parallel runs never read
    half a file; a cache that cannot be written is only a slower next run."""
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
        tmp.replace(path)
