"""The CPU the token path costs, process by process: what one coordinator can relay.

Four child processes, as a deployment has them: the coordinator; the gateway; the node
agents (``--agents``, one endpoint each, all in one process so the machine holds them);
and their emulated Ollamas (one per endpoint, all in one process). The clients, in this
process, call the gateway's Ollama API (``/api/generate``) in closed loop. Each phase
reads every child's CPU time (``/proc/PID/stat``: user + system) before and after:

* ``short``: 8-token answers from instant emulators: the cost of a request;
* ``streamed``: long answers (``--tokens``) at the emulators' modelled speed, streamed;
* ``whole``: the same answers asked whole (``"stream": false``).

The cost of a token is a long phase's CPU less its requests at the ``short`` phase's cost
per request, over its tokens; the ceiling of one coordinator is one core over the
central (coordinator + gateway) cost of a token. Prints one JSON object.

    python benchmarks/bench_scale.py [--agents 8] [--slots 4] [--seconds 15] [--tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from harness import cpu_seconds, nodeless_cluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = "llama3.1:8b"  # 50 tokens/s a stream on the RTX 3070 (the emulator's model)
GPU = "NVIDIA GeForce RTX 3070"


# --- children -----------------------------------------------------------------------------


async def serve_coordinator() -> None:
    from coordinator.server import Coordinator
    from hive.serving import tune_gc_for_serving

    tune_gc_for_serving()
    coordinator = Coordinator(
        nodeless_cluster(routing={"scheduler": {"max_queue": 20_000}}, metrics_listen="off")
    )
    port = await coordinator.start()
    print(json.dumps({"address": f"127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


async def serve_gateway(coordinator: str, direct: bool) -> None:
    from gateway.app import create_app
    from hive.asgi import AsgiServer
    from hive.serving import tune_gc_for_serving

    tune_gc_for_serving()
    server = AsgiServer(create_app(coordinator, direct=direct))
    port = await server.start()
    print(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


async def serve_emulators(count: int, slots: int, time_scale: float) -> None:
    from hive import hardware
    from ollama_emulator import EmulatorConfig, OllamaEmulator

    gpu = hardware.gpu_kind(GPU)
    emulators = []
    for i in range(count):
        emulator = OllamaEmulator(
            EmulatorConfig(
                gpus=[gpu], models=[MODEL], time_scale=time_scale, num_parallel=slots, seed=i
            )
        )
        await emulator.start()
        emulators.append(emulator)
    print(json.dumps({"urls": [e.url for e in emulators], "pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


async def serve_agents(coordinator: str, urls: list[str], slots: int, window: float) -> None:
    from hive import hardware
    from hive.config import AgentConfig, EndpointSpec, GpuSpec, NodeSpec
    from hive.serving import tune_gc_for_serving
    from node_agent.agent import Agent

    tune_gc_for_serving()
    gpu = hardware.gpu_kind(GPU)
    agents = []
    for i, url in enumerate(urls):
        agent = Agent(
            AgentConfig(
                source="bench",
                coordinator=coordinator,
                listen="127.0.0.1:0",
                telemetry="simulated",
                metrics_listen="off",
                chunk_max_seconds=window,
                node=NodeSpec(
                    name=f"NODE{i:03d}",
                    gpus=(GpuSpec(gpu.name, "nvidia", gpu.memory_bytes),),
                    endpoints=(
                        EndpointSpec(
                            id="gpu0", gpus=(0,), num_parallel=slots, url=url, models=(MODEL,)
                        ),
                    ),
                ),
            )
        )
        await agent.start()
        agents.append(agent)
    await asyncio.gather(*(a.connected.wait() for a in agents))
    print(json.dumps({"pid": os.getpid()}), flush=True)
    await asyncio.Event().wait()


def child(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start this script with ``args`` (a ``--serve-*`` role); its first line of output
    once ready. Its log goes to a temporary file, shown if it exits before that."""
    log = tempfile.NamedTemporaryFile(prefix="hive-bench-scale-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        tail = Path(log.name).read_text(errors="replace")[-3000:]
        raise RuntimeError(f"child {args[0]} exited before it was ready:\n{tail}")
    return process, json.loads(line)


# --- the clients --------------------------------------------------------------------------


async def phase(
    gateway: str,
    pids: dict[str, int],
    lanes: int,
    seconds: float,
    tokens: int,
    stream: bool,
    profile: Path | None = None,
) -> dict[str, Any]:
    """``lanes`` clients in closed loop for ``seconds``: requests, tokens, CPU by process;
    with ``profile``, py-spy samples the coordinator, gateway and agents meanwhile (raw
    collapsed stacks, one file each, in that directory)."""
    done = {"requests": 0, "tokens": 0, "errors": 0}
    body = {
        "model": MODEL,
        "prompt": "Write a function that parses a CSV line.",
        "stream": stream,
        "options": {"num_predict": tokens, "ignore_eos": True},
    }

    async def lane(http: httpx.AsyncClient, stop: float) -> None:
        while time.monotonic() < stop:
            try:
                if stream:
                    async with http.stream("POST", "/api/generate", json=body) as reply:
                        reply.raise_for_status()
                        last: dict[str, Any] = {}
                        async for line in reply.aiter_lines():
                            if line:
                                last = json.loads(line)
                else:
                    reply = await http.post("/api/generate", json=body)
                    reply.raise_for_status()
                    last = reply.json()
                done["requests"] += 1
                done["tokens"] += int(last.get("eval_count", 0))
            except httpx.HTTPError:
                done["errors"] += 1

    limits = httpx.Limits(max_connections=lanes, max_keepalive_connections=lanes)
    async with httpx.AsyncClient(base_url=gateway, timeout=120, limits=limits) as http:
        warm = time.monotonic() + 1.0
        await asyncio.gather(*(lane(http, warm) for _ in range(lanes)))
        done.update(requests=0, tokens=0, errors=0)
        spies = [] if profile is None else await start_spies(profile, pids, seconds)
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.monotonic()
        await asyncio.gather(*(lane(http, started + seconds) for _ in range(lanes)))
        elapsed = time.monotonic() - started
        for spy in spies:
            await spy.wait()
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return {
        "lanes": lanes,
        "seconds": round(elapsed, 2),
        "requests": done["requests"],
        "errors": done["errors"],
        "tokens": done["tokens"],
        "requests_per_s": round(done["requests"] / elapsed, 1),
        "tokens_per_s": round(done["tokens"] / elapsed, 1),
        "cpu_s": {k: round(v, 3) for k, v in cpu.items()},
        "cpu_cores": {k: round(v / elapsed, 3) for k, v in cpu.items()},
    }


async def start_spies(
    profile: Path, pids: dict[str, int], seconds: float
) -> list[asyncio.subprocess.Process]:
    """py-spy on the coordinator, gateway and agents for ``seconds`` (less one)."""
    await asyncio.to_thread(profile.mkdir, parents=True, exist_ok=True)
    return [
        await asyncio.create_subprocess_exec(
            str(Path(sys.executable).parent / "py-spy"),
            *("record", "--nonblocking", "--format", "raw"),
            *("--duration", str(max(1, int(seconds) - 1)), "--pid", str(pids[name])),
            *("--output", str(profile / f"{name}.txt")),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for name in ("coordinator", "gateway", "agents")
    ]


def per_token(
    long: dict[str, Any], short: dict[str, Any], names: tuple[str, ...]
) -> dict[str, float]:
    """µs of CPU per token of ``names``' processes in ``long``, its requests' own cost (at
    ``short``'s cost per request) taken out."""
    out = {}
    for name in names:
        per_request = short["cpu_s_less_idle"][name] / max(1, short["requests"])
        tokens_cpu = long["cpu_s_less_idle"][name] - long["requests"] * per_request
        out[name] = round(max(0.0, tokens_cpu) / max(1, long["tokens"]) * 1e6, 2)
    return out


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    children: list[subprocess.Popen[str]] = []
    try:
        coordinator, c = child("--serve-coordinator")
        children.append(coordinator)
        gateway, g = child("--serve-gateway", c["address"], "direct" if args.direct else "relay")
        children.append(gateway)
        results: dict[str, Any] = {
            "agents": args.agents,
            "slots": args.slots,
            "model": MODEL,
            "gpu": GPU,
            "chunk_max_seconds": args.chunk_seconds,
            "direct": args.direct,
            "machine_cores": os.cpu_count(),
        }
        for time_scale, phases in ((0.0, ("short",)), (args.time_scale, ("streamed", "whole"))):
            emulators, e = child(
                "--serve-emulators", str(args.agents), str(args.slots), str(time_scale)
            )
            children.append(emulators)
            agents, a = child(
                "--serve-agents",
                c["address"],
                json.dumps(e["urls"]),
                str(args.slots),
                str(args.chunk_seconds),
            )
            children.append(agents)
            await asyncio.sleep(1.0)  # the coordinator has them all healthy
            pids = {
                "coordinator": c["pid"],
                "gateway": g["pid"],
                "agents": a["pid"],
                "emulators": e["pid"],
            }
            # What the processes burn with nothing to do (heartbeats, the dispatch tick,
            # the optimizer): taken out of every phase's CPU before it is split.
            before = {name: cpu_seconds(pid) for name, pid in pids.items()}
            await asyncio.sleep(args.idle_seconds)
            idle = {
                name: (cpu_seconds(pid) - before[name]) / args.idle_seconds
                for name, pid in pids.items()
            }
            results.setdefault("idle_cores", {})[f"time_scale {time_scale}"] = {
                k: round(v, 4) for k, v in idle.items()
            }
            for name in phases:
                print(f"phase {name}", file=sys.stderr, flush=True)
                if name == "short":
                    results[name] = await phase(
                        g["url"],
                        pids,
                        args.lanes,
                        args.seconds,
                        8,
                        stream=True,
                        profile=args.profile / name if args.profile else None,
                    )
                else:
                    lanes = args.agents * args.slots
                    results[name] = await phase(
                        g["url"],
                        pids,
                        lanes,
                        args.seconds,
                        args.tokens,
                        stream=name == "streamed",
                        profile=args.profile / name if args.profile else None,
                    )
                busy = results[name]
                busy["cpu_s_less_idle"] = {
                    k: round(max(0.0, v - idle[k] * busy["seconds"]), 3)
                    for k, v in busy["cpu_s"].items()
                }
            for process in (agents, emulators):
                process.terminate()
                process.wait(20)
                children.remove(process)
        short = results["short"]
        names = ("coordinator", "gateway", "agents")
        results["cpu_per_request_ms"] = {
            n: round(short["cpu_s_less_idle"][n] / max(1, short["requests"]) * 1e3, 3)
            for n in names
        }
        for name in ("streamed", "whole"):
            cost = per_token(results[name], short, names)
            cost["central"] = round(cost["coordinator"] + cost["gateway"], 2)
            results[f"cpu_per_token_us_{name}"] = cost
        central = results["cpu_per_token_us_streamed"]["central"]
        results["one_core_relays_tokens_per_s"] = round(1e6 / central) if central else None
        return results
    finally:
        for process in children:
            process.terminate()
        for process in children:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=8, help="endpoints, one agent each")
    parser.add_argument("--slots", type=int, default=4, help="parallel slots per endpoint")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase")
    parser.add_argument("--tokens", type=int, default=256, help="per long answer")
    parser.add_argument("--lanes", type=int, default=32, help="clients in the short phase")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="emulator speed in the long phases"
    )
    parser.add_argument("--idle-seconds", type=float, default=4.0, help="idle CPU baseline")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the long phases into this directory (raw stacks)"
    )
    parser.add_argument("--serve-coordinator", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--direct", action="store_true", help="the gateway reads streams from the agents"
    )
    parser.add_argument("--serve-gateway", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--serve-emulators", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument(
        "--chunk-seconds", type=float, default=0.1, help="the agents' chunk_max_seconds"
    )
    parser.add_argument("--serve-agents", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_coordinator:
        asyncio.run(serve_coordinator())
    elif args.serve_gateway:
        coordinator, mode = args.serve_gateway
        asyncio.run(serve_gateway(coordinator, mode == "direct"))
    elif args.serve_emulators:
        count, slots, scale = args.serve_emulators
        asyncio.run(serve_emulators(int(count), int(slots), float(scale)))
    elif args.serve_agents:
        coordinator, urls, slots, window = args.serve_agents
        asyncio.run(serve_agents(coordinator, json.loads(urls), int(slots), float(window)))
    else:
        print(json.dumps(asyncio.run(measure(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
