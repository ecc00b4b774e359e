"""Coordinator memory under a long stream of chat requests (issue 17, item 6).

Three processes, as an operator runs them: this one (the client), the coordinator alone
(its resident memory is what is measured), and one holding the node agents, each with its
own zero-delay Ollama emulator. Chat requests go over gRPC with the gateway's one-hour
timeout, 8 lanes back to back; every ``--every`` requests the coordinator is asked (a line
on its stdin) for its RSS after a full collection, its tracemalloc total with
``--tracemalloc``, and the length of every structure that grows with requests: the explain
history (``EXPLAIN_HISTORY`` TaskRun records), the scheduler's deadline and queue heaps, the
optimizer's task samples and arrivals. At the end it measures each kind of record's bytes
(the objects reachable from it, shared ones counted once per structure).

Growth per 1,000 requests is reported from the first checkpoint at which the explain
history is full. What remains then is the optimizer's history filling its window
(``--window`` seconds, 600 by default, at most 50,000 samples): pass a shorter window to
see it level off within a bounded run. Prints one JSON object.

    python benchmarks/bench_memory.py [--requests 30000] [--every 2500] [--nodes 3]
        [--explain-history 10000] [--window 600] [--tracemalloc]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import subprocess
import sys
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

from harness import nodeless_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "llama3.2:3b"
TOKENS = 8
LANES = 8


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def reachable_bytes(root: object) -> int:
    """``sys.getsizeof`` summed over every object reachable from ``root``, each once
    (classes, modules and functions are not counted: they are not per record)."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(
            obj, type | types.ModuleType | types.FunctionType | types.BuiltinFunctionType
        ):
            continue
        seen.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def per_record(items: Any) -> int:
    """Bytes per record of a container of records (0 when empty)."""
    items = list(items)
    return round(reachable_bytes(items) / len(items)) if items else 0


# --- child: the coordinator -----------------------------------------------------------------


async def serve_coordinator(explain_history: int, window: float, trace: bool) -> None:
    import coordinator.dispatch
    from coordinator.server import Coordinator

    coordinator.dispatch.EXPLAIN_HISTORY = explain_history
    if trace:
        tracemalloc.start(1)
    server = Coordinator(nodeless_cluster(optimizer={"window_seconds": window}))
    port = await server.start()
    print(json.dumps({"coordinator": f"127.0.0.1:{port}"}), flush=True)
    dispatcher = server.dispatcher
    scheduler = dispatcher.scheduler
    history = server.optimizer.history if server.optimizer is not None else None
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        gc.collect()
        report: dict[str, Any] = {
            "rss_mb": round(rss_bytes() / 2**20, 2),
            "explain_records": len(dispatcher.tasks),
            "deadline_entries": len(scheduler._deadlines),
            "queue_entries": len(scheduler._heap),
            "history_samples": len(history.tasks) if history is not None else 0,
            "history_arrivals": len(history.arrivals) if history is not None else 0,
        }
        if trace:
            report["traced_mb"] = round(tracemalloc.get_traced_memory()[0] / 2**20, 2)
        if line.strip() == "sizes":
            report["bytes_per_record"] = {
                "explain_record": per_record(dispatcher.tasks.values()),
                "history_sample": per_record(history.tasks) if history is not None else 0,
                "history_arrival": per_record(history.arrivals) if history is not None else 0,
                "deadline_entry": per_record(scheduler._deadlines),
            }
        print(json.dumps(report), flush=True)
    await server.stop()


# --- child: agents + emulators --------------------------------------------------------------


