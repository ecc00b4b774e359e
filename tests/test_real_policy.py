"""``routing.policy``: a real coordinator placing tasks with one of the simulator's
baselines, so that the router can be compared with what another scheduler would do on
the same cluster (issue 20), and a name it does not know refused with the key."""

from __future__ import annotations

import dataclasses

import grpc
import pytest

from coordinator.routing import RouterConfig
from coordinator.server import configured_policy
from hive.config import ConfigError
from hive.v1 import inference_pb2, inference_pb2_grpc
from tests.conftest import fast_cluster, running_dev

pytestmark = pytest.mark.asyncio


async def answer(address: str, model: str, prompt: str) -> list[inference_pb2.TaskAssignment]:
    request = inference_pb2.GenerateRequest(model=model, prompt=prompt)
    request.options.update({"num_predict": 8})
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        events = [e async for e in stub.Generate(request)]
    assert any(e.HasField("result") for e in events)
    return [e.assigned for e in events if e.HasField("assigned")]


async def test_a_baseline_named_in_routing_places_the_tasks_and_learns_from_answers() -> None:
    cluster = fast_cluster()
    cluster = dataclasses.replace(cluster, routing={**cluster.routing, "policy": "litellm_latency"})
    async with running_dev(cluster=cluster) as dev:
        assert dev.coordinator is not None
        policy = dev.coordinator.dispatcher.scheduler.policy
        assert getattr(policy, "name", "") == "litellm_latency"
        placed = []
        for i in range(6):
            placed += await answer(dev.coordinator_address, "llama3.1:8b", f"count to {i}")
        assert placed, "no assignment reported"
        # LiteLLM's latency routing learned each answer's latency per token where it ran,
        # from the coordinator's attempts (not only in the simulator).
        learned = {
            (a.node, a.endpoint_id)
            for a in placed
            if policy.latency("llama3.1:8b", (a.node, a.endpoint_id), 0.0) is not None
        }
        assert learned == {(a.node, a.endpoint_id) for a in placed}


async def test_the_router_places_tasks_when_no_policy_is_named() -> None:
    assert configured_policy(RouterConfig.from_mapping({}, "c.yaml"), "c.yaml") is None
    least = configured_policy(
        RouterConfig.from_mapping({"policy": "least_work_warm"}, "c.yaml"), "c.yaml"
    )
    assert getattr(least, "name", "") == "least_work_warm"


async def test_an_unknown_policy_is_refused_with_the_key_and_the_known_names() -> None:
    with pytest.raises(ConfigError) as err:
        configured_policy(RouterConfig.from_mapping({"policy": "fastest"}, "c.yaml"), "c.yaml")
    assert "routing.policy" in str(err.value)
    assert "least_work_warm" in str(err.value) and "'fastest'" in str(err.value)
    with pytest.raises(ConfigError, match=r"routing\.policy"):
        RouterConfig.from_mapping({"policy": 3}, "c.yaml")
