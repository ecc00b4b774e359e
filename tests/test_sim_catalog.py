"""The simulator refuses to guess: unknown hardware and models, shared GPUs, models with
no home and loads that are no load each get a clear answer naming the file and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.sim import Simulation, parse_workload, simulate
from coordinator.sim.cli import main
from coordinator.sim.cluster import Request, SimEndpoint
from hive import hardware
from hive.config import ConfigError, parse_cluster_config

RTX_4090 = "NVIDIA GeForce RTX 4090"
GTX_1080 = "NVIDIA GeForce GTX 1080"
QWEN = "qwen2.5-coder:7b"

WORKLOAD: dict[str, Any] = {
    "name": "catalog",
    "seed": 5,
    "arrival": {"offered_load": 0.5},
    "tasks": 40,
    "task_types": {"inference": 1},
    "models": {"default": {QWEN: 1}},
    "tokens": {"default": {"output": {"dist": "fixed", "value": 50}}},
}


def one_node(gpus: list[Any], endpoints: list[dict[str, Any]]) -> dict[str, Any]:
    return {"nodes": [{"name": "solo", "gpus": gpus, "endpoints": endpoints}]}


def endpoint(eid: str, gpus: list[int], models: list[str]) -> dict[str, Any]:
    return {"id": eid, "gpus": gpus, "num_parallel": 2, "models": models}


def write(tmp_path: Path, cluster: dict[str, Any], workload: dict[str, Any]) -> list[str]:
    c, w = tmp_path / "c.yaml", tmp_path / "w.yaml"
    c.write_text(yaml.safe_dump(cluster))
    w.write_text(json.dumps(workload))
    return ["--cluster", str(c), "--workload", str(w)]


# ----- 1. unknown GPUs and models ------------------------------------------------------


def test_a_model_missing_from_the_catalog_is_refused_not_sized_at_4_gb() -> None:
    with pytest.raises(ConfigError) as err:
        parse_workload({**WORKLOAD, "models": {"inference": {"llama3:70b": 1}}}, "w.yaml")
    assert err.value.source == "w.yaml"
    assert err.value.key == "models.inference.llama3:70b"
    assert "'llama3:70b' is not in the catalog" in err.value.reason
    assert "catalog.models" in err.value.reason
    shifted = {**WORKLOAD, "model_shifts": [{"at_seconds": 9, "models": {"default": {"x:1b": 1}}}]}
    with pytest.raises(ConfigError) as err:
        parse_workload(shifted, "w.yaml")
    assert err.value.key == "model_shifts[0].models.default.x:1b"


def test_an_endpoint_model_missing_from_the_catalog_is_refused() -> None:
    cluster = parse_cluster_config(
        one_node([RTX_4090], [endpoint("e", [0], [QWEN, "mystery:7b"])]), "c.yaml"
    )
    with pytest.raises(ConfigError) as err:
        simulate(cluster, parse_workload(WORKLOAD, "w.yaml"), "hive")
    assert str(err.value).startswith("c.yaml: nodes[0].endpoints[0].models[1]: ")
    assert "'mystery:7b' is not in the catalog" in str(err.value)


def test_a_gpu_missing_from_the_catalog_is_refused_not_run_at_300_gbs() -> None:
    card: dict[str, Any] = {"name": "NVIDIA GeForce RTX 3090", "memory_gb": 24}
    cluster = parse_cluster_config(
        one_node([RTX_4090, card], [endpoint("a", [0], [QWEN]), endpoint("b", [1], [QWEN])]),
        "c.yaml",
    )
    with pytest.raises(ConfigError) as err:
        simulate(cluster, parse_workload(WORKLOAD, "w.yaml"), "hive")
    assert err.value.source == "c.yaml" and err.value.key == "nodes[0].gpus[1]"
    assert "'NVIDIA GeForce RTX 3090' is not in the catalog" in err.value.reason
    assert "w.yaml" in err.value.reason and "bandwidth_gbs" in err.value.reason
    # With its numbers in the workload's catalog, it runs at its own bandwidth.
    numbers = {"gpus": {card["name"]: {"memory_gb": 24, "bandwidth_gbs": 936}}}
    sim = Simulation(cluster, parse_workload({**WORKLOAD, "catalog": numbers}, "w.yaml"), "hive")
    rtx3090 = hardware.GpuKind(card["name"], "other", 24 * hardware.GIB, 936e9, 0)
    want = hardware.decode_tokens_per_second([rtx3090], hardware.model_kind(QWEN))
    assert sim.endpoints[1].speed(QWEN)[0] == pytest.approx(want)
    # Numbers that contradict the cluster file's are refused too.
    numbers["gpus"][card["name"]]["memory_gb"] = 16
    with pytest.raises(ConfigError) as err:
        simulate(cluster, parse_workload({**WORKLOAD, "catalog": numbers}, "w.yaml"), "hive")
    assert err.value.key == "nodes[0].gpus[1]" and "24 GiB here but 16 GiB" in err.value.reason


def test_a_model_the_workload_gives_numbers_for_is_sized_by_them() -> None:
    spec = {
        **WORKLOAD,
        "models": {"default": {"my-model:1b": 1}},
        "catalog": {"models": {"my-model:1b": {"size_gb": 1.5, "parameters": "1B"}}},
    }
    cluster = parse_cluster_config(
        one_node([GTX_1080], [endpoint("e", [0], ["my-model:1b"])]), "c.yaml"
    )
    sim = Simulation(cluster, parse_workload(spec, "w.yaml"), "hive")
    assert sim.endpoints[0].models == {"my-model:1b": 1_500_000_000}
    assert sim.run().completed == 40
    bad = {**spec, "catalog": {"models": {"my-model:1b": {"size_gb": 1.5}}}}
    with pytest.raises(ConfigError) as err:
        parse_workload(bad, "w.yaml")
    assert err.value.key == "catalog.models.my-model:1b.parameters"


# ----- 2. endpoints sharing a GPU -------------------------------------------------------


def shared_4090() -> list[SimEndpoint]:
    models = [QWEN, "qwen2.5-coder:14b", "deepseek-coder-v2:16b", "starcoder2:15b"]
    cluster = parse_cluster_config(
        one_node([RTX_4090], [endpoint("a", [0], models), endpoint("b", [0], models)]), "c.yaml"
    )
    return Simulation(cluster, parse_workload(WORKLOAD, "w.yaml"), "hive").endpoints


def test_endpoints_on_one_gpu_share_its_memory() -> None:
    a, b = shared_4090()
    for i, m in enumerate(("qwen2.5-coder:14b", "deepseek-coder-v2:16b")):  # 17.9 GB
        a.submit(Request(f"a{i}", 1, m, 10, 10, 0.0))
    a.step()
    assert set(a.runners) == {"qwen2.5-coder:14b", "deepseek-coder-v2:16b"}
    b.submit(Request("b0", 1, "starcoder2:15b", 10, 10, 0.0))  # 9.1 GB more: over 24 GiB
    b.step()
    assert not b.runners and b.assigned == 1  # it waits for the memory a holds
    assert b.vram_used() == a.vram_used() == 17_900_000_000


def test_endpoints_on_one_gpu_share_its_bandwidth() -> None:
    a, b = shared_4090()
    for e in (a, b):
        e.submit(Request(f"t-{e.id}", 1, QWEN, 1, 2000, 0.0))
        e.step()
    done: list[Request] = []
    while len(done) < 2:
        now = min(a.next_event(), b.next_event())
        a.advance(now)
        b.advance(now)
        for e in (a, b):
            done.extend(e.step())
    for q in done:  # both decode the whole time, each at half the GPU's speed
        assert q.finished_at - q.decode_started == pytest.approx(2 * q.decode_single, rel=1e-6)


def test_endpoints_sharing_some_but_not_all_gpus_are_refused() -> None:
    cluster = parse_cluster_config(
        one_node([RTX_4090, RTX_4090], [endpoint("a", [0, 1], [QWEN]), endpoint("b", [1], [QWEN])]),
        "c.yaml",
    )
    with pytest.raises(ConfigError) as err:
        simulate(cluster, parse_workload(WORKLOAD, "w.yaml"), "hive")
    assert err.value.key == "nodes[0].endpoints[0].gpus"
    assert "shares GPU 1 with endpoint 'b' but not all its GPUs" in err.value.reason


# ----- 3. models with no home -----------------------------------------------------------


def test_tasks_whose_model_runs_nowhere_fail_visibly_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # the table's every column, unabridged
    cluster = one_node([RTX_4090], [endpoint("e", [0], [QWEN])])
    workload = {**WORKLOAD, "models": {"default": {QWEN: 1, "phi3:mini": 1}}}
    args = write(tmp_path, cluster, workload)
    assert main([*args, "--policy", "hive"]) == 1
    out, err = capsys.readouterr()
    header = next(line for line in out.splitlines() if "policy" in line)
    assert "│ failed │ unfinished" in header or "┃ failed ┃ unfinished" in header
    assert "w.yaml: models.default.phi3:mini: " in err
    assert "of model 'phi3:mini' could not run anywhere: no endpoint of" in err
    assert main([*args, "--policy", "hive", "--json"]) == 1
    (result,) = json.loads(capsys.readouterr().out)
    assert result["failed"] > 0 and set(result["unroutable"]) == {"phi3:mini"}


# ----- 4. every "capacity 0" case says which -------------------------------------------


def test_an_empty_cluster_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(write(tmp_path, {"nodes": []}, WORKLOAD)) == 2
    assert "c.yaml: nodes: the cluster has no nodes" in capsys.readouterr().err


def test_a_node_without_endpoints_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(write(tmp_path, {"nodes": [{"name": "bare", "gpus": [RTX_4090]}]}, WORKLOAD)) == 2
    assert "c.yaml: nodes[0].endpoints: node 'bare' has no endpoints" in capsys.readouterr().err


def test_a_model_too_big_for_every_gpu_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = {**WORKLOAD, "models": {"default": {"starcoder2:15b": 1}}}
    cluster = one_node([GTX_1080], [endpoint("e", [0], ["starcoder2:15b"])])
    assert main(write(tmp_path, cluster, workload)) == 2
    err = capsys.readouterr().err
    assert "w.yaml: models.default.starcoder2:15b: model 'starcoder2:15b' runs nowhere" in err
    assert "needs 9.1 GB" in err and "nodes[0].endpoints[0] (solo/e), has 8.6 GB" in err


@pytest.mark.parametrize("load", ["-1", "0"])
def test_a_load_that_is_no_load_is_refused(
    load: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = write(tmp_path, one_node([RTX_4090], [endpoint("e", [0], [QWEN])]), WORKLOAD)
    assert main([*args, "--policy", "hive", "--load", load]) == 2
    assert f"hive sim: --load: must be > 0 (a fraction of the cluster's capacity), got {load}" in (
        capsys.readouterr().err
    )
    with pytest.raises(ValueError, match="must be > 0"):
        parse_workload(WORKLOAD, "w.yaml").with_load(float(load))
