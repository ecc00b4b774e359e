"""A workload's token distributions take only the parameters they read: a fixed answer
length written as ``median`` (which only lognormal reads) used to run silently at the
default 256 tokens."""

from __future__ import annotations

from typing import Any

import pytest

from coordinator.sim import parse_workload
from coordinator.sim.workload import PARAMETERS
from hive.config import ConfigError


def workload(output: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "dists",
        "seed": 1,
        "arrival": {"offered_load": 0.5},
        "tasks": 10,
        "task_types": {"inference": 1},
        "models": {"default": {"llama3.2:3b": 1}},
        "tokens": {"default": {"output": output}},
    }


def test_a_parameter_the_distribution_does_not_read_is_refused_with_the_ones_it_takes() -> None:
    with pytest.raises(ConfigError) as err:
        parse_workload(workload({"dist": "fixed", "median": 64}), "w.yaml")
    assert err.value.key == "tokens.default.output.median"
    assert "dist fixed" in err.value.reason and "value" in err.value.reason
    with pytest.raises(ConfigError, match="alpha"):
        parse_workload(workload({"dist": "lognormal", "median": 300, "alpha": 2}), "w.yaml")


@pytest.mark.parametrize("dist", sorted(PARAMETERS))
def test_every_distribution_takes_its_own_parameters(dist: str) -> None:
    values = {"median": 300, "sigma": 0.5, "min": 50, "alpha": 1.5, "max": 900, "value": 64}
    spec = {"dist": dist, **{k: values[k] for k in PARAMETERS[dist]}}
    parsed = parse_workload(workload(spec), "w.yaml").tokens["default"].output
    assert parsed.dist == dist and parsed.max == 900
    if dist == "fixed":
        assert parsed.value == 64 and parsed.mean() == 64
