"""The optimizer in a running cluster: findings through the API and `hive status`,
`OptimizeCluster` dry run vs apply, and clean cancellation of its loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import grpc
import httpx
import pytest

from coordinator.server import Coordinator
from hive import cli
from hive.cli.dev import DevCluster
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, inference_pb2, inference_pb2_grpc
from tests.conftest import eventually, fast_cluster

# Short intervals so a backlog shows within a second or two; the periodic pass only
# records and finds (auto_apply off) so the test decides when a plan is applied.
OPTIMIZER = {
    "interval_seconds": 0.2,
    "window_seconds": 60,
    "auto_apply": False,
    "detectors": {"queue_window_seconds": 10, "queue_min_depth": 5},
    "pins": {"models": {"ACACIA/gpu0": ["phi3:mini"]}},
}


@pytest.fixture
async def slow_dev() -> AsyncIterator[DevCluster]:
    """The seed cluster with emulated Ollama at a fifth of real time (so queues form)."""
    cluster = dataclasses.replace(fast_cluster(), optimizer=OPTIMIZER)
    dev = DevCluster(cluster, coordinator_listen="127.0.0.1:0", gateway_port=None, time_scale=0.2)
    try:
        await dev.start()
        await dev.wait_registered(timeout=10)
        yield dev
    finally:
        await dev.stop()


async def _generate(stub: inference_pb2_grpc.InferenceServiceStub, i: int) -> None:
    request = inference_pb2.GenerateRequest(
        model="qwen2.5-coder:14b",
        prompt=f"review change {i}",
        task_type=common_pb2.TASK_TYPE_CODE_REVIEW,
    )
    request.options.update({"num_predict": 120, "ignore_eos": True})
    async for _ in stub.Generate(request, timeout=120):
        pass


async def _loaded(dev: DevCluster) -> dict[str, set[str]]:
    out = {}
    async with httpx.AsyncClient() as client:
        for key, emulator in dev.emulators.items():
            r = await client.get(f"{emulator.url}/api/ps")
            out[key] = {m["name"] for m in r.json()["models"]}
    return out


async def test_overload_is_found_shown_planned_and_applied(
    slow_dev: DevCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    dev = slow_dev
    coordinator = dev.coordinator
    assert coordinator is not None and coordinator.optimizer is not None
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        cluster = cluster_pb2_grpc.ClusterServiceStub(channel)
        inference = inference_pb2_grpc.InferenceServiceStub(channel)
        # Overload code review: 80 tasks for a model only two endpoints have.
        load = [asyncio.create_task(_generate(inference, i)) for i in range(80)]
        try:
            found: list[cluster_pb2.Finding] = []

            async def backlog() -> bool:
                metrics = await cluster.GetPerformanceMetrics(
                    cluster_pb2.GetPerformanceMetricsRequest()
                )
                found[:] = [f for f in metrics.findings if f.kind == "queue_backlog"]
                return bool(found)

            await eventually(backlog, timeout=30, what="a queue_backlog finding")
            assert found[0].subject == "code_review"
            assert "qwen2.5-coder:14b" in found[0].evidence
            assert found[0].severity in (
                cluster_pb2.SEVERITY_WARNING,
                cluster_pb2.SEVERITY_CRITICAL,
            )

            # `hive status` shows it under the cluster table.
            capsys.readouterr()
            rc = await asyncio.to_thread(
                cli.main, ["status", "--coordinator", dev.coordinator_address]
            )
            out = capsys.readouterr().out
            assert rc == 0 and "queue_backlog" in out and "code_review" in out

            # Dry run: a plan (the pinned phi3:mini warm-up at least), nothing changed.
            scheduler = coordinator.dispatcher.scheduler
            snapshot = coordinator.dispatcher.snapshot()
            limits = {ep.key: scheduler.limit(ep) for ep in snapshot.endpoints()}
            before = await _loaded(dev)
            plan = await cluster.OptimizeCluster(cluster_pb2.OptimizeClusterRequest(dry_run=True))
            assert not plan.applied
            warm = [a for a in plan.actions if a.kind == "warm_model" and a.node == "ACACIA"]
            assert warm and warm[0].model == "phi3:mini" and warm[0].reason
            assert any(f.kind == "queue_backlog" for f in plan.findings)
            await asyncio.sleep(0.5)  # long enough for a wrongly sent warm-up to land
            assert {ep.key: scheduler.limit(ep) for ep in snapshot.endpoints()} == limits
            assert (await _loaded(dev))["ACACIA/gpu0"] == before["ACACIA/gpu0"]
            assert "phi3:mini" not in before["ACACIA/gpu0"]
            assert not coordinator.optimizer.optimizer.changes

            # Apply: the warm-up reaches ACACIA's Ollama and is logged in the API.
            applied = await cluster.OptimizeCluster(cluster_pb2.OptimizeClusterRequest())
            assert applied.applied and any(a.model == "phi3:mini" for a in applied.actions)

            async def phi3_loaded() -> bool:
                return "phi3:mini" in (await _loaded(dev))["ACACIA/gpu0"]

            await eventually(phi3_loaded, timeout=10, what="phi3:mini loaded on ACACIA")
            metrics = await cluster.GetPerformanceMetrics(
                cluster_pb2.GetPerformanceMetricsRequest()
            )
            assert any(c.model == "phi3:mini" and c.ok and c.reason for c in metrics.recent_changes)

            # The metrics side, once some reviews finished: throughput, latency, per node
            # and per model.
            async def some_done() -> bool:
                m = await cluster.GetPerformanceMetrics(cluster_pb2.GetPerformanceMetricsRequest())
                return m.tasks_succeeded >= 3

            await eventually(some_done, timeout=20, what="three reviews done")
            metrics = await cluster.GetPerformanceMetrics(
                cluster_pb2.GetPerformanceMetricsRequest()
            )
        finally:
            for task in load:
                task.cancel()
            await asyncio.gather(*load, return_exceptions=True)
        assert metrics.tokens_per_second > 0 and metrics.tasks_per_second > 0
        assert metrics.completion_seconds.count == metrics.tasks_succeeded
        assert metrics.completion_seconds.p95 >= metrics.completion_seconds.p50 > 0
        assert {n.node for n in metrics.nodes} == {
            "IRONWOOD",
            "ROSEWOOD",
            "WALNUT",
            "ACACIA",
            "FORSTEINET",
        }
        review = next(m for m in metrics.models if m.model == "qwen2.5-coder:14b")
        assert review.tasks_succeeded > 0 and review.forecast_tasks_per_second > 0


async def test_optimizer_loop_is_cancelled_on_stop(slow_dev: DevCluster) -> None:
    coordinator = slow_dev.coordinator
    assert coordinator is not None
    task = coordinator._optimizing
    assert task is not None and not task.done()
    await coordinator.stop(grace=0)
    assert task.cancelled()


async def test_disabled_optimizer_answers_failed_precondition() -> None:
    cluster = dataclasses.replace(fast_cluster(), optimizer={"enabled": False})
    dev = DevCluster(cluster, coordinator_listen="127.0.0.1:0", gateway_port=None, time_scale=0)
    try:
        await dev.start()
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = cluster_pb2_grpc.ClusterServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.OptimizeCluster(cluster_pb2.OptimizeClusterRequest(dry_run=True))
            assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert "optimizer.enabled" in (err.value.details() or "")
    finally:
        await dev.stop()


async def test_the_live_optimizer_records_predictions_and_calibrates_weights() -> None:
    """Each finished task leaves the router's predicted and the measured seconds in the
    optimizer's history (the emulator reports modelled durations even at time scale 0),
    and a pass with calibration on sets the weight from their ratio, within its bounds,
    and the router uses it. (The emulator and the router share one hardware model, so the
    service ratio is about 1; the bound 0.5 makes the change certain.)"""
    optimizer = {
        **OPTIMIZER,
        "weights": {"enabled": True, "min_samples": 3, "service_min": 0.1, "service_max": 0.5},
    }
    cluster = dataclasses.replace(fast_cluster(), optimizer=optimizer)
    dev = DevCluster(cluster, coordinator_listen="127.0.0.1:0", gateway_port=None, time_scale=0)
    try:
        await dev.start()
        await dev.wait_registered(timeout=10)
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            for i in range(4):
                await _generate(stub, i)
        coordinator = dev.coordinator
        assert coordinator is not None and coordinator.optimizer is not None
        samples = list(coordinator.optimizer.history.tasks)
        assert len(samples) == 4
        assert all(s.predicted_service_seconds > 0 and s.service_seconds > 0 for s in samples)
        assert all(s.predicted_wait_seconds >= 0 and s.wait_seconds >= 0 for s in samples)
        result = coordinator.optimizer.run_pass(dry_run=False)
        changes = {c.action.weight: c.action for c in result.applied if c.action.weight}
        ratio = sum(s.service_seconds for s in samples) / sum(
            s.predicted_service_seconds for s in samples
        )
        assert ratio > 0.5 and changes["service"].value == 0.5
        assert f"ratio {ratio:.2f}" in changes["service"].reason
        weights = coordinator.dispatcher.scheduler.config.weights
        assert weights.service == 0.5
        # What it applied is in the state: a restarted coordinator (or, on PostgreSQL, the
        # next leader) routes with the same weight from its first task.
        live = coordinator.optimizer
        live.optimizer.placement = {("ACACIA", "gpu0"): frozenset({"phi3:mini"})}
        live.applied_limits[("WALNUT", "gpu0")] = 3
        assert live.on_applied is not None  # what run_pass calls after applying
        live.on_applied(live.state_document())
        port = coordinator.port
        await coordinator.stop(grace=0)
        restarted = Coordinator(dev.cluster)
        dev.coordinator = restarted  # the cluster stops it
        await restarted.start(f"127.0.0.1:{port}")
        async with asyncio.timeout(10):  # on PostgreSQL: once it holds the lease
            await restarted.leading.wait()
        assert restarted.dispatcher.scheduler.config.weights.service == 0.5
        assert restarted.optimizer is not None
        placement = {("ACACIA", "gpu0"): frozenset({"phi3:mini"})}
        assert restarted.optimizer.optimizer.placement == placement
        assert restarted.dispatcher.protected == placement
        assert restarted.dispatcher.scheduler.limit_override("WALNUT", "gpu0") == 3
    finally:
        await dev.stop()
