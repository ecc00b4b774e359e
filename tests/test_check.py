"""`hive check` against a running cluster: all pass on a healthy one, a stopped agent fails
the connectivity check with its name and state."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from hive.cli.check import CheckResult, Target, render_report
from hive.cli.dev import DevCluster
from tests.conftest import eventually

HIVE = str(Path(sys.executable).with_name("hive"))


@pytest.fixture
async def cluster(full_dev: DevCluster) -> DevCluster:
    return full_dev


async def hive_check(dev: DevCluster, *args: str) -> tuple[int, str]:
    """Run the real `hive check` command in a subprocess against ``dev``."""
    assert dev.gateway is not None and dev.coordinator is not None
    assert dev.coordinator.metrics_server is not None
    proc = await asyncio.create_subprocess_exec(
        HIVE,
        "check",
        "--coordinator",
        dev.coordinator_address,
        "--gateway",
        dev.gateway.url,
        "--metrics-url",
        dev.coordinator.metrics_server.url,
        "--timeout",
        "30",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def test_hive_check_passes_on_a_healthy_cluster_and_writes_the_report(
    cluster: DevCluster, tmp_path: Path
) -> None:
    report = tmp_path / "report.md"
    code, out = await hive_check(cluster, "--output", str(report))
    lines = {line.split()[1]: line for line in out.splitlines() if line[:4] in ("PASS", "FAIL")}
    names = ["health", "connectivity", "workflow", "load_balancing", "performance", "multi_gpu"]
    assert sorted(lines) == sorted(names), out
    failed = [n for n, line in lines.items() if line.startswith("FAIL")]
    if failed == ["workflow"]:
        # The workflow engine is another part of the project; until it lands the check
        # must fail naming UNIMPLEMENTED, and everything else must still pass.
        assert "UNIMPLEMENTED" in lines["workflow"], out
        assert code == 1
    else:
        assert failed == [] and code == 0, out
    text = report.read_text()
    assert text.startswith("# Hive cluster check")
    for name in names:
        assert f"| {name} |" in text and f"## {name}:" in text
    assert "spread over" in lines["load_balancing"]
    assert "GPUs hold models under load" in lines["multi_gpu"]


async def test_a_stopped_agent_fails_connectivity_naming_the_node(cluster: DevCluster) -> None:
    coordinator = cluster.coordinator
    assert coordinator is not None
    await cluster.stop_node("ACACIA")
    await eventually(
        lambda: coordinator.registry.get("ACACIA").state.value == "lost",
        timeout=5,
        what="ACACIA lost",
    )
    code, out = await hive_check(cluster, "--single-test", "connectivity")
    assert code == 1, out
    assert "FAIL  connectivity" in out
    assert "node ACACIA is lost (last heartbeat" in out
    # The other checks do not depend on ACACIA: load still spreads over the other four.
    code, out = await hive_check(cluster, "--single-test", "load_balancing")
    assert code == 0, out


def test_report_escapes_table_cells_and_marks_the_verdict() -> None:
    results = [
        CheckResult("health", "pass", "ok", ["coordinator a:1: SERVING"], 0.1),
        CheckResult("workflow", "fail", "SubmitWorkflow answered UNIMPLEMENTED: a|b", [], 0.2),
        CheckResult("load_balancing", "skip", "only 1 healthy node serves m", [], 0.0),
    ]
    text = render_report(Target(coordinator="a:1", gateway=None), results)
    assert "**FAILED** (2/3 checks did not fail)" in text
    assert "UNIMPLEMENTED: a\\|b" in text
    assert "| load_balancing | SKIP |" in text
    assert "- gateway: `not checked`" in text
