"""What a federated hop costs: one request through two clusters against one through one.

A child process runs two one-node clusters with gateways: B's node has the model; A's node
does not, and A has one more node, LAB-B, whose endpoint is B's gateway (federation). This
process measures, interleaved request by request, time to first token and whole-answer
latency of a streamed 32-token `/api/generate` three ways: straight to B's zero-delay
emulator, through B's gateway (one cluster), and through A's gateway (A's coordinator →
LAB-B's agent → B's gateway → B's coordinator → B's agent → the emulator). Prints one JSON
object.

    python benchmarks/bench_federation.py [--requests 200]
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from harness import client_server_main, summary

MODEL = "llama3.1:8b"
GPU = ("NVIDIA GeForce RTX 3070", "nvidia", 8 << 30)


async def serve(state_dir: str) -> None:
    """Clusters A and B and A's federation agent; print the addresses; serve forever."""
    from hive.cli.dev import DevCluster
    from hive.config import (
        AgentConfig,
        ClusterConfig,
        CoordinatorSettings,
        EndpointSpec,
        GpuSpec,
        NodeSpec,
    )
    from node_agent.agent import Agent

    def one_node(name: str, model: str) -> ClusterConfig:
        endpoint = EndpointSpec(id="gpu0", gpus=(0,), num_parallel=4, models=(model,))
        node = NodeSpec(name=name, gpus=(GpuSpec(*GPU),), endpoints=(endpoint,))
        return ClusterConfig(
            source="bench", coordinator=CoordinatorSettings(listen="127.0.0.1:0"), nodes=(node,)
        )

    def dev(cluster: ClusterConfig, state: str) -> DevCluster:
        return DevCluster(
            cluster,
            coordinator_listen="127.0.0.1:0",
            gateway_port=0,
            time_scale=0.0,
            state_path=str(Path(state_dir) / state),
        )

    b = dev(one_node("B1", MODEL), "b.sqlite")
    a = dev(one_node("A1", "phi3:mini"), "a.sqlite")
    await b.start()
    await a.start()
    assert a.gateway is not None and b.gateway is not None
    peer = EndpointSpec(id="hive", gpus=(0,), num_parallel=8, url=b.gateway.url)
    agent = Agent(
        AgentConfig(
            source="bench",
            coordinator=a.coordinator_address,
            node=NodeSpec(name="LAB-B", gpus=(GpuSpec(*GPU),), endpoints=(peer,)),
            listen="127.0.0.1:0",
            telemetry="none",
            metrics_listen="off",
        )
    )
    await agent.start()
    await asyncio.gather(a.wait_registered(), b.wait_registered(), agent.connected.wait())
    print(
        json.dumps(
            {
                "emulator": b.emulators["B1/gpu0"].url,
                "one_cluster": b.gateway.url,
                "federated": a.gateway.url,
            }
        ),
        flush=True,
    )
    try:
        await asyncio.Event().wait()
    finally:
        await agent.stop(grace=0)
        await a.stop()
        await b.stop()


async def timed(http: Any, base: str, prompt: str) -> tuple[float, float]:
    """(time to first token, whole answer) of a streamed 32-token generate, seconds."""
    body = {"model": MODEL, "prompt": prompt, "options": {"num_predict": 32, "ignore_eos": True}}
    start = time.perf_counter()
    first = 0.0
    async with http.stream("POST", f"{base}/api/generate", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not first and line and json.loads(line).get("response"):
                first = time.perf_counter() - start
    return first, time.perf_counter() - start


async def measure(addresses: dict[str, str], requests: int) -> dict[str, object]:
    import httpx

    ttft: dict[str, list[float]] = {path: [] for path in addresses}
    whole: dict[str, list[float]] = {path: [] for path in addresses}
    async with httpx.AsyncClient(timeout=30) as http:
        for i in range(20):
            for base in addresses.values():
                await timed(http, base, f"warm {i}")
        for i in range(requests):
            for path, base in addresses.items():
                first, total = await timed(http, base, f"p {i}")
                ttft[path].append(first)
                whole[path].append(total)
    first_token = {k: summary(v) for k, v in ttft.items()}
    return {
        "benchmark": "federation",
        "requests": requests,
        "ttft": first_token,
        "whole_answer": {k: summary(v) for k, v in whole.items()},
        "federated_hop_adds_p50_ms": round(
            first_token["federated"]["p50_ms"] - first_token["one_cluster"]["p50_ms"], 3
        ),
    }


def main() -> int:
    return client_server_main(
        __file__, lambda state: serve(str(Path(state).parent)), measure, default_requests=200
    )


if __name__ == "__main__":
    sys.exit(main())
