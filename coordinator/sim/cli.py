"""``hive sim``: run policies on a modelled cluster under a workload and compare them.

    hive sim --workload W.yaml [--cluster C.yaml] [--policy hive|...|all] [--seed N]
             [--load F] [--mismatch SIGMA] [--jobs N] [--json]

``--load`` (or the file's ``arrival.offered_load``) is a fraction of the cluster's
measured saturation rate for the workload, phase by phase, measured once per cluster,
workload, seed and mismatch and cached (``coordinator/sim/saturation.py``). ``--mismatch``
makes the simulated cluster's speeds, load times and answer lengths differ from the
router's priors by seeded lognormal factors of that sigma (``coordinator/sim/mismatch.py``).

Policies are independent runs on the same arrivals: ``--policy all`` runs them in
``--jobs`` processes (default: one per CPU), with the same results as one at a time.
The cluster defaults to the seed's (``hive/seed_cluster.yaml``). GPUs and models that
``hive/hardware.py`` lacks need their numbers in the workload's ``catalog`` section
(``coordinator/sim/catalog.py``). Exit status: 0 on success, 1 when tasks could not run
anywhere (their models are named; the table's ``failed`` column counts them), 2 on a
bad file or argument (the message names the file and key).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rich.console import Console
from rich.table import Table

from coordinator.sim.catalog import homeless
from coordinator.sim.engine import Saturation, SimResult, simulate
from coordinator.sim.policies import POLICY_NAMES
from coordinator.sim.saturation import measure
from coordinator.sim.workload import Workload, load_workload
from hive.config import SEED_CLUSTER, ClusterConfig, ConfigError, load_cluster_config

# Started first when policies run side by side (see ``run``).
SLOWEST = ("least_work", "hive", "least_work_warm")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hive sim", description=__doc__.split("\n")[0])
    p.add_argument("--cluster", default=str(SEED_CLUSTER), help="cluster YAML (default: seed)")
    p.add_argument("--workload", required=True, help="workload YAML")
    p.add_argument("--policy", default="all", choices=[*POLICY_NAMES, "all"])
    p.add_argument("--seed", type=int, default=None, help="override the workload's seed")
    p.add_argument(
        "--load",
        type=float,
        default=None,
        help="override arrival.offered_load: a fraction of the measured saturation rate",
    )
    p.add_argument(
        "--mismatch",
        type=float,
        default=0.0,
        metavar="SIGMA",
        help="lognormal sigma of the truth's factors over the router's priors (0: off)",
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=None,
        help="processes running policies side by side (default: one per CPU)",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    return value


def run(argv: list[str] | None = None) -> list[SimResult]:
    args = build_parser().parse_args(argv)
    if args.load is not None and not args.load > 0:
        raise ValueError(
            f"--load: must be > 0 (a fraction of the cluster's capacity), got {args.load:g}"
        )
    cluster = load_cluster_config(args.cluster)
    workload = load_workload(args.workload)
    if args.load is not None:
        workload = workload.with_load(args.load)
    if args.jobs is not None and args.jobs < 1:
        raise ValueError(f"--jobs: must be at least 1, got {args.jobs}")
    if not (args.mismatch >= 0 and math.isfinite(args.mismatch)):
        raise ValueError(f"--mismatch: must be a sigma >= 0, got {args.mismatch:g}")
    saturation = None
    if workload.rate is None:
        saturation = measure(cluster, workload, args.seed, args.mismatch)
        if min(saturation.rates) <= 0:
            saturation = None  # the run itself says which model runs nowhere, and why
    sim = (args.seed, args.mismatch, saturation)
    policies = POLICY_NAMES if args.policy == "all" else (args.policy,)
    jobs = min(len(policies), args.jobs or len(os.sched_getaffinity(0)))
    if jobs <= 1:
        return [_run_one(cluster, workload, p, *sim) for p in policies]
    # Each policy's run is deterministic on its own: running them side by side changes
    # nothing but the wall time.
    # The policies that estimate every endpoint's backlog on each dispatch take longest:
    # started first, they do not leave one process finishing alone.
    first = [p for p in policies if p in SLOWEST] + [p for p in policies if p not in SLOWEST]
    with ProcessPoolExecutor(jobs) as pool:
        started = {p: pool.submit(_simulate, cluster, workload, p, *sim) for p in first}
        runs = [started[p] for p in policies]
        results = []
        for r in runs:
            got = r.result()
            if isinstance(got, tuple):
                raise ConfigError(*got)
            results.append(got)
        return results


def _run_one(
    cluster: ClusterConfig,
    workload: Workload,
    policy: str,
    seed: int | None,
    mismatch: float,
    saturation: Saturation | None,
) -> SimResult:
    return simulate(cluster, workload, policy, seed, mismatch=mismatch, saturation=saturation)


def _simulate(
    cluster: ClusterConfig,
    workload: Workload,
    policy: str,
    seed: int | None,
    mismatch: float,
    saturation: Saturation | None,
) -> SimResult | tuple[str, str, str]:
    """``simulate`` in a worker process; a ConfigError comes back as its (source, key,
    reason), since the exception itself does not survive pickling."""
    try:
        return _run_one(cluster, workload, policy, seed, mismatch, saturation)
    except ConfigError as exc:
        return (exc.source, exc.key, exc.reason)


def nowhere(results: list[SimResult], argv: list[str] | None = None) -> list[str]:
    """One line per model whose tasks could not run anywhere, with the reason; empty
    when every task found an endpoint."""
    counts: dict[str, int] = {}
    for r in results:
        for m, n in r.unroutable.items():
            counts[m] = max(counts.get(m, 0), n)
    if not counts:
        return []
    args = build_parser().parse_args(argv)
    workload = load_workload(args.workload)
    why = homeless(load_cluster_config(args.cluster), workload.catalog, sorted(counts))
    return [
        f"{workload.source}: {workload.model_key(m)}: {n} tasks of model {m!r} could not run "
        f"anywhere: {why.get(m, 'no endpoint could run it')}"
        for m, n in sorted(counts.items())
    ]


def best_baseline(results: list[SimResult]) -> SimResult | None:
    """The baseline with the lowest p95 completion time (ties: the earlier in the run),
    None when no baseline ran."""
    others = [r for r in results if r.policy != "hive"]
    return min(others, key=lambda r: r.completion["p95"]) if others else None


def comparison(results: list[SimResult]) -> str | None:
    """One line ranking hive against the strongest baseline by p95; None unless both ran."""
    hive = next((r for r in results if r.policy == "hive"), None)
    best = best_baseline(results)
    if hive is None or best is None:
        return None
    h, b = hive.completion["p95"], best.completion["p95"]
    if not (b > 0 and math.isfinite(h) and math.isfinite(b)):
        return f"hive p95 {h:.1f} s; best baseline {best.policy} p95 {b:.1f} s"
    change = 1 - h / b
    word = "lower" if change >= 0 else "higher"
    rank = 1 + sum(1 for r in results if r.policy != "hive" and r.completion["p95"] < h)
    return (
        f"hive p95 {h:.1f} s against the best baseline, {best.policy}, {b:.1f} s: "
        f"{abs(change):.1%} {word}; hive ranks {rank} of {len(results)} by p95"
    )


def render(results: list[SimResult], console: Console) -> None:
    first = results[0]
    if first.saturation_tasks_per_second:
        sat = "/".join(f"{r:.3f}" for r in first.saturation_tasks_per_second)
        arrive = "/".join(f"{r:.3f}" for r in first.phase_rates)
        basis = f"saturation {sat}/s measured"
    else:
        arrive = f"{first.arrival_rate:.3f}"
        basis = f"fluid capacity {first.capacity_tasks_per_second:.3f}/s"
    title = (
        f"{first.workload}: {first.tasks} tasks, arrival {arrive}/s ({basis}), "
        f"seed {first.seed}, mismatch {first.mismatch:g}"
    )
    t = Table(title=title)
    for col in (
        "policy",
        "util",
        "slot util",
        "tasks/s",
        "tok/s",
        "p50 s",
        "p95 s",
        "p99 s",
        "queue p95 s",
        "cold loads",
        "p95 low/normal/high",
        "failed",
        "unfinished",
    ):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        pp = r.completion_p95_by_priority
        t.add_row(
            r.policy,
            f"{r.utilization:.1%}",
            f"{r.slot_utilization:.1%}",
            f"{r.throughput_tasks_per_second:.3f}",
            f"{r.throughput_tokens_per_second:.0f}",
            f"{r.completion['p50']:.1f}",
            f"{r.completion['p95']:.1f}",
            f"{r.completion['p99']:.1f}",
            f"{r.queueing['p95']:.1f}",
            str(r.cold_loads),
            f"{pp['low']:.0f}/{pp['normal']:.0f}/{pp['high']:.0f}",
            str(r.failed),
            str(r.unfinished),
        )
    console.print(t)
    line = comparison(results)
    if line is not None:
        console.print(line)
    nodes = Table(title="per-node utilisation")
    nodes.add_column("policy")
    names = list(first.node_utilization)
    for n in names:
        nodes.add_column(n, justify="right")
    for r in results:
        nodes.add_row(r.policy, *(f"{r.node_utilization[n]:.1%}" for n in names))
    console.print(nodes)


def main(argv: list[str] | None = None) -> int:
    try:
        results = run(argv)
    except ConfigError as exc:
        print(f"hive sim: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"hive sim: {exc}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    if args.json:
        print(json.dumps([_clean(r.to_dict()) for r in results], indent=2))
    else:
        render(results, Console())
    lost = nowhere(results, argv)
    for line in lost:
        print(f"hive sim: {line}", file=sys.stderr)
    return 1 if lost else 0


if __name__ == "__main__":
    raise SystemExit(main())
