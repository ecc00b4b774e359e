"""The mesh end to end: coordinator, agents and emulated Ollama, all real, in-process."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import grpc
import httpx
import ollama
import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from coordinator.server import Coordinator
from hive.cli.dev import DevCluster
from hive.v1 import (
    agent_session_pb2,
    agent_session_pb2_grpc,
    cluster_pb2,
    cluster_pb2_grpc,
    common_pb2,
    inference_pb2,
    inference_pb2_grpc,
)
from tests.conftest import eventually, fast_cluster, running_dev

GIB = 1 << 30


async def status(dev: DevCluster) -> cluster_pb2.GetClusterStatusResponse:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        return await cluster_pb2_grpc.ClusterServiceStub(channel).GetClusterStatus(
            cluster_pb2.GetClusterStatusRequest()
        )


def node(response: cluster_pb2.GetClusterStatusResponse, name: str) -> cluster_pb2.NodeStatus:
    return next(n for n in response.nodes if n.info.name == name)


async def test_seed_cluster_registers_five_nodes_nine_gpus_80_gib(dev: DevCluster) -> None:
    response = await status(dev)
    summary = response.summary
    assert [n.info.name for n in response.nodes] == sorted(
        ["IRONWOOD", "ROSEWOOD", "WALNUT", "ACACIA", "FORSTEINET"]
    )
    assert summary.nodes_healthy == 5
    assert summary.gpus == 9
    assert summary.vram_total_bytes == 80 * GIB
    assert summary.endpoints == 6
    assert "codellama:13b" in summary.models and "llama3.1:8b" in summary.models
    ironwood = node(response, "IRONWOOD")
    assert [e.id for e in ironwood.info.endpoints] == ["gtx1070", "p4"]
    assert list(ironwood.info.endpoints[0].gpu_indices) == [0, 1]
    assert ironwood.info.telemetry_provider == "simulated"
    assert node(response, "WALNUT").info.gpus[0].vendor == common_pb2.GPU_VENDOR_AMD


async def test_heartbeats_update_telemetry(dev: DevCluster) -> None:
    coordinator = dev.coordinator
    assert coordinator is not None
    record = coordinator.registry.get("ROSEWOOD")
    beats = record.heartbeats
    await eventually(
        lambda: coordinator.registry.get("ROSEWOOD").heartbeats >= beats + 2,
        what="two more heartbeats",
    )
    # Loading a model shows up in the next heartbeats: VRAM used and /api/ps.
    emulator = dev.emulators["ROSEWOOD/rtx"]
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{emulator.url}/api/generate",
            json={"model": "llama3.1:8b", "prompt": "", "stream": False},
        )
        assert r.status_code == 200

    def loaded() -> bool:
        tel = coordinator.registry.get("ROSEWOOD").telemetry
        names = {m.name for e in tel.endpoints for m in e.loaded_models}
        used = sum(g.memory_used_bytes for g in tel.gpus)
        return "llama3.1:8b" in names and used > 4 * 10**9

    await eventually(loaded, what="llama3.1:8b in ROSEWOOD telemetry")


async def test_killed_agent_is_lost_and_comes_back_as_the_same_node(dev: DevCluster) -> None:
    coordinator = dev.coordinator
    assert coordinator is not None
    await dev.stop_node("ACACIA")
    await eventually(
        lambda: coordinator.registry.get("ACACIA").state.value == "lost",
        timeout=coordinator.registry.lost_after + 1,
        what="ACACIA lost",
    )
    agent = await dev.start_node(next(n for n in dev.cluster.nodes if n.name == "ACACIA"))
    await asyncio.wait_for(agent.connected.wait(), 5)
    response = await status(dev)
    assert [n.info.name for n in response.nodes].count("ACACIA") == 1
    assert len(response.nodes) == 5
    acacia = node(response, "ACACIA")
    assert acacia.state == common_pb2.NODE_STATE_HEALTHY
    assert acacia.reconnects == 1


async def test_silent_agent_goes_suspect_then_lost_within_timeout(dev: DevCluster) -> None:
    """A session that stays open but stops heartbeating is caught by the timeout alone."""
    coordinator = dev.coordinator
    assert coordinator is not None
    registry = coordinator.registry
    info = common_pb2.NodeInfo(name="SILENT", agent_address="127.0.0.1:1")
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        call = agent_session_pb2_grpc.AgentSessionServiceStub(channel).Connect()
        await call.write(
            agent_session_pb2.ConnectRequest(register=agent_session_pb2.Register(node=info))
        )
        welcome = await call.read()
        assert welcome.welcome.session_id
        loop = asyncio.get_running_loop()
        start = loop.time()
        await eventually(lambda: registry.get("SILENT").state.value == "suspect", what="suspect")
        await eventually(lambda: registry.get("SILENT").state.value == "lost", what="lost")
        elapsed = loop.time() - start
        assert registry.lost_after <= elapsed + 0.05 < registry.lost_after + 0.6
        # The coordinator ends the stream of a lost session.
        assert await asyncio.wait_for(call.read(), 2) is grpc.aio.EOF


async def test_agents_reconnect_after_coordinator_restart(dev: DevCluster) -> None:
    old = dev.coordinator
    assert old is not None
    port = old.port
    await old.stop(grace=0)
    await eventually(
        lambda: not any(a.connected.is_set() for a in dev.agents.values()),
        what="agents notice the coordinator is gone",
    )
    new = Coordinator(dev.cluster)
    await new.start(f"127.0.0.1:{port}")
    dev.coordinator = new
    await eventually(
        lambda: len(new.registry) == 5 and all(r.state.value == "healthy" for r in new.registry),
        timeout=15,
        what="all 5 nodes back",
    )


async def generate(
    dev: DevCluster, model: str, prompt: str, **options: float | bool
) -> tuple[list[inference_pb2.GenerateResponse], str]:
    request = inference_pb2.GenerateRequest(model=model, prompt=prompt)
    if options:
        request.options.update(options)
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        events = [e async for e in stub.Generate(request)]
    text = "".join(e.chunk.text for e in events if e.HasField("chunk"))
    return events, text


async def test_streamed_generate_returns_the_emulators_text_and_token_counts(
    dev: DevCluster,
) -> None:
    events, text = await generate(dev, "starcoder2:15b", "Write a binary search in Python")
    assigned = events[0].assigned
    assert (assigned.node, assigned.endpoint_id) == ("IRONWOOD", "p4")  # the only one with it
    result = events[-1].result
    chunks = [e.chunk for e in events if e.HasField("chunk")]
    assert [c.seq for c in chunks] == list(range(len(chunks)))
    # The same request straight to the emulator gives the same text and counts.
    emulator = dev.emulators["IRONWOOD/p4"]
    async with httpx.AsyncClient() as client:
        direct = (
            await client.post(
                f"{emulator.url}/api/generate",
                json={
                    "model": "starcoder2:15b",
                    "prompt": "Write a binary search in Python",
                    "stream": False,
                },
            )
        ).json()
    assert text == direct["response"]
    assert result.stats.eval_count == direct["eval_count"] > 0
    assert result.stats.prompt_eval_count == direct["prompt_eval_count"] > 0
    assert result.done_reason == "stop"


async def test_chunks_are_batched_not_one_message_per_token(dev: DevCluster) -> None:
    events, text = await generate(
        dev, "llama3.1:8b", "Tell me a long story", num_predict=400, ignore_eos=True
    )
    chunks = [e for e in events if e.HasField("chunk")]
    result = events[-1].result
    assert result.stats.eval_count == 400
    assert 1 < len(chunks) < 400 / 4, f"{len(chunks)} chunks for 400 tokens"
    assert len(text) > 400


async def test_a_whole_answer_is_asked_whole_and_comes_as_one_chunk(dev: DevCluster) -> None:
    """``whole``: the agent asks Ollama with "stream": false and sends one chunk, the same
    text, tool calls and counts as the streamed answer."""
    streamed, text = await generate(
        dev, "llama3.1:8b", "Tell me a long story", num_predict=300, ignore_eos=True
    )
    request = inference_pb2.GenerateRequest(
        model="llama3.1:8b", prompt="Tell me a long story", whole=True
    )
    request.options.update({"num_predict": 300, "ignore_eos": True})
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        events = [
            e async for e in inference_pb2_grpc.InferenceServiceStub(channel).Generate(request)
        ]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds == ["assigned", "chunk", "result"]
    assert len([e for e in streamed if e.HasField("chunk")]) > 1 and len(text) > 300
    # The same text as the Ollama that ran it gives (each emulator has its own seed).
    assigned = events[0].assigned
    emulator = dev.emulators[f"{assigned.node}/{assigned.endpoint_id}"]
    async with httpx.AsyncClient() as client:
        direct = (
            await client.post(
                f"{emulator.url}/api/generate",
                json={
                    "model": "llama3.1:8b",
                    "prompt": "Tell me a long story",
                    "stream": False,
                    "options": {"num_predict": 300, "ignore_eos": True},
                },
            )
        ).json()
    assert events[1].chunk.text == direct["response"]
    assert events[2].result.stats.eval_count == 300 == direct["eval_count"]
    assert events[2].result.done_reason == streamed[-1].result.done_reason


async def test_cancelling_the_client_call_cancels_the_request_at_the_emulator() -> None:
    from tests.conftest import fast_cluster

    dev = DevCluster(
        fast_cluster(), coordinator_listen="127.0.0.1:0", gateway_port=None, time_scale=0.05
    )
    await dev.start()
    try:
        await dev.wait_registered()
        request = inference_pb2.GenerateRequest(model="starcoder2:15b", prompt="stream forever")
        request.options.update({"num_predict": 5000, "ignore_eos": True})
        emulator = dev.emulators["IRONWOOD/p4"]
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            call = inference_pb2_grpc.InferenceServiceStub(channel).Generate(request)
            async for event in call:
                if event.HasField("chunk"):
                    break
            call.cancel()
        await eventually(lambda: emulator.stats.cancelled_total == 1, what="emulator cancelled")
        await eventually(lambda: emulator.stats.active == 0, what="slot freed")
        agent = dev.agents["IRONWOOD"]
        await eventually(lambda: not len(agent.attempts), what="agent forgot the task")
    finally:
        await dev.stop()


async def test_unknown_model_fails_fast_with_failed_precondition(dev: DevCluster) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await generate(dev, "no-such-model:1b", "hi")
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no-such-model:1b" in (err.value.details() or "")


async def test_bad_options_fail_as_invalid_argument_without_marking_the_endpoint(
    dev: DevCluster,
) -> None:
    """Ollama refuses the options; the caller hears why, and the endpoint that refused them
    keeps a clean error rate (the router would otherwise steer traffic off a healthy node)."""
    dispatcher = dev.coordinator.dispatcher  # type: ignore[union-attr]
    request = inference_pb2.GenerateRequest(model="llama3.1:8b", prompt="hi")
    request.options.update({"num_predict": "many"})
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            [e async for e in stub.Generate(request)]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "num_predict" in (err.value.details() or "")
    assert all(rate == 0.0 for rate in dispatcher.speeds.error_rates().values())


def test_a_model_name_without_a_tag_means_latest() -> None:
    from hive.models import tagged

    assert tagged("nomic-embed-text") == "nomic-embed-text:latest"
    assert tagged("llama3.1:8b") == "llama3.1:8b"
    assert tagged("registry.lan:5000/team/coder") == "registry.lan:5000/team/coder:latest"
    assert tagged("registry.lan:5000/team/coder:7b") == "registry.lan:5000/team/coder:7b"


async def test_embed_is_routed_to_a_node_with_the_embedding_model(dev: DevCluster) -> None:
    dispatcher = dev.coordinator.dispatcher  # type: ignore[union-attr]
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        # No input loads the model where the router puts it (Ollama loads it, no vectors).
        loaded = await stub.Embed(inference_pb2.EmbedRequest(model="nomic-embed-text"))
        where = f"{loaded.assigned.node}/{loaded.assigned.endpoint_id}"

        async def resident() -> bool:
            listed = await stub.ListModels(inference_pb2.ListModelsRequest())
            return any(
                m.info.name == "nomic-embed-text:latest" and where in m.loaded_on
                for m in listed.models
            )

        await eventually(resident)
        # No tag means :latest, as in Ollama.
        reply = await stub.Embed(
            inference_pb2.EmbedRequest(
                model="nomic-embed-text", input=["def add(a, b):", "a cat", "def add(a, b):"]
            )
        )
        short = await stub.Embed(
            inference_pb2.EmbedRequest(model="nomic-embed-text:latest", input=["x"], dimensions=64)
        )
        for i in range(8):  # enough for a per-type answer length, were embeddings learned
            await stub.Embed(inference_pb2.EmbedRequest(model="nomic-embed-text", input=[str(i)]))
        errors = []
        for bad in (
            inference_pb2.EmbedRequest(model="nomic-embed-text", input=["x"] * 513),
            inference_pb2.EmbedRequest(model="nope", input=["x"]),
            inference_pb2.EmbedRequest(
                model="nomic-embed-text", input=["word " * 20_000], truncate=False
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.Embed(bad)
            errors.append((err.value.code(), err.value.details() or ""))
    assert reply.assigned.node in {"ROSEWOOD", "ACACIA", "FORSTEINET"}  # where it lives
    vectors = [list(e.values) for e in reply.result.embeddings]
    assert [len(v) for v in vectors] == [768, 768, 768]
    assert vectors[0] == vectors[2] != vectors[1]
    assert reply.result.stats.prompt_eval_count > 0
    assert len(short.result.embeddings[0].values) == 64
    # No input loads the model where the router puts it, and answers no vectors (Ollama's).
    assert not loaded.result.embeddings and loaded.assigned.node in {
        "ROSEWOOD",
        "ACACIA",
        "FORSTEINET",
    }
    assert errors[0][0] == grpc.StatusCode.INVALID_ARGUMENT and "513 inputs" in errors[0][1]
    assert errors[1][0] == grpc.StatusCode.FAILED_PRECONDITION and "'nope:latest'" in errors[1][1]
    assert errors[2][0] == grpc.StatusCode.INVALID_ARGUMENT and "context length" in errors[2][1]
    # An embedding has no answer: nothing learned about answer lengths from ten of them,
    # neither for the model nor for plain inference in general.
    assert dispatcher.lengths.estimate("inference", "nomic-embed-text:latest") is None
    assert dispatcher.lengths.estimate("inference", "llama3.1:8b") is None


async def test_hive_run_shows_reasoning_apart_and_asks_for_json(
    dev: DevCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive import cli

    where = ["--coordinator", dev.coordinator_address]

    async def run(*args: str) -> tuple[str, str]:
        capsys.readouterr()
        assert await asyncio.to_thread(cli.main, ["run", *where, *args]) == 0
        got = capsys.readouterr()
        return got.out, got.err

    out, err = await run("--model", "qwen3:8b", "Why is the sky blue?")
    assert "Thinking..." in err and "...done thinking." in err
    reasoning = err.split("Thinking...\n", 1)[1].split("\n...done thinking.", 1)[0]
    assert reasoning.strip() and reasoning not in out and out.strip()
    out_off, err_off = await run("--model", "qwen3:8b", "--think", "false", "Why is the sky blue?")
    assert "Thinking..." not in err_off and out_off == out
    out_json, _ = await run("--model", "llama3.1:8b", "--format", "json", "A cat, as JSON")
    assert isinstance(json.loads(out_json), dict)


async def test_bad_tools_and_think_values_are_refused_before_routing(
    dev: DevCluster,
) -> None:
    user = common_pb2.ChatMessage(role="user", content="hi")
    bad_call = common_pb2.ChatMessage(
        role="assistant", tool_calls=[common_pb2.ToolCall(name="f", arguments_json="[1]")]
    )
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        details = []
        for request in (
            inference_pb2.ChatRequest(model="llama3.1:8b", messages=[user], tools=["nope"]),
            inference_pb2.ChatRequest(model="llama3.1:8b", messages=[user, bad_call]),
            inference_pb2.ChatRequest(model="qwen3:8b", messages=[user], think="maybe"),
            inference_pb2.ChatRequest(
                model="llama3.1:8b", messages=[user], logprobs=True, top_logprobs=21
            ),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [e async for e in stub.Chat(request)]
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            details.append(err.value.details() or "")
    assert details[0] == "tools[0] is not a JSON object: 'nope'"
    assert details[1].startswith("messages[1].tool_calls[0] needs a name and a JSON object")
    assert details[2] == "think 'maybe' is not one of true, false, low, medium, high"
    assert details[3] == "top_logprobs must be between 0 and 20, not 21"


async def test_text_over_the_limit_is_refused_before_routing(dev: DevCluster) -> None:
    from coordinator.requests import MAX_PROMPT_CHARS

    big = "x" * (MAX_PROMPT_CHARS + 1)
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        calls = (
            lambda: stub.Generate(inference_pb2.GenerateRequest(model="llama3.1:8b", prompt=big)),
            lambda: stub.Chat(
                inference_pb2.ChatRequest(
                    model="llama3.1:8b", messages=[common_pb2.ChatMessage(role="user", content=big)]
                )
            ),
        )
        details = []
        for call in calls:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                [e async for e in call()]
            details.append((err.value.code(), err.value.details()))
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.Embed(inference_pb2.EmbedRequest(model="nomic-embed-text", input=[big]))
        details.append((err.value.code(), err.value.details()))
    limit = f"{MAX_PROMPT_CHARS + 1} characters; the limit is {MAX_PROMPT_CHARS}"
    assert details == [
        (grpc.StatusCode.INVALID_ARGUMENT, f"prompt is {limit}"),
        (grpc.StatusCode.INVALID_ARGUMENT, f"messages and tools hold {limit}"),
        (grpc.StatusCode.INVALID_ARGUMENT, f"inputs hold {limit}"),
    ]
    assert dev.coordinator.dispatcher.scheduler.running_count == 0  # type: ignore[union-attr]
    assert dev.coordinator.dispatcher.scheduler.running_count == 0  # type: ignore[union-attr]


async def test_bad_registrations_get_clear_statuses_and_others_keep_working(
    dev: DevCluster,
) -> None:
    async def register(first: agent_session_pb2.ConnectRequest) -> grpc.aio.AioRpcError:
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            call = agent_session_pb2_grpc.AgentSessionServiceStub(channel).Connect()
            await call.write(first)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call.read()
            return err.value

    bad_name = await register(
        agent_session_pb2.ConnectRequest(
            register=agent_session_pb2.Register(
                node=common_pb2.NodeInfo(name="bad name!", agent_address="127.0.0.1:1")
            )
        )
    )
    assert bad_name.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bad name!" in (bad_name.details() or "")

    bad_gpu = await register(
        agent_session_pb2.ConnectRequest(
            register=agent_session_pb2.Register(
                node=common_pb2.NodeInfo(
                    name="X",
                    agent_address="127.0.0.1:1",
                    endpoints=[common_pb2.OllamaEndpoint(id="e0", gpu_indices=[3], num_parallel=1)],
                )
            )
        )
    )
    assert bad_gpu.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown GPUs [3]" in (bad_gpu.details() or "")

    heartbeat_first = await register(
        agent_session_pb2.ConnectRequest(heartbeat=agent_session_pb2.Heartbeat(seq=1))
    )
    assert heartbeat_first.code() == grpc.StatusCode.INVALID_ARGUMENT

    # Another agent claiming a live node's name from elsewhere is refused.
    conflict = await register(
        agent_session_pb2.ConnectRequest(
            register=agent_session_pb2.Register(
                node=common_pb2.NodeInfo(name="WALNUT", agent_address="10.9.9.9:50061")
            )
        )
    )
    assert conflict.code() == grpc.StatusCode.ALREADY_EXISTS
    assert "WALNUT" in (conflict.details() or "")

    # An oversized message is refused before it is buffered.
    huge = agent_session_pb2.ConnectRequest(
        register=agent_session_pb2.Register(
            node=common_pb2.NodeInfo(
                name="HUGE", agent_address="127.0.0.1:1", labels={"blob": "x" * (17 * 1024 * 1024)}
            )
        )
    )
    oversized = await register(huge)
    assert oversized.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    response = await status(dev)
    assert response.summary.nodes_healthy == 5
    assert {n.info.name for n in response.nodes} == {
        "IRONWOOD",
        "ROSEWOOD",
        "WALNUT",
        "ACACIA",
        "FORSTEINET",
    }
    _, text = await generate(dev, "llama3.1:8b", "still serving?")
    assert text


async def test_drained_node_gets_no_new_work(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = cluster_pb2_grpc.ClusterServiceStub(channel)
        drained = await stub.DrainNode(cluster_pb2.DrainNodeRequest(node="IRONWOOD", drain=True))
        assert drained.node.draining
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.DrainNode(cluster_pb2.DrainNodeRequest(node="NOPE", drain=True))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    await eventually(lambda: dev.agents["IRONWOOD"].draining, what="agent told to drain")
    # starcoder2:15b lives only on IRONWOOD: nowhere to run it now.
    with pytest.raises(grpc.aio.AioRpcError) as unavailable:
        await generate(dev, "starcoder2:15b", "hi")
    assert unavailable.value.code() == grpc.StatusCode.UNAVAILABLE
    for _ in range(6):
        events, _ = await generate(dev, "codellama:13b", "hi")
        assert events[0].assigned.node != "IRONWOOD"


def list_services(address: str) -> list[str]:
    channel = grpc.insecure_channel(address)
    try:
        return sorted(ProtoReflectionDescriptorDatabase(channel).get_services())
    finally:
        channel.close()


async def test_reflection_lists_every_service_on_coordinator_and_agent(dev: DevCluster) -> None:
    coordinator_services = await asyncio.to_thread(list_services, dev.coordinator_address)
    assert coordinator_services == sorted(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "hive.v1.AccessService",
            "hive.v1.AgentSessionService",
            "hive.v1.ClusterService",
            "hive.v1.InferenceService",
            "hive.v1.WorkflowService",
        ]
    )
    agent_services = await asyncio.to_thread(list_services, dev.agents["WALNUT"].address)
    assert agent_services == sorted(
        [
            "grpc.health.v1.Health",
            "grpc.reflection.v1alpha.ServerReflection",
            "hive.v1.NodeAgentService",
        ]
    )


async def test_list_models_is_the_union_across_nodes(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        response = await inference_pb2_grpc.InferenceServiceStub(channel).ListModels(
            inference_pb2.ListModelsRequest()
        )
    by_name = {m.info.name: m for m in response.models}
    assert list(by_name["starcoder2:15b"].endpoints) == ["IRONWOOD/p4"]
    assert len(by_name["llama3.1:8b"].endpoints) == 6
    assert by_name["mistral:7b"].endpoints == ["FORSTEINET/gpu0"]


async def test_warm_model_control_loads_the_model_on_the_agents_ollama(dev: DevCluster) -> None:
    coordinator = dev.coordinator
    assert coordinator is not None
    emulator = dev.emulators["WALNUT/rx9060"]
    assert not emulator.loaded_models()
    coordinator.registry.warm_model("WALNUT", "rx9060", "deepseek-coder-v2:16b", "10m")
    await eventually(
        lambda: [m.name for m in emulator.loaded_models()] == ["deepseek-coder-v2:16b"],
        what="model warmed on WALNUT",
    )
    await eventually(
        lambda: any(
            m.name == "deepseek-coder-v2:16b"
            for e in coordinator.registry.get("WALNUT").telemetry.endpoints
            for m in e.loaded_models
        ),
        what="warm model visible in telemetry",
    )


async def test_watch_cluster_streams_node_lost_and_joined(dev: DevCluster) -> None:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        call = cluster_pb2_grpc.ClusterServiceStub(channel).WatchCluster(
            cluster_pb2.WatchClusterRequest()
        )
        seen: list[tuple[str, str, int]] = []

        async def read() -> None:
            async for event in call:
                kind = event.WhichOneof("event")
                status = getattr(event, kind)
                seen.append((kind, status.info.name, status.state))
                if (kind, status.info.name, status.state) == (
                    "node_state_changed",
                    "FORSTEINET",
                    common_pb2.NODE_STATE_LOST,
                ):
                    return

        reader = asyncio.create_task(read())
        await eventually(lambda: len(seen) >= 5, what="initial node list")
        await dev.stop_node("FORSTEINET")
        await asyncio.wait_for(reader, 5)
        call.cancel()
    assert {name for kind, name, _ in seen if kind == "node_joined"} == {
        "IRONWOOD",
        "ROSEWOOD",
        "WALNUT",
        "ACACIA",
        "FORSTEINET",
    }


async def test_unload_empties_every_endpoint_that_had_the_model(dev: DevCluster) -> None:
    """`ollama stop` for the cluster: the model leaves each endpoint's VRAM, not just the
    one a routed request would reach; an unknown model is NOT_FOUND."""
    model = "llama3.1:8b"
    homes = ("ACACIA/gpu0", "FORSTEINET/gpu0")
    async with httpx.AsyncClient() as http:
        for home in homes:
            load = {"model": model, "prompt": "", "stream": False}
            assert (
                await http.post(f"{dev.emulators[home].url}/api/generate", json=load)
            ).is_success

        async def resident_on() -> set[str]:
            found: set[str] = set()
            for where, emu in dev.emulators.items():
                ps = (await http.get(f"{emu.url}/api/ps")).json()["models"]
                if any(m["name"] == model for m in ps):
                    found.add(where)
            return found

        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            stub = inference_pb2_grpc.InferenceServiceStub(channel)

            before = await resident_on()
            # At once: the coordinator need not have heard of the loads yet.
            reply = await stub.Unload(inference_pb2.UnloadRequest(model=model))
            listed = await stub.ListModels(inference_pb2.ListModelsRequest())
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.Unload(inference_pb2.UnloadRequest(model="nope:1b"))
        assert set(homes) <= before
        having = next(m for m in listed.models if m.info.name == model).endpoints
        assert sorted(reply.unloaded_from) == sorted(having) and not reply.failed
        assert len(having) == 6 and await resident_on() == set()
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert unknown.value.details() == "model 'nope:1b' not found"


async def test_a_model_pulled_on_a_host_is_routed_to_without_a_restart(dev: DevCluster) -> None:
    """An operator runs `ollama pull` on one host: its agent announces the new model with
    a heartbeat, and the cluster lists and routes it, with no agent restart."""
    model = "gemma2:9b"  # on no endpoint of the seed cluster
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        before = await stub.ListModels(inference_pb2.ListModelsRequest())
        assert model not in {m.info.name for m in before.models}
        pulled = await ollama.AsyncClient(host=dev.emulators["ACACIA/gpu0"].url).pull(model)
        assert pulled.status == "success"

        async def listed() -> bool:
            reply = await stub.ListModels(inference_pb2.ListModelsRequest())
            entry = next((m for m in reply.models if m.info.name == model), None)
            return entry is not None and list(entry.endpoints) == ["ACACIA/gpu0"]

        await eventually(listed, timeout=15, what="the pulled model is listed")
        events, text = await generate(dev, model, "Describe autumn leaves")
    assigned = next(e.assigned for e in events if e.HasField("assigned"))
    assert (assigned.node, assigned.endpoint_id) == ("ACACIA", "gpu0") and text


async def test_an_endpoint_list_that_would_not_register_is_ignored(dev: DevCluster) -> None:
    registry = dev.coordinator.registry  # type: ignore[union-attr]
    record = registry.get("ACACIA")
    before = [e.id for e in record.info.endpoints], len(record.info.endpoints[0].models)
    twice = [record.info.endpoints[0], record.info.endpoints[0]]  # the same id twice
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=10_000, endpoints=twice))
    assert ([e.id for e in record.info.endpoints], len(record.info.endpoints[0].models)) == before
    fewer = common_pb2.OllamaEndpoint()
    fewer.CopyFrom(record.info.endpoints[0])
    del fewer.models[1:]
    registry.heartbeat(record, agent_session_pb2.Heartbeat(seq=10_001, endpoints=[fewer]))
    assert len(record.info.endpoints[0].models) == 1  # a model removed on the host


async def test_pull_puts_a_model_onto_the_cluster_with_progress(dev: DevCluster) -> None:
    """InferenceService.Pull: each endpoint's Ollama pull, its progress streamed; the
    nodes announce the model and the cluster routes it. Failures are per endpoint."""
    model = "gemma2:9b"
    chosen = ["ACACIA/gpu0", "FORSTEINET/gpu0"]
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        lines = [
            s async for s in stub.Pull(inference_pb2.PullRequest(model=model, endpoints=chosen))
        ]

        async def listed() -> bool:
            reply = await stub.ListModels(inference_pb2.ListModelsRequest())
            entry = next((m for m in reply.models if m.info.name == model), None)
            return entry is not None and sorted(entry.endpoints) == chosen

        await eventually(listed, timeout=15, what="both endpoints announce the model")
        missing = [s async for s in stub.Pull(inference_pb2.PullRequest(model="nope:1b"))]
        again = [s async for s in stub.Pull(inference_pb2.PullRequest(model="llama3.1:8b"))]
        with pytest.raises(grpc.aio.AioRpcError) as nowhere:
            [s async for s in stub.Pull(inference_pb2.PullRequest(model=model, endpoints=["X/y"]))]
        events, _ = await generate(dev, model, "Describe autumn leaves")
    for where in chosen:
        mine = [s for s in lines if s.endpoint == where]
        assert mine[0].status == "pulling manifest" and mine[-1].status == "success"
        layer = [s for s in mine if s.digest]
        assert layer and layer[-1].completed == layer[-1].total > 0  # bytes, as Ollama says
    assigned = next(e.assigned for e in events if e.HasField("assigned"))
    assert f"{assigned.node}/{assigned.endpoint_id}" in chosen
    # An unknown model fails on every endpoint that lacks it (all of them), each saying why.
    failed = {s.endpoint for s in missing if s.error}
    assert len(failed) == 6 and all("does not exist" in s.error for s in missing if s.error)
    # Every endpoint already has llama3.1:8b: nothing to pull, said in one line.
    assert [(s.endpoint, s.status) for s in again] == [("", "success")]
    assert nowhere.value.code() == grpc.StatusCode.NOT_FOUND and "X/y" in (
        nowhere.value.details() or ""
    )


async def test_hive_pull_and_stop_from_the_command_line(
    dev: DevCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive import cli

    where = ["--coordinator", dev.coordinator_address]

    async def run(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, [*args[:1], *where, *args[1:]])
        got = capsys.readouterr()
        return code, got.out, got.err

    code, _, err = await run("pull", "--endpoint", "ACACIA/gpu0", "gemma2:9b")
    assert code == 0 and "ACACIA/gpu0" in err and "success" in err
    code, _, err = await run("pull", "--endpoint", "ACACIA/gpu0", "nope:1b")
    assert code == 1 and "ACACIA/gpu0: ollama: pull model manifest: file does not exist" in err
    code, out, _ = await run("stop", "llama3.1:8b")
    assert code == 0 and out.strip() == "llama3.1:8b: unloaded on 6 endpoints"


async def test_hive_rm_removes_a_model_from_the_cluster(
    dev: DevCluster, capsys: pytest.CaptureFixture[str]
) -> None:
    from hive import cli

    where = ["--coordinator", dev.coordinator_address]
    code = await asyncio.to_thread(
        cli.main, ["rm", *where, "--endpoint", "ACACIA/gpu0", "llama3.1:8b"]
    )
    assert code == 0 and capsys.readouterr().out.strip() == (
        "llama3.1:8b: removed from ACACIA/gpu0"
    )
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def gone() -> bool:
            reply = await stub.ListModels(inference_pb2.ListModelsRequest())
            entry = next(m for m in reply.models if m.info.name == "llama3.1:8b")
            return "ACACIA/gpu0" not in entry.endpoints and len(entry.endpoints) == 5

        await eventually(gone, timeout=15, what="the removal is announced")
        everywhere = await stub.Delete(inference_pb2.DeleteRequest(model="phi3:mini"))
        # Named, an endpoint without the model is tried, and its Ollama's refusal reported.
        named = await stub.Delete(
            inference_pb2.DeleteRequest(model="mistral:7b", endpoints=["WALNUT/rx9060"])
        )
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Delete(inference_pb2.DeleteRequest(model="nope:1b"))
    assert list(everywhere.deleted_from) == ["ACACIA/gpu0"] and not everywhere.failed
    assert not named.deleted_from and len(named.failed) == 1
    assert named.failed[0].startswith("WALNUT/rx9060: ollama rx9060 (404): ")
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


async def test_control_acks_and_heartbeats_share_the_session_stream(dev: DevCluster) -> None:
    """Many control requests at once (an `ollama stop` to every endpoint, warm-ups): the
    agent answers each while it heartbeats, on one stream, and the session survives (gRPC
    allows one write at a time per stream; two at once failed the session in CI)."""
    registry = dev.coordinator.registry  # type: ignore[union-attr]
    agent = dev.agents["IRONWOOD"]
    sessions = agent.sessions
    acks = await asyncio.gather(
        *(
            registry.unload_model("IRONWOOD", endpoint, "llama3.1:8b", 10)
            for _ in range(150)
            for endpoint in ("gtx1070", "p4")
        )
    )
    assert all(a.ok for a in acks), [a.error for a in acks if not a.ok]
    await asyncio.sleep(0.3)  # a few heartbeats more
    assert agent.sessions == sessions and agent.connected.is_set()
    assert registry.get("IRONWOOD").state.value == "healthy"


async def test_agent_statuses_carry_its_trailer_and_a_dead_agent_has_none(
    dev: DevCluster,
) -> None:
    """The coordinator tells an agent's own refusal from a broken transport by the
    ``hive-agent`` trailer: with it a retry avoids only the endpoint, without it the
    whole node (its agent is gone)."""
    from coordinator.dispatch import agent_gone
    from hive.serving import AGENT_TRAILER
    from hive.v1 import node_agent_pb2, node_agent_pb2_grpc

    request = node_agent_pb2.RunTaskRequest(task_id="t-trailer", endpoint_id="no-such")
    async with grpc.aio.insecure_channel(dev.agents["WALNUT"].address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            async for _ in node_agent_pb2_grpc.NodeAgentServiceStub(channel).RunTask(request):
                pass
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (AGENT_TRAILER, "WALNUT") in tuple(refused.value.trailing_metadata() or ())
    async with grpc.aio.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as unreachable:
            async for _ in node_agent_pb2_grpc.NodeAgentServiceStub(channel).RunTask(request):
                pass
    assert agent_gone(unreachable.value)


async def test_a_task_arriving_before_any_node_registered_waits_for_the_first() -> None:
    """A coordinator that just started (or just took over as leader) knows no node until
    the agents reconnect: a request in that window waits for the first node instead of
    being refused as "no node has the model" (after a failover the gateway's retry lands
    exactly there)."""
    seed = fast_cluster()
    async with running_dev(cluster=dataclasses.replace(seed, nodes=())) as dev:
        answer = asyncio.create_task(generate(dev, "llama3.1:8b", "hi", num_predict=4))
        await asyncio.sleep(0.5)
        assert not answer.done(), "refused before any node could register"
        await dev.start_node(next(n for n in seed.nodes if n.name == "WALNUT"))
        _, text = await asyncio.wait_for(answer, 10)
    assert text
