"""The saturation cache's key: what a measurement depends on and nothing else. The same
cluster and workload read from another path (relative or absolute) hit the same entry;
a change of the router's code does not read rates the old router reached."""

from __future__ import annotations

from pathlib import Path

import pytest

from coordinator.sim import load_workload, saturation
from coordinator.sim.saturation import cache_key
from hive.config import load_cluster_config

ROOT = Path(__file__).resolve().parent.parent
WORKLOADS = ROOT / "benchmarks" / "workloads"


def test_the_key_does_not_depend_on_where_the_files_lie(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    relative = (
        load_cluster_config("benchmarks/workloads/cluster20.yaml"),
        load_workload("benchmarks/workloads/chat20.yaml"),
    )
    absolute = (
        load_cluster_config(str(WORKLOADS / "cluster20.yaml")),
        load_workload(str(WORKLOADS / "chat20.yaml")),
    )
    assert relative[1].catalog.source != absolute[1].catalog.source
    assert cache_key(*relative, 3, 0.3) == cache_key(*absolute, 3, 0.3)
    # What the measurement depends on still changes it.
    assert cache_key(*relative, 3, 0.3) != cache_key(*relative, 4, 0.3)
    assert cache_key(*relative, 3, 0.3) != cache_key(*relative, 3, 0.0)


def test_the_key_changes_with_the_code_the_measurement_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = load_cluster_config(str(WORKLOADS / "cluster20.yaml"))
    workload = load_workload(str(WORKLOADS / "chat20.yaml"))
    before = cache_key(cluster, workload, 3, 0.3)
    assert saturation.code_digest() == saturation.code_digest()
    monkeypatch.setattr(saturation, "code_digest", lambda: "another router")
    assert cache_key(cluster, workload, 3, 0.3) != before
    # The digest covers the router's source files.
    assert (ROOT / "coordinator" / "routing" / "router.py").exists()
    assert "coordinator/routing" in saturation.CODE
