"""The router and scheduler driving the real mesh: spread, failover, drain, admission."""

from __future__ import annotations

import asyncio
import collections
import dataclasses

import grpc
import pytest
from rich.console import Console

from hive.cli import render_decision
from hive.cli.dev import DevCluster
from hive.config import ClusterConfig, seed_cluster
from hive.v1 import cluster_pb2, cluster_pb2_grpc, inference_pb2, inference_pb2_grpc
from tests.conftest import eventually, fast_cluster


@dataclasses.dataclass
class Outcome:
    assignments: list[inference_pb2.TaskAssignment]
    results: int
    text: str


async def stream(
    stub: inference_pb2_grpc.InferenceServiceAsyncStub, model: str, prompt: str, tokens: int
) -> Outcome:
    request = inference_pb2.GenerateRequest(model=model, prompt=prompt)
    request.options.update({"num_predict": tokens})
    outcome = Outcome([], 0, "")
    async for event in stub.Generate(request):
        if event.HasField("assigned"):
            outcome.assignments.append(event.assigned)
            outcome.text = ""  # a new attempt starts over
        elif event.HasField("chunk"):
            outcome.text += event.chunk.text
        elif event.HasField("result"):
            outcome.results += 1
    return outcome


async def slow_dev(
    time_scale: float, cluster: ClusterConfig | None = None, **routing: object
) -> DevCluster:
    """``cluster`` (default: the seed's, fast heartbeats) started with emulators at
    ``time_scale`` and registered; ``routing`` overrides sections of its routing."""
    cluster = cluster or fast_cluster()
    if routing:
        cluster = dataclasses.replace(cluster, routing={**cluster.routing, **routing})
    dev = DevCluster(
        cluster, coordinator_listen="127.0.0.1:0", gateway_port=None, time_scale=time_scale
    )
    await dev.start()
    await dev.wait_registered()
    return dev