async def serve_agents(coordinator: str, nodes: int) -> None:
    from hive import hardware
    from hive.config import AgentConfig, EndpointSpec, GpuSpec, NodeSpec
    from node_agent.agent import Agent
    from ollama_emulator import EmulatorConfig, OllamaEmulator

    gpu = hardware.gpu_kind("NVIDIA GeForce RTX 3070")
    emulators, agents = [], []
    for i in range(nodes):
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
        agents.append(agent)
    await asyncio.gather(*(a.connected.wait() for a in agents))
    print(json.dumps({"nodes": nodes}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for agent in agents:
            await agent.stop(0)
        for emulator in emulators:
            await emulator.stop()


# --- the client -----------------------------------------------------------------------------


async def measure(
    args: argparse.Namespace, coordinator: subprocess.Popen[str], address: str
) -> dict[str, Any]:
    import grpc

    from gateway.inference import GENERATION_TIMEOUT_SECONDS
    from hive.v1 import common_pb2, inference_pb2, inference_pb2_grpc

    assert coordinator.stdin is not None and coordinator.stdout is not None

    def ask(what: str) -> dict[str, Any]:
        coordinator.stdin.write(what + "\n")  # type: ignore[union-attr]
        coordinator.stdin.flush()  # type: ignore[union-attr]
        return dict(json.loads(coordinator.stdout.readline()))  # type: ignore[union-attr]

    done = 0
    checkpoints: list[dict[str, Any]] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)

        async def chat(i: int) -> None:
            request = inference_pb2.ChatRequest(
                model=MODEL, messages=[common_pb2.ChatMessage(role="user", content=f"hello {i}")]
            )
            request.options.update({"num_predict": TOKENS})
            async for _ in stub.Chat(request, timeout=GENERATION_TIMEOUT_SECONDS):
                pass

        async def run_until(target: int) -> None:
            nonlocal done

            async def lane() -> None:
                nonlocal done
                while done < target:
                    done += 1
                    await chat(done)

            await asyncio.gather(*(lane() for _ in range(LANES)))

        await run_until(200)  # warm-up: connections open, code paths imported
        start = time.perf_counter()
        first = done
        checkpoints.append({"requests": 0, "seconds": 0.0, **ask("measure")})
        while done - first < args.requests:
            await run_until(min(first + args.requests, done + args.every))
            point = {"requests": done - first, "seconds": round(time.perf_counter() - start, 1)}
            last = done - first >= args.requests
            checkpoints.append({**point, **ask("sizes" if last else "measure")})
        seconds = time.perf_counter() - start
    sizes = checkpoints[-1].pop("bytes_per_record")
    for before, after in itertools.pairwise(checkpoints):
        per = 1000 / (after["requests"] - before["requests"])
        after["rss_kb_per_1000"] = round((after["rss_mb"] - before["rss_mb"]) * 1024 * per, 1)
        if "traced_mb" in after:
            after["traced_kb_per_1000"] = round(
                (after["traced_mb"] - before["traced_mb"]) * 1024 * per, 1
            )
    full = [c for c in checkpoints if c["explain_records"] >= args.explain_history]
    growth: dict[str, Any] = {}
    if len(full) >= 2:
        per = 1000 / (full[-1]["requests"] - full[0]["requests"])
        growth["from_requests"] = full[0]["requests"]
        growth["rss_kb"] = round((full[-1]["rss_mb"] - full[0]["rss_mb"]) * 1024 * per, 1)
        if "traced_mb" in full[0]:
            growth["traced_kb"] = round(
                (full[-1]["traced_mb"] - full[0]["traced_mb"]) * 1024 * per, 1
            )
    return {
        "benchmark": "memory",
        "requests": done - first,
        "requests_per_second": round((done - first) / seconds, 1),
        "nodes": args.nodes,
        "explain_history": args.explain_history,
        "optimizer_window_seconds": args.window,
        "tracemalloc": args.tracemalloc,
        "checkpoints": checkpoints,
        "growth_per_1000_requests_with_explain_history_full": growth,
        "bytes_per_record": sizes,
        "cpus": os.cpu_count(),
    }


def main() -> int:
    import coordinator.dispatch

    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=30_000)
    parser.add_argument("--every", type=int, default=2_500)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--explain-history", type=int, default=coordinator.dispatch.EXPLAIN_HISTORY)
    parser.add_argument("--window", type=float, default=600.0, help="optimizer window_seconds")
    parser.add_argument("--tracemalloc", action="store_true", help="slower: about 2x")
    parser.add_argument("--serve-coordinator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-agents", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_coordinator or args.serve_agents:
        from hive.serving import tune_gc_for_serving

        # The children are the daemons: tuned as `hive coordinator` and `hive agent` are.
        tune_gc_for_serving()
    if args.serve_coordinator:
        asyncio.run(serve_coordinator(args.explain_history, args.window, args.tracemalloc))
        return 0
    if args.serve_agents:
        asyncio.run(serve_agents(args.serve_agents, args.nodes))
        return 0
    child = [sys.executable, __file__, "--explain-history", str(args.explain_history)]
    child += ["--window", str(args.window), "--nodes", str(args.nodes)]
    coord = subprocess.Popen(
        [*child, "--serve-coordinator", *(["--tracemalloc"] if args.tracemalloc else [])],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        stderr=subprocess.DEVNULL,
    )
    agents = None
    try:
        assert coord.stdout is not None
        address = json.loads(coord.stdout.readline())["coordinator"]
        agents = subprocess.Popen(
            [*child, "--serve-agents", address],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
            stderr=subprocess.DEVNULL,
        )
        assert agents.stdout is not None
        json.loads(agents.stdout.readline())
        result = asyncio.run(measure(args, coord, address))
        print(json.dumps(result, indent=2))
    finally:
        for process in (agents, coord):
            if process is not None:
                process.terminate()
                process.wait(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
