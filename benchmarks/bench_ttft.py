"""Time to first token: through the mesh against calling the emulator directly, same run.

The servers (a zero-delay Ollama emulator, the coordinator and one agent) run in
a child process; this process is the client for both paths, so the two numbers
differ only by what the mesh adds: the gRPC hop to the coordinator, the dispatch,
the RunTask hop to the agent and the agent's HTTP call to the same emulator.
Prints one JSON object.

    python benchmarks/bench_ttft.py [--requests 300]
"""

from __future__ import annotations

import os
import statistics
import sys

from harness import client_server_main, http_ttft, mesh_ttft, serve_one_node

MODEL = "llama3.1:8b"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(statistics.median(ms), 3),
        "p90_ms": round(percentile(ms, 0.9), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


async def measure(coordinator: str, emulator: str, requests: int) -> dict[str, object]:
    import grpc
    import httpx

    from hive.v1 import inference_pb2_grpc

    direct: list[float] = []
    mesh: list[float] = []
    async with (
        httpx.AsyncClient(base_url=emulator, timeout=30) as http,
        grpc.aio.insecure_channel(coordinator) as channel,
    ):
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def one_direct(prompt: str) -> float:
            body = {"model": MODEL, "prompt": prompt, "options": {"num_predict": 32}}
            return await http_ttft(http, "/api/generate", body)

        async def one_mesh(prompt: str) -> float:
            return await mesh_ttft(stub, MODEL, prompt, 32)

        # Warm up: model loaded, connections open, code paths imported.
        for i in range(20):
            await one_direct(f"warm {i}")
            await one_mesh(f"warm {i}")
        # Interleave the two paths so drift in the machine's load hits both alike.
        for i in range(requests):
            direct.append(await one_direct(f"prompt {i}"))
            mesh.append(await one_mesh(f"prompt {i}"))
    d, m = summary(direct), summary(mesh)
    return {
        "benchmark": "ttft",
        "requests": requests,
        "direct_emulator": d,
        "through_mesh": m,
        "mesh_adds_p50_ms": round(m["p50_ms"] - d["p50_ms"], 3),
        "mesh_adds_p99_ms": round(m["p99_ms"] - d["p99_ms"], 3),
        "target_p50_added_ms": 3.0,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    return client_server_main(
        __file__,
        lambda state: serve_one_node(MODEL, state),
        lambda addresses, requests: measure(
            addresses["coordinator"], addresses["emulator"], requests
        ),
        default_requests=300,
    )


if __name__ == "__main__":
    sys.exit(main())
