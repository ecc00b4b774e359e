"""The gateway's cost: cluster status and streamed generate through it, same run.

A one-node cluster (zero-delay emulator, coordinator, agent, gateway) runs in a child
process; this process is the client. Interleaved request by request it measures time to
first token of a streamed `/api/generate` (32 tokens) four ways — straight to the
emulator, through the coordinator's gRPC API, and through the gateway's Ollama API — and
then, the same way, the latency of a 4-input `/api/embed` straight to the emulator, through
the gRPC `Embed` and through the gateway (vectors in one message, not a stream); then the
latency of one whole (not streamed) 32-token chat answer through each API the gateway
speaks (Ollama's /api/chat, OpenAI's /v1/chat/completions and /v1/responses, Anthropic's
/v1/messages: what translating each costs); and last `GET /api/distributed/cluster/status`
requests/s (closed loop, 8 lanes) with p50/p99.
Prints one JSON object.

    python benchmarks/bench_gateway.py [--requests 300]
"""

from __future__ import annotations

import asyncio
import sys
import time

from harness import client_server_main, http_ttft, mesh_ttft, serve_one_node, summary

MODEL = "llama3.1:8b"
EMBEDDER = "nomic-embed-text"


async def measure(addresses: dict[str, str], requests: int) -> dict[str, object]:
    import grpc
    import httpx

    from hive.v1 import inference_pb2, inference_pb2_grpc

    body = {"model": MODEL, "prompt": "", "options": {"num_predict": 32}}
    paths: dict[str, list[float]] = {"emulator": [], "grpc_mesh": [], "gateway_ollama_api": []}
    async with (
        httpx.AsyncClient(timeout=30) as http,
        grpc.aio.insecure_channel(addresses["coordinator"]) as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def gateway_path(base: str, prompt: str) -> float:
            return await http_ttft(http, f"{base}/api/generate", {**body, "prompt": prompt})

        async def grpc_path(prompt: str) -> float:
            return await mesh_ttft(stub, MODEL, prompt, 32)

        for i in range(20):
            await gateway_path(addresses["emulator"], f"warm {i}")
            await grpc_path(f"warm {i}")
            await gateway_path(addresses["gateway"], f"warm {i}")
        for i in range(requests):
            paths["emulator"].append(await gateway_path(addresses["emulator"], f"p {i}"))
            paths["grpc_mesh"].append(await grpc_path(f"p {i}"))
            paths["gateway_ollama_api"].append(await gateway_path(addresses["gateway"], f"p {i}"))

        embed: dict[str, list[float]] = {"emulator": [], "grpc_mesh": [], "gateway_ollama_api": []}
        texts = ["def add(a, b):", "return a + b", "a cat", "the queue drains"]

        async def embed_http(base: str, i: int) -> float:
            start = time.perf_counter()
            response = await http.post(
                f"{base}/api/embed", json={"model": EMBEDDER, "input": [*texts, str(i)]}
            )
            response.raise_for_status()
            assert len(response.json()["embeddings"]) == len(texts) + 1
            return time.perf_counter() - start

        async def embed_grpc(i: int) -> float:
            start = time.perf_counter()
            reply = await stub.Embed(
                inference_pb2.EmbedRequest(model=EMBEDDER, input=[*texts, str(i)])
            )
            assert len(reply.result.embeddings) == len(texts) + 1
            return time.perf_counter() - start

        for i in range(20):
            await embed_http(addresses["emulator"], i)
            await embed_grpc(i)
            await embed_http(addresses["gateway"], i)
        for i in range(requests):
            embed["emulator"].append(await embed_http(addresses["emulator"], i))
            embed["grpc_mesh"].append(await embed_grpc(i))
            embed["gateway_ollama_api"].append(await embed_http(addresses["gateway"], i))

        user = [{"role": "user", "content": "hello"}]
        chats: dict[str, tuple[str, dict[str, object]]] = {
            "ollama_chat": (
                "/api/chat",
                {"model": MODEL, "messages": user, "stream": False, "options": {"num_predict": 32}},
            ),
            "openai_chat_completions": (
                "/v1/chat/completions",
                {"model": MODEL, "messages": user, "max_tokens": 32},
            ),
            "openai_responses": (
                "/v1/responses",
                {"model": MODEL, "input": "hello", "max_output_tokens": 32},
            ),
            "anthropic_messages": (
                "/v1/messages",
                {"model": MODEL, "messages": user, "max_tokens": 32},
            ),
        }
        by_api: dict[str, list[float]] = {name: [] for name in chats}

        async def chat_once(path: str, payload: dict[str, object]) -> float:
            start = time.perf_counter()
            response = await http.post(f"{addresses['gateway']}{path}", json=payload)
            response.raise_for_status()
            return time.perf_counter() - start

        for _ in range(20):
            for path, payload in chats.values():
                await chat_once(path, payload)
        for _ in range(requests):
            for name, (path, payload) in chats.items():
                by_api[name].append(await chat_once(path, payload))

        latencies: list[float] = []
        deadline = time.perf_counter() + 10

        async def lane() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                response = await http.get(f"{addresses['gateway']}/api/distributed/cluster/status")
                response.raise_for_status()
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(8)))
        rate = len(latencies) / (time.perf_counter() - began)
    ttft = {k: summary(v) for k, v in paths.items()}
    return {
        "benchmark": "gateway",
        "requests": requests,
        "ttft": ttft,
        "gateway_adds_p50_ms_over_grpc": round(
            ttft["gateway_ollama_api"]["p50_ms"] - ttft["grpc_mesh"]["p50_ms"], 3
        ),
        "gateway_path_adds_p50_ms_over_emulator": round(
            ttft["gateway_ollama_api"]["p50_ms"] - ttft["emulator"]["p50_ms"], 3
        ),
        "target_gateway_adds_p50_ms": 5.0,
        "embed_latency": {k: summary(v) for k, v in embed.items()},
        "whole_chat_latency_by_api": {k: summary(v) for k, v in by_api.items()},
        "cluster_status": {"requests_per_s": round(rate, 1), **summary(latencies)},
    }


def main() -> int:
    return client_server_main(
        __file__,
        lambda state: serve_one_node(MODEL, state, gateway=True, also=(EMBEDDER,)),
        measure,
        default_requests=300,
    )


if __name__ == "__main__":
    sys.exit(main())
