"""The simulator: deterministic for a seed, works on any cluster, every policy measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from coordinator.sim import POLICY_NAMES, SimResult, parse_workload, simulate
from coordinator.sim.cli import main
from hive.config import ConfigError, parse_cluster_config, seed_cluster

SMALL_CLUSTER = """
routing:
  chains:
    code_review: [beta, alpha]
nodes:
  - name: alpha
    specializations: [code_generation]
    gpus: [NVIDIA GeForce RTX 4090]
    endpoints:
      - {id: main, gpus: [0], num_parallel: 2, models: [qwen2.5-coder:7b, llama3.1:8b]}
  - name: beta
    specializations: [code_review]
    gpus: [NVIDIA Tesla P4, {name: Mystery Card, vendor: other, memory_gb: 12}]
    endpoints:
      - {id: a, gpus: [0], num_parallel: 1, models: [qwen2.5-coder:7b]}
      - {id: b, gpus: [1], num_parallel: 2, models: [qwen2.5-coder:7b, llama3.1:8b, my-model:1b]}
"""

SMALL_WORKLOAD = {
    "name": "small",
    "seed": 3,
    "arrival": {"offered_load": 0.8},
    "tasks": 150,
    "task_types": {"code_generation": 2, "code_review": 1, "inference": 1},
    "models": {
        "default": {"qwen2.5-coder:7b": 2, "llama3.1:8b": 1},
        "inference": {"my-model:1b": 1, "llama3.1:8b": 1},
    },
    "model_shifts": [{"at_seconds": 60, "models": {"default": {"llama3.1:8b": 1}}}],
    "tokens": {"default": {"output": {"dist": "lognormal", "median": 100, "sigma": 1.0}}},
    "priorities": {"high": 1, "low": 1},
    # Numbers for what hive/hardware.py does not know: the cluster's Mystery Card and
    # the inference model.
    "catalog": {
        "gpus": {"Mystery Card": {"memory_gb": 12, "bandwidth_gbs": 300}},
        "models": {"my-model:1b": {"size_gb": 0.8, "parameters": "1B"}},
    },
}


@pytest.fixture(autouse=True)
def _saturation_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``hive sim`` caches its saturation measurements: in the test's own folder."""
    monkeypatch.setenv("HIVE_SIM_CACHE", str(tmp_path / "saturation.json"))


def test_deterministic_for_a_seed() -> None:
    wl = parse_workload({**SMALL_WORKLOAD, "tasks": 120}, "w.yaml")
    cluster = seed_cluster()
    a = simulate(cluster, wl, "hive").to_dict()
    b = simulate(cluster, wl, "hive").to_dict()
    a.pop("mean_decision_us"), b.pop("mean_decision_us")
    assert a == b
    c = simulate(cluster, wl, "hive", seed=99).to_dict()
    assert c["completion"] != a["completion"]


def test_custom_cluster_all_policies(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cpath = tmp_path / "c.yaml"
    cpath.write_text(SMALL_CLUSTER)
    wpath = tmp_path / "w.yaml"
    wpath.write_text(json.dumps(SMALL_WORKLOAD))  # JSON is YAML
    assert (
        main(["--cluster", str(cpath), "--workload", str(wpath), "--policy", "all", "--json"]) == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["policy"] for r in results] == list(POLICY_NAMES)
    for r in results:
        assert r["tasks"] == 150
        assert r["completed"] + r["failed"] + r["unfinished"] == r["tasks"]
        assert r["completed"] > 140
        assert 0 < r["utilization"] <= 1
        assert set(r["node_utilization"]) == {"alpha", "beta"}
        assert r["completion"]["p95"] >= r["completion"]["p50"] > 0
        assert r["throughput_tasks_per_second"] > 0 and r["cold_loads"] >= 2
    # The table renders too.
    assert main(["--cluster", str(cpath), "--workload", str(wpath), "--policy", "p2c"]) == 0
    assert "p2c" in capsys.readouterr().out


def test_hive_avoids_slow_endpoint_on_skewed_cluster() -> None:
    cluster = parse_cluster_config(
        {
            "nodes": [
                {
                    "name": "fast",
                    "gpus": ["NVIDIA GeForce RTX 4090"],
                    "endpoints": [
                        {"id": "e", "gpus": [0], "num_parallel": 4, "models": ["qwen2.5-coder:7b"]}
                    ],
                },
                {
                    "name": "slow",
                    "gpus": ["NVIDIA Tesla P4"],
                    "endpoints": [
                        {"id": "e", "gpus": [0], "num_parallel": 4, "models": ["qwen2.5-coder:7b"]}
                    ],
                },
            ]
        },
        "skew.yaml",
    )
    wl = parse_workload(
        {
            **SMALL_WORKLOAD,
            "arrival": {"offered_load": 0.3},
            "models": {"default": {"qwen2.5-coder:7b": 1}},
            "model_shifts": [],
        },
        "w",
    )
    hive = simulate(cluster, wl, "hive")
    rr = simulate(cluster, wl, "round_robin")
    assert hive.node_utilization["slow"] < rr.node_utilization["slow"]
    assert hive.completion["p95"] < rr.completion["p95"]


def test_bad_workload_names_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError) as err:
        parse_workload({**SMALL_WORKLOAD, "task_types": {"juggling": 1}}, "w.yaml")
    assert err.value.key == "task_types.juggling"
    with pytest.raises(ConfigError) as err:
        parse_workload(
            {**SMALL_WORKLOAD, "tokens": {"default": {"output": {"dist": "zipf"}}}}, "w.yaml"
        )
    assert err.value.key == "tokens.default.output.dist"
    bad = tmp_path / "bad.yaml"
    bad.write_text("arrival: {rate: -1}\n")
    assert main(["--workload", str(bad)]) == 2
    assert "arrival.rate" in capsys.readouterr().err


