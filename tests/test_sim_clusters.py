"""The benchmark clusters of issue 20 beyond the seed's: they parse, their models sit on
as many hosts as their comments say (from 2), and a short run completes every task."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from coordinator.sim import load_workload, simulate
from hive.config import load_cluster_config

WORKLOADS = Path(__file__).resolve().parent.parent / "benchmarks" / "workloads"
# (cluster, workload, the most hosts a model sits on)
PAIRS = [
    ("cluster20.yaml", "chat20.yaml", 16),
    ("cluster_legacy.yaml", "legacy_mix.yaml", 20),
]


@pytest.mark.parametrize(("cluster_file", "workload_file", "most"), PAIRS)
def test_models_sit_on_2_or_more_hosts(cluster_file: str, workload_file: str, most: int) -> None:
    cluster = load_cluster_config(WORKLOADS / cluster_file)
    wl = load_workload(WORKLOADS / workload_file)
    assert 15 <= len(cluster.nodes) <= 30
    hosts: dict[str, set[str]] = {}
    for node in cluster.nodes:
        for ep in node.endpoints:
            for m in ep.models:
                hosts.setdefault(m, set()).add(node.name)
    wanted = {m for mix in wl.models.values() for m in mix}
    assert wanted <= set(hosts)
    counts = [len(hosts[m]) for m in wanted]
    assert min(counts) >= 2 and max(counts) == most


def test_a_short_run_on_the_legacy_cluster_completes_every_task() -> None:
    cluster = load_cluster_config(WORKLOADS / "cluster_legacy.yaml")
    wl = replace(
        load_workload(WORKLOADS / "legacy_mix.yaml"),
        duration_seconds=120.0,
        warmup_seconds=20.0,
        rate=4.0,
    )
    r = simulate(cluster, wl, "hive", 24, mismatch=0.3)
    assert r.tasks > 200
    assert r.failed == 0 and r.unfinished == 0 and not r.unroutable
    assert r.completed == r.tasks
