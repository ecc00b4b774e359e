"""The optimizer in the simulator: the same router with the optimizer off and on, same
workload, same seeds, on the seed cluster (issue 8).

    .venv/bin/python benchmarks/bench_optimizer.py [--workload W.yaml] [--seeds 11,12,13]

The workload's model mix drifts over the hour (``benchmarks/workloads/shifting_mix.yaml``).
"defaults" is the optimizer as shipped (``OptimizerConfig()``: warm-up, placement and the
bounded wait for a model's home; knee tuning off) and is what the checks compare with "off";
"on" runs every feature (knee tuning too) every 15 simulated seconds; "warm-up only" and
"tuning only" are the ablations. Cold loads are loads
a request had to wait for; warm-ups (loads the optimizer started ahead of demand) are
counted apart. Prints JSON: per variant the means over the seeds, per seed the raw
figures, and the issue's checks (cold loads -50 %, p95 better) with the measured ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

from coordinator.optimizer import OptimizerConfig
from coordinator.optimizer.config import TuningSettings, WarmupSettings
from coordinator.sim import SimResult, load_workload, simulate
from hive.config import seed_cluster

HERE = Path(__file__).parent

ON = OptimizerConfig(
    interval_seconds=15.0,
    min_change_interval_seconds=60.0,
    tuning=TuningSettings(enabled=True, min_samples=20, tolerance=0.1),
    warmup=WarmupSettings(replica_load=1.5),
)
VARIANTS: dict[str, OptimizerConfig | None] = {
    "off": None,
    # The optimizer exactly as a coordinator runs it with no `optimizer:` section.
    "defaults": OptimizerConfig(),
    "on": ON,
    "warmup_only": OptimizerConfig(
        interval_seconds=ON.interval_seconds,
        min_change_interval_seconds=ON.min_change_interval_seconds,
        tuning=TuningSettings(enabled=False),
        warmup=ON.warmup,
    ),
    "tuning_only": OptimizerConfig(
        interval_seconds=ON.interval_seconds,
        min_change_interval_seconds=ON.min_change_interval_seconds,
        tuning=ON.tuning,
        warmup=WarmupSettings(enabled=False),
    ),
}


def figures(r: SimResult) -> dict[str, Any]:
    return {
        "cold_loads": r.cold_loads,
        "warm_loads": r.extra.get("warm_loads", 0),
        "evictions": r.evictions,
        "completion_p50": round(r.completion["p50"], 2),
        "completion_p95": round(r.completion["p95"], 2),
        "completion_p99": round(r.completion["p99"], 2),
        "queueing_p95": round(r.queueing["p95"], 2),
        "utilization": round(r.utilization, 4),
        "throughput_tasks_per_second": round(r.throughput_tasks_per_second, 4),
        "changes": r.extra.get("optimizer_changes", {}),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default=str(HERE / "workloads" / "shifting_mix.yaml"))
    ap.add_argument("--seeds", default="11,12,13")
    args = ap.parse_args()
    cluster = seed_cluster()
    workload = load_workload(args.workload)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    per_seed: dict[str, dict[str, Any]] = {}
    for name, config in VARIANTS.items():
        per_seed[name] = {
            str(seed): figures(simulate(cluster, workload, "hive", seed, optimizer=config))
            for seed in seeds
        }
    means: dict[str, dict[str, float]] = {}
    for name, runs in per_seed.items():
        keys = ("cold_loads", "warm_loads", "completion_p50", "completion_p95", "utilization")
        means[name] = {k: round(statistics.fmean(r[k] for r in runs.values()), 3) for k in keys}
    # The checks: the optimizer as shipped against the same router without it.
    off, on = means["off"], means["defaults"]
    cold_ratio = on["cold_loads"] / off["cold_loads"] if off["cold_loads"] else 1.0
    p95_ratio = on["completion_p95"] / off["completion_p95"] if off["completion_p95"] else 1.0
    out = {
        "workload": workload.name,
        "cluster": "seed (hive/seed_cluster.yaml)",
        "router": "hive (same router and scheduler in every variant)",
        "seeds": seeds,
        "optimizer_on": {
            "interval_seconds": ON.interval_seconds,
            "min_change_interval_seconds": ON.min_change_interval_seconds,
            "tuning": {"min_samples": ON.tuning.min_samples, "tolerance": ON.tuning.tolerance},
            "warmup": {
                "bucket_seconds": ON.warmup.bucket_seconds,
                "replica_load": ON.warmup.replica_load,
            },
        },
        "mean": means,
        "per_seed": per_seed,
        "checks": {
            "compared": "defaults vs off",
            "cold_loads_on_over_off": round(cold_ratio, 3),
            "cold_loads_halved": cold_ratio <= 0.5,
            "p95_on_over_off": round(p95_ratio, 3),
            "p95_improved": p95_ratio < 1.0,
        },
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