def test_capacity_of_a_shifting_mix_is_its_hardest_phase() -> None:
    """Offered load is against what every phase sustains: a shift to a large model that
    runs on fewer, slower endpoints lowers the workload's capacity to that phase's."""
    from coordinator.sim import capacity

    cluster = seed_cluster()
    small = {"default": {"qwen2.5-coder:7b": 1}}
    large = {"default": {"deepseek-coder-v2:16b": 1}}
    base = {**SMALL_WORKLOAD, "models": small, "model_shifts": []}
    only_small = capacity(cluster, parse_workload(base, "w.yaml"))
    only_large = capacity(cluster, parse_workload({**base, "models": large}, "w.yaml"))
    assert only_large < only_small / 2
    shifting = parse_workload(
        {**base, "model_shifts": [{"at_seconds": 60, "models": large}]}, "w.yaml"
    )
    assert capacity(cluster, shifting) == pytest.approx(only_large)


def test_cold_loads_are_counted_in_the_measured_window() -> None:
    """The loads that fill an empty cluster at time 0 are not cold loads of the workload:
    with the whole run measured they count, with a warm-up they do not."""
    spec = {**SMALL_WORKLOAD, "tasks": None, "duration_seconds": 400, "model_shifts": []}
    cluster = seed_cluster()
    whole = simulate(cluster, parse_workload({**spec, "warmup_seconds": 0}, "w.yaml"), "hive")
    later = simulate(cluster, parse_workload({**spec, "warmup_seconds": 200}, "w.yaml"), "hive")
    assert whole.cold_loads >= 3  # two models on several endpoints, all loaded at the start
    assert later.cold_loads < whole.cold_loads


def test_a_slow_disk_makes_loads_slower_and_the_router_learns_its_speed() -> None:
    from dataclasses import replace

    from coordinator.sim import Simulation

    spec = {**SMALL_WORKLOAD, "model_shifts": [], "tasks": 60}
    cluster = parse_cluster_config(yaml.safe_load(SMALL_CLUSTER), "c.yaml")
    slow = replace(cluster, nodes=tuple(replace(n, model_load_gbps=0.25) for n in cluster.nodes))
    fast_sim = Simulation(cluster, parse_workload(spec, "w.yaml"), "hive")
    slow_sim = Simulation(slow, parse_workload(spec, "w.yaml"), "hive")
    fast_sim.run()
    slow_sim.run()
    learned = slow_sim.speeds.load_rates()
    assert learned and all(r == pytest.approx(0.25e9, rel=0.01) for r in learned.values())
    assert all(r == pytest.approx(1.5e9, rel=0.01) for r in fast_sim.speeds.load_rates().values())
    view = slow_sim.snapshot().endpoints()[0]
    assert view.load_bytes_per_second == pytest.approx(0.25e9, rel=0.01)


def test_model_load_gbps_must_be_positive() -> None:
    bad = SMALL_CLUSTER.replace("  - name: alpha\n", "  - name: alpha\n    model_load_gbps: 0\n")
    with pytest.raises(ConfigError) as err:
        parse_cluster_config(yaml.safe_load(bad), "c.yaml")
    assert "nodes[0].model_load_gbps" in str(err.value) and "> 0" in str(err.value)


WORKLOADS = Path(__file__).resolve().parent.parent / "benchmarks" / "workloads"

