"""What the token path costs the coordinator (coordinator/dispatch.py, issue 19): chunks
that queued up behind one another go on as one message, reading the same; the routing
snapshot is built again only when something it reads changed."""

from __future__ import annotations

import asyncio

import pytest

from coordinator.dispatch import (
    Dispatcher,
    _Done,
    _Event,
    _Inbox,
    gather_chunks,
    merge_chunks,
)
from coordinator.registry import Registry
from coordinator.routing.config import RouterConfig
from hive.agent_channels import AgentChannels
from hive.v1 import common_pb2, node_agent_pb2


def chunk(
    text: str = "", thinking: str = "", seq: int = 0, **more: object
) -> common_pb2.OutputChunk:
    return common_pb2.OutputChunk(text=text, thinking=thinking, seq=seq, **more)  # type: ignore[arg-type]


def event(attempt: int, c: common_pb2.OutputChunk) -> _Event:
    return _Event(attempt, node_agent_pb2.RunTaskResponse(chunk=c))


def test_text_after_text_and_thinking_before_text_merge_in_order() -> None:
    into = chunk("Hel", seq=3)
    assert merge_chunks(into, chunk("lo", logprobs=[common_pb2.TokenLogprob(token="lo")]))
    assert (into.text, into.seq, [p.token for p in into.logprobs]) == ("Hello", 3, ["lo"])
    thought = chunk(thinking="hmm")
    assert merge_chunks(thought, chunk(thinking=", so", text="Yes"))
    assert (thought.thinking, thought.text) == ("hmm, so", "Yes")


def test_what_would_read_differently_is_not_merged() -> None:
    call = common_pb2.ToolCall(name="get_weather", arguments_json="{}")
    for into, more in [
        (chunk("a"), chunk(tool_calls=[call])),  # a tool call stays its own message
        (chunk(tool_calls=[call]), chunk("b")),
        (chunk("answer"), chunk(thinking="more thought")),  # thinking after text
    ]:
        before = into.SerializeToString()
        assert not merge_chunks(into, more)
        assert into.SerializeToString() == before


async def test_queued_chunks_of_the_attempt_are_gathered_up_to_anything_else() -> None:
    inbox: _Inbox = asyncio.Queue()
    for item in (
        event(2, chunk("b")),
        event(2, chunk("c")),
        _Done(2, None),
        event(2, chunk("never reached")),
    ):
        inbox.put_nowait(item)
    first = chunk("a")
    held = gather_chunks(first, inbox, 2)
    assert first.text == "abc"
    assert isinstance(held, _Done)  # handled next, in order
    assert inbox.qsize() == 1


async def test_another_attempts_chunk_is_held_not_merged() -> None:
    inbox: _Inbox = asyncio.Queue()
    stale = event(1, chunk("old"))
    inbox.put_nowait(stale)
    first = chunk("new")
    assert gather_chunks(first, inbox, 2) is stale
    assert first.text == "new"
    assert gather_chunks(first, inbox, 2) is None  # nothing queued


async def test_the_routing_snapshot_is_reused_until_something_it_reads_changes() -> None:
    """Every submit and dispatch round reads the snapshot; without an optimizer placement
    (``protected`` empty) it used to be rebuilt on every read."""
    now = [100.0]
    registry = Registry(lambda: now[0], lambda: now[0], suspect_after=3, lost_after=6)
    dispatcher = Dispatcher(registry, AgentChannels(1 << 20), RouterConfig(), lambda: now[0])
    first = dispatcher.snapshot()
    assert dispatcher.snapshot() is first
    dispatcher.protected = {("NODE", "gpu0"): frozenset({"llama3.1:8b"})}
    placed = dispatcher.snapshot()
    assert placed is not first and placed.protected is dispatcher.protected
    assert dispatcher.snapshot() is placed
    now[0] += 1.0  # measured speeds may have moved (SPEEDS_STALENESS_SECONDS)
    assert dispatcher.snapshot() is not placed


