"""Heartbeat fan-in: the coordinator's CPU cost of N agents heartbeating at 1 Hz.

The coordinator runs alone in a child process; this process plays N agents,
each holding a real AgentSession stream with a Register (2 GPUs, one Ollama
endpoint with four models) and a Heartbeat every second carrying full
telemetry. The coordinator's CPU time is read from /proc before and after a
measurement window. The same coordinator idle (no agents) over the same window
is the baseline, measured in the same run. Prints one JSON object.

    python benchmarks/bench_heartbeat.py [--agents 200] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

from harness import server_child

GIB = 1 << 30


async def serve(state_path: str) -> None:
    from coordinator.server import Coordinator
    from hive.config import ClusterConfig, CoordinatorSettings

    settings = CoordinatorSettings(listen="127.0.0.1:0", state_path=state_path)
    coordinator = Coordinator(ClusterConfig("bench", settings, nodes=()))
    port = await coordinator.start()
    print(json.dumps({"address": f"127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await coordinator.stop()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def node_info(i: int) -> object:
    from hive.v1 import common_pb2

    return common_pb2.NodeInfo(
        name=f"AGENT{i:04d}",
        agent_address=f"127.0.0.1:{20000 + i}",
        specializations=["code_generation", "testing"],
        gpus=[
            common_pb2.Gpu(
                index=g,
                name="NVIDIA GeForce RTX 3070",
                memory_total_bytes=8 * GIB,
                vendor=common_pb2.GPU_VENDOR_NVIDIA,
            )
            for g in range(2)
        ],
        endpoints=[
            common_pb2.OllamaEndpoint(
                id="gpu01",
                url="http://127.0.0.1:11434",
                gpu_indices=[0, 1],
                num_parallel=4,
                models=[
                    common_pb2.ModelInfo(name=m, size_bytes=5 * 10**9)
                    for m in ("llama3.1:8b", "codellama:13b", "qwen2.5-coder:7b", "mistral:7b")
                ],
            )
        ],
    )


def telemetry(seq: int) -> object:
    from hive.v1 import common_pb2

    t = common_pb2.NodeTelemetry(
        gpus=[
            common_pb2.GpuTelemetry(
                index=g,
                utilization_percent=40 + seq % 50,
                memory_used_bytes=5 * GIB,
                memory_total_bytes=8 * GIB,
                temperature_celsius=61.5,
                power_watts=140,
                power_limit_watts=220,
            )
            for g in range(2)
        ],
        endpoints=[
            common_pb2.EndpointTelemetry(
                id="gpu01",
                healthy=True,
                in_flight=seq % 4,
                loaded_models=[
                    common_pb2.LoadedModel(name="llama3.1:8b", size_vram_bytes=5 * 10**9)
                ],
            )
        ],
    )
    t.sampled_at.GetCurrentTime()
    return t


async def run_agents(address: str, agents: int, stop: asyncio.Event, ready: asyncio.Event) -> None:
    import grpc

    from hive.v1 import agent_session_pb2, agent_session_pb2_grpc

    registered = 0

    async def agent(i: int, channel: grpc.aio.Channel) -> None:
        nonlocal registered
        call = agent_session_pb2_grpc.AgentSessionServiceStub(channel).Connect()
        await call.write(
            agent_session_pb2.ConnectRequest(register=agent_session_pb2.Register(node=node_info(i)))
        )  # type: ignore[arg-type]
        await call.read()
        registered += 1
        if registered == agents:
            ready.set()
        await asyncio.sleep((i % 100) / 100)  # spread heartbeats across the second
        seq = 0
        while not stop.is_set():
            seq += 1
            await call.write(
                agent_session_pb2.ConnectRequest(
                    heartbeat=agent_session_pb2.Heartbeat(seq=seq, telemetry=telemetry(seq))
                )
            )  # type: ignore[arg-type]
            await asyncio.sleep(1.0)
        await call.done_writing()

    # A few channels, as many hosts would open many connections.
    channels = [grpc.aio.insecure_channel(address) for _ in range(8)]
    try:
        await asyncio.gather(*(agent(i, channels[i % len(channels)]) for i in range(agents)))
    finally:
        for channel in channels:
            await channel.close()


async def measure(address: str, pid: int, agents: int, seconds: float) -> dict[str, object]:
    # Baseline: the idle coordinator over the same window.
    c0, t0 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    idle_share = (cpu_seconds(pid) - c0) / (time.perf_counter() - t0)

    stop, ready = asyncio.Event(), asyncio.Event()
    task = asyncio.create_task(run_agents(address, agents, stop, ready))
    await asyncio.wait_for(ready.wait(), 60)
    await asyncio.sleep(2)  # let heartbeats settle into their 1 Hz rhythm
    c1, t1 = cpu_seconds(pid), time.perf_counter()
    await asyncio.sleep(seconds)
    busy_share = (cpu_seconds(pid) - c1) / (time.perf_counter() - t1)
    stop.set()
    await asyncio.wait_for(task, 10)
    return {
        "benchmark": "heartbeat_fan_in",
        "agents": agents,
        "heartbeat_hz": 1.0,
        "window_seconds": seconds,
        "coordinator_cpu_percent_of_one_core": round(100 * busy_share, 2),
        "idle_coordinator_cpu_percent": round(100 * idle_share, 2),
        "per_heartbeat_cpu_us": round(1e6 * (busy_share - idle_share) / agents, 1),
        "target_percent": 10.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
        return 0
    with server_child(__file__) as info:
        result = asyncio.run(measure(info["address"], info["pid"], args.agents, args.seconds))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
