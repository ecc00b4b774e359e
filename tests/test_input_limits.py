"""Issue 17, defects 2 and 3: what a client sends cannot break the cluster.

Out-of-range durations and counts (keep_alive, num_ctx, num_predict, top_k, max_tokens...)
are a 400 naming the field at the gateway, in each API's shape, and INVALID_ARGUMENT at
the coordinator before routing; the emulator survives any keep_alive (its /api/ps is the
agents' health probe); a lone surrogate in a body is a 400 in each API's shape, and the
connection serves the next request.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from hive import hardware, limits
from hive.cli.dev import DevCluster
from hive.v1 import cluster_pb2, cluster_pb2_grpc, common_pb2, inference_pb2, inference_pb2_grpc
from ollama_emulator import EmulatorConfig, OllamaEmulator
from ollama_emulator.api import parse_keep_alive
from tests.conftest import running_dev

pytestmark = pytest.mark.asyncio(loop_scope="module")

CHAT = "llama3.1:8b"
EMBED = "nomic-embed-text"
USER = [{"role": "user", "content": "hi"}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gw() -> AsyncIterator[DevCluster]:
    async with running_dev(gateway_port=0, state_path=None) as dev:
        yield dev


@pytest_asyncio.fixture(loop_scope="module")
async def http(gw: DevCluster) -> AsyncIterator[httpx.AsyncClient]:
    assert gw.gateway is not None
    # One connection, so a request after a refusal goes over the same keep-alive one.
    pool = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with httpx.AsyncClient(base_url=gw.gateway.url, timeout=30, limits=pool) as client:
        yield client


# --- each API's error shape -----------------------------------------------------------


def ollama_error(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and isinstance(body["error"], str), body
    message: str = body["error"]
    return message


def openai_error(r: httpx.Response) -> str:
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert error["type"] == "invalid_request_error"
    message: str = f"{error['param']}: {error['message']}"
    return message


def anthropic_error(r: httpx.Response) -> str:
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body
    message: str = body["error"]["message"]
    return message


Shape = Callable[[httpx.Response], str]

# Every inference endpoint: a good body (with "TEXT" where the client's text goes), the
# key whose value is the text, and the shape of its errors.
ENDPOINTS: list[tuple[str, dict[str, Any], Shape]] = [
    ("/api/generate", {"model": CHAT, "prompt": "TEXT", "stream": False}, ollama_error),
    (
        "/api/chat",
        {"model": CHAT, "messages": [{"role": "user", "content": "TEXT"}], "stream": False},
        ollama_error,
    ),
    ("/api/embed", {"model": EMBED, "input": ["TEXT"]}, ollama_error),
    ("/api/embeddings", {"model": EMBED, "prompt": "TEXT"}, ollama_error),
    (
        "/v1/chat/completions",
        {"model": CHAT, "messages": [{"role": "user", "content": "TEXT"}], "max_tokens": 5},
        openai_error,
    ),
    ("/v1/completions", {"model": CHAT, "prompt": "TEXT", "max_tokens": 5}, openai_error),
    ("/v1/embeddings", {"model": EMBED, "input": "TEXT"}, openai_error),
    ("/v1/responses", {"model": CHAT, "input": "TEXT", "max_output_tokens": 5}, openai_error),
    (
        "/v1/messages",
        {"model": CHAT, "max_tokens": 5, "messages": [{"role": "user", "content": "TEXT"}]},
        anthropic_error,
    ),
]


def with_text(body: dict[str, Any], text: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(body).replace("TEXT", text))
    return loaded


# --- defect 3: a lone surrogate --------------------------------------------------------


@pytest.mark.parametrize(("path", "body", "shape"), ENDPOINTS, ids=[e[0] for e in ENDPOINTS])
async def test_a_lone_surrogate_is_a_400_and_the_connection_serves_the_next_request(
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
    path: str,
    body: dict[str, Any],
    shape: Shape,
) -> None:
    # json.dumps escapes it as a client's encoder does: "\ud800", six ASCII characters.
    raw = json.dumps(body).replace("TEXT", "a \\ud800 b")
    assert "\\ud800" in raw
    with caplog.at_level(logging.ERROR):
        refused = await http.post(path, content=raw, headers={"content-type": "application/json"})
        assert refused.status_code == 400, refused.text
        assert refused.headers["content-type"].startswith("application/json")
        message = shape(refused)
        assert "surrogate" in message
        answered = await http.post(path, json=with_text(body, "hello"))
    assert answered.status_code == 200, answered.text
    # The same TCP connection, kept alive through the refusal.
    assert answered.extensions["network_stream"] is refused.extensions["network_stream"]
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_the_refusal_names_where_the_surrogate_is(http: httpx.AsyncClient) -> None:
    raw = json.dumps({"model": CHAT, "messages": [USER[0], {"role": "user", "content": "X"}]})
    r = await http.post("/v1/chat/completions", content=raw.replace('"X"', '"\\udfff"'))
    assert r.status_code == 400 and r.json()["error"]["param"] == "content"
    assert "messages.1.content" in r.json()["error"]["message"]
    # A surrogate in a key, and one sent as raw bytes (Python's decoder lets those through).
    r = await http.post("/api/chat", content=b'{"model": "m", "\\ud800": 1}')
    assert r.status_code == 400 and "surrogate" in ollama_error(r)
    raw_bytes = json.dumps({"model": CHAT, "prompt": "X"}).encode().replace(b"X", b"\xed\xa0\x80")
    r = await http.post("/api/generate", content=raw_bytes)
    assert r.status_code == 400, r.text
    # A surrogate pair is a character like any other.
    pair = json.dumps({"model": CHAT, "prompt": "\U0001f600", "stream": False})
    assert "\\ud83d\\ude00" in pair
    r = await http.post("/api/generate", content=pair)
    assert r.status_code == 200, r.text


async def test_the_coordinator_refuses_text_that_is_not_utf8(gw: DevCluster) -> None:
    """A gRPC client that sends bytes no proto3 string may hold (a surrogate, encoded) gets
    INVALID_ARGUMENT, and the coordinator goes on serving."""
    good = inference_pb2.GenerateRequest(model=CHAT, prompt="AB").SerializeToString()
    async with grpc.aio.insecure_channel(gw.coordinator_address) as channel:
        call = channel.unary_stream("/hive.v1.InferenceService/Generate")(
            good.replace(b"AB", b"\xed\xa0"), timeout=10
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call.read()
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        request = inference_pb2.GenerateRequest(model=CHAT, prompt="hello")
        events = [e async for e in stub.Generate(request, timeout=10)]
        assert events[-1].HasField("result")


# --- defect 2: out-of-range durations and counts at the gateway -----------------------

OUT_OF_RANGE: list[tuple[str, str, str]] = [
    # (path, JSON added to its good body, what the message must name)
    ("/api/generate", '"keep_alive": 1e104', "keep_alive"),
    ("/api/generate", '"keep_alive": "1e300h"', "keep_alive"),
    ("/api/generate", '"keep_alive": "3000000h"', "keep_alive"),
    ("/api/generate", '"keep_alive": Infinity', "keep_alive"),
    ("/api/generate", '"keep_alive": NaN', "keep_alive"),
    ("/api/generate", '"keep_alive": "nan"', "keep_alive"),
    ("/api/generate", '"keep_alive": true', "keep_alive"),
    ("/api/generate", '"prompt": "", "keep_alive": 1e104', "keep_alive"),
    ("/api/chat", '"messages": [], "keep_alive": "1e300h"', "keep_alive"),
    ("/api/embed", '"keep_alive": 1e104', "keep_alive"),
    ("/api/embeddings", '"keep_alive": -Infinity', "keep_alive"),
    ("/api/generate", '"options": {"num_ctx": -5}', "num_ctx"),
    ("/api/generate", '"options": {"num_ctx": 0}', "num_ctx"),
    ("/api/chat", '"options": {"num_predict": 1e104}', "num_predict"),
    ("/api/chat", '"options": {"num_predict": -3}', "num_predict"),
    ("/api/generate", f'"options": {{"num_predict": {10**400}}}', "num_predict"),
    ("/api/generate", '"options": {"top_k": -1}', "top_k"),
    ("/api/generate", '"options": {"temperature": NaN}', "temperature"),
    ("/api/generate", f'"options": {{"seed": {10**400}}}', "seed"),
    ("/api/embed", '"options": {"num_ctx": "lots"}', "num_ctx"),
    ("/v1/chat/completions", '"max_tokens": 1e104', "max_tokens"),
    ("/v1/chat/completions", f'"max_tokens": {1 << 30}', "max_tokens"),
    ("/v1/chat/completions", f'"max_completion_tokens": {1 << 30}', "max_completion_tokens"),
    ("/v1/chat/completions", '"max_tokens": -1', "max_tokens"),
    ("/v1/chat/completions", f'"seed": {10**400}', "seed"),
    ("/v1/chat/completions", '"logprobs": true, "top_logprobs": 21', "top_logprobs"),
    ("/v1/completions", f'"max_tokens": {1 << 30}', "max_tokens"),
    ("/v1/completions", '"temperature": NaN', "temperature"),
    ("/v1/responses", f'"max_output_tokens": {1 << 30}', "max_output_tokens"),
    ("/v1/messages", f'"max_tokens": {1 << 30}', "max_tokens"),
    ("/v1/messages", '"top_k": -1', "top_k"),
    ("/v1/messages", f'"top_k": {1 << 40}', "top_k"),
    # 1e309 is past any double: JSON decoders read it as infinity (issue 21).
    ("/api/generate", '"options": {"temperature": 1e309}', "temperature"),
    ("/api/chat", '"messages": [], "options": {"top_p": -1e309}', "top_p"),
    ("/api/embed", '"options": {"mirostat_tau": 1e309}', "mirostat_tau"),
    ("/v1/chat/completions", '"temperature": 1e309', "temperature"),
    ("/v1/chat/completions", '"top_p": 1e309', "top_p"),
    ("/v1/chat/completions", '"presence_penalty": 1e309', "presence_penalty"),
    ("/v1/completions", '"temperature": 1e309', "temperature"),
    ("/v1/responses", '"temperature": 1e309', "temperature"),
    ("/v1/messages", '"temperature": 1e309', "temperature"),
    ("/v1/messages", '"top_p": 1e309', "top_p"),
]


@pytest.mark.parametrize(("path", "added", "field"), OUT_OF_RANGE)
async def test_out_of_range_values_are_a_400_naming_the_field(
    http: httpx.AsyncClient, gw: DevCluster, path: str, added: str, field: str
) -> None:
    body, shape = next((body, shape) for p, body, shape in ENDPOINTS if p == path)
    # Later keys win: the value under test replaces the good body's.
    raw = json.dumps(with_text(body, "x"))[:-1] + ", " + added + "}"
    r = await http.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert field in shape(r), r.text
    # Nothing reached a node: every endpoint's health probe still answers.
    for emulator in gw.emulators.values():
        async with httpx.AsyncClient(base_url=emulator.url) as ollama:
            assert (await ollama.get("/api/ps")).status_code == 200


# Free-form JSON a node receives as it is: the gateway checks no field in it, so a number
# no double holds reached a node, whose encoder refused it three attempts running (a 502
# and a failed task) until the body check looked at every number (issue 21).
HUGE_SCHEMA = '{"type": "object", "properties": {"x": {"type": "number", "maximum": 1e309}}}'
OLLAMA_TOOL = (
    f'"tools": [{{"type": "function", "function": {{"name": "f", "parameters": {HUGE_SCHEMA}}}}}]'
)
FREE_FORM: list[tuple[str, str, str]] = [
    # (path, JSON added to its good body, the path the message must name)
    (
        "/api/chat",
        OLLAMA_TOOL,
        "tools.0.function.parameters.properties.x.maximum",
    ),
    ("/api/generate", f'"format": {HUGE_SCHEMA}', "format.properties.x.maximum"),
    ("/api/generate", '"format": {"type": "object", "minimum": NaN}', "format.minimum"),
    ("/api/generate", f'"format": {{"maximum": {10**400}}}', "format.maximum"),
    (
        "/v1/chat/completions",
        OLLAMA_TOOL,
        "parameters.properties.x.maximum",
    ),
    (
        "/v1/chat/completions",
        '"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": '
        + HUGE_SCHEMA
        + "}}",
        "schema.properties.x.maximum",
    ),
    (
        "/v1/messages",
        f'"tools": [{{"name": "f", "input_schema": {HUGE_SCHEMA}}}]',
        "input_schema.properties.x.maximum",
    ),
    (
        "/v1/responses",
        f'"tools": [{{"type": "function", "name": "f", "parameters": {HUGE_SCHEMA}}}]',
        "parameters.properties.x.maximum",
    ),
]


@pytest.mark.parametrize(("path", "added", "where"), FREE_FORM)
async def test_a_number_no_double_holds_anywhere_in_a_body_is_a_400_naming_it(
    http: httpx.AsyncClient, gw: DevCluster, path: str, added: str, where: str
) -> None:
    body, shape = next((body, shape) for p, body, shape in ENDPOINTS if p == path)
    raw = json.dumps(with_text(body, "x"))[:-1] + ", " + added + "}"
    before = await _failed_tasks(gw)
    r = await http.post(path, content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    message = shape(r)
    assert where in message and "finite" in message, message
    assert await _failed_tasks(gw) == before, "nothing reached a node"


async def test_grpc_tools_and_arguments_with_numbers_no_double_holds_are_refused(
    gw: DevCluster,
) -> None:
    """The same over gRPC, where tools and tool-call arguments travel as JSON text."""
    before = await _failed_tasks(gw)
    tool = '{"type": "function", "function": {"name": "f", "parameters": {"maximum": 1e309}}}'
    cases = [
        inference_pb2.ChatRequest(
            model=CHAT, messages=[common_pb2.ChatMessage(role="user", content="x")], tools=[tool]
        ),
        inference_pb2.ChatRequest(
            model=CHAT,
            messages=[
                common_pb2.ChatMessage(
                    role="assistant",
                    tool_calls=[common_pb2.ToolCall(name="f", arguments_json='{"x": NaN}')],
                ),
                common_pb2.ChatMessage(role="user", content="x"),
            ],
        ),
    ]
    async with grpc.aio.insecure_channel(gw.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for request in cases:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                async for _ in stub.Chat(request, timeout=10):
                    pass
            assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert "finite" in (refused.value.details() or ""), refused.value.details()
    assert await _failed_tasks(gw) == before, "nothing reached a node"


async def _failed_tasks(dev: DevCluster) -> int:
    async with grpc.aio.insecure_channel(dev.coordinator_address) as channel:
        reply = await cluster_pb2_grpc.ClusterServiceStub(channel).GetPerformanceMetrics(
            cluster_pb2.GetPerformanceMetricsRequest(), timeout=10
        )
    return int(reply.tasks_failed)


@pytest.mark.parametrize(
    "keep_alive", [-1, -1e104, 0.5, 300, "5m", "1h30m", "300", "-1", "2562047h", "0s"]
)
async def test_what_ollama_takes_is_taken(http: httpx.AsyncClient, keep_alive: object) -> None:
    body = {"model": CHAT, "prompt": "x", "stream": False, "keep_alive": keep_alive}
    body["options"] = {"num_predict": -2, "num_ctx": 4096, "top_k": 0, "seed": -1}
    r = await http.post("/api/generate", json=body)
    assert r.status_code == 200, r.text


# --- defect 2: the coordinator, for any gRPC client -----------------------------------


def _generate(keep_alive: str = "", **options: Any) -> inference_pb2.GenerateRequest:
    request = inference_pb2.GenerateRequest(model=CHAT, prompt="x", keep_alive=keep_alive)
    if options:
        request.options.update(options)
    return request


COORDINATOR_CASES: list[tuple[str, Any, str]] = [
    ("Generate", _generate("1e300h"), "keep_alive"),
    ("Generate", _generate("3000000h"), "keep_alive"),
    ("Generate", _generate("soon"), "keep_alive"),
    ("Generate", _generate(num_ctx=-5), "options.num_ctx"),
    ("Generate", _generate(num_predict=math.inf), "options.num_predict"),
    ("Generate", _generate(num_predict=1e104), "options.num_predict"),
    ("Generate", _generate(top_k=-1), "options.top_k"),
    ("Generate", _generate(temperature=math.nan), "options.temperature"),
    (
        "Chat",
        inference_pb2.ChatRequest(
            model=CHAT,
            messages=[common_pb2.ChatMessage(role="user", content="x")],
            keep_alive="1e104s",
        ),
        "keep_alive",
    ),
    (
        "Embed",
        inference_pb2.EmbedRequest(model=EMBED, input=["x"], keep_alive="1e3s"),
        "keep_alive",
    ),
    (
        "Embed",
        inference_pb2.EmbedRequest(model=EMBED, input=["x"], dimensions=1 << 20),
        "dimensions must be between 1 and 65536",
    ),
]


@pytest.mark.parametrize(("rpc", "request_", "field"), COORDINATOR_CASES)
async def test_the_coordinator_refuses_out_of_range_values_before_routing(
    gw: DevCluster, rpc: str, request_: Any, field: str
) -> None:
    async with grpc.aio.insecure_channel(gw.coordinator_address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            if rpc == "Embed":
                await stub.Embed(request_, timeout=10)
            else:
                # Refused before routing: the first read fails, with no task assigned.
                await getattr(stub, rpc)(request_, timeout=10).read()
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (refused.value.details() or "")


# --- defect 2: the emulator, for a direct client ---------------------------------------


def _emulator_body(keep_alive: str) -> str:
    """A generate request with ``keep_alive`` as raw JSON (NaN, 1e104 or a 401-digit one)."""
    return f'{{"model": "{CHAT}", "prompt": "x", "stream": false, "keep_alive": {keep_alive}}}'


async def test_no_keep_alive_breaks_the_emulators_health_probe() -> None:
    config = EmulatorConfig(gpus=[hardware.gpu_kind("NVIDIA GeForce RTX 4090")], models=[CHAT])
    emulator = OllamaEmulator(config)
    await emulator.start(host="127.0.0.1", port=0)
    try:
        async with httpx.AsyncClient(base_url=emulator.url, timeout=30) as ollama:
            for keep_alive in ("1e104", "-1e104", f"{10**400}", '"2562047h"'):
                r = await ollama.post("/api/generate", content=_emulator_body(keep_alive))
                assert r.status_code == 200, (keep_alive, r.text)
                ps = await ollama.get("/api/ps")
                assert ps.status_code == 200, (keep_alive, ps.text)
                assert ps.json()["models"][0]["expires_at"] < "2400"
            # What Go refuses, the emulator refuses, and stays healthy.
            for keep_alive in ("NaN", "Infinity", '"1e300h"', '"3000000h"', '"nan"'):
                r = await ollama.post("/api/generate", content=_emulator_body(keep_alive))
                assert r.status_code == 400, (keep_alive, r.text)
                assert (await ollama.get("/api/ps")).status_code == 200
    finally:
        await emulator.stop()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(1e104, math.inf), (10**400, math.inf), ("2562047h", 2562047 * 3600.0), (-5, math.inf)],
)
async def test_the_emulator_holds_every_keep_alive_it_takes(value: object, seconds: float) -> None:
    assert parse_keep_alive(value, 300.0) == seconds


# --- the limits themselves ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (None, ""),
        ("", ""),
        (0, "0s"),
        (300, "300s"),
        (0.5, "0.5s"),
        (-1, "-1s"),
        (-1e104, "-1s"),
        ("5m", "5m"),
        (" 1h30m ", "1h30m"),
        ("300", "300s"),  # a bare number: Ollama's parser wants a unit
        ("-1", "-1s"),
        ("2562047h47m16.854775807s", "2562047h47m16.854775807s"),
        (limits.MAX_KEEP_ALIVE_SECONDS, f"{limits.MAX_KEEP_ALIVE_SECONDS}s"),
    ],
)
async def test_keep_alive_becomes_a_duration_every_ollama_takes(value: object, sent: str) -> None:
    assert limits.keep_alive(value) == sent


@pytest.mark.parametrize(
    "value",
    [
        1e104,
        10**400,
        limits.MAX_KEEP_ALIVE_SECONDS + 1,
        math.inf,
        -math.inf,
        math.nan,
        True,
        [5],
        "1e300h",
        "2562047h47m16.854775808s",
        "9" * 5000 + "h",
        "nan",
        "inf",
        "5 m",
        "5mm",
        "-",
    ],
)
async def test_keep_alive_past_ollamas_bounds_is_refused(value: object) -> None:
    with pytest.raises(limits.OutOfRange, match="keep_alive"):
        limits.keep_alive(value)


async def test_malformed_json_is_named_as_such_in_each_apis_shape() -> None:
    """A body that is not JSON was reported as the field ``body.30`` (FastAPI puts the
    character position where a field name goes); it is the body, malformed at a position,
    with the parser's reason (issue 21)."""
    from gateway.app import create_app

    app = create_app("127.0.0.1:1")  # refused before any coordinator is asked
    bad = b'{"model": "x", "prompt": "hi",,}'
    json_type = {"content-type": "application/json"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://t"
    ) as client:
        ollama = await client.post("/api/generate", content=bad, headers=json_type)
        openai = await client.post("/v1/chat/completions", content=bad, headers=json_type)
        anthropic = await client.post("/v1/messages", content=bad, headers=json_type)
    said = "body: malformed JSON at character 30: Expecting property name"
    assert ollama.status_code == 400 and ollama.json()["error"].startswith(said)
    assert openai.status_code == 400 and openai.json()["error"]["param"] == "body"
    assert openai.json()["error"]["message"].startswith(said)
    assert anthropic.status_code == 400
    assert anthropic.json()["error"]["message"].startswith(said)
