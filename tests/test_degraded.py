"""A node whose every Ollama endpoint is unhealthy is *degraded* (issue 17, item 2).

Its agent heartbeats, so its liveness is healthy, but the router filters out all of its
endpoints: it silently gets no work. The coordinator's status, `hive status` (table and
--json), the gateway's /health and REST cluster status, the metrics and the Prometheus
alert say so, and it clears by itself when an endpoint answers again. A node with one
endpoint down and another up stays healthy, the down one visible.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from coordinator.optimizer.detectors import NODE_DEGRADED, node_degraded
from coordinator.optimizer.history import History
from coordinator.registry import NodeState, Registry
from coordinator.routing.snapshot import ClusterSnapshot, EndpointView, NodeView
from hive import cli
from hive.cli.dev import DevCluster
from hive.v1 import agent_session_pb2, cluster_pb2, cluster_pb2_grpc, common_pb2
from ollama_emulator.server import OllamaEmulator
from tests.conftest import eventually, fast_cluster, running_dev

ROOT = Path(__file__).resolve().parent.parent
PROMTOOL = shutil.which("promtool")
API = "/api/distributed"
# IRONWOOD, the seed's node with two Ollama endpoints.
NODE = "IRONWOOD"
ENDPOINTS = ("gtx1070", "p4")


async def _status(dev: DevCluster) -> cluster_pb2.GetClusterStatusResponse:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        return await stub.GetClusterStatus(cluster_pb2.GetClusterStatusRequest(), timeout=5)


def _node(status: cluster_pb2.GetClusterStatusResponse, name: str) -> cluster_pb2.NodeStatus:
    return next(n for n in status.nodes if n.info.name == name)


def _endpoint_health(node: cluster_pb2.NodeStatus) -> dict[str, bool]:
    return {e.id: e.healthy for e in node.telemetry.endpoints}


async def _hive_status(dev: DevCluster, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    rc = await asyncio.to_thread(
        cli.main, ["status", *args, "--coordinator", dev.coordinator_address]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


async def _coordinator_metrics(dev: DevCluster) -> str:
    assert dev.coordinator is not None and dev.coordinator.metrics_server is not None
    async with httpx.AsyncClient() as http:
        r = await http.get(dev.coordinator.metrics_server.url, timeout=5)
    assert r.status_code == 200
    return r.text


def _sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{"):
            head, value = line.rsplit(" ", 1)
            got = ",".join(sorted(head[len(name) + 1 : -1].split(",")))
            if got == want:
                return float(value)
    return None


async def _stop(emulator: OllamaEmulator) -> int:
    port = emulator.port
    await emulator.stop()
    return port


async def test_a_node_with_no_healthy_endpoint_is_degraded_everywhere_until_one_recovers(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The optimizer on (findings only), so `hive status` lists its findings too.
    cluster = dataclasses.replace(
        fast_cluster(), optimizer={"interval_seconds": 0.5, "auto_apply": False}
    )
    async with running_dev(cluster=cluster, gateway_port=0, metrics_listen="127.0.0.1:0") as dev:
        assert dev.gateway is not None
        emulators = {e: dev.emulators[f"{NODE}/{e}"] for e in ENDPOINTS}
        async with httpx.AsyncClient(base_url=dev.gateway.url, timeout=10) as http:
            r = await http.get("/health")
            assert r.status_code == 200
            assert r.json()["status"] == "healthy" and r.json()["nodes_degraded"] == []

            # One of two endpoints down: the node stays healthy, the endpoint shows why.
            ports = {"p4": await _stop(emulators["p4"])}

            async def p4_down() -> bool:
                return _endpoint_health(_node(await _status(dev), NODE)) == {
                    "gtx1070": True,
                    "p4": False,
                }

            await eventually(p4_down, what=f"{NODE}/p4 unhealthy in the cluster status")
            status = await _status(dev)
            assert _node(status, NODE).state == common_pb2.NODE_STATE_HEALTHY
            assert status.summary.nodes_degraded == 0 and status.summary.nodes_healthy == 5
            assert (await http.get("/health")).json()["status"] == "healthy"
            table = await _hive_status(dev, capsys)
            assert "p4: unhealthy" in table and "degraded" not in table

            # Both down: degraded in every view.
            ports["gtx1070"] = await _stop(emulators["gtx1070"])

            async def degraded() -> bool:
                return _node(await _status(dev), NODE).state == common_pb2.NODE_STATE_DEGRADED

            await eventually(degraded, what=f"{NODE} degraded in GetClusterStatus")
            status = await _status(dev)
            assert status.summary.nodes_degraded == 1 and status.summary.nodes_healthy == 4
            assert all(e.error for e in _node(status, NODE).telemetry.endpoints)
            assert dev.coordinator is not None
            assert dev.coordinator.registry.get(NODE).state is NodeState.HEALTHY  # liveness

            r = await http.get("/health")
            assert r.status_code == 200, r.text
            assert r.json()["status"] == "degraded"
            assert r.json()["nodes_degraded"] == [NODE] and r.json()["nodes_healthy"] == 4
            r = await http.get(f"{API}/health")
            assert r.json()["status"] == "degraded"
            assert r.json()["nodes"][NODE] == "degraded" and r.json()["nodes_degraded"] == 1
            rest = (await http.get(f"{API}/cluster/status")).json()
            assert rest["summary"]["nodes_degraded"] == 1
            ironwood = next(n for n in rest["nodes"] if n["name"] == NODE)
            assert ironwood["state"] == "degraded"
            assert [e["healthy"] for e in ironwood["endpoints"]] == [False, False]

            as_json = json.loads(await _hive_status(dev, capsys, "--json"))
            states = {n["name"]: n["state"] for n in as_json["nodes"]}  # as the REST API
            assert states[NODE] == "degraded"
            assert states["ACACIA"] == "healthy"
            assert as_json["summary"]["nodes_degraded"] == 1
            table = await _hive_status(dev, capsys)
            assert "degraded" in table and "gtx1070: unhealthy" in table
            assert "4 healthy, 1 degraded" in table
            assert f"{NODE_DEGRADED} {NODE}" in table  # the optimizer's finding

            metrics = await _coordinator_metrics(dev)
            assert _sample(metrics, "hive_node_state", node=NODE, state="degraded") == 1
            assert _sample(metrics, "hive_node_state", node=NODE, state="healthy") == 0
            assert _sample(metrics, "hive_nodes", state="degraded") == 1

            # One endpoint answers again: healthy at its next heartbeat, with no one's help.
            await emulators["gtx1070"].start(host="127.0.0.1", port=ports["gtx1070"])

            async def recovered() -> bool:
                return _node(await _status(dev), NODE).state == common_pb2.NODE_STATE_HEALTHY

            await eventually(recovered, what=f"{NODE} healthy again")
            status = await _status(dev)
            assert status.summary.nodes_degraded == 0 and status.summary.nodes_healthy == 5
            assert _endpoint_health(_node(status, NODE)) == {"gtx1070": True, "p4": False}
            r = await http.get("/health")
            assert r.json()["status"] == "healthy" and r.json()["nodes_degraded"] == []
            assert (await http.get(f"{API}/health")).json()["nodes"][NODE] == "healthy"
            as_json = json.loads(await _hive_status(dev, capsys, "--json"))
            assert {n["name"]: n["state"] for n in as_json["nodes"]}[NODE] == "healthy"
            metrics = await _coordinator_metrics(dev)
            assert _sample(metrics, "hive_node_state", node=NODE, state="degraded") == 0
            await emulators["p4"].start(host="127.0.0.1", port=ports["p4"])


async def test_watchers_see_a_node_turn_degraded_and_back(dev: DevCluster) -> None:
    """WatchCluster (the dashboard's live feed) gets a node_state_changed each way."""
    emulator = dev.emulators["ACACIA/gpu0"]  # ACACIA's only endpoint
    seen: list[int] = []

    async def watch() -> None:
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            async for event in stub.WatchCluster(cluster_pb2.WatchClusterRequest()):
                if event.WhichOneof("event") == "node_state_changed":
                    if event.node_state_changed.info.name == "ACACIA":
                        seen.append(event.node_state_changed.state)

    watcher = asyncio.create_task(watch())
    try:
        await asyncio.sleep(0.2)  # let the subscription open before the change
        port = await _stop(emulator)
        await eventually(
            lambda: common_pb2.NODE_STATE_DEGRADED in seen, what="a degraded event for ACACIA"
        )
        await emulator.start(host="127.0.0.1", port=port)
        await eventually(
            lambda: seen[-1] == common_pb2.NODE_STATE_HEALTHY, what="ACACIA healthy again"
        )
    finally:
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher


# --- the registry's rule, without a cluster ---------------------------------------------


def _registry() -> tuple[Registry, list[float]]:
    now = [0.0]
    return (
        Registry(lambda: now[0], lambda: 1e9 + now[0], suspect_after=1.0, lost_after=2.0),
        now,
    )


def _register(registry: Registry, name: str, endpoints: tuple[str, ...]) -> Any:
    node = common_pb2.NodeInfo(
        name=name,
        agent_address="127.0.0.1:1",
        endpoints=[common_pb2.OllamaEndpoint(id=e, num_parallel=1) for e in endpoints],
    )
    return registry.attach(agent_session_pb2.Register(node=node), "test")


def _beat(**healthy: bool) -> agent_session_pb2.Heartbeat:
    return agent_session_pb2.Heartbeat(
        telemetry=common_pb2.NodeTelemetry(
            endpoints=[
                common_pb2.EndpointTelemetry(id=e, healthy=h, error="" if h else "down")
                for e, h in healthy.items()
            ]
        )
    )


async def test_degraded_is_every_endpoint_unhealthy_and_yields_to_liveness() -> None:
    registry, now = _registry()
    record = _register(registry, "A", ("e1", "e2"))
    bare = _register(registry, "B", ())
    # No sample yet: nothing is known against the endpoints.
    assert not record.degraded and registry.status(record).state == common_pb2.NODE_STATE_HEALTHY
    registry.heartbeat(record, _beat(e1=False))  # e2 not sampled
    assert not record.degraded
    registry.heartbeat(record, _beat(e1=False, e2=True))
    assert not record.degraded and [e.id for e in record.unhealthy_endpoints()] == ["e1"]
    registry.heartbeat(record, _beat(e1=False, e2=False))
    assert record.degraded and record.reported_state == "degraded"
    assert registry.status(record).state == common_pb2.NODE_STATE_DEGRADED
    registry.heartbeat(bare, _beat())
    summary = registry.summary()
    assert (summary.nodes_total, summary.nodes_healthy, summary.nodes_degraded) == (2, 1, 1)
    # Late heartbeats: suspect says more than degraded (and then lost).
    now[0] = 1.5
    registry.check_liveness()
    assert registry.status(record).state == common_pb2.NODE_STATE_SUSPECT
    assert record.reported_state == "suspect" and registry.summary().nodes_degraded == 0
    registry.heartbeat(record, _beat(e1=True, e2=False))
    assert registry.status(record).state == common_pb2.NODE_STATE_HEALTHY


def test_a_task_event_counts_as_hearing_from_the_node_when_heartbeats_are_late() -> None:
    # On a congested link the heartbeats queue behind a task's stream: the stream's events
    # prove the agent alive (a fault test once saw a streaming node called LOST). Silence
    # of both still loses it.
    registry, now = _registry()
    record = _register(registry, "A", ("e1",))
    now[0] = 1.5
    registry.check_liveness()
    assert record.state is NodeState.SUSPECT
    registry.heard(record)  # a chunk of a running task arrived
    assert record.state is NodeState.HEALTHY
    now[0] = 3.0  # 3 s without a heartbeat, 1.5 s after the chunk
    registry.check_liveness()
    assert record.state is NodeState.SUSPECT
    registry.heard(record)
    now[0] = 4.9
    registry.check_liveness()
    assert record.state is NodeState.SUSPECT
    now[0] = 5.1  # 2.1 s of silence
    registry.check_liveness()
    assert record.state is NodeState.LOST
    registry.heard(record)  # a straggler of a lost node's stream changes nothing
    assert record.state is NodeState.LOST


def _endpoint(node: str, id: str, healthy: bool) -> EndpointView:
    return EndpointView(node, id, ("GPU",), 1, 1, 8 << 30, 0, {"m": 1 << 30}, healthy=healthy)


def test_node_degraded_finding_names_the_node_and_is_critical_when_nothing_serves() -> None:
    degraded = NodeView("A", endpoints=(_endpoint("A", "e1", False), _endpoint("A", "e2", False)))
    partial = NodeView("B", endpoints=(_endpoint("B", "e1", False), _endpoint("B", "e2", True)))
    lost = NodeView("C", state="lost", endpoints=(_endpoint("C", "e1", False),))
    history = History()
    (finding,) = node_degraded(history, ClusterSnapshot((degraded, partial, lost)), 5.0, None, 60)  # type: ignore[arg-type]
    assert (finding.kind, finding.subject, finding.severity) == (NODE_DEGRADED, "A", "warning")
    assert "e1, e2" in finding.evidence
    (alone,) = node_degraded(history, ClusterSnapshot((degraded, lost)), 5.0, None, 60)  # type: ignore[arg-type]
    assert alone.severity == "critical"
    assert node_degraded(history, ClusterSnapshot((partial,)), 5.0, None, 60) == []  # type: ignore[arg-type]


@pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus)")
def test_the_node_degraded_alert_fires_after_two_minutes_and_clears() -> None:
    """deploy/prometheus/tests/hive.rules.test.yml: WALNUT degraded for 5 minutes fires
    HiveNodeDegraded after its `for: 2m`, not before, and not for a shorter blip or for
    a node with one endpoint of two down."""
    tests = ROOT / "deploy/prometheus/tests/hive.rules.test.yml"
    assert "alertname: HiveNodeDegraded" in tests.read_text()
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