async def test_tasks_spread_across_endpoints_by_the_router(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        outcomes = await asyncio.gather(
            *(stream(stub, "llama3.1:8b", f"question {i}", 64) for i in range(30))
        )
    placed = collections.Counter(
        (o.assignments[-1].node, o.assignments[-1].endpoint_id) for o in outcomes
    )
    assert all(o.results == 1 for o in outcomes)
    # llama3.1:8b is on all six endpoints; 30 concurrent tasks must not pile onto one.
    assert len(placed) >= 3, placed
    assert max(placed.values()) <= 12, placed


async def test_explain_matches_the_decision(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        outcome = await stream(
            inference_pb2_grpc.InferenceServiceStub(channel), "qwen2.5-coder:14b", "explain", 8
        )
        assigned = outcome.assignments[-1]
        explained = await cluster_pb2_grpc.ClusterServiceStub(channel).ExplainTask(
            cluster_pb2.ExplainTaskRequest(task_id=assigned.task_id)
        )
    decision = explained.decision
    assert (decision.chosen_node, decision.chosen_endpoint_id) == (
        assigned.node,
        assigned.endpoint_id,
    )
    best = decision.candidates[0]
    assert (best.node, best.endpoint_id) == (assigned.node, assigned.endpoint_id)
    assert all(best.total <= c.total for c in decision.candidates)
    names = {c.name for c in best.components}
    assert {"queue_wait", "cold_load", "service", "chain"} <= names
    # qwen2.5-coder:14b exists only on ROSEWOOD and WALNUT: the rest were filtered, with why.
    assert {(c.node) for c in decision.candidates} <= {"ROSEWOOD", "WALNUT"}
    assert any(r.reason == "model_missing" for r in decision.rejected), decision.rejected
    # The size it was priced at: num_predict 8 is below the type's default answer.
    assert (explained.estimated_output_tokens, explained.output_estimate_source) == (
        8,
        "num_predict",
    )
    assert explained.estimated_prompt_tokens == 1  # "explain": about four characters a token
    # `hive explain` shows the same.
    console = Console(record=True, width=200)
    render_decision(explained, console)
    text = console.export_text()
    assert f"-> {assigned.node}/{assigned.endpoint_id}" in text
    assert "priced as 1 prompt tokens and 8 answer tokens (the request's num_predict cap)" in text
    # An embedding is priced by its input alone.
    embedding = cluster_pb2.ExplainTaskResponse(
        task_id="t-1", estimated_prompt_tokens=12, output_estimate_source="embedding"
    )
    console = Console(record=True, width=200)
    render_decision(embedding, console)
    assert "priced as 12 prompt tokens (an embedding)" in console.export_text()


async def test_killing_an_agent_mid_task_reruns_its_tasks_elsewhere_exactly_once() -> None:
    dev = await slow_dev(0.01)
    try:
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            tasks = [
                asyncio.create_task(stream(stub, "llama3.1:8b", f"long {i}", 3000))
                for i in range(12)
            ]
            registry = dev.coordinator.registry  # type: ignore[union-attr]
            await eventually(lambda: registry.running["ROSEWOOD"] > 0, what="work on ROSEWOOD")
            await dev.stop_node("ROSEWOOD")
            outcomes = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        moved = [o for o in outcomes if o.assignments[0].node == "ROSEWOOD"]
        assert moved, "some tasks were running on ROSEWOOD"
        for o in moved:
            assert len(o.assignments) == 2
            assert o.assignments[-1].node != "ROSEWOOD"
            assert o.assignments[-1].attempt == 2
        # Every task completed exactly once, with its whole output.
        assert all(o.results == 1 for o in outcomes)
        assert len({o.assignments[-1].task_id for o in outcomes}) == 12
    finally:
        await dev.stop()


async def test_a_full_queue_answers_resource_exhausted_with_a_retry_hint() -> None:
    # One slot per endpoint, no queue allowance, a queue of 2: the fourth waiting task is refused.
    cluster = fast_cluster()
    routing = {"scheduler": {"max_queue": 2, "queue_allowance": 0}}
    nodes = tuple(
        dataclasses.replace(
            n, endpoints=tuple(dataclasses.replace(e, num_parallel=1) for e in n.endpoints)
        )
        for n in seed_cluster().nodes
        if n.name == "IRONWOOD"
    )
    dev = await slow_dev(0.01, dataclasses.replace(cluster, routing=routing, nodes=nodes))
    try:
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            # starcoder2:15b only lives on IRONWOOD/p4: one runs, two wait.
            running = [
                asyncio.create_task(stream(stub, "starcoder2:15b", f"t{i}", 2000)) for i in range(3)
            ]
            await eventually(
                lambda: dev.coordinator.dispatcher.scheduler.queue_depth == 2,  # type: ignore[union-attr]
                what="two queued",
            )
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stream(stub, "starcoder2:15b", "one too many", 10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "retry after" in (err.value.details() or "")
            metadata = dict(err.value.trailing_metadata() or ())
            assert int(metadata["retry-after-ms"]) > 0
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
    finally:
        await dev.stop()


async def test_a_deadline_cancels_the_task_at_the_emulator() -> None:
    dev = await slow_dev(0.05)
    try:
        request = inference_pb2.GenerateRequest(model="starcoder2:15b", prompt="too slow")
        request.options.update({"num_predict": 3000, "ignore_eos": True})
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [e async for e in stub.Generate(request, timeout=1.0)]
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        emulator = dev.emulators["IRONWOOD/p4"]
        await eventually(lambda: emulator.stats.cancelled_total == 1, what="cancelled at Ollama")
        scheduler = dev.coordinator.dispatcher.scheduler  # type: ignore[union-attr]
        await eventually(lambda: scheduler.running_count == 0, what="scheduler released it")
    finally:
        await dev.stop()


async def test_a_burst_of_tasks_is_accepted_queued_and_drained_with_none_lost(
    dev: DevCluster,
) -> None:
    """Thousands submitted at once wait in the scheduler's queue, not in gRPC's pending
    list (which cancels calls beyond 1,000 by default), and each completes exactly once."""
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        outcomes = await asyncio.gather(
            *(stream(stub, "phi3:mini", f"burst {i}", 4) for i in range(1200)),
            return_exceptions=True,
        )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors[:3]
    done = [o for o in outcomes if isinstance(o, Outcome)]
    assert all(o.results == 1 for o in done)
    assert len({o.assignments[-1].task_id for o in done}) == 1200


async def test_the_coordinator_learns_each_hosts_disk_speed_from_its_loads() -> None:
    """ACACIA reads models at 0.5 GB/s: after one cold load there (the emulator reports
    Ollama's load_duration), the router prices loads on ACACIA at that speed, and every
    other endpoint keeps the default until it loads something."""
    nodes = tuple(
        dataclasses.replace(n, model_load_gbps=0.5) if n.name == "ACACIA" else n
        for n in seed_cluster().nodes
    )
    dev = await slow_dev(0.0, fast_cluster(dataclasses.replace(seed_cluster(), nodes=nodes)))
    try:
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)
            # phi3:mini is on ACACIA's disk only: the first request loads it there.
            outcome = await stream(stub, "phi3:mini", "hello", 8)
        assert outcome.results == 1
        dispatcher = dev.coordinator.dispatcher  # type: ignore[union-attr]
        rates = dispatcher.speeds.load_rates()
        assert rates[("ACACIA", "gpu0")] == pytest.approx(0.5e9, rel=0.02)
        await eventually(
            lambda: dispatcher.snapshot().endpoint(("ACACIA", "gpu0")).load_bytes_per_second > 0,
            what="the learned speed in the router's snapshot",
        )
        assert dispatcher.snapshot().endpoint(("WALNUT", "rx9060")).load_bytes_per_second == 0.0
    finally:
        await dev.stop()
