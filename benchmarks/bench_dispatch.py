"""Real-stack dispatch: 20 agents with zero-delay emulators, against the raw ceiling.

Three processes, as a deployment would have them: this one (the clients), the
coordinator, and one holding 20 node agents each with its own zero-delay Ollama
emulator. In the same run it measures:

* ceiling: what the bare transports do in the same layout — bare grpc.aio
  server-streaming calls (5 chunks) to a trivial server in the coordinator's process,
  and bare streaming HTTP generates on the emulators, each measured alone at the same
  concurrency; a task needs one of each, so the ceiling is 1 / (1/grpc + 1/http);
* sustained dispatch: tasks/s through the mesh at the same client concurrency;
* assignment latency (accepted by the coordinator → an agent reports it running),
  p50/p99, at half the sustained rate, open loop;
* 10,000 tasks submitted at once: all accepted, queued, drained, none lost.

Prints one JSON object.

    python benchmarks/bench_dispatch.py [--agents 20] [--seconds 10] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from harness import nodeless_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "llama3.2:3b"
TOKENS = 8
BARE_METHOD = "/bench.Bare/Stream"


# --- child: coordinator + bare gRPC server --------------------------------------------


async def serve_coordinator() -> None:
    import grpc

    from coordinator.server import Coordinator

    coordinator = Coordinator(nodeless_cluster(routing={"scheduler": {"max_queue": 20_000}}))
    port = await coordinator.start()

    async def bare_stream(request: bytes, context: Any) -> Any:
        for i in range(5):
            yield b"chunk %d" % i

    bare = grpc.aio.server()
    bare.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "bench.Bare",
                {
                    "Stream": grpc.unary_stream_rpc_method_handler(
                        bare_stream, request_deserializer=None, response_serializer=None
                    )
                },
            ),
        )
    )
    bare_port = bare.add_insecure_port("127.0.0.1:0")
    await bare.start()
    print(
        json.dumps({"coordinator": f"127.0.0.1:{port}", "bare": f"127.0.0.1:{bare_port}"}),
        flush=True,
    )
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        since = float(line.split()[1])
        runs = [
            r
            for r in coordinator.dispatcher.tasks.values()
            if r.started_at is not None and r.submitted_at >= since
        ]
        latencies = sorted((r.started_at - r.submitted_at) * 1000 for r in runs)  # type: ignore[operator]
        to_assign = sorted((r.assigned_at - r.submitted_at) * 1000 for r in runs)  # type: ignore[operator]
        print(
            json.dumps(
                {
                    "tasks": len(latencies),
                    "p50_ms": round(statistics.median(latencies), 3) if latencies else None,
                    "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))], 3)
                    if latencies
                    else None,
                    "to_assignment_p50_ms": round(statistics.median(to_assign), 3)
                    if to_assign
                    else None,
                    "to_assignment_p99_ms": round(to_assign[int(0.99 * (len(to_assign) - 1))], 3)
                    if to_assign
                    else None,
                    "now": loop.time(),
                }
            ),
            flush=True,
        )
    await bare.stop(0)
    await coordinator.stop()


# --- child: agents + emulators ----------------------------------------------------------


async def serve_agents(coordinator: str, agents: int) -> None:
    from hive import hardware
    from hive.config import AgentConfig, EndpointSpec, GpuSpec, NodeSpec
    from node_agent.agent import Agent
    from ollama_emulator import EmulatorConfig, OllamaEmulator

    gpu = hardware.gpu_kind("NVIDIA GeForce RTX 3070")
    emulators, running = [], []
    for i in range(agents):
        emulator = OllamaEmulator(EmulatorConfig(gpus=[gpu], models=[MODEL], time_scale=0.0))
        await emulator.start()
        emulators.append(emulator)
        agent = Agent(
            AgentConfig(
                source="bench",
                coordinator=coordinator,
                listen="127.0.0.1:0",
                telemetry="simulated",
                node=NodeSpec(
                    name=f"NODE{i:02d}",
                    gpus=(GpuSpec(gpu.name, "nvidia", gpu.memory_bytes),),
                    endpoints=(
                        EndpointSpec(
                            id="gpu0", gpus=(0,), num_parallel=4, url=emulator.url, models=(MODEL,)
                        ),
                    ),
                ),
            )
        )
        await agent.start()
        running.append(agent)
    await asyncio.gather(*(a.connected.wait() for a in running))
    print(json.dumps({"emulators": [e.url for e in emulators]}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for agent in running:
            await agent.stop(0)
        for emulator in emulators:
            await emulator.stop()


# --- the clients --------------------------------------------------------------------------


async def closed_loop(worker: Any, concurrency: int, seconds: float) -> float:
    """Run ``worker(i)`` back to back on ``concurrency`` lanes for ``seconds``; tasks/s."""
    done = 0
    deadline = time.perf_counter() + seconds

    async def lane() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            # A global sequence number: consecutive tasks go to different emulators.
            done += 1
            await worker(done)

    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return done / (time.perf_counter() - start)


async def measure(
    args: argparse.Namespace,
    coord: subprocess.Popen[str],
    addresses: dict[str, Any],
    emulators: list[str],
) -> dict[str, Any]:
    import grpc
    import httpx

    from hive.v1 import inference_pb2, inference_pb2_grpc

    assert coord.stdin is not None and coord.stdout is not None
    http = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None))
    bare_channel = grpc.aio.insecure_channel(addresses["bare"])
    mesh_channel = grpc.aio.insecure_channel(addresses["coordinator"])
    bare = bare_channel.unary_stream(BARE_METHOD)
    mesh = inference_pb2_grpc.InferenceServiceStub(mesh_channel)
    body = {"model": MODEL, "prompt": "hello", "options": {"num_predict": TOKENS}}

    async def bare_grpc(i: int) -> None:
        async for _ in bare(b"task"):
            pass

    async def bare_http(i: int) -> None:
        async with http.stream(
            "POST", f"{emulators[i % len(emulators)]}/api/generate", json=body
        ) as response:
            async for _ in response.aiter_lines():
                pass

    results = 0

    async def mesh_task(i: int) -> None:
        nonlocal results
        request = inference_pb2.GenerateRequest(model=MODEL, prompt=f"hello {i}")
        request.options.update({"num_predict": TOKENS})
        async for event in mesh.Generate(request):
            if event.HasField("result"):
                results += 1

    def coordinator_stats(since: float) -> dict[str, Any]:
        coord.stdin.write(f"stats {since}\n")  # type: ignore[union-attr]
        coord.stdin.flush()  # type: ignore[union-attr]
        return json.loads(coord.stdout.readline())  # type: ignore[union-attr]

    try:
        for i in range(50):  # warm-up: models loaded on every emulator, channels open
            await bare_grpc(i)
            await bare_http(i)
            await mesh_task(i)
        grpc_rate = await closed_loop(bare_grpc, args.concurrency, args.seconds)
        http_rate = await closed_loop(bare_http, args.concurrency, args.seconds)
        # A task needs one of each: at best their costs add up.
        ceiling = 1 / (1 / grpc_rate + 1 / http_rate)
        sustained = await closed_loop(mesh_task, args.concurrency, args.seconds)

        # Open loop at half the sustained rate: assignment latency inside the coordinator.
        rate = sustained / 2
        since = coordinator_stats(0)["now"]
        start = time.perf_counter()
        pending = []
        n = int(rate * args.seconds)
        for i in range(n):
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            pending.append(asyncio.create_task(mesh_task(10_000_000 + i)))
        await asyncio.gather(*pending)
        latency = coordinator_stats(since)

        # 10,000 at once: all accepted, none lost.
        results = 0
        start = time.perf_counter()
        burst = [asyncio.create_task(mesh_task(20_000_000 + i)) for i in range(args.burst)]
        outcomes = await asyncio.gather(*burst, return_exceptions=True)
        drain_seconds = time.perf_counter() - start
        errors = [o for o in outcomes if isinstance(o, BaseException)]
    finally:
        await http.aclose()
        await bare_channel.close()
        await mesh_channel.close()
    return {
        "benchmark": "dispatch",
        "agents": args.agents,
        "concurrency": args.concurrency,
        "tokens_per_task": TOKENS,
        "bare_grpc_stream_calls_per_s": round(grpc_rate, 1),
        "bare_http_generate_calls_per_s": round(http_rate, 1),
        "ceiling_tasks_per_s": round(ceiling, 1),
        "sustained_tasks_per_s": round(sustained, 1),
        "sustained_share_of_ceiling": round(sustained / ceiling, 3),
        "target_share": 0.5,
        "assignment_latency_at_half_rate": {
            "rate_tasks_per_s": round(rate, 1),
            "tasks": latency["tasks"],
            "p50_ms": latency["p50_ms"],
            "p99_ms": latency["p99_ms"],
            "target_p99_ms": 10.0,
            "accepted_to_assigned_p50_ms": latency["to_assignment_p50_ms"],
            "accepted_to_assigned_p99_ms": latency["to_assignment_p99_ms"],
        },
        "burst": {
            "submitted": args.burst,
            "completed": results,
            "errors": len(errors),
            "first_error": repr(errors[0])[:200] if errors else None,
            "drain_seconds": round(drain_seconds, 1),
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--agents", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--burst", type=int, default=10_000)
    parser.add_argument("--serve-coordinator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-agents", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_coordinator or args.serve_agents:
        from hive.serving import tune_gc_for_serving

        # The children are the daemons: tuned as `hive coordinator` and `hive agent` are.
        tune_gc_for_serving()
    if args.serve_coordinator:
        asyncio.run(serve_coordinator())
        return 0
    if args.serve_agents:
        asyncio.run(serve_agents(args.serve_agents, args.agents))
        return 0
    coord = subprocess.Popen(
        [sys.executable, __file__, "--serve-coordinator"],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
    )
    agents = None
    try:
        assert coord.stdout is not None
        addresses = json.loads(coord.stdout.readline())
        agents = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--serve-agents",
                addresses["coordinator"],
                "--agents",
                str(args.agents),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.DEVNULL,
        )
        assert agents.stdout is not None
        emulators = json.loads(agents.stdout.readline())["emulators"]
        result = asyncio.run(measure(args, coord, addresses, emulators))
        print(json.dumps(result, indent=2))
    finally:
        for child in (agents, coord):
            if child is not None:
                child.terminate()
                child.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
