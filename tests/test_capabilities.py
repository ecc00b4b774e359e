"""A request its model cannot serve is refused before routing (issue 21): through the
official clients, a 400 in each API's shape naming the model and the capability, with no
node's name in it, and nothing reaching a node (no failed task, no attempt)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import grpc
import ollama
import openai
import pytest
import pytest_asyncio

from coordinator.capabilities import ModelCapabilities
from coordinator.registry import Registry
from hive.cli.dev import DevCluster
from hive.v1 import agent_session_pb2, cluster_pb2, cluster_pb2_grpc, common_pb2
from tests.conftest import PNG, WEATHER_TOOL, running_dev

pytestmark = pytest.mark.asyncio(loop_scope="module")

NODES = ("IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def gw() -> AsyncIterator[DevCluster]:
    async with running_dev(gateway_port=0) as dev:
        yield dev


async def _tasks(dev: DevCluster) -> tuple[int, int]:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        reply = await cluster_pb2_grpc.ClusterServiceStub(channel).GetPerformanceMetrics(
            cluster_pb2.GetPerformanceMetricsRequest(), timeout=10
        )
    return int(reply.tasks_succeeded), int(reply.tasks_failed)


def _says(message: str, model: str, use: str) -> None:
    assert model in message and use in message, message
    assert not any(node in message for node in NODES), message


async def test_an_embedding_model_asked_to_chat_is_refused_up_front(gw: DevCluster) -> None:
    assert gw.gateway is not None
    before = await _tasks(gw)
    client = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="-", max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        await client.chat.completions.create(
            model="nomic-embed-text", messages=[{"role": "user", "content": "hi"}]
        )
    _says(refused.value.message, "nomic-embed-text:latest", "does not support chat")
    assert "embedding model" in refused.value.message
    o = ollama.AsyncClient(host=gw.gateway.url)
    with pytest.raises(ollama.ResponseError) as generate:
        await o.generate(model="nomic-embed-text", prompt="hi")
    assert generate.value.status_code == 400
    _says(generate.value.error, "nomic-embed-text:latest", "does not support generate")
    assert await _tasks(gw) == before, "nothing was routed"


async def test_tools_images_suffix_and_think_need_a_model_that_can(gw: DevCluster) -> None:
    assert gw.gateway is not None
    before = await _tasks(gw)
    o = ollama.AsyncClient(host=gw.gateway.url)
    cases = [
        # codellama's template has no tool calls
        o.chat(
            model="codellama:13b",
            messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL],
        ),
        o.generate(model="llama3.1:8b", prompt="what is this?", images=[PNG]),
        o.generate(model="llama3.1:8b", prompt="def f(", suffix="return x"),
        o.chat(model="llama3.1:8b", messages=[{"role": "user", "content": "hm"}], think=True),
    ]
    # Ollama's words for each (does not support ...), then what the capability is for.
    uses = ["tools", "vision (images)", "insert (suffix", "thinking (think"]
    models = ["codellama:13b", "llama3.1:8b", "llama3.1:8b", "llama3.1:8b"]
    for call, use, model in zip(cases, uses, models, strict=True):
        with pytest.raises(ollama.ResponseError) as refused:
            await call
        assert refused.value.status_code == 400, (use, refused.value.error)
        _says(refused.value.error, model, use)
    client = openai.AsyncOpenAI(base_url=gw.gateway.url + "/v1", api_key="-", max_retries=0)
    with pytest.raises(openai.BadRequestError) as reasoning:
        await client.chat.completions.create(
            model="llama3.1:8b",
            messages=[{"role": "user", "content": "hm"}],
            reasoning_effort="high",
        )
    _says(reasoning.value.message, "llama3.1:8b", "does not support thinking")
    assert await _tasks(gw) == before, "nothing was routed"


async def test_what_a_model_can_do_is_served_as_before(gw: DevCluster) -> None:
    assert gw.gateway is not None
    o = ollama.AsyncClient(host=gw.gateway.url)
    with_tools = await o.chat(
        model="llama3.1:8b",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    assert with_tools.message.tool_calls or with_tools.message.content
    seen = await o.generate(model="llava:7b", prompt="what is this?", images=[PNG])
    assert seen.response
    filled = await o.generate(model="qwen2.5-coder:7b", prompt="def f(", suffix="return x")
    assert filled.done
    embedded = await o.embed(model="nomic-embed-text", input="hello")
    assert len(embedded.embeddings) == 1
    # Claude Code asks every model to think: on the Anthropic API a model that cannot is
    # answered without thinking, not refused (gateway/anthropic_api.py).
    claude = anthropic.AsyncAnthropic(base_url=gw.gateway.url, api_key="-", max_retries=0)
    answer = await claude.messages.create(
        model="llama3.1:8b",
        max_tokens=64,
        messages=[{"role": "user", "content": "hm"}],
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    assert [block.type for block in answer.content] == ["text"]


async def test_the_capability_index_follows_model_changes_not_telemetry() -> None:
    """A model's capabilities are rebuilt when a node's models change (a registration, a
    new endpoint list), and only then: not at every heartbeat, which is most of them."""
    now = [0.0]
    registry = Registry(lambda: now[0], lambda: now[0], suspect_after=3.0, lost_after=6.0)
    index = ModelCapabilities(registry)

    def endpoint(*caps: str) -> common_pb2.OllamaEndpoint:
        model = common_pb2.ModelInfo(name="m:1", capabilities=list(caps))
        return common_pb2.OllamaEndpoint(id="e1", num_parallel=1, models=[model])

    node = common_pb2.NodeInfo(
        name="A", agent_address="127.0.0.1:1", endpoints=[endpoint("completion")]
    )
    record = registry.attach(agent_session_pb2.Register(node=node), "test")
    assert "tools" in index.refusal("m:1", ["completion", "tools"], "chat")
    built = index._by_model
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=1))  # telemetry only
    assert index.of("m:1") == {"completion"} and index._by_model is built
    registry.heartbeat(
        record, agent_session_pb2.Heartbeat(seq=2, endpoints=[endpoint("completion", "tools")])
    )
    assert index.refusal("m:1", ["completion", "tools"], "chat") == ""
