"""Issue 20, items 2 and 3: a simulated cluster that disagrees with the router's priors
(mismatch mode), and loads measured against the cluster's saturation rate."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console

from coordinator.dispatch import DEFAULT_OUTPUT_TOKENS
from coordinator.routing.snapshot import prior_speed
from coordinator.sim import Simulation, load_workload, parse_workload, simulate
from coordinator.sim.cli import main, render, run
from coordinator.sim.mismatch import Mismatch
from coordinator.sim.saturation import cache_path, measure
from hive import hardware
from hive.config import load_cluster_config, seed_cluster

WORKLOADS = Path(__file__).parent.parent / "benchmarks" / "workloads"

WORKLOAD = {
    "name": "mismatch",
    "seed": 5,
    "arrival": {"offered_load": 0.6},
    "duration_seconds": 600,
    "warmup_seconds": 60,
    "task_types": {"code_generation": 2, "inference": 1},
    "models": {"default": {"qwen2.5-coder:7b": 2, "llama3.1:8b": 1}},
    "tokens": {"default": {"output": {"dist": "lognormal", "median": 300, "sigma": 0.3}}},
}


@pytest.fixture(autouse=True)
def _saturation_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "saturation.json"
    monkeypatch.setenv("HIVE_SIM_CACHE", str(path))
    return path


# ----- 2. mismatch mode ----------------------------------------------------------------


def test_mismatch_changes_the_truth_but_not_the_priors() -> None:
    wl = parse_workload({**WORKLOAD, "tasks": 1, "duration_seconds": None}, "w.yaml")
    sim = Simulation(seed_cluster(), wl, "hive", mismatch=0.3)
    snap = sim.snapshot()
    assert not snap.speeds  # nothing learned yet: the router prices from its priors
    differs = 0
    for e, view in zip(sim.endpoints, snap.endpoints(), strict=True):
        for m in e.models:
            catalog = hardware.decode_tokens_per_second(e.gpus, e.kind(m))
            prior = prior_speed(view.gpu_names, m, view.models[m])
            # The router's first estimate is the catalog's prior ...
            assert prior.decode_tps == pytest.approx(catalog)
            # ... while the simulated endpoint runs at the prior times its factors.
            truth = e.speed(m)[0]
            assert truth == pytest.approx(catalog * sim.mismatch.speed(e.node, e.id, m))
            differs += abs(truth / catalog - 1) > 0.01
        assert e.load_factor == sim.mismatch.load(e.node, e.id)
    assert differs > 0
    # One task: its simulated duration differs from the same task without mismatch.
    on = sim.run()
    off = simulate(seed_cluster(), wl, "hive")
    assert on.completed == off.completed == 1
    assert on.completion["p50"] != pytest.approx(off.completion["p50"], rel=0.01)
    assert off.mismatch == 0 and on.mismatch == 0.3


def test_the_router_learns_answer_lengths_instead_of_being_told() -> None:
    wl = parse_workload(WORKLOAD, "w.yaml")
    sim = Simulation(seed_cluster(), wl, "hive", mismatch=0.3)
    told: list[int] = []
    submit = sim.scheduler.submit

    def spy(spec, snapshot, now):  # type: ignore[no-untyped-def]
        told.append(spec.output_tokens)
        return submit(spec, snapshot, now)

    sim.scheduler.submit = spy  # type: ignore[method-assign]
    sim.run()
    # The first task's estimate is the task type's default, as in production ...
    assert told[0] in DEFAULT_OUTPUT_TOKENS.values()
    # ... and what it learns is the model's true length (its factor times the median).
    assert sim.lengths is not None
    for model in ("qwen2.5-coder:7b", "llama3.1:8b"):
        learned = sim.lengths.estimate("code_generation", model)
        assert learned is not None
        truth = 300 * sim.mismatch.length(model)
        assert 0.8 * truth < learned < 1.3 * truth
    # Without mismatch the router is told the distribution's mean, unchanged.
    assert Simulation(seed_cluster(), wl, "hive").lengths is None


def test_the_same_seed_gives_the_same_factors() -> None:
    a, b, c = Mismatch(0.3, 7), Mismatch(0.3, 7), Mismatch(0.3, 8)
    names = [("endpoint_speed", "IRONWOOD/main"), ("answer_length", "llama3.1:8b")]
    assert [a.factor(*n) for n in names] == [b.factor(*n) for n in names]
    assert [a.factor(*n) for n in names] != [c.factor(*n) for n in names]
    assert Mismatch(0.0, 7).factor(*names[0]) == 1.0
    wl = parse_workload(WORKLOAD, "w.yaml")
    one = Simulation(seed_cluster(), wl, "hive", seed=3, mismatch=0.3).endpoints
    two = Simulation(seed_cluster(), wl, "round_robin", seed=3, mismatch=0.3).endpoints
    assert [e.speed("qwen2.5-coder:7b") for e in one if "qwen2.5-coder:7b" in e.models] == [
        e.speed("qwen2.5-coder:7b") for e in two if "qwen2.5-coder:7b" in e.models
    ]
    with pytest.raises(ValueError, match="sigma"):
        Mismatch(-0.1, 1)


def test_sigma_zero_reproduces_the_old_numbers_exactly() -> None:
    # The pinned row of tests/test_sim.py (recorded before mismatch mode existed).
    cluster = load_cluster_config(WORKLOADS / "cluster20.yaml")
    wl = replace(
        load_workload(WORKLOADS / "chat20.yaml"), duration_seconds=150.0, warmup_seconds=30.0
    )
    r = simulate(cluster, wl, "hive", mismatch=0.0)
    c = r.completion
    row = (
        r.tasks,
        r.completed,
        r.cold_loads,
        r.evictions,
        *(round(c[p], 6) for p in ("p50", "p95", "p99")),
    )
    assert row == (915, 915, 6, 0, 4.177936, 12.309259, 29.114349)
    assert round(r.utilization, 6) == 0.639137


# ----- 3. loads that mean load ---------------------------------------------------------


def test_the_saturation_measurement_is_cached(_saturation_cache: Path) -> None:
    cluster = seed_cluster()
    wl = parse_workload(WORKLOAD, "w.yaml")
    assert cache_path() == _saturation_cache
    first = measure(cluster, wl)
    assert not first.cached and len(first.rates) == 1 and first.rates[0] > 0
    second = measure(cluster, wl)
    assert second.cached and second.rates == first.rates
    stored = json.loads(_saturation_cache.read_text())
    assert len(stored) == 1
    # A different seed or mismatch is a different measurement; the offered load is not.
    assert not measure(cluster, wl, seed=6).cached
    assert not measure(cluster, wl, mismatch=0.3).cached
    assert measure(cluster, wl.with_load(0.3)).cached


def test_load_is_a_fraction_of_the_measured_saturation() -> None:
    cluster = seed_cluster()
    wl = parse_workload({**WORKLOAD, "duration_seconds": 1500, "warmup_seconds": 300}, "w.yaml")
    sat = measure(cluster, wl)
    full = simulate(cluster, wl.with_load(1.0), "hive", saturation=sat)
    half = simulate(cluster, wl.with_load(0.5), "hive", saturation=sat)
    assert full.saturation_tasks_per_second == list(sat.rates)
    assert full.phase_rates == [pytest.approx(sat.rates[0])]
    # At 100 % the slots are nearly as busy as saturated; at 50 % about half as busy.
    assert full.slot_utilization > 0.8 * sat.utilization[0]
    assert 0.3 < half.slot_utilization / sat.utilization[0] < 0.7
    assert 0.4 < half.throughput_tasks_per_second / sat.rates[0] < 0.6


def test_each_phase_gets_its_own_rate_and_bursts_raise_it() -> None:
    shifting = {
        **WORKLOAD,
        "model_shifts": [{"at_seconds": 300, "models": {"default": {"qwen2.5-coder:14b": 1}}}],
        "bursts": [{"at_seconds": 400, "seconds": 100, "factor": 3}],
    }
    wl = parse_workload(shifting, "w.yaml")
    sat = measure(seed_cluster(), wl)
    assert len(sat.rates) == 2 and sat.rates[0] != sat.rates[1]
    r = simulate(seed_cluster(), wl, "hive", saturation=sat)
    assert r.phase_rates == [pytest.approx(0.6 * s) for s in sat.rates]
    segments = wl.rate_segments(r.phase_rates)
    assert segments == [
        (0.0, r.phase_rates[0]),
        (300.0, r.phase_rates[1]),
        (400.0, 3 * r.phase_rates[1]),
        (500.0, r.phase_rates[1]),
    ]
    arrivals = [t for t, _, _ in wl.generate(r.phase_rates)]
    in_burst = sum(1 for t in arrivals if 400 <= t < 500)
    before = sum(1 for t in arrivals if 300 <= t < 400)
    assert in_burst > 2 * before
    # One rate for every phase is the old process, draw for draw.
    assert wl.generate(0.5)[:50] == replace(wl, bursts=()).generate([0.5, 0.5])[:50]


def test_the_table_shows_saturation_and_slot_utilisation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(json.dumps({**WORKLOAD, "duration_seconds": 300}))
    argv = ["--workload", str(path), "--policy", "hive", "--mismatch", "0.3"]
    assert main([*argv, "--json"]) == 0
    got = json.loads(capsys.readouterr().out)[0]
    assert got["mismatch"] == 0.3 and got["saturation_tasks_per_second"][0] > 0
    assert 0 < got["slot_utilization"] <= 1
    console = Console(record=True, width=300)
    render(run(argv), console)
    out = console.export_text()
    assert "saturation" in out and "slot util" in out and "mismatch 0.3" in out
    assert main([*argv[:-1], "-1"]) == 2
    assert "--mismatch" in capsys.readouterr().err
