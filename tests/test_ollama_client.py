"""The node agent's Ollama client against a minimal HTTP/1.1 server at its boundary."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re

import httpx
import pytest

from node_agent.ollama import OllamaClient, OllamaError

LINES = [
    {"model": "m", "response": "hello", "done": False},
    {"model": "m", "response": "", "done": True, "done_reason": "stop", "eval_count": 1},
]


async def _ollama_like_server() -> tuple[asyncio.Server, list[int]]:
    """Answers every POST with a chunked NDJSON stream, as Ollama does, and counts the TCP
    connections it accepts. The body's terminating chunk comes a little after the ``done``
    line, so a client that stops reading at ``done`` has not seen it yet."""
    accepted: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                found = re.search(rb"content-length: *(\d+)", head, re.IGNORECASE)
                await reader.readexactly(int(found.group(1)) if found else 0)
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\n"
                    b"transfer-encoding: chunked\r\n\r\n"
                )
                for item in LINES:
                    line = json.dumps(item).encode() + b"\n"
                    writer.write(b"%x\r\n%s\r\n" % (len(line), line))
                    await writer.drain()
                await asyncio.sleep(0.05)
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, accepted


async def test_streams_reuse_one_connection_even_when_the_reader_stops_at_done() -> None:
    server, accepted = await _ollama_like_server()
    port = server.sockets[0].getsockname()[1]
    client = OllamaClient(f"http://127.0.0.1:{port}")
    try:
        for _ in range(3):
            seen = []
            async with contextlib.aclosing(client.stream("/api/generate", {"model": "m"})) as s:
                async for item in s:
                    seen.append(item)
                    if item.get("done"):
                        break  # what the agent's RunTask does: answer, then return
            assert seen == LINES
        assert len(accepted) == 1
    finally:
        await client.close()
        server.close()
        await server.wait_closed()


def test_logprobs_lines_become_the_contracts_entries() -> None:
    """Ollama's logprobs entries as RunTask chunks carry them: bytes as Ollama sent them,
    or the token's own UTF-8 when they are missing or not bytes; top entries nested."""
    from hive.v1 import common_pb2, node_agent_pb2
    from node_agent.service import ollama_payload, token_logprobs

    line = {
        "response": " é",
        "logprobs": [
            {
                "token": " é",
                "logprob": -0.25,
                "bytes": [32, 195, 169],
                "top_logprobs": [
                    {"token": " é", "logprob": -0.25},
                    {"token": " e", "logprob": -1.5, "bytes": [32, 999]},
                ],
            },
            "not an entry",
        ],
    }
    [entry] = token_logprobs(line)
    assert (entry.token, entry.logprob, entry.bytes) == (" é", -0.25, " é".encode())
    assert [(t.token, t.logprob, t.bytes) for t in entry.top_logprobs] == [
        (" é", -0.25, " é".encode()),
        (" e", -1.5, b" e"),
    ]
    assert token_logprobs({"response": "x"}) == []
    asked = node_agent_pb2.RunTaskRequest(
        model="m", generate=node_agent_pb2.GenerateInput(prompt="p"), logprobs=True, top_logprobs=3
    )
    path, payload = ollama_payload(asked)
    assert path == "/api/generate" and payload["logprobs"] is True and payload["top_logprobs"] == 3
    plain = node_agent_pb2.RunTaskRequest(
        model="m", chat=node_agent_pb2.ChatInput(messages=[common_pb2.ChatMessage(role="user")])
    )
    assert "logprobs" not in ollama_payload(plain)[1]


async def test_an_answer_that_is_not_an_object_is_an_ollama_error() -> None:
    """Whatever is at the endpoint's URL (a proxy, another Hive cluster's gateway, a wrong
    port) answers ``[]`` on every GET and POST: each call is an OllamaError naming the path,
    which marks the endpoint unhealthy, never an AttributeError further in."""

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[])

    client = OllamaClient("http://ollama.test")
    client._http = httpx.AsyncClient(
        base_url="http://ollama.test", transport=httpx.MockTransport(answer)
    )
    async with client._http:
        for call, path in (
            (client.version(), "/api/version"),
            (client.tags(), "/api/tags"),
            (client.ps(), "/api/ps"),
            (client.post("/api/embed", {"model": "m"}), "/api/embed"),
        ):
            with pytest.raises(OllamaError, match=f"^{path} answered list, not an object$"):
                await call