def test_the_agents_chunking_and_orphan_time_are_settings_of_node_yaml() -> None:
    from hive.config import ConfigError, parse_agent_config

    node = {"node": {"name": "N", "gpus": []}}
    default = parse_agent_config(node, "n.yaml")
    assert (default.chunk_max_seconds, default.chunk_max_chars) == (0.1, 256)
    assert default.orphan_seconds == 30.0
    tuned = parse_agent_config(
        {**node, "chunk_max_seconds": 0.02, "chunk_max_chars": 64, "orphan_seconds": 5},
        "n.yaml",
    )
    assert (tuned.chunk_max_seconds, tuned.chunk_max_chars, tuned.orphan_seconds) == (0.02, 64, 5)
    for key, value in (("chunk_max_seconds", 0), ("chunk_max_chars", 0.5), ("orphan_seconds", -1)):
        with pytest.raises(ConfigError, match=f"n.yaml: {key}"):
            parse_agent_config({**node, key: value}, "n.yaml")


# --- direct answers: the agent streams to the gateway ------------------------------------


async def test_a_direct_answer_skips_the_coordinator_and_needs_its_token() -> None:
    """``direct``: the coordinator's stream carries the assignment (agent address, follow
    token) and the result only; the output comes from FollowTask on the agent, for the
    holder of the token alone."""
    import grpc

    from hive.v1 import inference_pb2, inference_pb2_grpc, node_agent_pb2, node_agent_pb2_grpc
    from tests.conftest import running_dev

    async with running_dev() as dev:
        request = inference_pb2.GenerateRequest(model="llama3.1:8b", prompt="hi", direct=True)
        request.options.update({"num_predict": 40, "ignore_eos": True})
        async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
            events = [
                e async for e in inference_pb2_grpc.InferenceServiceStub(channel).Generate(request)
            ]
        assert [e.WhichOneof("event") for e in events] == ["assigned", "result"]
        assigned = events[0].assigned
        assert assigned.agent_address and len(assigned.follow_token) >= 20
        async with grpc.aio.insecure_channel(assigned.agent_address) as channel:
            stub = node_agent_pb2_grpc.NodeAgentServiceStub(channel)
            follow = node_agent_pb2.FollowTaskRequest(
                task_id=assigned.task_id, attempt=assigned.attempt, follow_token="guess"
            )
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                [e async for e in stub.FollowTask(follow)]
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            follow.follow_token = assigned.follow_token
            output = [e async for e in stub.FollowTask(follow)]
        kinds = [e.WhichOneof("event") for e in output]
        assert kinds[0] == "started" and kinds[-1] == "result" and "chunk" in kinds
        assert output[-1].result.stats.eval_count == 40 == events[1].result.stats.eval_count


async def test_a_streamed_answer_outlives_its_coordinator_when_direct() -> None:
    """The gateway reads a streamed answer from the agent: the coordinator stops mid-answer
    and the client still gets the whole answer (the agent keeps an attempt someone
    follows; a coordinator that goes away takes nothing of it with it)."""
    import json

    import httpx

    from tests.conftest import running_dev

    async with running_dev(gateway_port=0, time_scale=0.2) as dev:
        assert dev.gateway is not None and dev.coordinator is not None
        body = {
            "model": "llama3.1:8b",
            "prompt": "Tell me a long story",
            "options": {"num_predict": 120, "ignore_eos": True},
        }
        lines = []
        async with httpx.AsyncClient(base_url=dev.gateway.url, timeout=60) as http:
            async with http.stream("POST", "/api/generate", json=body) as reply:
                assert reply.status_code == 200
                async for line in reply.aiter_lines():
                    if not line:
                        continue
                    lines.append(json.loads(line))
                    if len(lines) == 2:  # mid-answer: the coordinator goes away
                        await dev.coordinator.stop(grace=0)
        assert lines[-1]["done"] is True, lines[-1]
        assert lines[-1]["eval_count"] == 120
        assert "error" not in lines[-1]
