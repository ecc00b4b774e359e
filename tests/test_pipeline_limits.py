"""Pipeline templates of any shape load or are refused quickly, with an error naming the
file and the stage, never a crash (issue 17, item 4: a 10,000-stage chain in
HIVE_PIPELINES, listed dependents first, crashed the coordinator with RecursionError; in
order it took 24 s)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from coordinator.workflows import templates
from coordinator.workflows.templates import PipelineCatalog, parse_pipeline
from hive.config import ConfigError

HIVE = str(Path(sys.executable).with_name("hive"))
LONG = 10_000


def _stage(name: str, *deps: str, prompt: str = "{{requirements}}") -> dict[str, Any]:
    stage: dict[str, Any] = {"name": name, "type": "code_generation", "model": "m"}
    stage["prompt"] = prompt
    if deps:
        stage["depends_on"] = list(deps)
    return stage


def _chain(n: int, *, dependents_first: bool) -> dict[str, Any]:
    """s0 <- s1 <- ... <- s{n-1}, each prompt reading its predecessor's output."""
    stages = [_stage("s0")] + [
        _stage(f"s{i}", f"s{i - 1}", prompt=f"{{{{requirements}}}} {{{{s{i - 1}}}}}")
        for i in range(1, n)
    ]
    return {"name": "long", "stages": stages[::-1] if dependents_first else stages}


def _dump(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(json.dumps(data, indent=1))  # YAML too, and quick to write
    return path


def test_a_10000_stage_chain_in_hive_pipelines_is_refused_naming_file_and_stage(
    tmp_path: Path,
) -> None:
    """Through PipelineCatalog.load, as the coordinator reads HIVE_PIPELINES."""
    path = _dump(tmp_path / "long.yaml", _chain(LONG, dependents_first=True))
    with pytest.raises(ConfigError) as caught:
        PipelineCatalog.load([tmp_path])
    error = caught.value
    assert error.source == str(path)
    # The first stage past the limit, by position and name.
    assert error.key == f"stages[{templates.MAX_STAGES}]"
    assert f"s{LONG - 1 - templates.MAX_STAGES}" in error.reason
    assert f"at most {templates.MAX_STAGES} stages" in error.reason


@pytest.mark.parametrize("dependents_first", [True, False], ids=["dependents-first", "in-order"])
def test_the_checks_are_linear_a_10000_stage_chain_validates_in_under_a_second(
    monkeypatch: pytest.MonkeyPatch, dependents_first: bool
) -> None:
    """With the stage limit lifted, the cycle, reference and loop checks of a 10,000-stage
    chain (both orders) take well under a second, and no recursion is involved; so do the
    engine's questions about the DAG (what is downstream of a stage, what upstream)."""
    monkeypatch.setattr(templates, "MAX_STAGES", LONG, raising=False)
    data = _chain(LONG, dependents_first=dependents_first)
    started = time.process_time()  # CPU time: other processes on the machine do not count
    pipeline = parse_pipeline(data, "long.yaml")
    assert pipeline.descendants("s0") == {f"s{i}" for i in range(1, LONG)}
    assert pipeline.ancestors(f"s{LONG - 1}") == {f"s{i}" for i in range(LONG - 1)}
    assert pipeline.stage(f"s{LONG // 2}").depends_on == (f"s{LONG // 2 - 1}",)
    elapsed = time.process_time() - started
    assert elapsed < 1.0, f"{elapsed:.2f} s of CPU"


def test_a_long_cycle_names_its_stages_and_the_stage_at_fault(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 10,000-stage ring: refused (not a RecursionError), naming the stages in the cycle
    in dependency order and, as the key, the stage where the report starts."""
    monkeypatch.setattr(templates, "MAX_STAGES", LONG, raising=False)
    data = _chain(LONG, dependents_first=True)
    data["stages"][-1]["depends_on"] = [f"s{LONG - 1}"]  # s0 now depends on the last
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "ring.yaml")
    error = caught.value
    assert error.source == "ring.yaml"
    assert error.reason.startswith("dependency cycle: ")
    cycle = error.reason.removeprefix("dependency cycle: ").split(" (")[0].split(" -> ")
    assert len(cycle) == LONG + 1 and cycle[0] == cycle[-1]
    assert set(cycle) == {f"s{i}" for i in range(LONG)}
    for stage, dep in itertools.pairwise(cycle):  # each depends on the next
        assert int(stage[1:]) == (int(dep[1:]) + 1) % LONG
    position = next(i for i, s in enumerate(data["stages"]) if s["name"] == cycle[0])
    assert error.key == f"stages[{position}].depends_on"


def test_a_small_cycle_names_only_the_stages_in_it() -> None:
    data = {
        "name": "loop",
        "stages": [
            _stage("plan"),
            _stage("code", "plan", "review"),
            _stage("review", "test"),
            _stage("test", "code"),
            _stage("docs", "test"),
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "loop.yaml")
    reason = caught.value.reason
    assert reason.startswith("dependency cycle: code -> review -> test -> code"), reason
    assert caught.value.key == "stages[1].depends_on"


def test_a_stage_that_depends_on_itself_is_a_cycle() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_pipeline({"name": "me", "stages": [_stage("a", "a")]}, "me.yaml")
    assert caught.value.reason.startswith("dependency cycle: a -> a")
    assert caught.value.key == "stages[0].depends_on"


def test_an_unknown_dependency_names_the_stage_and_the_name() -> None:
    data = {"name": "typo", "stages": [_stage("plan"), _stage("code", "plna")]}
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "typo.yaml")
    assert caught.value.key == "stages[1].depends_on"
    assert "unknown stage 'plna'" in caught.value.reason


def test_a_placeholder_of_a_stage_not_upstream_is_refused() -> None:
    """The reference check (now a bit test) still tells upstream from elsewhere."""
    data = {
        "name": "side",
        "stages": [
            _stage("a"),
            _stage("b", "a", prompt="{{a}}"),
            _stage("c", "a", prompt="{{b}}"),
        ],
    }
    with pytest.raises(ConfigError) as caught:
        parse_pipeline(data, "side.yaml")
    assert caught.value.key == "stages[2].prompt"
    assert "unknown placeholder {{b}}" in caught.value.reason
    assert "known here: a, feedback, language, name, requirements" in caught.value.reason


def test_the_coordinator_refuses_a_long_chain_with_a_configuration_error(tmp_path: Path) -> None:
    """The operator's view: `hive coordinator` with HIVE_PIPELINES naming a directory that
    holds the chain exits 2 with one line naming the file and the stage, no traceback."""
    pipelines = tmp_path / "pipelines"
    pipelines.mkdir()
    path = _dump(pipelines / "long.yaml", _chain(LONG, dependents_first=True))
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(
        yaml.safe_dump({"coordinator": {"listen": "127.0.0.1:0", "metrics_listen": "off"}})
    )
    result = subprocess.run(
        [HIVE, "coordinator", "--insecure", "--config", str(cluster)],
        env={**os.environ, "HIVE_PIPELINES": str(pipelines)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert f"hive: configuration error: {path}: stages[" in result.stderr
