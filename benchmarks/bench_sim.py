"""Simulated routing quality: every policy on the seed cluster at 70 %, 85 %, 95 % and
150 % of the cluster's measured saturation rate, with the seed's development workload.

    .venv/bin/python benchmarks/bench_sim.py [--workload W.yaml] [--seeds 1,2]
        [--duration S] [--mismatch SIGMA] [--check-seeds FIRST-LAST]

Loads are fractions of the saturation rate measured per seed (``coordinator/sim/
saturation.py``, cached). Mismatch mode is on by default (sigma 0.3): the simulated
cluster's speeds, load times and answer lengths differ from the router's priors
(``coordinator/sim/mismatch.py``). Prints JSON: per load and policy the metrics of
``hive sim`` averaged over the seeds, and the checks (hive's p95 at 85 % against the
best baseline, paired over the check seeds with and without mismatch; slot utilisation
saturated; low priority not starved).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from coordinator.sim import POLICY_NAMES, load_workload, simulate
from coordinator.sim.saturation import measure
from hive.config import seed_cluster

LOADS = {"70%": 0.70, "85%": 0.85, "95%": 0.95, "saturated": 1.5}
HERE = Path(__file__).parent


def summary(results: list[Any]) -> dict[str, Any]:
    def avg(get: Any) -> float:
        return round(statistics.fmean(get(r) for r in results), 3)

    return {
        "utilization": avg(lambda r: r.utilization),
        "slot_utilization": avg(lambda r: r.slot_utilization),
        "saturation_tasks_per_second": avg(lambda r: r.saturation_tasks_per_second[0]),
        "throughput_tasks_per_second": avg(lambda r: r.throughput_tasks_per_second),
        "throughput_tokens_per_second": avg(lambda r: r.throughput_tokens_per_second),
        "completion_p50": avg(lambda r: r.completion["p50"]),
        "completion_p95": avg(lambda r: r.completion["p95"]),
        "completion_p99": avg(lambda r: r.completion["p99"]),
        "queueing_p95": avg(lambda r: r.queueing["p95"]),
        "cold_loads": avg(lambda r: r.cold_loads),
        "p95_by_priority": {
            p: avg(lambda r, p=p: r.completion_p95_by_priority[p])
            for p in ("low", "normal", "high")
        },
        "unfinished": avg(lambda r: r.unfinished),
    }


def run(cluster: Any, workload: Any, policy: str, seed: int, mismatch: float) -> Any:
    """One run at the workload's offered load of the seed's measured saturation rate."""
    sat = measure(cluster, workload, seed, mismatch)
    return simulate(cluster, workload, policy, seed, mismatch=mismatch, saturation=sat)


def paired_check(
    cluster: Any, workload: Any, baselines: list[str], seeds: list[int], mismatch: float
) -> dict[str, Any]:
    """Hive's p95 over a baseline's, seed by seed on the same arrivals: the mean ratio, a
    bootstrap 95 % interval of it (fixed resampling seed) and the improvement, against
    whichever of ``baselines`` is strongest over these seeds (hive's ratio highest)."""
    hive = [run(cluster, workload, "hive", s, mismatch).completion["p95"] for s in seeds]
    checks = [_paired(cluster, workload, b, seeds, mismatch, hive) for b in baselines]
    return max(checks, key=lambda c: c["mean_ratio"])


def _paired(
    cluster: Any,
    workload: Any,
    baseline: str,
    seeds: list[int],
    mismatch: float,
    hive: list[float],
) -> dict[str, Any]:
    other = [run(cluster, workload, baseline, s, mismatch).completion["p95"] for s in seeds]
    ratios = [h / o for h, o in zip(hive, other, strict=True)]
    rng = random.Random(0)
    means = sorted(statistics.fmean(rng.choice(ratios) for _ in ratios) for _ in range(4000))
    return {
        "baseline": baseline,
        "mismatch": mismatch,
        "seeds": f"{seeds[0]}-{seeds[-1]}",
        "hive_p95": round(statistics.fmean(hive), 2),
        "baseline_p95": round(statistics.fmean(other), 2),
        "mean_ratio": round(statistics.fmean(ratios), 4),
        "ci95": [round(means[100], 4), round(means[3899], 4)],
        "improvement": round(1 - statistics.fmean(ratios), 3),
        "target": 0.15,
    }


def best_at(rows: dict[str, Any], n: int = 1) -> list[str]:
    """The ``n`` baselines with the lowest mean p95 in one load's rows, best first."""
    others = sorted(
        (p for p in POLICY_NAMES if p != "hive"), key=lambda p: rows[p]["completion_p95"]
    )
    return others[:n]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default=str(HERE / "workloads" / "seed_mixed.yaml"))
    ap.add_argument("--seeds", default="7,8")
    # 40 simulated minutes per run: 4 loads x 14 policies x 2 seeds and the paired check
    # take about 100 s.
    ap.add_argument("--duration", type=float, default=2400.0, help="override duration_seconds")
    ap.add_argument("--check-seeds", default="11-20", help="FIRST-LAST for the paired 85 %% check")
    ap.add_argument(
        "--mismatch", type=float, default=0.3, help="sigma of the truth over the priors (0: off)"
    )
    args = ap.parse_args()
    cluster = seed_cluster()
    base = load_workload(args.workload)
    if args.duration is not None:
        base = replace(base, duration_seconds=args.duration)
    seeds = [int(s) for s in args.seeds.split(",")]
    started = time.perf_counter()
    sigma = args.mismatch
    out: dict[str, Any] = {
        "workload": base.name,
        "seeds": seeds,
        "mismatch": sigma,
        "loads": {},
    }
    for label, load in LOADS.items():
        wl = base.with_load(load)
        row: dict[str, Any] = {}
        for policy in POLICY_NAMES:
            row[policy] = summary([run(cluster, wl, policy, seed, sigma) for seed in seeds])
        out["loads"][label] = row
    at85 = out["loads"]["85%"]
    best_name = best_at(at85)[0]
    best = at85[best_name]["completion_p95"]
    hive = at85["hive"]["completion_p95"]
    sat = out["loads"]["saturated"]["hive"]
    out["checks"] = {
        "p95_at_85": {
            "hive": hive,
            "best_baseline": best_name,
            "best_baseline_p95": best,
            "improvement": round(1 - hive / best, 3),
            "target": 0.15,
        },
        "saturated_slot_utilization": {"hive": sat["slot_utilization"], "target": 0.95},
        "low_priority_p95_over_high_at_95": round(
            out["loads"]["95%"]["hive"]["p95_by_priority"]["low"]
            / out["loads"]["95%"]["hive"]["p95_by_priority"]["high"],
            3,
        ),
    }
    first, last = (int(x) for x in args.check_seeds.split("-"))
    check_seeds = list(range(first, last + 1))
    at_85 = base.with_load(LOADS["85%"])
    # A few seeds rank the baselines only roughly: the paired check takes the three best
    # and reports the one strongest over the check seeds.
    out["checks"]["p95_at_85_paired"] = paired_check(
        cluster, at_85, best_at(at85, 3), check_seeds, sigma
    )
    if sigma > 0:
        # The same comparison on a cluster that runs exactly as the router's priors say,
        # against the strongest baseline there.
        plain = {p: summary([run(cluster, at_85, p, s, 0.0) for s in seeds]) for p in POLICY_NAMES}
        out["loads_without_mismatch"] = {"85%": plain}
        out["checks"]["p95_at_85_paired_without_mismatch"] = paired_check(
            cluster, at_85, best_at(plain, 3), check_seeds, 0.0
        )
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