# Every policy's numbers for a short run on the 20-node cluster (and hive with the
# optimizer): (tasks, completed, cold loads, evictions, p50, p95, p99, utilisation).
# Speed work on the simulator must leave them exactly as they are.
PINNED = {
    "hive": (915, 915, 6, 0, 4.177936, 12.309259, 29.114349, 0.639137),
    "round_robin": (915, 915, 51, 48, 6.286755, 27.832517, 50.477612, 0.949023),
    "random": (915, 915, 45, 42, 6.624545, 30.700417, 69.096571, 0.95782),
    "least_outstanding": (915, 915, 58, 57, 5.055571, 19.977278, 41.079731, 0.992939),
    "p2c": (915, 915, 60, 56, 6.018304, 22.884938, 47.687853, 0.965675),
    "static_chain": (915, 915, 37, 33, 5.477843, 20.064276, 45.420738, 0.917917),
    "hive_original": (915, 915, 37, 32, 5.637247, 22.297128, 36.611356, 0.964574),
    "least_work": (915, 915, 57, 49, 5.183936, 15.450324, 30.741473, 0.938157),
    "least_work_warm": (915, 915, 6, 0, 4.908688, 15.335297, 30.839744, 0.746594),
    "llm_d": (915, 915, 5, 0, 4.531714, 17.589926, 31.601305, 0.933098),
    "litellm_least_busy": (915, 915, 53, 48, 6.737245, 27.20825, 58.866176, 0.976126),
    "litellm_latency": (915, 915, 20, 19, 4.841136, 18.446854, 36.274804, 0.690111),
    "gpustack_binpack": (915, 915, 4, 0, 5.740676, 23.90746, 45.555216, 0.921491),
    "gpustack_spread": (915, 915, 10, 0, 4.72734, 18.721331, 39.206914, 0.881897),
    "hive+optimizer": (915, 915, 3, 0, 3.894639, 12.126503, 27.86294, 0.704482),
}


def test_a_short_run_on_the_20_node_cluster_gives_the_pinned_numbers() -> None:
    from dataclasses import replace

    from coordinator.optimizer import OptimizerConfig
    from coordinator.sim import load_workload
    from hive.config import load_cluster_config

    cluster = load_cluster_config(WORKLOADS / "cluster20.yaml")
    wl = replace(
        load_workload(WORKLOADS / "chat20.yaml"), duration_seconds=150.0, warmup_seconds=30.0
    )

    def row(r: SimResult) -> tuple[float, ...]:
        c = r.completion
        return (
            r.tasks,
            r.completed,
            r.cold_loads,
            r.evictions,
            round(c["p50"], 6),
            round(c["p95"], 6),
            round(c["p99"], 6),
            round(r.utilization, 6),
        )

    got = {p: row(simulate(cluster, wl, p)) for p in POLICY_NAMES}
    got["hive+optimizer"] = row(simulate(cluster, wl, "hive", optimizer=OptimizerConfig()))
    assert got == PINNED


def test_the_table_ranks_hive_against_the_best_baseline() -> None:
    from rich.console import Console

    from coordinator.sim.cli import best_baseline, comparison, render

    cluster = parse_cluster_config(yaml.safe_load(SMALL_CLUSTER), "c.yaml")
    wl = parse_workload(SMALL_WORKLOAD, "w.yaml")
    results = [simulate(cluster, wl, p) for p in POLICY_NAMES]
    best = best_baseline(results)
    assert best is not None and best.policy != "hive"
    assert best.completion["p95"] == min(r.completion["p95"] for r in results if r.policy != "hive")
    line = comparison(results)
    assert line is not None and f"best baseline, {best.policy}," in line
    hive = results[0].completion["p95"]
    change = 1 - hive / best.completion["p95"]
    assert f"{abs(change):.1%} {'lower' if change >= 0 else 'higher'}" in line
    console = Console(record=True, width=300)
    render(results, console)
    assert line in console.export_text()
    # Without hive (or without a baseline) there is nothing to rank.
    assert comparison(results[1:]) is None and comparison(results[:1]) is None


def test_policies_run_side_by_side_with_the_same_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cpath = tmp_path / "c.yaml"
    cpath.write_text(SMALL_CLUSTER)
    wpath = tmp_path / "w.yaml"
    wpath.write_text(json.dumps({**SMALL_WORKLOAD, "tasks": 60}))
    out = []
    for jobs in ("1", "2"):
        argv = ["--cluster", str(cpath), "--workload", str(wpath), "--json", "--jobs", jobs]
        assert main(argv) == 0
        results = json.loads(capsys.readouterr().out)
        for r in results:
            r.pop("mean_decision_us")
        out.append(results)
    assert [r["policy"] for r in out[1]] == list(POLICY_NAMES)
    assert out[0] == out[1]
    assert main(["--workload", str(wpath), "--jobs", "0"]) == 2
    assert "--jobs" in capsys.readouterr().err
